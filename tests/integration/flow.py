"""Helpers for end-to-end tests: publish contract records, watch topics, upload photos, control workers."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from PIL import Image

from pipeline.contract import (
    AssetFaces,
    AuditRecord,
    ConsentAction,
    ConsentChange,
    LegalBasis,
    ObjectRef,
    PurgeReason,
    Record,
    SubjectEnrollment,
    decode,
    utcnow,
)
from pipeline.contract.internal import ErasureRequest
from pipeline.stack import state as stack_state
from pipeline.stack.procs import is_running

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "tests" / "data" / "photos"


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str
    value: bytes
    headers: dict[str, str]

    def record(self) -> Record:
        return decode(self.value)


class Watcher:
    """Reads topics from the beginning (every partition, no consumer group) and keeps every message."""

    def __init__(self, config: dict[str, Any], topics: list[str]) -> None:
        self.bootstrap = str(config["bootstrap.servers"])
        self._consumer = Consumer(
            {**config, "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False}
        )
        metadata = self._consumer.list_topics(timeout=10).topics
        self._consumer.assign(
            [
                TopicPartition(t, p, 0)  # offset 0: from the beginning
                for t in topics
                for p in sorted(metadata[t].partitions)
            ]
        )
        self.messages: list[Message] = []

    def poll(self, seconds: float = 0.2) -> None:
        deadline = time.monotonic() + seconds
        while True:
            message = self._consumer.poll(max(0.0, min(0.2, deadline - time.monotonic())))
            if message is not None and not message.error():
                self.messages.append(
                    Message(
                        message.topic(),
                        message.partition(),
                        message.offset(),
                        message.timestamp()[1],
                        (message.key() or b"").decode(),
                        message.value() or b"",
                        {k: (v or b"").decode() for k, v in (message.headers() or [])},
                    )
                )
                continue
            if time.monotonic() >= deadline:
                return

    def until(self, predicate: Callable[[list[Message]], Any], timeout: float = 30.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = predicate(self.messages)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what or predicate}; {self.worker_progress()}"
                )
            self.poll(0.3)

    def worker_progress(self) -> str:
        """What the workers' group has left to read (a timeout's first clue: stuck, or just slow)."""
        from pipeline.lag import LagMonitor

        topics = [f"facegate.{t}" for t in ("consent", "enrollments", "subject-events", "asset-events")]
        try:
            lags = LagMonitor(self.bootstrap, "facegate", topics).poll_once()
        except Exception as exc:  # a diagnostic must not hide the timeout
            return f"group lag unknown ({exc})"
        behind = {f"{t}[{p}]": n for (t, p), n in sorted(lags.items()) if n}
        return f"group 'facegate' lag: {behind or 'none'}"

    def on(self, topic: str) -> list[Message]:
        return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self._consumer.close()


_DECODED: dict[tuple[str, int, int, bytes], AssetFaces] = {}


def faces_of(message: Message) -> AssetFaces:
    """The AssetFaces of a tags message, decoded once (tests poll the same messages many times).

    The cache key holds the bytes too: one test process talks to several stacks, whose brokers
    reuse the same topic, partition and offset for other records."""
    where = (message.topic, message.partition, message.offset, message.value)
    if where not in _DECODED:
        _DECODED[where] = AssetFaces.from_bytes(message.value)
    return _DECODED[where]


def tags_of(messages: list[Message], tags_topic: str, asset_id: str) -> list[AssetFaces]:
    return [faces_of(m) for m in messages if m.topic == tags_topic and m.key == asset_id]


def latest_tags(messages: list[Message], tags_topic: str) -> dict[str, AssetFaces]:
    """The compacted view: the last AssetFaces per asset."""
    view: dict[str, AssetFaces] = {}
    for m in messages:
        if m.topic == tags_topic:
            view[m.key] = faces_of(m)
    return view


class Publisher:
    """Contract topics get librdkafka's default partitioner (CRC32) on purpose: other systems'
    producers need not hash like faust. Internal topics get faust's (murmur2), as facegate's own
    producers do."""

    def __init__(self, config: dict[str, Any]) -> None:
        bootstrap = config["bootstrap.servers"]
        self._external = Producer({"bootstrap.servers": bootstrap})
        self._internal = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})

    def send(self, topic: str, key: str, record: Record | bytes, *, internal: bool = False) -> None:
        producer = self._internal if internal else self._external
        value = record if isinstance(record, bytes) else record.to_bytes()
        producer.produce(topic, key=key.encode(), value=value)
        producer.flush(10)


def grant(subject: str, *, until: timedelta | None = None, scopes=("editorial", "archive")) -> ConsentChange:
    now = utcnow()
    return ConsentChange(
        event_id=uuid.uuid4().hex,
        subject_id=subject,
        action=ConsentAction.GRANTED,
        legal_basis=LegalBasis.EXPLICIT_CONSENT,
        scopes=list(scopes),
        valid_from=now - timedelta(days=1),
        valid_until=now + until if until else None,
        evidence_uri=f"s3://legal/quitclaims/{subject}.pdf",
        recorded_at=now,
        recorded_by="dpo@test",
    )


def withdraw(subject: str) -> ConsentChange:
    now = utcnow()
    return ConsentChange(
        event_id=uuid.uuid4().hex,
        subject_id=subject,
        action=ConsentAction.WITHDRAWN,
        legal_basis=LegalBasis.EXPLICIT_CONSENT,
        scopes=[],
        valid_from=now - timedelta(days=1),
        valid_until=None,
        evidence_uri=f"s3://legal/withdrawals/{subject}.pdf",
        recorded_at=now,
        recorded_by="dpo@test",
    )


def enrollment(subject: str, bucket: str, keys: list[str]) -> SubjectEnrollment:
    return SubjectEnrollment(
        uuid.uuid4().hex, subject, [ObjectRef(bucket, k) for k in keys], utcnow(), "dpo@test"
    )


def audit_records(messages: list[Message]) -> list[AuditRecord]:
    return [AuditRecord.from_bytes(m.value) for m in messages if m.topic == "facegate.audit"]


def wait_audit(topics: Watcher, subject: str, action: str, timeout: float = 150.0) -> AuditRecord:
    """The subject's first audit record of ``action``; a refusal fails a wait for ENROLLED at once.

    The 150 s default: a worker restarted by the test before may still be rejoining the group.
    """

    def found(ms: list[Message]) -> AuditRecord | None:
        for r in audit_records(ms):
            if r.subject_id == subject and r.action == action:
                return r
            if action == "ENROLLED" and r.subject_id == subject and r.action == "ENROLLMENT_REFUSED":
                raise AssertionError(f"enrollment of {subject} refused: {r.detail}")
        return None

    try:
        return topics.until(found, timeout, f"{action} for {subject}")
    except AssertionError as exc:
        seen = [r.action for r in audit_records(topics.messages) if r.subject_id == subject]
        raise AssertionError(f"{exc}; audit records of {subject} so far: {seen}") from None


def wait_purge(stack: Any, topics: Watcher, subject: str, timeout: float = 150.0) -> Message:
    purges = stack.settings.kafka.topic_purges
    return topics.until(
        lambda ms: next((m for m in ms if m.topic == purges and m.key == subject), None),
        timeout,
        f"SubjectPurged for {subject}",
    )


def references(*photos: Path) -> dict[str, bytes]:
    """Reference photos by name, as enroll() takes them."""
    return {photo.name: photo.read_bytes() for photo in photos}


def enroll(stack: Any, publisher: Publisher, subject: str, photos: dict[str, bytes], **consent: Any) -> None:
    """A consent GRANTED (``consent``: grant()'s options) and an enrollment of these photos (name -> JPEG)."""
    k = stack.settings.kafka
    bucket = stack.settings.s3.enrollment_bucket
    publisher.send(k.topic_consent, subject, grant(subject, **consent))
    keys = []
    for name, data in photos.items():
        keys.append(f"{subject}/{name}")
        put(stack, keys[-1], data, bucket=bucket)
    publisher.send(k.topic_enrollments, subject, enrollment(subject, bucket, keys))


def enroll_consenting(
    stack: Any, topics: Watcher, publisher: Publisher, subject: str, photos: dict[str, bytes]
) -> None:
    """Explicit consent, the reference photos (name -> JPEG) enrolled; returns once ENROLLED."""
    enroll(stack, publisher, subject, photos)
    wait_audit(topics, subject, "ENROLLED")


def erase(stack: Any, topics: Watcher, publisher: Publisher, subject: str, by: str = "test") -> Message:
    """An erasure request on the join's input (as `facegate erase` sends it); returns the SubjectPurged.

    Tests erase the subjects they enroll, so that other tests' galleries stay clean.
    """
    request = ErasureRequest(uuid.uuid4().hex, subject, PurgeReason.ERASURE_REQUEST, utcnow(), by)
    publisher.send(stack.settings.kafka.topic_subject_events, subject, request, internal=True)
    return wait_purge(stack, topics, subject)


def padded_jpeg(path: Path, pad: int = 0) -> bytes:
    """A photo as JPEG bytes, optionally on a grey border (keeps a tight face crop detectable)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    if pad:
        canvas = Image.new("RGB", (rgb.width + 2 * pad, rgb.height + 2 * pad), (128, 128, 128))
        canvas.paste(rgb, (pad, pad))
        rgb = canvas
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=92)
    return out.getvalue()


def put(
    stack: Any, key: str, data: bytes, content_type: str = "image/jpeg", bucket: str | None = None
) -> None:
    stack.s3().put_object(bucket or stack.bucket, key, io.BytesIO(data), len(data), content_type=content_type)


# --- workers ---------------------------------------------------------------------------------


def worker_pid(stack: Any, name: str = "worker") -> int | None:
    state = stack_state.load(stack.settings.data_dir)
    part = state.parts.get(name) if state else None
    return part.process.pid if part and part.process and is_running(part.process) else None


def worker_env(stack: Any) -> dict[str, str]:
    from pipeline.stack.parts import settings_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")}
    env.update(settings_env(stack.settings, secrets=True))
    env["FACEGATE_METRICS__PORT"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def extra_worker(
    stack: Any, name: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A second worker process in the same consumer group (scale-out)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker", "--name", name],
            env={**worker_env(stack), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
