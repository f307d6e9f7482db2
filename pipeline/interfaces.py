"""The seams the stages depend on, as Protocols: what they need, not which implementation gives it.

Each has a production implementation (named beside it) and can be replaced by another one (a
Qdrant server or an in-process engine, SQLite or PostgreSQL) or, in unit tests, by a double.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import numpy as np

from .contract import AssetUploaded
from .contract.internal import FaceObservations
from .gallery import GalleryIndex
from .inference.types import FaceAnalyzer
from .vault import DestructionReceipt, Faceprint

T = TypeVar("T")

__all__ = ["FaceAnalyzer", "GalleryIndex", "ObjectStorage", "Recognizer", "Vault"]


class ObjectStorage(Protocol):
    """Objects of the assets and enrollment buckets (pipeline.objects.ObjectStore)."""

    async def read(self, bucket: str, key: str) -> bytes: ...
    async def remove(self, bucket: str, key: str) -> None: ...
    def stream(self, bucket: str, key: str, chunk: int = ...) -> Iterator[bytes]: ...
    async def run(self, fn: Callable[..., T], *args: Any) -> T: ...


class Vault(Protocol):
    """The encrypted faceprints, by subject (pipeline.vault.FaceprintVault)."""

    def store(
        self, subject_id: str, vector: np.ndarray, *, reference: str, model_version: str
    ) -> Faceprint: ...
    def faceprints(self, subject_id: str, *, model_version: str | None = None) -> list[Faceprint]: ...
    def destroy_subject(self, subject_id: str) -> DestructionReceipt: ...


class Recognizer(Protocol):
    """An asset's faces, without embeddings (pipeline.recognize.RecognizeStage)."""

    async def observe(self, asset: AssetUploaded) -> FaceObservations: ...
