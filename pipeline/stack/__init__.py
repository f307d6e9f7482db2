"""The embedded stack: Kafka (noida-db), S3 (SeaweedFS) with notifications, Triton, the
pipeline workers (each with Qdrant's engine in process, its gallery in memory), started on
127.0.0.1 on free ports under a data dir.

``up`` / ``down`` / ``status`` back the ``facegate up|down|status`` commands and the
integration-test fixture; ``resolve_settings`` points a settings object at a running stack.
"""

from .manager import (
    CRASHED,
    DOWN,
    UNHEALTHY,
    UNREACHABLE,
    UP,
    Endpoints,
    PartStatus,
    down,
    resolve_settings,
    status,
    up,
)
from .parts import WORKERS, WorkerPart

__all__ = [
    "CRASHED",
    "DOWN",
    "UNHEALTHY",
    "UNREACHABLE",
    "UP",
    "WORKERS",
    "Endpoints",
    "PartStatus",
    "WorkerPart",
    "down",
    "resolve_settings",
    "status",
    "up",
]
