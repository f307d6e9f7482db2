"""What every stage is made of: the event it reads, the outbox it writes to, the state it keeps.

A stage is a class with a name, the topics it reads (from ``pipeline.topology``) and
``process(event, out)``. It knows nothing of faust: ``pipeline.kafka.runner`` feeds it events and
applies the error policy (``pipeline.stages.policy``). The runner's rule for one event:

1. ``process`` reads its state through ``StagedTable``s and sends records through the ``Outbox``;
2. every record sent is acknowledged by the broker (acks=all) — ``Outbox.delivered``;
3. only then are the staged table writes applied, and their changelog records acknowledged;
4. only then is the event acknowledged to the consumer, whose commit can move past it.

A crash anywhere before 3 leaves the state as it was before the event, so the event, read again,
does again everything it did (its records may then be written twice: every stage's output is
idempotent — deterministic ids, a state published once per change, audit records that verify
as redeliveries). A state written before its records were acknowledged would make the
redelivered event look done and its records lost: that order is what this module rules out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from ..contract import Record, decode
from ..topology import RecordNotAllowed, Topic, Topology

ORIGIN = ("origin_topic", "origin_partition", "origin_offset")


class OutputNotDelivered(Exception):
    """The broker did not acknowledge a record an event caused; the event is done again."""


@dataclass(frozen=True)
class Event:
    """One record read from a topic, with where it was read."""

    source: Topic
    topic: str
    partition: int
    offset: int
    key: str  # UTF-8 text (facegate's keys are ids)
    value: bytes
    raw_key: bytes = b""  # the key as read, for the dead-letter topic
    timestamp: datetime | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def decode(self) -> Record:
        """The facegate record; ContractError if it is not one, RecordNotAllowed if not for this topic."""
        record = decode(self.value)
        if not self.source.allows(record):
            raise RecordNotAllowed(f"{type(record).__name__} does not belong on {self.topic}")
        return record

    def origin(self) -> dict[str, str]:
        """Where the record first arrived: a forwarded record's origin_* headers, else here."""
        here = {
            "origin_topic": self.topic,
            "origin_partition": str(self.partition),
            "origin_offset": str(self.offset),
        }
        return {name: self.headers.get(name, here[name]) for name in ORIGIN}


class Send(Protocol):
    """Hand one record to the producer; the awaitable it returns resolves on the broker's ack."""

    async def __call__(
        self, topic: str, key: bytes, value: bytes, headers: Mapping[str, bytes] | None
    ) -> Awaitable[Any]: ...


class Outbox:
    """The records one event causes. Each is checked against the topology when sent."""

    def __init__(self, topology: Topology, send: Send, source: Event | None = None) -> None:
        self.topology = topology
        self._send = send
        self.source = source
        self._pending: list[Awaitable[Any]] = []
        self.sent = 0

    async def send(
        self,
        topic: Topic,
        key: str,
        record: Record,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        acknowledged: bool = False,
    ) -> None:
        """Send ``record`` (or ``raw``, its bytes as read, when forwarding).

        ``acknowledged``: wait for the broker's ack before going on (a record that must be
        durable before the next one is even sent).
        """
        name = self.topology.check_send(topic, record)
        value = raw if raw is not None else record.to_bytes()
        encoded = {h: v.encode() for h, v in (headers or {}).items()} or None
        delivery = await self._send(name, key.encode(), value, encoded)
        self.sent += 1
        if acknowledged:
            await _acknowledged(delivery)
        else:
            self._pending.append(delivery)

    async def send_to(self, name: str, key: str, record: Record) -> None:
        """``send`` by topic name (for domain code that holds the names from the settings)."""
        await self.send(self.topology.topic(name), key, record)

    async def send_bytes(self, topic: Topic, key: bytes, value: bytes, headers: Mapping[str, str]) -> None:
        """Bytes that are not a record of the topic's types: only the dead-letter topic takes them."""
        if topic.records:
            raise ValueError(f"{topic.setting} carries records; use send()")
        name = self.topology.name(topic)
        delivery = await self._send(name, key, value, {h: v.encode() for h, v in headers.items()})
        self._pending.append(delivery)

    async def delivered(self) -> None:
        """Wait until the broker has acknowledged every record sent so far."""
        pending, self._pending = self._pending, []
        results = await asyncio.gather(*(_acknowledged(p) for p in pending), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise OutputNotDelivered(
                f"{len(failed)} of {len(results)} record(s) not acknowledged: {failed[0]!r}"
            )


async def _acknowledged(delivery: Awaitable[Any]) -> Any:
    try:
        return await delivery
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise OutputNotDelivered(f"{type(exc).__name__}: {exc}") from exc


class Changelog(Protocol):
    """A table whose writes go to a changelog topic, and can be awaited (pipeline.kafka.tables)."""

    def __getitem__(self, key: Any) -> Any: ...
    def __setitem__(self, key: Any, value: Any) -> None: ...
    def __delitem__(self, key: Any) -> None: ...
    def get(self, key: Any, default: Any = None) -> Any: ...
    def keys(self) -> Any: ...
    async def acknowledged(self) -> None: ...


_DELETED = object()


class StagedTable(MutableMapping[str, Any]):
    """A stage's view of its table during one event: reads see the event's own writes, which reach
    the table only on ``apply``, after the event's records are acknowledged (``discard`` drops them).

    One event at a time: a stage with state runs with concurrency 1.
    """

    def __init__(self, table: Changelog | MutableMapping[str, Any]) -> None:
        self.table = table
        self._writes: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        value = self._writes.get(key, None) if key in self._writes else self.table.get(key)
        if value is None or value is _DELETED:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        self._writes[key] = value

    def __delitem__(self, key: str) -> None:
        if self.get(key) is None:
            raise KeyError(key)
        self._writes[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for key in list(self.table.keys()):
            seen.add(key)
            if self._writes.get(key) is not _DELETED:
                yield key
        for key, value in list(self._writes.items()):
            if key not in seen and value is not _DELETED:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @property
    def dirty(self) -> bool:
        return bool(self._writes)

    async def apply(self) -> None:
        """Write the event's changes to the table and wait for their changelog records' acks."""
        writes, self._writes = self._writes, {}
        for key, value in writes.items():
            if value is _DELETED:
                if self.table.get(key) is not None:
                    del self.table[key]
            else:
                self.table[key] = value
        acknowledged = getattr(self.table, "acknowledged", None)
        if writes and acknowledged is not None:
            await acknowledged()

    def discard(self) -> None:
        self._writes = {}


class Stage:
    """Base of the stages. Subclasses set ``name`` and ``inputs`` and implement ``process``."""

    name: ClassVar[str]
    inputs: tuple[Topic, ...] = ()
    tables: tuple[StagedTable, ...] = ()  # applied by the runner after the event's records are acked
    concurrency: int = 1

    async def process(self, event: Event, out: Outbox) -> None:
        raise NotImplementedError

    def dead_lettered(self, event: Event, exc: BaseException) -> None:
        """Told after the runner dead-lettered ``event`` (for the stage's own metrics)."""


class Timer(Protocol):
    """A periodic stage with no input record (the expiry check)."""

    name: str
    interval_s: float
    tables: tuple[StagedTable, ...]

    async def tick(self, out: Outbox) -> None: ...
