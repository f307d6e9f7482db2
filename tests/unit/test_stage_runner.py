"""The runner's rules for one event, on a faust app that never connects (the broker is a fake).

An event's records are acknowledged before its state is applied, and its state before the
next event; a failure is retried, dead-lettered or crashes as pipeline.stages.policy says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import faust
import pytest

from pipeline import topology
from pipeline.contract import ContractError
from pipeline.contract.internal import MatchCandidate, RevocationApplied
from pipeline.errors import PermanentError, TransientError
from pipeline.kafka.runner import StageRunner
from pipeline.settings import KafkaSettings
from pipeline.stages import Event, Outbox, Stage, StagedTable, policy
from pipeline.stages.base import OutputNotDelivered
from pipeline.stages.policy import Action, DeadLetterFailed
from pipeline.topology import Topology, TopologyError

CANDIDATE = MatchCandidate("S-1", "assets/a.jpg", "etag-1", ["face-1"], 0.9)


class Broker:
    """Records every send; acknowledges each one a loop turn later unless told to fail it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, Mapping[str, bytes] | None]] = []
        self.deliveries: list[asyncio.Future[None]] = []
        self.fail_next = 0

    async def send(self, topic: str, key: bytes, value: bytes, headers: Mapping[str, bytes] | None) -> Any:
        self.sent.append((topic, key, value, headers))
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        if self.fail_next:
            self.fail_next -= 1
            asyncio.get_running_loop().call_soon(delivery.set_exception, RuntimeError("broker away"))
        else:
            asyncio.get_running_loop().call_soon(delivery.set_result, None)
        return delivery

    def on(self, topic: str) -> list[tuple[str, bytes, bytes, Mapping[str, bytes] | None]]:
        return [s for s in self.sent if s[0] == topic]


class Changelog(dict[str, Any]):
    """A table that checks, at every write, that the records sent before it were acknowledged."""

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self.broker = broker
        self.acknowledged_calls = 0

    def __setitem__(self, key: str, value: Any) -> None:
        assert all(d.done() for d in self.broker.deliveries), "state written before its records were acked"
        super().__setitem__(key, value)

    async def acknowledged(self) -> None:
        self.acknowledged_calls += 1


class Counting(Stage):
    """Sends one candidate per event and counts events per key in its table."""

    name: ClassVar[str] = "counting"
    inputs = (topology.SUBJECT_EVENTS,)

    def __init__(self, table: Changelog, fail: list[BaseException] | None = None) -> None:
        self.counts = StagedTable(table)
        self.tables = (self.counts,)
        self.fail = fail or []
        self.calls = 0

    async def process(self, event: Event, out: Outbox) -> None:
        self.calls += 1
        event.decode()
        await out.send(topology.SUBJECT_EVENTS, event.key, CANDIDATE)
        self.counts[event.key] = self.counts.get(event.key, 0) + 1
        if self.fail:
            raise self.fail.pop(0)


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def runner(broker: Broker) -> StageRunner:
    app = faust.App("test-runner", broker="kafka://127.0.0.1:1", store="memory://")
    runner = StageRunner(app, Topology(KafkaSettings()))
    runner._send = broker.send  # type: ignore[method-assign]
    return runner


