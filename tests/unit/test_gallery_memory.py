"""The embedded gallery's directory: on a memory file system only, private, swept when orphaned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.gallery.memory import DEFAULT_BASE, file_system_of, private_directory, shred_tree, sweep


def test_a_directory_on_disk_is_refused(tmp_path: Path) -> None:
    assert file_system_of(tmp_path) not in {"tmpfs", "ramfs"}  # this machine's /tmp is on disk
    with pytest.raises(ConfigError, match="not in memory"):
        private_directory(tmp_path, tmp_path / "data", "worker-1")


def test_each_process_gets_a_private_directory_and_dead_ones_are_swept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    mine = private_directory(None, data_dir, "worker/1")
    try:
        assert mine.parent == DEFAULT_BASE and mine.name.endswith(f"-worker_1-{os.getpid()}")
        assert mine.stat().st_mode & 0o777 == 0o700
        # A worker of the same data dir that died (kill -9) without removing its replica.
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        orphan = mine.with_name(mine.name.rsplit("-", 2)[0] + f"-worker_2-{int(dead.stdout)}")
        orphan.mkdir()
        (orphan / "chunk_0.mmap").write_bytes(b"faceprints")
        # Another data dir's replica is not this worker's to remove.
        other = private_directory(None, tmp_path / "elsewhere", "worker-1")
        assert sweep(DEFAULT_BASE, data_dir) == [orphan]
        assert not orphan.exists() and mine.exists() and other.exists()
        other.rmdir()
    finally:
        mine.rmdir()


def test_shred_tree_overwrites_then_removes(tmp_path: Path) -> None:
    store = tmp_path / "qdrant" / "collection"
    store.mkdir(parents=True)
    secret = store / "storage.sqlite"
    secret.write_bytes(b"plaintext faceprint" * 1000)
    handle = open(secret, "rb")  # noqa: SIM115 — a reader holding the file sees it overwritten
    try:
        assert shred_tree(tmp_path / "qdrant") == 1
        assert not (tmp_path / "qdrant").exists()
        handle.seek(0)
        assert set(handle.read()) == {0}
    finally:
        handle.close()
