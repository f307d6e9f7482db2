"""Invariant 9 in pure logic: signed links, anchored heads, signed receipts.

A forger here knows every algorithm and may write anything to the topic; they hold neither the
master key (so no worker signing key) nor write access to the anchor store.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.audit import (
    AuditAction,
    AuditChain,
    ChainHead,
    ProblemKind,
    ReceiptInvalid,
    SqliteAnchorStore,
    WorkerSigner,
    by_chain_seq,
    public_keys,
    purged_record,
    record_hash,
    resume_head,
    sign_receipt,
    verify,
    verify_receipt_signature,
    worker_signers,
)
from pipeline.contract import AuditRecord, PurgeReason, SubjectPurged
from pipeline.vault import MasterKey, MasterKeyring

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
MASTER = MasterKey.generate()
SIGNER = WorkerSigner.from_master(MASTER)
KEYS = public_keys({SIGNER.key_id: SIGNER.public_key})


def chain_of(
    n: int, name: str = "join-0", signer: WorkerSigner | None = SIGNER, subject: str = "S-1"
) -> list[AuditRecord]:
    chain = AuditChain(name, signer=signer)
    return [
        chain.append(
            AuditAction.MATCH_DECIDED, subject_id=subject, detail={"i": i}, at=T0 + timedelta(seconds=i)
        )
        for i in range(n)
    ]


def kinds(records: list[AuditRecord], **kw) -> set[ProblemKind]:
    return {p.kind for p in verify(sorted(records, key=by_chain_seq), keys=KEYS, **kw).problems}


def head(records: list[AuditRecord]) -> dict[str, ChainHead]:
    return {records[-1].chain: ChainHead(records[-1].seq, records[-1].hash)}


def test_the_signing_key_follows_the_master_key() -> None:
    assert WorkerSigner.from_master(MASTER).key_id == SIGNER.key_id
    other = MasterKey.generate()
    signers = worker_signers(MasterKeyring(other, (MASTER,)))
    assert [s.key_id for s in signers] == [WorkerSigner.from_master(other).key_id, SIGNER.key_id]


def test_a_signed_anchored_chain_verifies() -> None:
    records = chain_of(5)
    assert all(r.signed_by == SIGNER.key_id and len(r.signature or b"") == 64 for r in records)
    assert kinds(records, expected_heads=head(records)) == set()


def test_a_whole_forged_chain_fails_however_well_hashed() -> None:
    # The forger's chain is hashed correctly, but unsigned or signed by their own key.
    unsigned = chain_of(4, "join-9", signer=None)
    assert verify(unsigned).ok  # a hash chain alone would pass it
    assert kinds(unsigned) == {ProblemKind.UNSIGNED}
    forger = WorkerSigner.from_master(MasterKey.generate())
    assert kinds(chain_of(4, "join-9", signer=forger)) == {ProblemKind.UNKNOWN_KEY}
    # Replacing a real chain with a forged one of the same name: signatures and anchors both say so.
    real = chain_of(6)
    forged = chain_of(6, signer=forger, subject="S-2")
    assert ProblemKind.UNKNOWN_KEY in kinds(forged, expected_heads=head(real))
    assert ProblemKind.BROKEN_LINK in kinds(forged, expected_heads=head(real))
    # A chain the anchors have never heard of.
    assert ProblemKind.UNANCHORED in kinds(real + chain_of(2, "join-7"), expected_heads=head(real))


def test_an_edited_record_fails_even_when_rehashed_and_relinked() -> None:
    records = chain_of(5)
    edited = dataclasses.replace(records[2], detail='{"i":99}')
    edited = dataclasses.replace(edited, hash=record_hash(edited))
    # The tamperer relinks the rest of the chain too; only the signatures give them away.
    tail, prev = [], edited
    for r in records[3:]:
        relinked = dataclasses.replace(r, prev_hash=prev.hash)
        relinked = dataclasses.replace(relinked, hash=record_hash(relinked))
        tail.append(relinked)
        prev = relinked
    assert kinds([*records[:2], edited, *tail]) == {ProblemKind.BAD_SIGNATURE}


def test_inserted_and_removed_records_fail() -> None:
    records = chain_of(5)
    assert ProblemKind.SEQ_GAP in kinds([r for r in records if r.seq != 2])
    inserted = dataclasses.replace(records[2], detail='{"extra":1}')
    assert ProblemKind.OUT_OF_ORDER in kinds([*records[:3], inserted, *records[3:]])


def test_a_truncated_or_wiped_chain_fails_against_its_anchor() -> None:
    records = chain_of(5)
    assert verify(records[:3], keys=KEYS).ok  # a shorter chain is still a valid chain
    assert kinds(records[:3], expected_heads=head(records)) == {ProblemKind.TRUNCATED}
    assert kinds([], expected_heads=head(records)) == {ProblemKind.TRUNCATED}


def test_anchors_only_move_forward_and_keep_every_public_key(tmp_path) -> None:
    store = SqliteAnchorStore(tmp_path / "vault" / "audit-anchors.db")
    assert (store.path.stat().st_mode & 0o777) == 0o600
    store.advance("join-0", ChainHead(4, "a" * 64))
    store.advance("join-0", ChainHead(2, "b" * 64))  # a late acknowledgement of an older record
    assert store.heads() == {"join-0": ChainHead(4, "a" * 64)}
    store.add_key(SIGNER.key_id, SIGNER.public_key)
    store.add_key(SIGNER.key_id, SIGNER.public_key)
    assert list(public_keys(store.keys())) == [SIGNER.key_id]
    with pytest.raises(ValueError, match="another id"):
        public_keys({"ed25519:0000000000000000": SIGNER.public_key})
    # A second process sees the same anchors.
    assert SqliteAnchorStore(store.path).head("join-0") == ChainHead(4, "a" * 64)


def test_a_chain_resumes_from_the_anchor_when_its_saved_head_is_behind() -> None:
    records = chain_of(5)
    saved, anchored = ChainHead(2, records[2].hash), ChainHead(4, records[4].hash)
    assert resume_head(saved, anchored) == anchored
    assert resume_head(anchored, saved) == anchored and resume_head(None, None) is None
    resumed = AuditChain("join-0", head=resume_head(saved, anchored), signer=SIGNER)
    more = [resumed.append(AuditAction.PURGED, subject_id="S-1")]
    assert kinds(records + more, expected_heads=head(more)) == set()


def receipt() -> SubjectPurged:
    return SubjectPurged("purge-1", "S-1", PurgeReason.WITHDRAWN, ["assets/a.jpg"], 2, True, T0)


def test_a_signed_receipt_verifies_and_a_changed_one_does_not() -> None:
    signed = sign_receipt(receipt(), SIGNER)
    assert verify_receipt_signature(signed.to_bytes(), KEYS) == signed
    with pytest.raises(ReceiptInvalid, match="does not verify"):
        verify_receipt_signature(dataclasses.replace(signed, asset_ids=[]).to_bytes(), KEYS)
    with pytest.raises(ReceiptInvalid, match="not signed"):
        verify_receipt_signature(receipt().to_bytes(), KEYS)
    forger = WorkerSigner.from_master(MasterKey.generate())
    with pytest.raises(ReceiptInvalid, match="no worker key"):
        verify_receipt_signature(sign_receipt(receipt(), forger).to_bytes(), KEYS)


def test_a_receipt_must_match_its_purged_audit_record() -> None:
    r = receipt()
    chain = AuditChain("join-0", signer=SIGNER)
    detail = {"purge_id": r.event_id, "reason": "WITHDRAWN", "asset_ids": ["assets/a.jpg"]}
    good = chain.append(
        AuditAction.PURGED, subject_id="S-1", detail=detail | {"faceprints_deleted": 2, "key_destroyed": True}
    )
    assert purged_record(r, [good]) == good
    short = chain.append(
        AuditAction.PURGED, subject_id="S-1", detail=detail | {"faceprints_deleted": 1, "key_destroyed": True}
    )
    with pytest.raises(ReceiptInvalid, match="faceprints_deleted"):
        purged_record(r, [short])
    with pytest.raises(ReceiptInvalid, match="no PURGED audit record"):
        purged_record(dataclasses.replace(r, event_id="purge-2"), [good])
