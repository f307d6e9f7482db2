"""The hash-chained audit log: sealing, resuming, verifying, and the biometric guard."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.audit import (
    GENESIS,
    AuditAction,
    AuditChain,
    ChainHead,
    ProblemKind,
    by_chain_seq,
    details,
    record_hash,
    verify,
)
from pipeline.consent.policy import Decision
from pipeline.contract import (
    AuditRecord,
    ConsentAction,
    ConsentChange,
    FaceStatus,
    LegalBasis,
    PurgeReason,
    SubjectPurged,
)
from pipeline.contract.avro import SCHEMA_DIR, Schema

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def make_chain(n: int, name: str = "main", *, start: datetime = T0) -> list[AuditRecord]:
    chain = AuditChain(name)
    actions = list(AuditAction)
    return [
        chain.append(
            actions[i % len(actions)],
            subject_id=f"S-{i % 3}",
            asset_id=f"assets/photo-{i}.jpg" if i % 2 else None,
            detail={"i": i, "status": "GREEN", "bbox": {"x": 1.0, "y": 2.0, "w": 30.0, "h": 40.0}},
            at=start + timedelta(seconds=i, microseconds=123_456),
        )
        for i in range(n)
    ]


def reseal(record: AuditRecord, **changes: object) -> AuditRecord:
    """What a tamperer who knows the algorithm would do: change a field and recompute the hash."""
    changed = dataclasses.replace(record, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(changed, hash=record_hash(changed))


# --- sealing ---------------------------------------------------------------------------------


def test_first_record_links_to_genesis_and_each_next_to_the_previous() -> None:
    records = make_chain(5)
    assert records[0].seq == 0 and records[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(records):
        assert after.seq == before.seq + 1
        assert after.prev_hash == before.hash
    assert all(r.hash == record_hash(r) and len(r.hash) == 64 for r in records)
    assert verify(records).ok


def test_hash_covers_every_field_but_itself() -> None:
    record = make_chain(2)[1]
    changes: dict[str, object] = {
        "seq": 7,
        "at": record.at + timedelta(milliseconds=1),
        "action": "OTHER",
        "subject_id": "S-x",
        "asset_id": "assets/other.jpg",
        "detail": "{}",
        "prev_hash": "f" * 64,
        "chain": "other",
    }
    # The signature fields are not hashed: the signature covers the hash instead.
    assert set(changes) == {f.name for f in dataclasses.fields(AuditRecord)} - {
        "hash",
        "signed_by",
        "signature",
    }
    for name, value in changes.items():
        assert record_hash(dataclasses.replace(record, **{name: value})) != record.hash, name  # type: ignore[arg-type]


def test_null_and_empty_ids_hash_differently() -> None:
    record = make_chain(1)[0]
    assert record_hash(dataclasses.replace(record, asset_id=None)) != record_hash(
        dataclasses.replace(record, asset_id="")
    )


def test_records_survive_the_avro_round_trip_with_the_same_hash() -> None:
    records = make_chain(4)
    decoded = [AuditRecord.from_bytes(r.to_bytes()) for r in records]
    assert decoded == records
    assert verify(decoded).ok


def test_timestamps_are_kept_to_the_millisecond_and_must_be_aware() -> None:
    chain = AuditChain()
    record = chain.append(AuditAction.PURGED, at=datetime(2026, 1, 1, 12, 0, 0, 999_999, tzinfo=UTC))
    assert record.at.microsecond == 999_000
    with pytest.raises(ValueError, match="timezone-aware"):
        chain.append(AuditAction.PURGED, at=datetime(2026, 1, 1, 12, 0))


def test_detail_is_canonical_json() -> None:
    record = AuditChain().append(AuditAction.CONSENT_CHANGED, detail={"b": 1, "a": "é"})
    assert record.detail == '{"a":"é","b":1}'
    assert json.loads(record.detail) == {"a": "é", "b": 1}


def test_detail_must_be_plain_json() -> None:
    chain = AuditChain()
    with pytest.raises(ValueError):
        chain.append(AuditAction.MATCH_DECIDED, detail={"similarity": float("nan")})
    with pytest.raises(TypeError):
        chain.append(AuditAction.MATCH_DECIDED, detail={"when": object()})
    # A refused append does not advance the chain.
    assert chain.append(AuditAction.MATCH_DECIDED).seq == 0


def test_bad_chain_names_are_refused() -> None:
    for name in ("", " main", "main "):
        with pytest.raises(ValueError):
            AuditChain(name)


# --- resuming --------------------------------------------------------------------------------


def test_resume_continues_the_chain() -> None:
    first = make_chain(3, "p1")
    chain = AuditChain.resume(AuditRecord.from_bytes(first[-1].to_bytes()), chain="p1")
    assert chain.head == ChainHead(2, first[-1].hash)
    more = [chain.append(AuditAction.ENROLLED, subject_id="S-9") for _ in range(2)]
    assert [r.seq for r in more] == [3, 4]
    assert verify(first + more).ok


def test_resume_from_nothing_starts_at_genesis() -> None:
    chain = AuditChain.resume(None, chain="p0")
    assert chain.head is None
    assert chain.append(AuditAction.PURGED).prev_hash == GENESIS


def test_resume_refuses_a_tampered_head_or_another_chain() -> None:
    last = make_chain(2, "p1")[-1]
    with pytest.raises(ValueError, match="does not match its hash"):
        AuditChain.resume(dataclasses.replace(last, detail='{"i":99}'), chain="p1")
    with pytest.raises(ValueError, match="belongs to chain"):
        AuditChain.resume(last, chain="p2")


# --- verification: each kind of tampering is found where it happened ---------------------------


def kinds(records: list[AuditRecord], **kwargs: object) -> list[tuple[int | None, ProblemKind]]:
    report = verify(records, **kwargs)  # type: ignore[arg-type]
    assert not report.ok
    return [(p.index, p.kind) for p in report.problems]


def test_altered_record_without_rehash_is_a_hash_mismatch_at_that_record() -> None:
    records = make_chain(6)
    records[3] = dataclasses.replace(records[3], detail='{"i":3,"status":"RED"}')
    assert kinds(records) == [(3, ProblemKind.HASH_MISMATCH)]


def test_altered_record_with_rehash_breaks_the_next_link() -> None:
    records = make_chain(6)
    records[3] = reseal(records[3], subject_id="S-forged")
    assert kinds(records) == [(4, ProblemKind.BROKEN_LINK)]


def test_removed_record_is_a_seq_gap() -> None:
    records = make_chain(6)
    del records[2]
    report = verify(records)
    assert [(p.index, p.kind, p.seq) for p in report.problems] == [(2, ProblemKind.SEQ_GAP, 3)]
    assert "seq 2 missing" in report.problems[0].message


def test_removed_first_record_is_a_missing_start() -> None:
    assert kinds(make_chain(4)[1:]) == [(0, ProblemKind.MISSING_START)]


def test_removed_tail_is_found_with_the_recorded_head() -> None:
    records = make_chain(6)
    head = verify(records).chains["main"].head
    assert head is not None
    assert verify(records, expected_heads={"main": head}).ok
    assert kinds(records[:4], expected_heads={"main": head}) == [(None, ProblemKind.TRUNCATED)]
    assert kinds([], expected_heads={"main": head}) == [(None, ProblemKind.TRUNCATED)]


def test_rewritten_tail_is_found_with_the_recorded_head() -> None:
    records = make_chain(6)
    head = ChainHead(records[-1].seq, records[-1].hash)
    # Rewrite the last two records consistently: links and hashes all check out...
    forged4 = reseal(records[4], detail='{"forged":true}')
    forged5 = reseal(records[5], prev_hash=forged4.hash)
    rewritten = [*records[:4], forged4, forged5]
    assert verify(rewritten).ok
    # ...but not against the head kept from the last verification.
    assert kinds(rewritten, expected_heads={"main": head}) == [(None, ProblemKind.BROKEN_LINK)]
    # A chain that grew since still verifies against an older head.
    grown = AuditChain.resume(records[-1])
    assert verify([*records, grown.append(AuditAction.PURGED)], expected_heads={"main": head}).ok


def test_inserted_forged_record_is_found() -> None:
    records = make_chain(5)
    forged = reseal(records[2], seq=3, prev_hash=records[2].hash, action=AuditAction.KEY_DESTROYED)
    tampered = [*records[:3], forged, *records[3:]]
    problems = kinds(tampered)
    assert (4, ProblemKind.OUT_OF_ORDER) in problems


def test_swapped_records_are_reported_out_of_order() -> None:
    records = make_chain(5)
    records[1], records[2] = records[2], records[1]
    assert kinds(records) == [(1, ProblemKind.SEQ_GAP), (2, ProblemKind.OUT_OF_ORDER)]
    # Sorting by seq (what a reader merging partitions does) restores a valid chain.
    assert verify(sorted(records, key=by_chain_seq)).ok


def test_redelivered_duplicates_are_counted_not_failed() -> None:
    records = make_chain(4)
    report = verify([*records[:2], records[1], *records[2:]])
    assert report.ok and report.duplicates == 1
    assert report.chains["main"].records == 4


def test_verifying_a_suffix_needs_its_anchor() -> None:
    records = make_chain(8)
    anchor = ChainHead(records[4].seq, records[4].hash)
    assert verify(records[5:], anchors={"main": anchor}).ok
    assert not verify(records[5:]).ok
    assert kinds(records[6:], anchors={"main": anchor}) == [(0, ProblemKind.MISSING_START)]


def test_parallel_chains_verify_independently() -> None:
    a, b = make_chain(5, "consent-join-0"), make_chain(7, "consent-join-1")
    rng = random.Random(7)
    merged: list[AuditRecord] = []
    ia = ib = 0
    while ia < len(a) or ib < len(b):  # interleave, keeping each chain's order
        if ib >= len(b) or (ia < len(a) and rng.random() < 0.5):
            merged.append(a[ia])
            ia += 1
        else:
            merged.append(b[ib])
            ib += 1
    report = verify(merged)
    assert report.ok
    assert {n: s.records for n, s in report.chains.items()} == {"consent-join-0": 5, "consent-join-1": 7}
    # Tampering with one chain does not taint the other.
    victim = merged.index(b[3])
    merged[victim] = dataclasses.replace(b[3], action="FORGED")
    report = verify(merged)
    assert report.problem_chains == {"consent-join-1"}
    assert [(p.index, p.kind) for p in report.problems] == [(victim, ProblemKind.HASH_MISMATCH)]


def test_moving_a_record_to_another_chain_is_found() -> None:
    a, b = make_chain(3, "p0"), make_chain(3, "p1")
    moved = dataclasses.replace(a[2], chain="p1")
    report = verify([*a[:2], *b, moved])
    assert report.problem_chains == {"p1"}


def test_describe_names_chains_heads_and_problems() -> None:
    records = make_chain(3)
    ok = verify(records).describe()
    assert "chain main: 3 records, seq 0..2" in ok and records[-1].hash in ok
    assert ok.endswith("audit log verified")
    records[1] = dataclasses.replace(records[1], action="X")
    broken = verify(records).describe()
    assert "chain main record #1 (seq 1): hash_mismatch" in broken
    assert broken.endswith("audit log BROKEN: 1 problem(s)")


MUTATIONS = ("alter", "alter_rehash", "remove", "insert", "swap", "duplicate_seq")


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(min_value=3, max_value=30),
    mutation=st.sampled_from(MUTATIONS),
    data=st.data(),
)
def test_any_single_tampering_is_detected(n: int, mutation: str, data: st.DataObject) -> None:
    records = make_chain(n)
    # Tampering with the very last record can only be caught with a recorded head (see above).
    head = ChainHead(records[-1].seq, records[-1].hash)
    i = data.draw(st.integers(min_value=0, max_value=n - 1), label="index")
    tampered = list(records)
    if mutation == "alter":
        field_name = data.draw(st.sampled_from(["action", "subject_id", "asset_id", "detail", "at"]))
        value: object = records[i].at + timedelta(seconds=1) if field_name == "at" else "tampered"
        tampered[i] = dataclasses.replace(records[i], **{field_name: value})  # type: ignore[arg-type]
    elif mutation == "alter_rehash":
        tampered[i] = reseal(records[i], detail='{"rewritten":true}')
    elif mutation == "remove":
        del tampered[i]
    elif mutation == "insert":
        prev = records[i - 1] if i else None
        forged = AuditChain.resume(prev).append(AuditAction.PURGED, subject_id="S-forged", at=T0)
        tampered.insert(i, forged)
    elif mutation == "swap":
        j = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda j: j != i), label="other")
        tampered[i], tampered[j] = tampered[j], tampered[i]
    else:
        tampered[i] = reseal(records[i], seq=records[i].seq + data.draw(st.sampled_from([-1, 1, 5])))
    report = verify(tampered, expected_heads={"main": head})
    assert not report.ok, mutation
    assert verify(records, expected_heads={"main": head}).ok


# --- details and compatibility ---------------------------------------------------------------


def test_standard_details_pass_the_guard_and_round_trip() -> None:
    change = ConsentChange(
        event_id="ev-1",
        subject_id="S-1",
        action=ConsentAction.GRANTED,
        legal_basis=LegalBasis.EXPLICIT_CONSENT,
        scopes=["editorial", "archive"],
        valid_from=T0,
        valid_until=None,
        evidence_uri="s3://legal/quitclaims/S-1.pdf",
        recorded_at=T0,
        recorded_by="officer",
    )
    purge = SubjectPurged(
        event_id="ev-2",
        subject_id="S-1",
        reason=PurgeReason.WITHDRAWN,
        asset_ids=[f"assets/{i}.jpg" for i in range(40)],
        faceprints_deleted=3,
        key_destroyed=True,
        purged_at=T0,
    )
    decision = Decision(FaceStatus.AMBER, "scope_limited:editorial", ("editorial",))
    built = [
        (AuditAction.CONSENT_CHANGED, details.consent_changed(change)),
        (
            AuditAction.CONSENT_REJECTED,
            details.consent_rejected(["blank subject_id"], source="facegate.consent/0@7"),
        ),
        (
            AuditAction.MATCH_DECIDED,
            details.match_decided(decision, face_id="f-1", similarity=0.42, model_version="m1"),
        ),
        (AuditAction.PURGED, details.purged(purge)),
    ]
    chain = AuditChain()
    records = [chain.append(action, subject_id="S-1", detail=detail, at=T0) for action, detail in built]
    assert [json.loads(r.detail) for r in records] == [json.loads(json.dumps(d)) for _, d in built]
    assert json.loads(records[0].detail)["legal_basis"] == "EXPLICIT_CONSENT"
    assert json.loads(records[2].detail)["status"] == "AMBER"
    assert json.loads(records[3].detail)["faceprints_deleted"] == 3
    assert verify(records).ok


def test_records_written_before_the_chain_field_still_decode_into_main() -> None:
    v1 = Schema.from_json(json.loads((SCHEMA_DIR / "history" / "AuditRecord.v1.avsc").read_text()))
    record = make_chain(1)[0]
    old_bytes = v1.encode(
        {k: v for k, v in record.to_avro().items() if k not in ("chain", "signed_by", "signature")}
    )
    decoded = AuditRecord.from_bytes(old_bytes)
    assert decoded.chain == "main" and decoded == record