def event(
    value: bytes, key: str = "S-1", source: topology.Topic = topology.SUBJECT_EVENTS, **kw: Any
) -> Event:
    name = Topology(KafkaSettings()).name(source)
    return Event(source, name, 2, 41, key, value, raw_key=key.encode(), **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_records_are_acknowledged_before_the_state_and_the_state_before_the_event_ends(runner, broker):
    table = Changelog(broker)
    stage = Counting(table)
    run(runner.handle(stage, event(CANDIDATE.to_bytes())))
    assert table == {"S-1": 1} and table.acknowledged_calls == 1
    assert len(broker.on("facegate.subject-events")) == 1


def test_an_unacknowledged_record_makes_the_event_run_again_from_its_old_state(runner, broker, monkeypatch):
    monkeypatch.setattr(policy.Backoff, "next_delay", lambda self, jitter: 0.0)
    table = Changelog(broker)
    stage = Counting(table)
    broker.fail_next = 1
    run(runner.handle(stage, event(CANDIDATE.to_bytes())))
    assert stage.calls == 2
    assert table == {"S-1": 1}  # the first attempt's write was discarded, not applied twice
    assert len(broker.on("facegate.subject-events")) == 2  # sent again: outputs are idempotent


def test_a_transient_failure_is_retried_until_it_passes(runner, broker, monkeypatch):
    monkeypatch.setattr(policy.Backoff, "next_delay", lambda self, jitter: 0.0)
    table = Changelog(broker)
    stage = Counting(table, fail=[TransientError("triton away"), TransientError("still away")])
    run(runner.handle(stage, event(CANDIDATE.to_bytes())))
    assert stage.calls == 3 and table == {"S-1": 1}
    assert broker.on("facegate.dlq") == []


def test_bad_input_is_dead_lettered_with_its_origin_and_what_the_event_did_stands(runner, broker):
    table = Changelog(broker)
    stage = Counting(table, fail=[PermanentError("corrupt file")])
    forwarded = {"origin_topic": "facegate.consent", "origin_partition": "0", "origin_offset": "7"}
    run(runner.handle(stage, event(CANDIDATE.to_bytes(), headers=forwarded)))
    (dead,) = broker.on("facegate.dlq")
    headers = {k: v.decode() for k, v in (dead[3] or {}).items()}
    assert dead[1] == b"S-1" and dead[2] == CANDIDATE.to_bytes()
    assert headers == {
        "error_class": "PermanentError",
        "error_message": "corrupt file",
        "stage": "counting",
        "source_topic": "facegate.consent",
        "source_partition": "0",
        "source_offset": "7",
    }
    assert table == {"S-1": 1}  # its state is kept with the records it sent


def test_undecodable_and_misplaced_records_are_dead_lettered_at_the_boundary(runner, broker):
    stage = Counting(Changelog(broker))
    run(runner.handle(stage, event(b"not avro")))
    misplaced = RevocationApplied("S-1", "a", "p").to_bytes()
    run(runner.handle(stage, event(misplaced, source=topology.ASSETS)))
    errors = [dict(d[3] or {})["error_class"] for d in broker.on("facegate.dlq")]
    assert errors == [b"ContractError", b"RecordNotAllowed"]
    assert broker.on("facegate.subject-events") == []


def test_a_stage_sending_a_record_where_it_does_not_belong_is_a_bug_and_dead_lettered(runner, broker, caplog):
    class Misrouting(Counting):
        async def process(self, event: Event, out: Outbox) -> None:
            await out.send(topology.TAGS, event.key, CANDIDATE)

    run(runner.handle(Misrouting(Changelog(broker)), event(CANDIDATE.to_bytes())))
    (dead,) = broker.on("facegate.dlq")
    assert dict(dead[3] or {})["error_class"] == b"TopologyError"
    assert "unexpected failure in counting" in caplog.text  # with the traceback
    assert broker.on("facegate.tags") == []


def test_a_dead_letter_the_broker_refuses_stops_the_worker(runner, broker):
    crashed: list[BaseException] = []

    def crash(stage: str, exc: BaseException, rule: policy.Rule) -> None:
        crashed.append(exc)
        raise SystemExit(70)

    runner.crash = crash  # type: ignore[method-assign]
    broker.fail_next = 1  # the DLQ record: the first record this event sends
    with pytest.raises(SystemExit):
        run(runner.handle(Counting(Changelog(broker)), event(b"not avro")))
    assert isinstance(crashed[0], DeadLetterFailed)


def test_the_policy_decides_in_order() -> None:
    assert policy.decide(DeadLetterFailed("x"), "join").action is Action.CRASH
    assert policy.decide(OutputNotDelivered("x"), "join").action is Action.RETRY
    assert policy.decide(TimeoutError(), "recognize").action is Action.RETRY
    assert policy.decide(ContractError("x"), "admit").action is Action.DEAD_LETTER
    assert not policy.decide(ContractError("x"), "admit").bug
    assert policy.decide(TopologyError("x"), "join").bug
    assert policy.decide(KeyError("x"), "assemble").bug
    only_join = policy.Rule((KeyError,), Action.CRASH, stages=frozenset({"join"}))
    rules = (only_join, *policy.RULES)
    assert policy.decide(KeyError("x"), "join", rules).action is Action.CRASH
    assert policy.decide(KeyError("x"), "assemble", rules).action is Action.DEAD_LETTER


def test_a_staged_table_sees_its_own_writes_and_applies_them_only_when_told() -> None:
    table: dict[str, Any] = {"a": 1, "b": 2}
    staged = StagedTable(table)
    staged["c"] = 3
    del staged["a"]
    assert staged.get("a") is None and staged["c"] == 3 and sorted(staged) == ["b", "c"]
    assert table == {"a": 1, "b": 2}
    run(staged.apply())
    assert table == {"b": 2, "c": 3}
    staged["d"] = 4
    staged.discard()
    assert "d" not in staged and table == {"b": 2, "c": 3}
    with pytest.raises(KeyError):
        del staged["nothing"]


def test_origin_is_where_a_record_first_arrived() -> None:
    here = event(b"")
    assert here.origin() == {
        "origin_topic": "facegate.subject-events",
        "origin_partition": "2",
        "origin_offset": "41",
    }
