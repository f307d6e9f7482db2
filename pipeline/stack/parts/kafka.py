"""The Kafka-protocol broker: noida-db, or an external cluster."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from ...errors import StackError
from ...kafka import ensure_topics
from ...settings import Settings
from .. import checks
from ..ports import HOST, PortPicker
from .base import EXTERNAL, PROCESS, Context, Launch, Part, fixed


class KafkaPart(Part):
    """noida-db: a Kafka-protocol broker (memory only; topic metadata in a fresh dir per run)."""

    name = "kafka"
    external_setting = "kafka.bootstrap (FACEGATE_KAFKA__BOOTSTRAP)"

    def mode(self, settings: Settings) -> str:
        return EXTERNAL if settings.kafka.bootstrap else PROCESS

    def fixed_ports(self, settings: Settings) -> dict[str, int]:
        return fixed(kafka=settings.stack.kafka_port)

    def port_setting(self, port_name: str) -> str:
        return "FACEGATE_STACK__KAFKA_PORT"

    def allocate(self, settings: Settings, picker: PortPicker) -> dict[str, int]:
        return {"kafka": settings.stack.kafka_port or picker.one()}

    @staticmethod
    def binary() -> Path:
        spec = importlib.util.find_spec("noida_db")
        if spec is None or spec.origin is None:
            raise StackError(
                "kafka: noida-db is not installed; pip install 'facegate[embedded]' "
                "or set FACEGATE_KAFKA__BOOTSTRAP to an external broker"
            )
        path = Path(spec.origin).parent / "noida-db"
        if not os.access(path, os.X_OK):
            raise StackError(f"kafka: broker binary {path} is missing or not executable; reinstall noida-db")
        return path

    def preflight(self, settings: Settings) -> None:
        self.binary()

    def launch(self, ctx: Context, ports: dict[str, int]) -> Launch:
        binary = self.binary()
        # noida-db keeps topic metadata there but records only in memory: start fresh.
        data = ctx.data_dir / "kafka"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        argv = [str(binary), "start", "--data-dir", str(data), "--host", HOST, "--only", "kafka"]
        argv += ["--kafka-port", str(ports["kafka"])]
        return Launch(argv, data, ctx.child_env())

    def ready(self, ctx: Context, ports: dict[str, int]) -> bool:
        return checks.kafka_ready(f"{HOST}:{ports['kafka']}")

    def endpoints(self, ctx: Context, ports: dict[str, int]) -> dict[str, Any]:
        return {"bootstrap": f"{HOST}:{ports['kafka']}"}

    def check_external(self, ctx: Context) -> dict[str, Any]:
        bootstrap = ctx.settings.kafka.bootstrap or ""
        if not checks.kafka_ready(bootstrap, timeout_s=3.0):
            raise StackError(
                f"kafka: cannot reach the broker at {bootstrap} (kafka.bootstrap); start it or fix the "
                "address, or unset FACEGATE_KAFKA__BOOTSTRAP to use the embedded broker"
            )
        return {"bootstrap": bootstrap}

    def after_ready(self, ctx: Context) -> None:
        ensure_topics(ctx.settings, ctx.endpoints["kafka"]["bootstrap"])
