"""The Kafka-protocol broker: noida-db, or an external cluster.

noida-db keeps every topic, record and committed group offset in memory and writes them all to
``<data_dir>/kafka/kafka.json`` about once a second while anything changed (a temporary file
renamed over the old one) and once more on SIGTERM; it loads that file when it starts. So the
records are kept across ``down`` / ``up`` and nothing here ever deletes them (``facegate reset``
does). A kill -9 loses what was written since the last save: at most about a second, measured in
docs/durability.md. Its ``noida.control.json`` is removed on a clean exit only, which tells a
crash from a stop.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ...errors import StackError
from ...kafka import ensure_topics
from ...settings import Settings
from .. import checks, datadir
from ..ports import HOST, PortPicker
from .base import EXTERNAL, PROCESS, Context, Launch, Part, fixed

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

SAVED = "kafka.json"
_RUNNING = "noida.control.json"  # written at start, removed on a clean exit
# The data dir's id, held by the broker as well as in facegate.json: a broker log that is not
# this data dir's (copied in, replaced) is refused before anything is reconciled against it.
IDENTITY_TOPIC = "facegate.data-dir"
_SAVE_WAIT_S = 10.0  # a few save intervals


class KafkaPart(Part):
    """noida-db: a Kafka-protocol broker whose records persist in the data dir."""

    name = "kafka"
    external_setting = "kafka.bootstrap (FACEGATE_KAFKA__BOOTSTRAP)"
    # A broker back from a crash has lost its last second: clients that saw it are ahead of it.
    restarts_dependants = True

    def mode(self, settings: Settings) -> str:
        return EXTERNAL if settings.kafka.bootstrap else PROCESS

    def fixed_ports(self, settings: Settings) -> dict[str, int]:
        return fixed(kafka=settings.stack.kafka_port)

    def port_setting(self, port_name: str) -> str:
        return "FACEGATE_STACK__KAFKA_PORT"

    def allocate(self, settings: Settings, picker: PortPicker) -> dict[str, int]:
        return {"kafka": settings.stack.kafka_port or picker.one()}

    def stop_timeout_s(self, settings: Settings) -> float:
        # Its last save on SIGTERM takes seconds once the logs hold hundreds of MiB.
        return max(settings.stack.stop_timeout_s, settings.stack.broker_stop_timeout_s)

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

    @staticmethod
    def data(ctx: Context) -> Path:
        return ctx.data_dir / "kafka"

    def preflight(self, settings: Settings) -> None:
        self.binary()

    def launch(self, ctx: Context, ports: dict[str, int]) -> Launch:
        binary = self.binary()
        data = self.data(ctx)
        marker = datadir.load(ctx.data_dir)
        if marker is not None and marker.broker_id and not (data / SAVED).is_file():
            raise StackError(
                f"kafka: {data / SAVED} is missing, but this data dir's broker had saved its records "
                "there (consent, audit log, tags); put the file back, or run `facegate reset` for a "
                "clean slate"
            )
        data.mkdir(parents=True, exist_ok=True)
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
        bootstrap = ctx.endpoints["kafka"]["bootstrap"]
        if self.mode(ctx.settings) == PROCESS:
            check_identity(ctx.data_dir, self.data(ctx), bootstrap)
        ensure_topics(ctx.settings, bootstrap)

    def stopped_cleanly(self, ctx: Context) -> bool:
        """After the process is gone: did it exit cleanly (everything saved) or die?"""
        return not (self.data(ctx) / _RUNNING).exists()

    def failure(self, log_lines: list[str]) -> str:
        for line in reversed(log_lines):
            if "failed to parse kafka snapshot" in line:
                reason = line.split("failed to parse kafka snapshot:", 1)[1].strip()
                return (
                    f"the broker cannot load its saved records kafka/{SAVED} ({reason}): the file is "
                    "damaged or not noida-db's; restore it from a backup, or run `facegate reset` for "
                    "a clean slate (nothing was deleted)"
                )
        line = super().failure(log_lines)
        return f"{line}; if the broker's saved records are at fault, `facegate reset` gives a clean slate"


def _admin(bootstrap: str) -> AdminClient:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": log}
    return AdminClient(config)


def _read_identity(bootstrap: str) -> list[str]:
    """The ids on the identity topic, oldest first ([] when there is no such topic yet)."""
    # Listing all topics: asking for one by name may make the broker create it, uncompacted.
    if IDENTITY_TOPIC not in _admin(bootstrap).list_topics(timeout=10).topics:
        return []
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": f"facegate-up-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "logger": log,
    }
    consumer = Consumer(config)
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(IDENTITY_TOPIC, 0), timeout=10)
        ids: list[str] = []
        if high <= low:
            return ids
        consumer.assign([TopicPartition(IDENTITY_TOPIC, 0, low)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            ids.append((msg.value() or b"").decode(errors="replace"))
            if (msg.offset() or 0) + 1 >= high:
                return ids
        raise StackError(f"kafka: cannot read {IDENTITY_TOPIC} on {bootstrap} within 10 s")
    finally:
        consumer.close()


def _write_identity(bootstrap: str, broker_dir: Path, data_dir_id: str) -> None:
    admin = _admin(bootstrap)
    if IDENTITY_TOPIC not in admin.list_topics(timeout=10).topics:
        topic = NewTopic(IDENTITY_TOPIC, 1, 1, config={"cleanup.policy": "compact"})
        for future in admin.create_topics([topic], operation_timeout=10).values():
            try:
                future.result()
            except KafkaException as exc:
                raise StackError(f"kafka: cannot create {IDENTITY_TOPIC} on {bootstrap}: {exc}") from None
    written = time.time()
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "acks": "all", "logger": log}
    producer = Producer(config)
    producer.produce(IDENTITY_TOPIC, key=b"id", value=data_dir_id.encode())
    if producer.flush(10):
        raise StackError(f"kafka: cannot write {IDENTITY_TOPIC} on {bootstrap}")
    # Recorded in facegate.json only once it is in the broker's saved file: a crash before
    # that save must not make the next `up` take the broker for another data dir's.
    deadline = time.monotonic() + _SAVE_WAIT_S
    saved = broker_dir / SAVED
    while not (saved.is_file() and saved.stat().st_mtime > written):
        if time.monotonic() > deadline:
            raise StackError(f"kafka: the broker did not save {saved} within {_SAVE_WAIT_S:.0f} s")
        time.sleep(0.1)


def check_identity(data_dir: Path, broker_dir: Path, bootstrap: str) -> None:
    """The broker's records are this data dir's, or one line says whose they are not."""
    marker = datadir.load(data_dir) or datadir.open_marker(data_dir)
    try:
        ids = _read_identity(bootstrap)
    except KafkaException as exc:
        raise StackError(f"kafka: cannot read {IDENTITY_TOPIC} on {bootstrap} ({exc})") from None
    held = ids[-1] if ids else None
    if held == marker.id and marker.broker_id == marker.id:
        return
    if held is not None and held != marker.id:
        raise StackError(
            f"kafka: the broker's saved records {broker_dir / SAVED} belong to another data dir "
            f"(id {held}, this one is {marker.id}); put this data dir's kafka.json back, or run "
            "`facegate reset` for a clean slate"
        )
    if held is None and marker.broker_id:
        raise StackError(
            f"kafka: the broker's saved records {broker_dir / SAVED} are not this data dir's (they "
            "lack its id); put this data dir's kafka.json back, or run `facegate reset` for a clean slate"
        )
    if held is None:
        _write_identity(bootstrap, broker_dir, marker.id)
    marker.broker_id = marker.id
    datadir.save(data_dir, marker)
