"""The embedded stack's data dir as a whole: its layout version, its identity, and ``reset``.

Everything the stack keeps lives under one data dir and is kept across ``down`` / ``up``: the
broker's records (``kafka/kafka.json``), the object store, the vault, the gallery replicas.
Their consistency rests on them being *this* data dir's parts, so the data dir carries a marker,
``facegate.json``: the layout version this facegate writes, and an id that the broker also holds
(a record on its own topic, see ``parts/kafka.py``). A data dir written by a newer layout, or a
broker log that is not this data dir's, stops ``up`` with one line; nothing is ever deleted
except by ``facegate reset``, which deletes only what facegate itself creates there.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StackError

MARKER = "facegate.json"
# 1: the broker's records are kept across restarts (before it, they were wiped at every `up`).
LAYOUT = 1

# What facegate creates under a data dir; `reset` deletes these and nothing else. Kept: officers/
# (privacy officers' identities, not records of anyone's data; the audit anchors are in vault/).
_OWNED_DIRS = ("kafka", "seaweedfs", "bridge", "triton", "qdrant", "vault", "logs")
_OWNED_FILES = (MARKER, "facegate.json.tmp", "stack.json", "stack.json.tmp", "ports.json", "ports.json.tmp")


@dataclass
class Marker:
    """What ``facegate.json`` records about the data dir."""

    layout: int
    id: str
    broker_id: str | None = None  # the id the broker holds once it has saved it (None: not yet)

    def to_json(self) -> dict[str, Any]:
        return {"layout": self.layout, "id": self.id, "broker_id": self.broker_id}


def load(data_dir: Path) -> Marker | None:
    """The data dir's marker; None for a new data dir or one from before the marker existed."""
    path = data_dir / MARKER
    try:
        raw = json.loads(path.read_text())
        return Marker(int(raw["layout"]), str(raw["id"]), raw.get("broker_id"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StackError(
            f"data dir: cannot read {path} ({exc}); restore it, or run `facegate reset` for a clean slate"
        ) from None


def save(data_dir: Path, marker: Marker) -> None:
    path = data_dir / MARKER
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(marker.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def open_marker(data_dir: Path) -> Marker:
    """Check the data dir's layout before anything starts on it; stamp a new (or older) one."""
    marker = load(data_dir)
    if marker is not None and marker.layout > LAYOUT:
        raise StackError(
            f"data dir: {data_dir} was written by a newer facegate (data layout {marker.layout}, this "
            f"one reads up to {LAYOUT}); run that version, or `facegate reset` for a clean slate"
        )
    if marker is None or marker.layout < LAYOUT:
        # A new data dir, or one from before the broker kept its records: from now on it does.
        marker = Marker(
            LAYOUT, marker.id if marker else uuid.uuid4().hex, marker.broker_id if marker else None
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        save(data_dir, marker)
    return marker


def owned_entries(data_dir: Path) -> list[Path]:
    """What ``reset`` deletes: facegate's own files and directories, and the workers' dirs."""
    if not data_dir.is_dir():
        return []
    found = [data_dir / name for name in (*_OWNED_DIRS, *_OWNED_FILES) if (data_dir / name).exists()]
    from .parts import WORKERS  # the workers' working dirs are named after them

    found += [data_dir / w.name for w in WORKERS if (data_dir / w.name).is_dir()]
    return sorted(set(found))


def reset(data_dir: Path) -> list[Path]:
    """Delete every record, object, faceprint and log facegate keeps under ``data_dir``.

    Refused while a process of the stack runs (``facegate down`` first). Files facegate did not
    create stay where they are. Returns what was deleted.
    """
    from . import procs
    from . import state as statefile

    with statefile.locked(data_dir):
        state = statefile.load(data_dir)
        running = [
            p.name
            for p in (state.parts.values() if state else ())
            if p.process and procs.is_running(p.process)
        ]
        if running:
            raise StackError(
                f"data dir: {', '.join(running)} still running on {data_dir}; run `facegate down` first"
            )
        deleted = []
        for entry in owned_entries(data_dir):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
            deleted.append(entry)
        return deleted
