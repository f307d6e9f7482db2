"""The embedded gallery: Qdrant's own engine (qdrant-edge) in the worker process, in memory only.

Each worker holds a replica of the gallery in an edge shard on a memory file system (see
``memory.py``): at start it is rebuilt from the encrypted vault (``restore``), then kept in step
by the gallery topic (``sync.py``); when the process ends it is gone. No faceprint is ever
written to disk by it: the shard's write-ahead log is off and its directory is in RAM.

Search is exact (``SearchParams(exact=True)``, every point compared): at 100,000 points it stays
within a few milliseconds per face on one core, and unlike HNSW it never misses the enrolled
subject. An HNSW graph built over the bench's 100,000 random filler points missed 3 of 126 real
faces even at ef=128, and building it takes most of a minute of CPU at every worker start.

A deleted point only gets a deleted flag in the engine; its vector bytes would stay in the
shard's memory-mapped files until a vacuum. So a purge first overwrites the subject's vectors
with zeros (in place, checked in tests/unit/test_gallery_edge.py) and only then deletes them.
Calls run on one dedicated thread: the engine's calls block, and a rebuild queued there orders
itself before every write made after it began.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import qdrant_edge as qe

from .. import metrics
from .index import EMBEDDING_DIM, GalleryUnavailable, Match
from .memory import private_directory

log = logging.getLogger(__name__)
T = TypeVar("T")

# A subject's faceprints as the vault gives them back: (subject_id, model_version, [(id, vector)])
SubjectFaceprints = tuple[str, str, Sequence[tuple[str, np.ndarray]]]
_BATCH = 1024  # points per engine update while restoring
_ZERO = [0.0] * EMBEDDING_DIM
_EXACT = qe.SearchParams(exact=True)


class EdgeGallery:
    """One worker's in-memory replica of the gallery."""

    replica = True  # rebuilt from the vault at start, kept in step by the gallery topic

    def __init__(self, directory: Path, threshold: float) -> None:
        self._directory = directory
        self._threshold = threshold
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gallery")
        self._shard = self._thread.submit(self._create).result()
        atexit.register(self.close)  # a worker stopped by SIGTERM leaves no replica behind

    @classmethod
    def open(cls, memory_dir: Path | None, data_dir: Path, replica: str, threshold: float) -> EdgeGallery:
        return cls(private_directory(memory_dir, data_dir, replica), threshold)

    @property
    def directory(self) -> Path:
        return self._directory

    def _create(self) -> Any:
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=EMBEDDING_DIM, distance=qe.Distance.Euclid),
            wal_enabled=False,  # a log of every upsert would be one more copy of each faceprint
        )
        shard = qe.EdgeShard.create(str(self._directory), config)
        shard.update(qe.UpdateOperation.create_field_index("subject_id", qe.PayloadSchemaType.Keyword))
        return shard

    async def _call(self, operation: str, fn: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except RuntimeError as exc:  # the executor is shut down: the worker is stopping
            raise GalleryUnavailable(f"gallery {operation}: {exc}") from exc
        except Exception as exc:  # the engine reports every failure as a plain Exception
            raise GalleryUnavailable(f"gallery {operation} failed: {exc}") from exc
        finally:
            metrics.QDRANT_QUERY_DURATION.labels(operation=operation).observe(time.perf_counter() - started)

    # --- reads --------------------------------------------------------------------------------

    async def search(self, embeddings: np.ndarray) -> list[Match | None]:
        """Nearest reference faceprint per embedding, if within the match threshold."""
        if len(embeddings) == 0:
            return []
        return list(await self._call("search", self._search, np.asarray(embeddings, dtype=np.float32)))

    def _search(self, embeddings: np.ndarray) -> list[Match | None]:
        requests = [
            qe.QueryRequest(
                limit=1,
                query=qe.Query.Nearest(e.tolist()),
                with_payload=["subject_id"],
                score_threshold=self._threshold,  # Euclid: the largest distance returned
                params=_EXACT,
            )
            for e in embeddings
        ]
        matches: list[Match | None] = []
        for found in self._shard.query_batch(qe.QueryBatchRequest(requests)):
            best = found[0] if found else None
            if best is None or not best.payload or best.score >= self._threshold:
                matches.append(None)
            else:
                matches.append(Match(str(best.payload["subject_id"]), float(best.score)))
        return matches

    async def count(self, subject_id: str | None = None) -> int:
        request = qe.CountRequest(filter=_subject(subject_id) if subject_id else None, exact=True)
        return int(await self._call("count", self._shard.count, request))

    async def subjects(self) -> set[str]:
        """Every subject id with points (for audits and the invariant tests)."""
        return set(await self._call("scroll", self._subjects))

    def _subjects(self) -> set[str]:
        total = self._shard.count(qe.CountRequest(exact=True))
        request = qe.FacetRequest(key="subject_id", limit=max(total, 1), exact=True)
        return {str(hit.value) for hit in self._shard.facet(request).hits if hit.count > 0}

    # --- writes -------------------------------------------------------------------------------

    async def upsert(
        self, subject_id: str, faceprints: Sequence[tuple[str, np.ndarray]], model_version: str
    ) -> int:
        """Replace the subject's points with these (vault record id, faceprint) pairs.

        The new points are written first and only then are the subject's other points dropped,
        so a search running meanwhile never finds the subject missing.
        """
        points = _points(subject_id, model_version, faceprints)
        await self._call("upsert", self._replace, subject_id, points)
        return len(points)

    def _replace(self, subject_id: str, points: list[qe.Point]) -> None:
        if points:
            self._shard.update(qe.UpdateOperation.upsert_points(points))
        keep = {p.id for p in points}
        self._erase(self._ids(_subject(subject_id, keep=keep)))

    async def delete_subject(self, subject_id: str) -> int:
        """Delete every point of the subject, vectors overwritten first; returns how many there were."""
        return int(await self._call("delete", self._delete_subject, subject_id))

    def _delete_subject(self, subject_id: str) -> int:
        ids = self._ids(_subject(subject_id))
        self._erase(ids)
        return len(ids)

    def _ids(self, condition: qe.Filter) -> list[Any]:
        ids: list[Any] = []
        offset = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1024, filter=condition, with_payload=False)
            )
            ids += [r.id for r in records]
            if offset is None:
                return ids

    def _erase(self, ids: list[Any]) -> None:
        if ids:
            self._shard.update(qe.UpdateOperation.update_vectors([qe.PointVectors(i, _ZERO) for i in ids]))
            self._shard.update(qe.UpdateOperation.delete_points(ids))

    def begin_restore(self, subjects: Iterable[SubjectFaceprints]) -> Future[int]:
        """Queue loading every subject's faceprints (from the vault) into this replica.

        Queued on the gallery's own thread at once, and the iterable consumed there: every
        search and write asked for after this call waits for the whole restore.
        """
        return self._thread.submit(self._restore, subjects)

    def _restore(self, subjects: Iterable[SubjectFaceprints]) -> int:
        started = time.monotonic()
        pending: list[qe.Point] = []
        loaded = 0
        for subject_id, model_version, faceprints in subjects:
            pending += _points(subject_id, model_version, faceprints)
            if len(pending) >= _BATCH:
                self._shard.update(qe.UpdateOperation.upsert_points(pending))
                loaded, pending = loaded + len(pending), []
        if pending:
            self._shard.update(qe.UpdateOperation.upsert_points(pending))
            loaded += len(pending)
        elapsed = time.monotonic() - started
        log.info("gallery: replica restored from the vault: %d points in %.1f s", loaded, elapsed)
        return loaded

    def close(self) -> None:
        """Close the engine and remove the replica's directory (idempotent)."""
        atexit.unregister(self.close)
        with contextlib.suppress(RuntimeError):  # closed already
            self._thread.submit(self._shard.close).result()
        self._thread.shutdown(wait=True)
        shutil.rmtree(self._directory, ignore_errors=True)


def _points(
    subject_id: str, model_version: str, faceprints: Sequence[tuple[str, np.ndarray]]
) -> list[qe.Point]:
    payload = {"subject_id": subject_id, "model_version": model_version}
    return [
        qe.Point(uuid.UUID(record_id), np.asarray(vector, dtype=np.float32).tolist(), payload)
        for record_id, vector in faceprints
    ]


def _subject(subject_id: str, keep: set[Any] | None = None) -> qe.Filter:
    """The subject's points, less those in ``keep``."""
    return qe.Filter(
        must=[qe.FieldCondition(key="subject_id", match=qe.MatchValue(subject_id))],
        must_not=[qe.HasIdCondition(keep)] if keep else None,
    )
