"""Face analysis through Triton: encoded image bytes in, faces with embeddings out."""

from .client import TritonFaceClient
from .errors import BadImage, ImageAnalysisFailed, InferenceProtocolError, InferenceUnavailable
from .types import EMBEDDING_DIM, Box, DetectedFace, FaceAnalyzer, FaceQuality, FacesResult

__all__ = [
    "EMBEDDING_DIM",
    "BadImage",
    "Box",
    "DetectedFace",
    "FaceAnalyzer",
    "FaceQuality",
    "FacesResult",
    "ImageAnalysisFailed",
    "InferenceProtocolError",
    "InferenceUnavailable",
    "TritonFaceClient",
]
