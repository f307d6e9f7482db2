"""Stages on faust: each stage becomes an agent over its declared input topics.

For every event the runner builds an ``Event`` and an ``Outbox``, calls the stage, waits for
the broker to acknowledge every record the event caused, applies the stage's staged table
writes and waits for their changelog records; only then does the agent take the next event,
which is when faust acknowledges this one (and a later commit may move past it). What a failure
means is decided by ``pipeline.stages.policy``; this module only carries the decision out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import traceback
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any

import faust

from .. import metrics
from ..stages import policy
from ..stages.base import Event, Outbox, Stage, Timer
from ..stages.policy import Action, Backoff, DeadLetterFailed, Rule
from ..topology import DLQ, Topology

log = logging.getLogger(__name__)

EXIT_CRASH = 70  # EX_SOFTWARE: the policy said CRASH; the supervisor (`facegate up`, compose) restarts


class StageRunner:
    def __init__(self, app: faust.App, topology: Topology, rules: tuple[Rule, ...] = policy.RULES) -> None:
        self.app = app
        self.topology = topology
        self.rules = rules
        partitions = topology.kafka.partitions
        self._topics = {
            name: app.topic(name, key_type=bytes, value_type=bytes, partitions=partitions)
            for name in topology.names()
        }

    async def _send(
        self, topic: str, key: bytes, value: bytes, headers: Mapping[str, bytes] | None
    ) -> Awaitable[Any]:
        delivery: Awaitable[Any] = await self._topics[topic].send(key=key, value=value, headers=headers)
        return delivery

    def outbox(self, source: Event | None = None) -> Outbox:
        return Outbox(self.topology, self._send, source)

    # --- wiring --------------------------------------------------------------------------------

    def agent(self, stage: Stage) -> None:
        """Run ``stage`` over its input topics, ``stage.concurrency`` events at a time."""
        if stage.tables and stage.concurrency != 1:
            raise ValueError(f"{stage.name}: a stage with state processes one event at a time")
        names = self.topology.names(stage.inputs)
        channel = self.app.topic(
            *names, key_type=bytes, value_type=bytes, partitions=self.topology.kafka.partitions
        )

        async def consume(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await self.handle(stage, self._event(event))

        self.app.agent(channel, name=stage.name, concurrency=stage.concurrency)(consume)

    def timer(self, timer: Timer) -> None:
        async def tick() -> None:
            await self.tick(timer)

        self.app.timer(timer.interval_s, name=timer.name)(tick)

    def _event(self, event: faust.EventT) -> Event:
        message = event.message
        raw_headers = event.headers or {}
        pairs = raw_headers.items() if isinstance(raw_headers, Mapping) else raw_headers
        headers = {
            str(name): value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            for name, value in pairs
        }
        key = event.key if isinstance(event.key, bytes) else b""
        return Event(
            source=self.topology.topic(message.topic),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=key.decode("utf-8", errors="replace"),
            value=event.value if isinstance(event.value, bytes) else b"",
            raw_key=key,
            timestamp=datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else None,
            headers=headers,
        )

    # --- one event -----------------------------------------------------------------------------

    async def handle(self, stage: Stage, event: Event) -> None:
        backoff = Backoff()
        while True:
            out = self.outbox(event)
            try:
                await stage.process(event, out)
                await out.delivered()
                for table in stage.tables:
                    await table.apply()
                return
            except asyncio.CancelledError:
                for table in stage.tables:
                    table.discard()
                raise
            except Exception as exc:
                rule = policy.decide(exc, stage.name, self.rules)
                if rule.action is Action.RETRY:
                    for table in stage.tables:
                        table.discard()
                    delay = backoff.next_delay(random.random())
                    metrics.ASSETS_PROCESSED.labels(stage=stage.name, outcome=metrics.Outcome.RETRY).inc()
                    log.warning(
                        "%s: %s: %s; event retried in %.1fs (attempt %d)",
                        rule.why,
                        type(exc).__name__,
                        exc,
                        delay,
                        backoff.attempt,
                        extra=_about(stage.name, event),
                    )
                    await asyncio.sleep(delay)
                    continue
                if rule.action is Action.DEAD_LETTER:
                    await self._dead_letter_or_crash(stage, event, exc, rule, out)
                    return
                self.crash(stage.name, exc, rule)

    async def _dead_letter_or_crash(
        self, stage: Stage, event: Event, exc: Exception, rule: Rule, out: Outbox
    ) -> None:
        try:
            await self.dead_letter(stage, event, exc, rule, out)
        except Exception as failure:
            self.crash(stage.name, DeadLetterFailed(f"{type(failure).__name__}: {failure}"), rule)

    async def dead_letter(self, stage: Stage, event: Event, exc: Exception, rule: Rule, out: Outbox) -> None:
        if rule.bug:
            log.error(
                "unexpected failure in %s:\n%s",
                stage.name,
                "".join(traceback.format_exception(exc)),
                extra={"stage": stage.name},
            )
        # What the event already did stands: its records acknowledged, its state kept with them.
        await out.delivered()
        for table in stage.tables:
            await table.apply()
        origin = event.origin()
        headers = {
            "error_class": type(exc).__name__,
            "error_message": str(exc)[:2000],
            "stage": stage.name,
            "source_topic": origin["origin_topic"],
            "source_partition": origin["origin_partition"],
            "source_offset": origin["origin_offset"],
        }
        parked = self.outbox(event)
        await parked.send_bytes(DLQ, event.raw_key, event.value, headers)
        await parked.delivered()
        metrics.DLQ_RECORDS.labels(error_class=type(exc).__name__, stage=stage.name).inc()
        log.warning("dead-lettered: %s: %s", type(exc).__name__, exc, extra=_about(stage.name, event))
        stage.dead_lettered(event, exc)

    def crash(self, stage: str, exc: BaseException, rule: Rule) -> None:
        """Stop the worker now, acknowledging nothing more: the event is read again after the restart."""
        log.critical(
            "%s: %s: %s: %s; stopping the worker",
            stage,
            rule.why,
            type(exc).__name__,
            exc,
            extra={"stage": stage},
        )
        logging.shutdown()
        os._exit(EXIT_CRASH)

    # --- timers --------------------------------------------------------------------------------

    async def tick(self, timer: Timer) -> None:
        out = self.outbox()
        try:
            await timer.tick(out)
            await out.delivered()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            rule = policy.decide(exc, timer.name, self.rules)
            if rule.action is Action.CRASH:
                self.crash(timer.name, exc, rule)
            # Nothing to dead-letter: the next tick looks again.
            log.error("%s: %s: %s; next tick in %.0fs", timer.name, type(exc).__name__, exc, timer.interval_s)


def _about(stage: str, event: Event) -> dict[str, str]:
    return {"stage": stage, "asset_id": event.key}
