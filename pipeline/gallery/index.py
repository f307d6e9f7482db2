"""The gallery of enrolled faceprints: what the stages need of it, and which one a worker opens.

The gallery holds pseudonymous subject ids only (design invariant 6): a point is a reference
faceprint, its payload the subject id and the model version. The authoritative copy of every
faceprint is the encrypted vault; the gallery is an index rebuilt from it.

Two implementations behind ``GalleryIndex``:
- ``EdgeGallery`` (``edge.py``, the embedded default): Qdrant's engine in the worker process,
  in memory only, one replica per worker, rebuilt from the vault at start and kept in step by
  the gallery topic (``sync.py``);
- ``QdrantGallery`` (``server.py``, production): a Qdrant server shared by every worker
  (``qdrant.url``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..settings import Settings

if TYPE_CHECKING:
    from .edge import EdgeGallery
    from .server import QdrantGallery

log = logging.getLogger(__name__)

EMBEDDING_DIM = 128  # dlib ResNet v1


class GalleryUnavailable(RuntimeError):
    """The gallery could not be reached or failed: transient, retry."""


@dataclass(frozen=True)
class Match:
    subject_id: str
    distance: float  # L2 between the face and the nearest reference faceprint


class GalleryIndex(Protocol):
    # True: a per-process copy, rebuilt from the vault at start and kept in step by the gallery
    # topic; False: one store every worker shares.
    replica: bool

    async def search(self, embeddings: np.ndarray) -> list[Match | None]: ...
    async def upsert(
        self, subject_id: str, faceprints: Sequence[tuple[str, np.ndarray]], model_version: str
    ) -> int: ...
    async def delete_subject(self, subject_id: str) -> int: ...
    async def count(self, subject_id: str | None = None) -> int: ...
    async def subjects(self) -> set[str]: ...
    def close(self) -> None: ...


def open_gallery(settings: Settings, replica: str = "worker") -> EdgeGallery | QdrantGallery:
    """The server when ``qdrant.url`` is set, else this process's in-memory replica."""
    q = settings.qdrant
    if q.url:
        from .server import QdrantGallery

        return QdrantGallery.connect(q.url, q.api_key, q.collection, q.match_threshold)
    from .edge import EdgeGallery
    from .memory import shred_tree

    legacy = Path(settings.data_dir) / "qdrant"
    if legacy.is_dir():
        # qdrant-client's local mode kept the gallery here, faceprints in plaintext on disk.
        files = shred_tree(legacy)
        log.warning("gallery: shredded the old on-disk local-mode store %s (%d files)", legacy, files)
    return EdgeGallery.open(q.memory_dir, Path(settings.data_dir), replica, q.match_threshold)
