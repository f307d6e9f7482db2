"""The production gallery: a Qdrant server shared by every worker (``qdrant.url``).

qdrant-client is synchronous; calls run on one dedicated thread so the event loop never blocks.
A payload index on subject_id lets a purge delete by filter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from pydantic import SecretStr
from qdrant_client import QdrantClient, models

from .. import metrics
from .index import EMBEDDING_DIM, GalleryUnavailable, Match


class QdrantGallery:
    replica = False  # one store for every worker: the gallery topic's changes are no-ops in effect

    def __init__(self, client: QdrantClient, collection: str, threshold: float) -> None:
        self._client = client
        self._collection = collection
        self._threshold = threshold
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant")
        self._ensure_collection()

    @classmethod
    def connect(cls, url: str, api_key: SecretStr | None, collection: str, threshold: float) -> QdrantGallery:
        key = api_key.get_secret_value() if api_key else None
        return cls(QdrantClient(url=url, api_key=key, timeout=10), collection, threshold)

    def _ensure_collection(self) -> None:
        if not self._client.collection_exists(self._collection):
            self._client.create_collection(
                self._collection,
                vectors_config=models.VectorParams(size=EMBEDDING_DIM, distance=models.Distance.EUCLID),
            )
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
        if points:
            await self._call("upsert", self._client.upsert, self._collection, points, wait=True)
        stale = models.Filter(
            must=[_subject_condition(subject_id)],
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

    async def delete_subject(self, subject_id: str) -> int:
        """Delete every point of the subject; returns how many there were."""
        before = await self.count(subject_id)
        if before:
            await self._call(
                "delete",
                self._client.delete,
                self._collection,
                points_selector=models.FilterSelector(
                    filter=models.Filter(must=[_subject_condition(subject_id)])
                ),
                wait=True,
            )
        return before

    async def count(self, subject_id: str | None = None) -> int:
        flt = models.Filter(must=[_subject_condition(subject_id)]) if subject_id else None
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


def _subject_condition(subject_id: str) -> models.FieldCondition:
    return models.FieldCondition(key="subject_id", match=models.MatchValue(value=subject_id))
