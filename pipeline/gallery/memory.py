"""Where the embedded gallery keeps its files: a private directory on a memory file system.

Qdrant's engine (qdrant-edge) works on a directory: it writes every vector it holds into
memory-mapped files there at once, flush or not. The embedded gallery's rule is that faceprints
live in memory only (the encrypted vault is their one lasting copy), so that directory must be on
a file system backed by RAM (tmpfs, ramfs): nothing of it reaches a disk, and a reboot leaves
nothing. Each worker process makes its own directory, named after the data dir, the replica and
its pid, removes it when it closes, and at start removes those left by workers of the same data
dir that died without closing (kill -9).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_BASE = Path("/dev/shm")
MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})
_PREFIX = "facegate-gallery"


def file_system_of(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/self/mountinfo), '' if unknown."""
    target = os.path.realpath(path)
    best, kind = "", ""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        if "-" not in fields:
            continue
        # mount point: 5th field (octal escapes for spaces); fs type: first field after " - "
        mount_point = fields[4].replace("\\040", " ")
        fs_type = fields[fields.index("-") + 1]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fs_type
    return kind


def _owner_key(data_dir: Path) -> str:
    return hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def replica_directories(base: Path | None, data_dir: Path) -> dict[Path, int]:
    """The replica directories of this data dir's workers, with the pid that made each."""
    found = {}
    for entry in Path(base or DEFAULT_BASE).glob(f"{_PREFIX}-{_owner_key(data_dir)}-*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if pid.isdigit() and entry.is_dir():
            found[entry] = int(pid)
    return found


def sweep(base: Path, data_dir: Path) -> list[Path]:
    """Remove the directories of this data dir's dead workers; returns what was removed."""
    removed = []
    for entry, pid in replica_directories(base, data_dir).items():
        if not _alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    if removed:
        log.info("gallery: removed %d replica(s) left by stopped workers in %s", len(removed), base)
    return removed


def private_directory(base: Path | None, data_dir: Path, replica: str) -> Path:
    """A new, empty directory for this process's replica, on a memory file system (checked)."""
    base = Path(base or DEFAULT_BASE)
    kind = file_system_of(base)
    if kind not in MEMORY_FILE_SYSTEMS:
        raise ConfigError(
            f"qdrant.memory_dir {base} is on a {kind or 'unknown'} file system, not in memory "
            "(tmpfs): the embedded gallery never writes faceprints to disk. Point "
            "FACEGATE_QDRANT__MEMORY_DIR at a tmpfs mount, or use a Qdrant server (FACEGATE_QDRANT__URL)"
        )
    sweep(base, data_dir)
    safe = "".join(c if c.isalnum() or c in "._" else "_" for c in replica)
    directory = base / f"{_PREFIX}-{_owner_key(data_dir)}-{safe}-{os.getpid()}"
    if directory.exists():  # a dead process's, with this pid reused
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700)
    return directory


def shred_tree(path: Path) -> int:
    """Overwrite every file under ``path`` with zeros, then delete the tree; returns files shredded.

    For the store qdrant-client's local mode kept under the data dir (faceprints in plaintext on
    disk): an unlink alone leaves the bytes in free blocks. Below the file system (SSD wear
    levelling, snapshots) nothing at this level reaches.
    """
    shredded = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
        size = file.stat().st_size
        with open(file, "r+b") as handle:
            remaining = size
            while remaining:
                chunk = min(remaining, 1 << 20)
                handle.write(b"\0" * chunk)
                remaining -= chunk
            handle.flush()
            os.fsync(handle.fileno())
        shredded += 1
    shutil.rmtree(path)
    return shredded
