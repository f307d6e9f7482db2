"""The detector input size (det_size) by measured recall: a sweep on dlib's labelled photos.

For each size in SWEEP_SIZES: the 43 labelled faces found (IoU >= 0.4) in the photos as they are,
in 2 x 2 mosaics of them (faces at half their relative size: a group photo) and in 3 x 3 mosaics
(a crowd), other detections, bald_guys.jpg's 24, the weakest labelled face's score, and the
detector's time per image at that size. choose_size (tests/models/evaluation.py) picks the size;
tests/models/test_detector_size.py checks config.pbtxt's det_size is the one it picks.
"""

from __future__ import annotations

import time
from typing import Any

from bench.model_photos import PHOTOS, config_params, evaluation, load_faces
from pipeline.settings import get_settings


def run(repeats: int = 2) -> dict[str, Any]:
    faces = load_faces()
    model = get_settings().model_repository / "facegate_faces" / "1"
    configured = config_params(faces)
    folder = PHOTOS / "faces"
    truth = evaluation.dlib_boxes(folder / "testing.xml") | evaluation.dlib_boxes(folder / "training.xml")
    images = {
        name: faces.decode_image((folder / name).read_bytes(), 10**8)
        for name in [*sorted(truth), "bald_guys.jpg"]
    }
    rows: dict[int, dict[str, int]] = {}
    extra: dict[int, dict[str, float]] = {}
    for size in evaluation.SWEEP_SIZES:
        params = faces.Params(**{**configured.__dict__, "det_size": size})
        pipeline = faces.FacePipeline.from_files(model / "detector.onnx", model / "embedder.onnx", params)
        pipeline.warm_up()
        rows[size] = evaluation.score_detector(
            lambda image, p=pipeline: [tuple(b) for b in p.detect([image])[0].boxes], images, truth
        )
        labelled = [images[n] for n in sorted(truth)]
        weakest = min(float(f.scores.min()) for f in pipeline.detect(labelled) if len(f))
        start = time.perf_counter()
        for _ in range(repeats):
            pipeline.detect(labelled[:8])
        extra[size] = {
            "weakest_labelled_score": round(weakest, 3),
            "detect_ms_per_image": round((time.perf_counter() - start) / (repeats * 8) * 1000, 1),
        }
    chosen = evaluation.choose_size(rows)
    base = extra[configured.det_size]["detect_ms_per_image"]
    return {
        "configured": configured.det_size,
        "chosen": chosen,
        "runtime": configured.runtime,
        "rule": "smallest size that, like every larger one, finds 43/43 and 24/24 with no other detection "
        "and is within one face of the best on the 2x2 mosaic",
        "sizes": [
            {
                "det_size": s,
                **rows[s],
                **extra[s],
                "detect_cost_vs_configured": round(extra[s]["detect_ms_per_image"] / base, 2),
            }
            for s in evaluation.SWEEP_SIZES
        ],
    }
