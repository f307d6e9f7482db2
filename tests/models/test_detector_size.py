"""config.pbtxt's det_size is the one the measured-recall rule picks (evaluation.choose_size).

The rule: the smallest detector canvas that, like every larger one, finds all 43 labelled faces
(IoU >= 0.4) with no other detection and bald_guys.jpg's 24, and finds within one face as many of
the 2 x 2 mosaic's faces (the same faces at half their relative size) as the best size does.
Sweeping 576, 640 and 800 decides it: a size below 576 could only be picked if 576 passed.
bench/detector_size.py runs the whole sweep (416-800, and 3 x 3 mosaics) for the model card.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from evaluation import choose_size, dlib_boxes, score_detector
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

pytestmark = [pytest.mark.models, pytest.mark.slow]


def test_configured_detector_size_is_the_smallest_that_keeps_recall(
    photos: Path, model_dir: Path, faces_module: ModuleType
) -> None:
    faces = faces_module
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    configured = faces.Params.from_strings({k: v.string_value for k, v in config.parameters.items()})
    folder = photos / "faces"
    truth = dlib_boxes(folder / "testing.xml") | dlib_boxes(folder / "training.xml")
    images = {
        n: faces.decode_image((folder / n).read_bytes(), 10**8) for n in [*sorted(truth), "bald_guys.jpg"]
    }
    rows = {}
    for size in (576, 640, 800):
        params = faces.Params(**{**configured.__dict__, "det_size": size})
        pipeline = faces.FacePipeline.from_files(
            model_dir / "1" / "detector.onnx", model_dir / "1" / "embedder.onnx", params
        )
        rows[size] = score_detector(
            lambda image, p=pipeline: [tuple(b) for b in p.detect([image])[0].boxes],
            images,
            truth,
            levels=(1, 2),
        )
        print(f"\ndet_size {size}: {rows[size]}")
    assert choose_size(rows) == configured.det_size == 640
