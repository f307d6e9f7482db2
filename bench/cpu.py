"""CPU time by process of the embedded stack, from /proc: what each part costs per photo.

A part's CPU is its process's user + system time plus that of every descendant (Triton's
python-backend stub, where the model runs, is a child of tritonserver), read before and after
a phase; the difference divided by the photos the phase processed is its CPU per photo.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process itself) or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK  # ppid; utime + stime


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            tree.setdefault(stat[0], []).append(int(entry.name))
    return tree


def cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process and its descendants (alive ones)."""
    tree = _children()
    out = {}
    for name, root in pids.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            stat = _stat(pid)
            if stat is not None:
                total += stat[1]
                todo += tree.get(pid, [])
        out[name] = total
    return out


def per_photo_ms(before: Mapping[str, float], after: Mapping[str, float], photos: int) -> dict[str, float]:
    """Milliseconds of CPU per photo by process between two readings."""
    return {name: round(1000 * (after[name] - before.get(name, 0.0)) / max(photos, 1), 1) for name in after}
