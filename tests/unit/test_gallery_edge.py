"""The embedded gallery on Qdrant's engine: replace, purge, search, restore, and nothing left behind.

Every check of what is stored asks the engine by payload filter; the purge checks also read the
replica's files byte for byte.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.gallery.edge import EdgeGallery
from pipeline.gallery.memory import MEMORY_FILE_SYSTEMS, file_system_of

# Stand-ins for faceprints: the index stores and compares them, it never interprets them.
rng = np.random.default_rng(7)
VECTORS = rng.normal(0.0, 0.1, (6, 128)).astype(np.float32)


def prints(n: int, offset: int = 0) -> list[tuple[str, np.ndarray]]:
    return [(str(uuid.uuid4()), VECTORS[(offset + i) % len(VECTORS)]) for i in range(n)]


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[EdgeGallery]:
    g = EdgeGallery.open(None, tmp_path, "unit", 0.6)
    yield g
    g.close()


def files_holding(directory: Path, needle: bytes) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_re_enrolling_replaces_the_points_and_a_purge_deletes_all_of_them(gallery: EdgeGallery) -> None:
    g = gallery
    assert asyncio.run(g.upsert("alice", prints(3), "m1")) == 3
    assert asyncio.run(g.upsert("bob", prints(2, 3), "m1")) == 2
    assert asyncio.run(g.upsert("alice", prints(1, 1), "m2")) == 1
    assert asyncio.run(g.count("alice")) == 1
    assert asyncio.run(g.subjects()) == {"alice", "bob"}
    assert asyncio.run(g.delete_subject("alice")) == 1
    assert asyncio.run(g.count("alice")) == 0
    assert asyncio.run(g.delete_subject("alice")) == 0  # a second purge finds nothing
    assert asyncio.run(g.subjects()) == {"bob"}
    assert asyncio.run(g.upsert("bob", [], "m1")) == 0
    assert asyncio.run(g.count()) == 0


def test_search_names_the_nearest_subject_within_the_threshold_only(gallery: EdgeGallery) -> None:
    asyncio.run(gallery.upsert("alice", [(str(uuid.uuid4()), VECTORS[0])], "m1"))
    asyncio.run(gallery.upsert("bob", [(str(uuid.uuid4()), VECTORS[1])], "m1"))
    near_bob = VECTORS[1] + 0.01
    far = np.full(128, 5.0, dtype=np.float32)
    found = asyncio.run(gallery.search(np.stack([VECTORS[0], near_bob, far])))
    assert [m.subject_id if m else None for m in found] == ["alice", "bob", None]
    assert found[0] is not None and found[0].distance < 1e-5
    assert found[1] is not None and 0 < found[1].distance < 0.6
    assert asyncio.run(gallery.search(np.empty((0, 128), dtype=np.float32))) == []


def test_the_replica_lives_in_memory_and_a_purge_leaves_no_vector_in_its_files(tmp_path: Path) -> None:
    g = EdgeGallery.open(None, tmp_path, "unit", 0.6)
    directory = g.directory
    assert file_system_of(directory) in MEMORY_FILE_SYSTEMS
    assert not files_holding(tmp_path, VECTORS[2].tobytes())
    try:
        asyncio.run(g.upsert("carol", [(str(uuid.uuid4()), VECTORS[2])], "m1"))
        asyncio.run(g.upsert("dave", [(str(uuid.uuid4()), VECTORS[3])], "m1"))
        # The scan can see a vector where it is (so its silence below means something).
        assert files_holding(directory, VECTORS[2].tobytes())
        asyncio.run(g.delete_subject("carol"))
        assert not files_holding(directory, VECTORS[2].tobytes())
        # Re-enrolling drops the old faceprint the same way.
        asyncio.run(g.upsert("dave", [(str(uuid.uuid4()), VECTORS[4])], "m2"))
        assert not files_holding(directory, VECTORS[3].tobytes())
        assert files_holding(directory, VECTORS[4].tobytes())
    finally:
        g.close()
    assert not directory.exists()
    g.close()  # twice is harmless


def test_restore_loads_every_subject_before_any_later_write(gallery: EdgeGallery) -> None:
    subjects = [(f"S-{i}", "m1", prints(2, i)) for i in range(1500)]

    async def restore_then_purge() -> int:
        restoring = gallery.begin_restore(iter(subjects))
        purged = await gallery.delete_subject("S-7")  # asked for after the restore: runs after it
        assert restoring.result() == 3000
        return purged

    assert asyncio.run(restore_then_purge()) == 2
    assert asyncio.run(gallery.count()) == 2998
    assert "S-7" not in asyncio.run(gallery.subjects())
    found = asyncio.run(gallery.search(VECTORS[:1]))[0]
    assert found is not None and found.distance < 1e-5
