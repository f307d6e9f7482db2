"""The runtime facegate_faces runs its ONNX files with holds the gates that adopted it.

config.pbtxt's `runtime` (OpenVINO, fp32) was adopted over onnxruntime for speed on the
condition that (bench/runtimes.py measures the same, with int8 for comparison):
- its embeddings stay within 0.02 (L2) of onnxruntime's, the reference dlib parity and the golden
  outputs were taken with, on dlib's johns chips and on the faces of the labelled photos;
- dlib's johns stay apart: every same-person pair below 0.6, every other pair above it;
- every labelled face is found (43/43 at IoU >= 0.4, bald_guys.jpg 24/24), nothing else.
The Triton tests (test_faces_triton.py, test_golden.py) run the configured runtime as well.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from evaluation import dlib_boxes, iou, match_boxes
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

pytestmark = [pytest.mark.models, pytest.mark.slow]

PARITY_L2 = 0.02
SAME_PERSON = 0.6


def _configured(model_dir: Path, faces: ModuleType) -> Any:
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    return faces.Params.from_strings({k: v.string_value for k, v in config.parameters.items()})


@pytest.fixture(scope="module")
def pipelines(model_dir: Path, faces_module: ModuleType) -> dict[str, Any]:
    params = _configured(model_dir, faces_module)
    files = (model_dir / "1" / "detector.onnx", model_dir / "1" / "embedder.onnx")
    reference = faces_module.Params(**{**params.__dict__, "runtime": "onnxruntime"})
    return {
        "configured": faces_module.FacePipeline.from_files(*files, params),
        "reference": faces_module.FacePipeline.from_files(*files, reference),
    }


def test_configured_runtime_is_not_the_reference(model_dir: Path, faces_module: ModuleType) -> None:
    # If config.pbtxt goes back to onnxruntime, this file tests nothing new: say so.
    assert _configured(model_dir, faces_module).runtime == "openvino"


def test_embeddings_match_the_reference_runtime(photos: Path, pipelines: dict[str, Any]) -> None:
    chips = [np.asarray(faces_image) for faces_image in _johns(photos)[1]]
    ours, reference = pipelines["configured"].embed(chips), pipelines["reference"].embed(chips)
    worst = float(np.linalg.norm(ours - reference, axis=1).max())
    images = [p.read_bytes() for p in sorted((photos / "faces").glob("*.jpg"))]
    faces_worst = 0.0
    for a, b in zip(
        pipelines["configured"].analyze(images), pipelines["reference"].analyze(images), strict=True
    ):
        assert len(a) == len(b)
        for box, embedding in zip(b.boxes, b.embeddings, strict=True):
            k = int(np.argmax([iou(box, other) for other in a.boxes]))
            faces_worst = max(faces_worst, float(np.linalg.norm(a.embeddings[k] - embedding)))
    print(f"\nL2 to onnxruntime: johns chips {worst:.2e}, faces of the labelled photos {faces_worst:.2e}")
    assert worst <= PARITY_L2 and faces_worst <= PARITY_L2


def _johns(photos: Path) -> tuple[list[str], list[Any]]:
    from PIL import Image

    files = sorted((photos / "johns").glob("*/*.jpg"))
    return [f.parent.name for f in files], [Image.open(f).convert("RGB") for f in files]


def test_johns_thresholds_hold(photos: Path, pipelines: dict[str, Any]) -> None:
    people, chips = _johns(photos)
    # Through the whole pipeline (detect and align on the chips as photos), as Triton does it.
    found = pipelines["configured"].analyze(
        [p.read_bytes() for p in sorted((photos / "johns").glob("*/*.jpg"))]
    )
    assert all(len(f) == 1 for f in found) and len(chips) == 55
    embeddings = [f.embeddings[0] for f in found]
    for i, j in itertools.combinations(range(55), 2):
        distance = float(np.linalg.norm(embeddings[i] - embeddings[j]))
        assert (distance < SAME_PERSON) == (people[i] == people[j]), (i, j, distance)


def test_every_labelled_face_is_found(photos: Path, pipelines: dict[str, Any]) -> None:
    faces_dir = photos / "faces"
    truth = dlib_boxes(faces_dir / "testing.xml") | dlib_boxes(faces_dir / "training.xml")
    names = sorted(truth)
    found = pipelines["configured"].analyze([(faces_dir / n).read_bytes() for n in names])
    hits = others = 0
    for name, result in zip(names, found, strict=True):
        h, o = match_boxes(truth[name], [tuple(b) for b in result.boxes], 0.4)
        hits, others = hits + h, others + o
    assert (hits, sum(len(b) for b in truth.values()), others) == (43, 43, 0)
    (bald,) = pipelines["configured"].analyze([(faces_dir / "bald_guys.jpg").read_bytes()])
    assert len(bald) == 24
