"""The parts of the embedded stack, in start order.

To add a pipeline worker, add one line to ``WORKERS`` below.
"""

from __future__ import annotations

from .base import EXTERNAL, LOCAL, PROCESS, Context, Launch, Part, settings_env
from .kafka import KafkaPart
from .seaweedfs import SeaweedPart
from .services import BridgePart, QdrantPart, WorkerPart
from .triton import TritonPart

__all__ = [
    "EXTERNAL",
    "INFRASTRUCTURE",
    "LOCAL",
    "PROCESS",
    "WORKERS",
    "BridgePart",
    "Context",
    "KafkaPart",
    "Launch",
    "Part",
    "QdrantPart",
    "SeaweedPart",
    "TritonPart",
    "WorkerPart",
    "all_parts",
    "settings_env",
]

# The pipeline workers `facegate up` starts after the infrastructure, one line each, e.g.
#     WorkerPart("worker", ("worker",)),
WORKERS: tuple[WorkerPart, ...] = (WorkerPart("worker", ("worker", "--name", "worker-1")),)

# Start order; a part starts once the parts it needs are ready (`down` stops in dependency waves).
INFRASTRUCTURE: tuple[Part, ...] = (KafkaPart(), TritonPart(), QdrantPart(), SeaweedPart(), BridgePart())


def all_parts() -> tuple[Part, ...]:
    return (*INFRASTRUCTURE, *WORKERS)
