"""What the face analysis seam returns, and the Protocol the recognize stage depends on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

EMBEDDING_DIM = 128


@dataclass(frozen=True, slots=True)
class Box:
    """A face box in pixels of the upright image (after EXIF orientation)."""

    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True, slots=True)
class FaceQuality:
    face_px: float  # short side of the box, upright image pixels
    sharpness: float  # variance of the Laplacian of the aligned 150x150 chip; low = blurred


@dataclass(frozen=True, slots=True)
class DetectedFace:
    box: Box
    landmarks: np.ndarray = field(repr=False)  # 5 x 2 float32: eyes, nose tip, mouth corners
    det_score: float
    # float32[128], dlib ResNet v1: same person when the L2 distance is < 0.6. Biometric data: kept
    # out of repr so it never lands in a log line by accident.
    embedding: np.ndarray = field(repr=False)
    quality: FaceQuality


@dataclass(frozen=True, slots=True)
class FacesResult:
    """Every face of one image, and which model weights found them."""

    width: int  # upright image size
    height: int
    faces: tuple[DetectedFace, ...]
    model_version: str


class FaceAnalyzer(Protocol):
    """Encoded image bytes in, all faces out. Implemented by TritonFaceClient."""

    async def analyze(self, image: bytes, *, request_id: str = "") -> FacesResult:
        """Raises BadImage (permanent) or InferenceUnavailable (transient)."""
        ...

    async def close(self) -> None: ...
