"""The stack's state file (``<data_dir>/stack.json``) and the lock around changing it.

The state file is the only memory of what ``facegate up`` started: per part its pid and
process start time, ports, argv, log and endpoints. ``down`` stops exactly what it lists.
It holds no secret, but ports and pids are nobody else's business: it is written 0600.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StackError
from .procs import ProcessRecord

STATE_FILE = "stack.json"
LOCK_FILE = "stack.lock"
VERSION = 1


@dataclass
class PartState:
    """One part as recorded: started by us (``process``), used from settings, or a local path."""

    name: str
    mode: str  # "process" | "external" | "local"
    endpoints: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    process: ProcessRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "endpoints": self.endpoints,
            "ports": self.ports,
            "process": self.process.to_json() if self.process else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PartState:
        process = data.get("process")
        return cls(
            name=str(data["name"]),
            mode=str(data["mode"]),
            endpoints=dict(data.get("endpoints", {})),
            ports={str(k): int(v) for k, v in data.get("ports", {}).items()},
            process=ProcessRecord.from_json(process) if process else None,
        )


@dataclass
class StackState:
    data_dir: str
    parts: dict[str, PartState] = field(default_factory=dict)
    run_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "data_dir": self.data_dir,
            "run_id": self.run_id,
            "parts": {name: part.to_json() for name, part in self.parts.items()},
        }


def load(data_dir: Path) -> StackState | None:
    path = data_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StackError(
            f"stack: cannot read {path} ({exc}); stop any stack processes listed in it by hand, "
            "then delete the file"
        ) from exc
    if raw.get("version") != VERSION:
        raise StackError(f"stack: {path} has version {raw.get('version')}, expected {VERSION}")
    return StackState(
        data_dir=str(raw["data_dir"]),
        run_id=str(raw.get("run_id", "")),
        parts={name: PartState.from_json(part) for name, part in raw["parts"].items()},
    )


def save(data_dir: Path, state: StackState) -> None:
    path = data_dir / STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state.to_json(), out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(tmp, path)


def remove(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


@contextmanager
def locked(data_dir: Path, wait_s: float = 60.0) -> Iterator[None]:
    """Serialise up/down on one data dir (two terminals, or a test and a developer).

    The data dir is made 0700: the vault, the gallery replica, logs and secrets under it are
    nobody else's, whatever modes the parts give their own files."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if data_dir.stat().st_uid == os.getuid():
        data_dir.chmod(0o700)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"stack: another facegate up/down holds {data_dir / LOCK_FILE}; wait for it to finish"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)
