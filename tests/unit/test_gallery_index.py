"""The gallery on qdrant-client's local mode: writes keep its subject -> point ids map true.

Every check of what is stored counts by payload filter (a scan of every point), independent of
the map the gallery deletes by.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient

from pipeline.gallery.index import QdrantGallery

# Stand-ins for faceprints: the index stores and compares them, it never interprets them.
VECTORS = np.linspace(0.0, 1.0, 4 * 128, dtype=np.float32).reshape(4, 128)


def prints(n: int, offset: int = 0) -> list[tuple[str, np.ndarray]]:
    return [(str(uuid.uuid4()), VECTORS[(offset + i) % 4]) for i in range(n)]


def local(path: Path | None = None) -> QdrantGallery:
    client = QdrantClient(path=str(path)) if path else QdrantClient(":memory:")
    return QdrantGallery(client, "gallery", 0.6, local=True)


def test_re_enrolling_replaces_the_points_and_a_purge_deletes_all_of_them() -> None:
    g = local()
    try:
        assert asyncio.run(g.upsert("alice", prints(3), "m1")) == 3
        assert asyncio.run(g.upsert("bob", prints(2, 3), "m1")) == 2
        assert asyncio.run(g.upsert("alice", prints(1, 1), "m2")) == 1
        assert asyncio.run(g.count("alice")) == 1
        assert asyncio.run(g.delete_subject("alice")) == 1
        assert asyncio.run(g.count("alice")) == 0
        assert asyncio.run(g.delete_subject("alice")) == 0  # a second purge finds nothing
        assert asyncio.run(g.count("bob")) == 2
        assert asyncio.run(g.upsert("bob", [], "m1")) == 0
        assert asyncio.run(g.count()) == 0
    finally:
        g.close()


def test_a_reopened_store_knows_the_points_written_before(tmp_path: Path) -> None:
    first = local(tmp_path)
    asyncio.run(first.upsert("alice", prints(2), "m1"))
    asyncio.run(first.upsert("bob", prints(1), "m1"))
    first.close()

    again = local(tmp_path)
    try:
        assert asyncio.run(again.delete_subject("alice")) == 2
        assert asyncio.run(again.count("alice")) == 0
        assert asyncio.run(again.count("bob")) == 1
        assert asyncio.run(again.subjects()) == {"bob"}
    finally:
        again.close()
