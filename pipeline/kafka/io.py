"""Small Kafka helpers for commands: a producer that reports failure, and a topic reader.

The producer partitions keys with ``murmur2_random``, the Java client's partitioner that faust
(aiokafka) uses too: a consent change produced here must land in the same partition number
as the stage records faust produces for the same subject, or the co-partitioned join would see
them apart.

The reader assigns every partition itself (no consumer group, no commits), so reading a topic
never disturbs the workers and can be repeated. Without ``follow`` it stops at the end the
topic had when reading began.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka import Message as KafkaMessage

from ..contract import Record
from ..errors import StackError
from ..topology import Topic, Topology

log = logging.getLogger(__name__)
# librdkafka's connection errors would otherwise reach stderr through logging's last resort
# handler in a command that configures no logging; StackError says it in one line instead.
log.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Message:
    """One record as read: key and header values decoded as UTF-8 (they are text in facegate)."""

    key: str | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)
    partition: int = 0
    offset: int = 0
    timestamp: datetime | None = None


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else exc
    return error.str() if isinstance(error, KafkaError) else str(error)


def _text(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="replace")


def _message(msg: KafkaMessage) -> Message:
    ms = msg.timestamp()[1]
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = {name: _text(value) or "" for name, value in pairs}
    return Message(
        key=_text(msg.key()),
        value=msg.value() or b"",
        headers=headers,
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        timestamp=datetime.fromtimestamp(ms / 1000, UTC) if ms and ms > 0 else None,
    )


class EventProducer:
    """Idempotent, acks=all; ``flush`` raises StackError unless every record was delivered."""

    def __init__(
        self,
        bootstrap: str,
        timeout_s: float = 15.0,
        client_id: str = "facegate-cli",
        topology: Topology | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topology = topology
        self.timeout_s = timeout_s
        self._errors: list[str] = []
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "partitioner": "murmur2_random",
                "message.timeout.ms": int(timeout_s * 1000),
                "client.id": client_id,
                "logger": log,
            }
        )

    def check(self, topic: str) -> None:
        """Fail fast, with one line, if the broker does not answer or lacks the topic."""
        try:
            # All topics: asking for one by name may make a broker auto-create it (uncompacted).
            topics = self._producer.list_topics(timeout=self.timeout_s).topics
        except KafkaException as exc:
            raise StackError(f"kafka: cannot reach {self.bootstrap} ({_reason(exc)})") from None
        meta = topics.get(topic)
        if meta is None or meta.error is not None:
            raise StackError(
                f"kafka: topic {topic} does not exist on {self.bootstrap}; "
                "run `facegate up` (it creates the topics)"
            )

    def send(self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None) -> None:
        def delivered(err: KafkaError | None, _msg: KafkaMessage) -> None:
            if err is not None:
                self._errors.append(f"{topic}/{key}: {err.str()}")

        self._producer.produce(
            topic,
            key=key.encode("utf-8"),
            value=value,
            headers=list((headers or {}).items()) or None,
            on_delivery=delivered,
        )
        self._producer.poll(0)

    def send_record(self, topic: Topic, key: str, record: Record) -> str:
        """Send a record to a declared topic (TopologyError if it may not go there); returns the name."""
        if self.topology is None:
            raise ValueError("send_record needs the producer's topology")
        name = self.topology.check_send(topic, record)
        self.send(name, key, record.to_bytes())
        return name

    def flush(self) -> None:
        remaining = self._producer.flush(self.timeout_s)
        if remaining:
            raise StackError(
                f"kafka: {remaining} record(s) not delivered to {self.bootstrap} "
                f"within {self.timeout_s:.0f} s; is the broker up? (`facegate status`)"
            )
        if self._errors:
            errors, self._errors = self._errors, []
            raise StackError(f"kafka: delivery to {self.bootstrap} failed: {'; '.join(errors)}")


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            # librdkafka wants a group id even for assign(); nothing is ever committed to it.
            "group.id": f"facegate-cli-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "logger": log,
        }
    )


def _partitions(consumer: Consumer, bootstrap: str, topic: str, timeout_s: float) -> list[int]:
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    except KafkaException as exc:
        raise StackError(f"kafka: cannot reach {bootstrap} ({_reason(exc)})") from None
    if meta is None or meta.error is not None or not meta.partitions:
        raise StackError(f"kafka: topic {topic} does not exist on {bootstrap}; run `facegate up`")
    return sorted(meta.partitions)


def end_offsets(bootstrap: str, topic: str, timeout_s: float = 15.0) -> dict[int, int]:
    """The high watermark of every partition: read from here to see only what comes next."""
    consumer = _consumer(bootstrap)
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
            for p in _partitions(consumer, bootstrap, topic, timeout_s)
        }
    except KafkaException as exc:
        raise StackError(f"kafka: cannot read offsets of {topic} on {bootstrap} ({_reason(exc)})") from None
    finally:
        consumer.close()


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    start: Mapping[int, int] | None = None,
    follow: bool = False,
    timeout_s: float | None = None,
    metadata_timeout_s: float = 15.0,
) -> Iterator[Message]:
    """Every record of ``topic`` (all partitions), from ``start`` offsets or the beginning.

    follow=False: stop at the end the topic had when reading began; ``timeout_s`` (if given)
    bounds how long that may take, and StackError says so if it runs out. follow=True: keep
    waiting for new records until ``timeout_s`` has passed (or forever). Within a partition
    records come in offset order; partitions are interleaved.
    """
    consumer = _consumer(bootstrap)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        partitions = _partitions(consumer, bootstrap, topic, metadata_timeout_s)
        ends: dict[int, int] = {}
        assignment = []
        for p in partitions:
            offset = OFFSET_BEGINNING if start is None or p not in start else start[p]
            assignment.append(TopicPartition(topic, p, offset))
            if not follow:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=metadata_timeout_s
                )
                ends[p] = high
                if high <= max(low, offset):
                    ends[p] = -1  # nothing to read in this partition
        pending = {p for p, end in ends.items() if end >= 0}
        consumer.assign(assignment)
        while follow or pending:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                if follow:
                    return
                raise StackError(
                    f"kafka: reading {topic} did not reach its end within {timeout_s:.0f} s "
                    f"(partitions {sorted(pending)} pending)"
                )
            msg = consumer.poll(wait)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition() or 0)
                    continue
                raise StackError(f"kafka: reading {topic} failed: {error.str()}")
            out = _message(msg)
            if not follow:
                end = ends.get(out.partition, -1)
                if out.offset + 1 >= end:
                    pending.discard(out.partition)
                if out.offset >= end:
                    continue  # written after reading began
            yield out
    except KafkaException as exc:
        raise StackError(f"kafka: reading {topic} on {bootstrap} failed ({_reason(exc)})") from None
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, timeout_s: float = 60.0, **kwargs: Any) -> list[Message]:
    """The whole topic as it is now, as a list."""
    return list(read_topic(bootstrap, topic, timeout_s=timeout_s, **kwargs))
