"""The join stage: subject ids checked before any table is touched, checkpoints that a later
failure cannot undo, and an audit chain that never forks when an event is done again."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from test_stages import PLAN, Auditing, Sent, grant

from pipeline import topology
from pipeline.audit import AuditAction
from pipeline.contract import AuditRecord, Record
from pipeline.contract.ids import InvalidSubjectId
from pipeline.stages import Event, Join, Outbox
from pipeline.stages.base import OutputNotDelivered
from pipeline.stages.join import AUDIT_KEY


class Undelivered(Sent):
    """A broker that takes the records and never acknowledges them (the runner then RETRYs)."""

    async def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> Any:
        await super().send(topic, key, value, headers)
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(ConnectionError("broker went away"))
        return failed


def attempt(stage: Join, key: str, record: Record, sent: Sent) -> BaseException | None:
    """One try of one event, as the runner makes it: records acknowledged, then tables applied;
    on a failure, the staged writes are discarded (RETRY)."""
    event = Event(topology.SUBJECT_EVENTS, PLAN.name(topology.SUBJECT_EVENTS), 1, 9, key, record.to_bytes())

    async def go() -> BaseException | None:
        out = Outbox(PLAN, sent.send, event)
        try:
            await stage.process(event, out)
            await out.delivered()
        except Exception as exc:
            for table in stage.tables:
                table.discard()
            return exc
        for table in stage.tables:
            await table.apply()
        return None

    return asyncio.run(go())


def test_an_event_done_again_resends_its_audit_records_as_they_were_never_new_ones_in_their_place() -> None:
    subjects: dict[str, Any] = {}
    stage = Join(Auditing(), subjects, {})  # type: ignore[arg-type]
    lost = Undelivered()
    assert isinstance(attempt(stage, "S-1", grant("S-1"), lost), OutputNotDelivered)
    again = Sent()
    assert attempt(stage, "S-1", grant("S-1"), again) is None
    assert attempt(stage, "S-2", grant("S-2"), again) is None

    by_seq: dict[int, set[bytes]] = defaultdict(set)
    for _, _, record, _ in lost.records + again.records:
        assert isinstance(record, AuditRecord)
        by_seq[record.seq].add(record.to_bytes())
    assert all(len(versions) == 1 for versions in by_seq.values()), "two different records, one seq"
    assert sorted(by_seq) == list(range(6))  # 0-1 resent as they were, then 2-5
    assert subjects[AUDIT_KEY.format(partition=1)][:1] == [5]


@pytest.mark.parametrize("key", ["\x00audit-chain:1", "S 1", "a/b", ""])
def test_a_key_that_is_not_a_subject_id_never_touches_the_tables(key: str) -> None:
    subjects: dict[str, Any] = {AUDIT_KEY.format(partition=1): [3, "ab" * 32, []]}
    stage = Join(Auditing(), subjects, {})  # type: ignore[arg-type]
    assert isinstance(attempt(stage, key, grant(key or "x"), Sent()), InvalidSubjectId)
    assert subjects == {AUDIT_KEY.format(partition=1): [3, "ab" * 32, []]}


class WithdrawsThenFails:
    """A join that changes the state, audits it, checkpoints, then meets a failure."""

    async def handle(self, state: Any, message: Record, fx: Any) -> None:
        state.faceprints = 7
        await fx.audit(AuditAction.CONSENT_CHANGED, subject_id=state.subject_id, detail={"n": 1})
        await fx.checkpoint()
        state.faceprints = 99
        raise ConnectionError("qdrant timed out")


def test_what_was_checkpointed_survives_the_failure_that_follows() -> None:
    subjects: dict[str, Any] = {}
    stage = Join(WithdrawsThenFails(), subjects, {})  # type: ignore[arg-type]
    assert isinstance(attempt(stage, "S-1", grant("S-1"), Sent()), ConnectionError)
    assert subjects["S-1"]["faceprints"] == 7
    assert subjects[AUDIT_KEY.format(partition=1)][0] == 0
