"""Qdrant as the gallery of enrolled faceprints.

Qdrant holds pseudonymous subject ids only (design invariant 6): a point is a reference
faceprint, its payload the subject id, the reference's ordinal and the model version. The
authoritative copy of every faceprint is the encrypted vault; this index can be dropped and
rebuilt from it (``facegate reindex``).

Two deployments behind one class: a Qdrant server (``qdrant.url``), shared by every worker, or
qdrant-client's local mode under the data dir. Local mode allows one process per path, so each
worker keeps its own replica and follows the gallery topic (see ``pipeline/gallery/sync.py``).
The client is synchronous; calls run on one dedicated thread so the event loop never blocks and
local mode is never entered twice at once.

Local mode has no payload index: a count or delete by subject tests every point (~4 s at
100,000 points on a busy core). Being the only process that can open its store, it keeps the
subject -> point ids map itself, read once at open and changed by every write it makes, so a
purge deletes by id. A server keeps a payload index on subject_id and deletes by filter.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from qdrant_client import QdrantClient, models

from .. import metrics
from ..settings import Settings

EMBEDDING_DIM = 128  # dlib ResNet v1
T = TypeVar("T")


class GalleryUnavailable(RuntimeError):
    """Qdrant could not be reached or failed: transient, retry."""


@dataclass(frozen=True)
class Match:
    subject_id: str
    distance: float  # L2 between the face and the nearest reference faceprint


class GalleryIndex(Protocol):
    async def search(self, embeddings: np.ndarray) -> list[Match | None]: ...
    async def upsert(
        self, subject_id: str, faceprints: Sequence[tuple[str, np.ndarray]], model_version: str
    ) -> int: ...
    async def delete_subject(self, subject_id: str) -> int: ...
    async def count(self, subject_id: str | None = None) -> int: ...


class QdrantGallery:
    def __init__(
        self, client: QdrantClient, collection: str, threshold: float, *, local: bool = False
    ) -> None:
        self._client = client
        self._local = local
        self._collection = collection
        self._threshold = threshold
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant")
        self._ensure_collection()
        # Local mode: subject -> its point ids, used and changed only on the qdrant thread.
        self._points: dict[str, set[str]] | None = self._read_points() if local else None

    def _read_points(self) -> dict[str, set[str]]:
        points: dict[str, set[str]] = {}
        total = self._client.count(self._collection, exact=True).count
        if total:
            # One page: local mode sorts every id on each scroll call.
            records, _ = self._client.scroll(
                self._collection, limit=total + 1, with_payload=["subject_id"], with_vectors=False
            )
            for record in records:
                if record.payload:
                    points.setdefault(str(record.payload["subject_id"]), set()).add(_point_id(record.id))
        return points

    def _ensure_collection(self) -> None:
        if not self._client.collection_exists(self._collection):
            self._client.create_collection(
                self._collection,
                vectors_config=models.VectorParams(size=EMBEDDING_DIM, distance=models.Distance.EUCLID),
            )
            if not self._local:  # local mode scans; only a server uses payload indexes
                self._client.create_payload_index(
                    self._collection, "subject_id", field_schema=models.PayloadSchemaType.KEYWORD
                )

    async def _call(self, operation: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args, **kwargs))
        except Exception as exc:  # qdrant-client raises transport and HTTP errors of many types
            raise GalleryUnavailable(f"qdrant {operation} failed: {exc}") from exc
        finally:
            metrics.QDRANT_QUERY_DURATION.labels(operation=operation).observe(time.perf_counter() - started)

    async def search(self, embeddings: np.ndarray) -> list[Match | None]:
        """Nearest reference faceprint per embedding, if within the match threshold."""
        if len(embeddings) == 0:
            return []
        requests = [
            models.QueryRequest(
                query=[float(v) for v in e],
                limit=1,
                with_payload=["subject_id"],
                score_threshold=self._threshold,
            )
            for e in np.asarray(embeddings, dtype=np.float32)
        ]
        responses = await self._call("search", self._client.query_batch_points, self._collection, requests)
        matches: list[Match | None] = []
        for response in responses:
            best = response.points[0] if response.points else None
            if best is None or best.payload is None or best.score >= self._threshold:
                matches.append(None)
            else:
                matches.append(Match(str(best.payload["subject_id"]), float(best.score)))
        return matches

    async def upsert(
        self, subject_id: str, faceprints: Sequence[tuple[str, np.ndarray]], model_version: str
    ) -> int:
        """Replace the subject's points with these (vault record id, faceprint) pairs.

        The point id is the vault's record id (a UUID), so index and vault name a faceprint alike.
        The new points are written over the old ones first and only then are the subject's other
        points dropped, so a search running meanwhile never finds the subject missing.
        """
        points = [
            models.PointStruct(
                id=record_id,
                vector=[float(v) for v in np.asarray(vector, dtype=np.float32)],
                payload={"subject_id": subject_id, "model_version": model_version},
            )
            for record_id, vector in faceprints
        ]
        if self._points is not None:
            await self._call("upsert", self._replace_local, subject_id, points)
            return len(points)
        if points:
            await self._call("upsert", self._client.upsert, self._collection, points, wait=True)
        stale = models.Filter(
            must=[models.FieldCondition(key="subject_id", match=models.MatchValue(value=subject_id))],
            must_not=[models.HasIdCondition(has_id=[p.id for p in points])] if points else None,
        )
        await self._call(
            "delete",
            self._client.delete,
            self._collection,
            points_selector=models.FilterSelector(filter=stale),
            wait=True,
        )
        return len(points)

    def _replace_local(self, subject_id: str, points: list[models.PointStruct]) -> None:
        assert self._points is not None
        if points:
            self._client.upsert(self._collection, points, wait=True)
        keep = {_point_id(p.id) for p in points}
        stale = self._points.get(subject_id, set()) - keep
        if stale:
            self._client.delete(self._collection, models.PointIdsList(points=sorted(stale)), wait=True)
        if keep:
            self._points[subject_id] = keep
        else:
            self._points.pop(subject_id, None)

    async def delete_subject(self, subject_id: str) -> int:
        """Delete every point of the subject; returns how many there were."""
        if self._points is not None:
            return int(await self._call("delete", self._delete_local, subject_id))
        before = await self.count(subject_id)
        if before:
            await self._call(
                "delete",
                self._client.delete,
                self._collection,
                points_selector=models.FilterSelector(filter=_subject_filter(subject_id)),
                wait=True,
            )
        return before

    def _delete_local(self, subject_id: str) -> int:
        assert self._points is not None
        ids = self._points.get(subject_id, set())
        if ids:
            self._client.delete(self._collection, models.PointIdsList(points=sorted(ids)), wait=True)
        self._points.pop(subject_id, None)
        return len(ids)

    async def count(self, subject_id: str | None = None) -> int:
        flt = _subject_filter(subject_id) if subject_id else None
        result = await self._call("count", self._client.count, self._collection, count_filter=flt, exact=True)
        return int(result.count)

    async def subjects(self) -> set[str]:
        """Every subject id with points (for audits and the invariant tests)."""
        found: set[str] = set()
        offset = None
        while True:
            points, offset = await self._call(
                "scroll",
                self._client.scroll,
                self._collection,
                limit=1024,
                offset=offset,
                with_payload=["subject_id"],
                with_vectors=False,
            )
            found.update(str(p.payload["subject_id"]) for p in points if p.payload)
            if offset is None:
                return found

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._client.close()


def _point_id(point_id: Any) -> str:
    """Qdrant's form of a UUID point id (it normalises what it is given)."""
    return str(uuid.UUID(str(point_id)))


def _subject_filter(subject_id: str) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key="subject_id", match=models.MatchValue(value=subject_id))]
    )


def open_gallery(settings: Settings, replica: str = "worker") -> QdrantGallery:
    """The server when ``qdrant.url`` is set, else this process's local replica under the data dir."""
    q = settings.qdrant
    if q.url:
        api_key = q.api_key.get_secret_value() if q.api_key else None
        client = QdrantClient(url=q.url, api_key=api_key, timeout=10)
    else:
        path = Path(settings.data_dir) / "qdrant" / replica
        path.mkdir(parents=True, exist_ok=True)
        return QdrantGallery(QdrantClient(path=str(path)), q.collection, q.match_threshold, local=True)
    return QdrantGallery(client, q.collection, q.match_threshold)
