"""Each stage on its own: what it reads, what it sends where, what it keeps (no broker, no faust)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from pipeline import topology
from pipeline.audit import AuditAction
from pipeline.contract import (
    AssetFaces,
    AssetKind,
    AssetUploaded,
    AuditRecord,
    ConsentAction,
    ConsentChange,
    ContractError,
    FaceStatus,
    LegalBasis,
    Record,
    decode,
    utcnow,
)
from pipeline.contract.internal import (
    FaceObservations,
    MatchCandidate,
    ObservedFace,
    RevocationApplied,
    SubjectDecision,
)
from pipeline.contract.records import BBox
from pipeline.settings import KafkaSettings
from pipeline.stages import Admit, Assemble, Event, Join, Outbox, Recognize, RecognizeFrames
from pipeline.stages.join import AUDIT_KEY
from pipeline.topology import Topology

PLAN = Topology(KafkaSettings())


class Sent:
    """An outbox's sends, in order, decoded; each acknowledged at once."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, Record, Mapping[str, bytes] | None]] = []

    async def send(self, topic: str, key: bytes, value: bytes, headers: Mapping[str, bytes] | None) -> Any:
        self.records.append((topic, key.decode(), decode(value), headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def topics(self) -> list[str]:
        return [t for t, _, _, _ in self.records]


def process(stage: Any, source: topology.Topic, key: str, record: Record, **kw: Any) -> Sent:
    sent = Sent()
    event = Event(source, PLAN.name(source), 1, 9, key, record.to_bytes(), raw_key=key.encode(), **kw)

    async def go() -> None:
        out = Outbox(PLAN, sent.send, event)
        await stage.process(event, out)
        await out.delivered()
        for table in stage.tables:
            await table.apply()

    asyncio.run(go())
    return sent


def grant(subject: str) -> ConsentChange:
    now = utcnow()
    return ConsentChange(
        uuid.uuid4().hex,
        subject,
        ConsentAction.GRANTED,
        LegalBasis.EXPLICIT_CONSENT,
        ["editorial"],
        now - timedelta(days=1),
        None,
        "s3://legal/q.pdf",
        now,
        "dpo",
    )


def asset(kind: AssetKind = AssetKind.IMAGE, **kw: Any) -> AssetUploaded:
    return AssetUploaded("assets/a.jpg", "assets", "a.jpg", "etag-1", 10, "image/jpeg", kind, utcnow(), **kw)


def observations(candidate: str | None) -> FaceObservations:
    face = ObservedFace(
        "face-1", BBox(1, 2, 3, 4), 0.99, candidate=candidate, similarity=0.8 if candidate else None
    )
    return FaceObservations("assets/a.jpg", "etag-1", AssetKind.IMAGE, "model-1", utcnow(), [face])


# --- admit -----------------------------------------------------------------------------------


def test_admit_re_keys_a_consent_onto_the_join_input_as_read_with_its_origin() -> None:
    change = grant("S-1")
    sent = process(Admit(), topology.CONSENT, "S-1", change)
    ((topic, key, record, headers),) = sent.records
    assert (topic, key, record) == ("facegate.subject-events", "S-1", change)
    assert headers == {
        b"origin_topic": b"facegate.consent",
        b"origin_partition": b"1",
        b"origin_offset": b"9",
    } or {k: v.decode() for k, v in (headers or {}).items()} == {
        "origin_topic": "facegate.consent",
        "origin_partition": "1",
        "origin_offset": "9",
    }


def test_admit_refuses_a_key_that_is_not_the_subject_and_internal_records() -> None:
    with pytest.raises(ContractError, match="not the record's subject_id"):
        process(Admit(), topology.CONSENT, "S-2", grant("S-1"))
    with pytest.raises(ContractError, match=r"ConsentChange does not belong on facegate\.enrollments"):
        process(Admit(), topology.ENROLLMENTS, "S-1", grant("S-1"))
    ack = RevocationApplied("S-1", "assets/a.jpg", "purge-1")
    with pytest.raises(ContractError, match="RevocationApplied"):
        process(Admit(), topology.CONSENT, "S-1", ack)


# --- recognize -------------------------------------------------------------------------------


class Seen:
    def __init__(self, result: FaceObservations) -> None:
        self.result = result
        self.observed: list[AssetUploaded] = []

    async def observe(self, asset: AssetUploaded) -> FaceObservations:
        self.observed.append(asset)
        return self.result


def test_recognize_sends_observations_by_asset_and_one_candidate_per_matched_subject() -> None:
    recognizer = Seen(observations("S-1"))
    sent = process(Recognize(recognizer), topology.ASSETS, "assets/a.jpg", asset())
    assert sent.topics() == ["facegate.asset-events", "facegate.subject-events"]
    candidate = sent.records[1][2]
    assert isinstance(candidate, MatchCandidate) and sent.records[1][1] == "S-1"
    assert candidate.face_ids == ["face-1"] and candidate.etag == "etag-1"


def test_a_frame_sample_goes_to_its_videos_worker_first() -> None:
    frame = asset(AssetKind.FRAME, video_id="video-7", frame_time_ms=500)
    recognizer = Seen(observations(None))
    sent = process(Recognize(recognizer), topology.ASSETS, frame.asset_id, frame)
    assert [(t, k) for t, k, _, _ in sent.records] == [("facegate.frames", "video-7")]
    assert recognizer.observed == []
    sent = process(RecognizeFrames(recognizer), topology.FRAMES, "video-7", frame)
    assert sent.topics() == ["facegate.asset-events"] and recognizer.observed == [frame]


# --- assemble --------------------------------------------------------------------------------


def test_assemble_tags_once_every_candidate_is_decided_and_acknowledges_a_revocation() -> None:
    table: dict[str, Any] = {}
    stage = Assemble(table)
    assert process(stage, topology.ASSET_EVENTS, "assets/a.jpg", observations("S-1")).records == []
    decision = SubjectDecision("assets/a.jpg", "etag-1", "S-1", FaceStatus.GREEN, "consent", ["editorial"])
    sent = process(stage, topology.ASSET_EVENTS, "assets/a.jpg", decision)
    ((topic, _, tags, _),) = sent.records
    assert topic == "facegate.tags" and isinstance(tags, AssetFaces) and tags.faces[0].subject_id == "S-1"
    revoke = SubjectDecision("assets/a.jpg", "*", "S-1", FaceStatus.RED, "withdrawn", [], "purge-1")
    sent = process(stage, topology.ASSET_EVENTS, "assets/a.jpg", revoke)
    assert sent.topics() == ["facegate.tags", "facegate.subject-events"]
    assert sent.records[0][2].faces[0].subject_id is None  # type: ignore[attr-defined]
    assert sent.records[1][2] == RevocationApplied("S-1", "assets/a.jpg", "purge-1")
    assert "assets/a.jpg" in table


# --- join ------------------------------------------------------------------------------------


class Auditing:
    """A consent join that audits each record it handles, twice."""

    async def handle(self, state: Any, message: Record, fx: Any) -> None:
        await fx.audit(AuditAction.CONSENT_CHANGED, subject_id=state.subject_id, detail={"n": 1})
        await fx.audit(AuditAction.CONSENT_CHANGED, subject_id=state.subject_id, detail={"n": 2})


def test_join_keeps_each_partitions_audit_chain_going_across_events() -> None:
    subjects: dict[str, Any] = {}
    stage = Join(Auditing(), subjects, {})  # type: ignore[arg-type]
    first = process(stage, topology.SUBJECT_EVENTS, "S-1", grant("S-1"))
    second = process(stage, topology.SUBJECT_EVENTS, "S-2", grant("S-2"))
    records = [r for _, _, r, _ in first.records + second.records]
    assert all(isinstance(r, AuditRecord) for r in records)
    audit = [r for r in records if isinstance(r, AuditRecord)]
    assert [r.seq for r in audit] == [0, 1, 2, 3] and {r.chain for r in audit} == {"join-1"}
    assert [r.prev_hash for r in audit[1:]] == [r.hash for r in audit[:-1]]
    assert subjects[AUDIT_KEY.format(partition=1)] == [3, audit[-1].hash, []]  # none unconfirmed
    assert set(subjects) == {"S-1", "S-2", AUDIT_KEY.format(partition=1)}


def test_join_refuses_a_record_keyed_by_another_subject() -> None:
    with pytest.raises(ContractError, match="not the record's subject_id"):
        process(Join(Auditing(), {}, {}), topology.SUBJECT_EVENTS, "S-2", grant("S-1"))  # type: ignore[arg-type]
