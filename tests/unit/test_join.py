"""The consent join's logic, event by event, on a real vault and an in-memory Qdrant.

The join's tables are plain dicts here (a faust Table is a MutableMapping too), which lets these
tests check what the join writes to them: one small entry per (subject, asset), however many
assets name the subject.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.audit import AuditAction, AuditChain
from pipeline.contract import (
    ConsentAction,
    ConsentChange,
    FaceStatus,
    LegalBasis,
    ObjectRef,
    PurgeReason,
    Record,
    SubjectEnrollment,
    SubjectPurged,
    utcnow,
)
from pipeline.contract.internal import ErasureRequest, MatchCandidate, RevocationApplied, SubjectDecision
from pipeline.gallery.edge import EdgeGallery
from pipeline.join.ledger import AssetLedger
from pipeline.join.purge import RetryPolicy
from pipeline.join.service import ConsentJoin, Effects
from pipeline.join.subject import SubjectRecord
from pipeline.settings import Settings
from pipeline.vault import FaceprintVault, MasterKey, MasterKeyring

SUBJECT = "subj-0001"
# A stand-in for a faceprint: the join only stores and indexes it, it never looks at its values.
REFERENCE_VECTOR = np.full(128, 0.09, dtype=np.float32)
FAST_RETRY = RetryPolicy(first_delay_s=0.001, max_delay_s=0.01)


class CountingTable(dict[str, Any]):
    """A dict that records the size of every value written, as a changelog would carry it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, int]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes.append((key, len(json.dumps(value))))
        super().__setitem__(key, value)


class Harness:
    """Drives the join as the faust agent does: load the subject, handle one event, store it."""

    def __init__(self, join: ConsentJoin) -> None:
        self.join = join
        self.subjects = CountingTable()
        self.assets = CountingTable()
        self.sent: list[tuple[str, str, Record]] = []
        self.audit: list[tuple[AuditAction, dict[str, Any]]] = []
        self.removed: list[str] = []
        self.chain = AuditChain("join-0")

    async def _send(self, topic: str, key: str, record: Record) -> None:
        self.sent.append((topic, key, record))

    async def _audit(self, action: AuditAction, **fields: Any) -> None:
        self.chain.append(action, **fields)  # the real chain: its biometric guard runs
        self.audit.append((action, fields))

    def handle(self, message: Record, subject: str = SUBJECT) -> list[Record]:
        """Handle one event; returns what it sent. An exception propagates as from a dying
        worker: only what the join checkpointed is saved."""
        saved = self.subjects.get(subject)
        ledger = AssetLedger(self.assets, subject)
        state = SubjectRecord.from_dict(saved, ledger) if saved else SubjectRecord(subject, ledger)
        before = len(self.sent)

        async def checkpoint() -> None:
            self.subjects[subject] = state.to_dict()

        fx = Effects(send=self._send, audit=self._audit, now=utcnow(), checkpoint=checkpoint)
        asyncio.run(self.join.handle(state, message, fx))
        self.subjects[subject] = state.to_dict()
        return [record for _, _, record in self.sent[before:]]

    def actions(self) -> list[AuditAction]:
        return [action for action, _ in self.audit]


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[FaceprintVault]:
    with FaceprintVault.open(tmp_path / "vault", MasterKeyring(MasterKey.generate())) as v:
        yield v


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[EdgeGallery]:
    g = EdgeGallery.open(None, tmp_path, "unit", 0.6)
    yield g
    g.close()


@pytest.fixture
def harness(vault: FaceprintVault, gallery: EdgeGallery) -> Harness:
    removed: list[str] = []

    async def reference_faces(bucket: str, key: str) -> tuple[list[np.ndarray], str]:
        return [REFERENCE_VECTOR], "test-model"

    async def remove_object(bucket: str, key: str) -> None:
        removed.append(f"{bucket}/{key}")

    h = Harness(ConsentJoin(Settings(), vault, gallery, reference_faces, remove_object, retry=FAST_RETRY))
    h.removed = removed
    return h


def consent(action: ConsentAction, *, until: timedelta | None = None) -> ConsentChange:
    now = utcnow()
    return ConsentChange(
        event_id=uuid.uuid4().hex,
        subject_id=SUBJECT,
        action=action,
        legal_basis=LegalBasis.EXPLICIT_CONSENT,
        scopes=["editorial", "archive"] if action != ConsentAction.WITHDRAWN else [],
        valid_from=now - timedelta(days=1),
        valid_until=now + until if until else None,
        evidence_uri=f"s3://legal/quitclaims/{SUBJECT}.pdf",
        recorded_at=now,
        recorded_by="dpo@test",
    )


def enrollment() -> SubjectEnrollment:
    return SubjectEnrollment(
        uuid.uuid4().hex, SUBJECT, [ObjectRef("enrollments", f"{SUBJECT}/a.jpg")], utcnow(), "dpo@test"
    )


def candidate(asset: str) -> MatchCandidate:
    return MatchCandidate(SUBJECT, asset, f"etag-{asset}", [f"face-{asset}"], 0.35)


def enrolled(h: Harness, assets: int) -> list[str]:
    """A consenting, enrolled subject named on ``assets`` assets."""
    h.handle(consent(ConsentAction.GRANTED))
    h.handle(enrollment())
    names = [f"photos/{i:05d}.jpg" for i in range(assets)]
    for asset in names:
        (decision,) = h.handle(candidate(asset))
        assert isinstance(decision, SubjectDecision) and decision.status == FaceStatus.GREEN
    return names


def revocations(sent: list[Record]) -> list[SubjectDecision]:
    return [r for r in sent if isinstance(r, SubjectDecision) and r.purge_id]


def test_withdrawal_revokes_every_named_asset_and_proves_it_after_the_last_acknowledgement(
    harness: Harness, vault: FaceprintVault, gallery: EdgeGallery
) -> None:
    assets = enrolled(harness, 5)
    assert asyncio.run(gallery.count(SUBJECT)) == 1

    sent = harness.handle(consent(ConsentAction.WITHDRAWN))
    revoked = revocations(sent)
    assert sorted(r.asset_id for r in revoked) == assets
    assert all(r.status == FaceStatus.RED and not r.scopes for r in revoked)
    assert not any(isinstance(r, SubjectPurged) for r in sent), "proof before the revocations landed"
    assert asyncio.run(gallery.count(SUBJECT)) == 0
    assert not vault.has_subject(SUBJECT) and vault.faceprints(SUBJECT) == []  # key and ciphertexts gone
    assert harness.removed == [f"enrollments/{SUBJECT}/a.jpg"]

    purge_id = revoked[0].purge_id
    assert purge_id is not None
    for asset in assets[:-1]:
        assert not harness.handle(RevocationApplied(SUBJECT, asset, purge_id))
    # A redelivered acknowledgement does not count twice.
    assert not harness.handle(RevocationApplied(SUBJECT, assets[0], purge_id))
    (purged,) = [
        r
        for r in harness.handle(RevocationApplied(SUBJECT, assets[-1], purge_id))
        if isinstance(r, SubjectPurged)
    ]
    assert purged.event_id == purge_id and purged.reason == PurgeReason.WITHDRAWN
    assert purged.asset_ids == assets and purged.key_destroyed and purged.faceprints_deleted == 1
    assert harness.actions()[-1] == AuditAction.PURGED
    # Nothing about the subject's assets is left in the join's tables, and a late duplicate is a no-op.
    assert not [k for k in harness.assets if k.startswith(SUBJECT)]
    assert not harness.handle(RevocationApplied(SUBJECT, assets[-1], purge_id))


def test_a_match_after_the_withdrawal_is_red_and_not_part_of_the_purge(harness: Harness) -> None:
    enrolled(harness, 2)
    purge_id = revocations(harness.handle(consent(ConsentAction.WITHDRAWN)))[0].purge_id
    (late,) = harness.handle(candidate("photos/late.jpg"))
    assert isinstance(late, SubjectDecision) and late.status == FaceStatus.RED and late.purge_id is None
    assert purge_id is not None
    harness.handle(RevocationApplied(SUBJECT, "photos/00000.jpg", purge_id))
    (purged,) = [
        r
        for r in harness.handle(RevocationApplied(SUBJECT, "photos/00001.jpg", purge_id))
        if isinstance(r, SubjectPurged)
    ]
    assert "photos/late.jpg" not in purged.asset_ids


def test_a_subject_named_nowhere_is_purged_at_once(harness: Harness) -> None:
    enrolled(harness, 0)
    sent = harness.handle(consent(ConsentAction.WITHDRAWN))
    (purged,) = [r for r in sent if isinstance(r, SubjectPurged)]
    assert purged.asset_ids == [] and purged.key_destroyed


def test_an_erasure_during_a_pending_withdrawal_joins_it_one_proof(harness: Harness) -> None:
    assets = enrolled(harness, 3)
    first = revocations(harness.handle(consent(ConsentAction.WITHDRAWN)))
    purge_id = first[0].purge_id
    assert purge_id is not None
    request = ErasureRequest(uuid.uuid4().hex, SUBJECT, PurgeReason.ERASURE_REQUEST, utcnow(), "dpo@test")
    again = harness.handle(request)
    assert not revocations(again), "nothing new names the subject: nothing more to revoke"
    proofs = []
    for asset in assets:
        proofs += [
            r
            for r in harness.handle(RevocationApplied(SUBJECT, asset, purge_id))
            if isinstance(r, SubjectPurged)
        ]
    assert [p.event_id for p in proofs] == [purge_id]
    assert proofs[0].asset_ids == assets


def test_each_match_writes_one_small_entry_however_many_assets_name_the_subject(harness: Harness) -> None:
    """The scalability property: no table value grows with the number of assets (no O(n²) changelog)."""
    enrolled(harness, 10)
    harness.subjects.writes.clear()
    harness.assets.writes.clear()
    enrolled_more = [f"more/{i:05d}.jpg" for i in range(2000)]
    for asset in enrolled_more:
        harness.handle(candidate(asset))
    subject_sizes = [size for _, size in harness.subjects.writes]
    asset_writes = harness.assets.writes
    assert len(asset_writes) == len(enrolled_more)
    assert max(size for _, size in asset_writes) < 100
    assert max(subject_sizes) - min(subject_sizes) == 0, "the subject's entry grew with its assets"

    # A purge of 2,010 assets: each acknowledgement is one entry too.
    purge_id = revocations(harness.handle(consent(ConsentAction.WITHDRAWN)))[0].purge_id
    assert purge_id is not None
    harness.subjects.writes.clear()
    harness.assets.writes.clear()
    for asset in enrolled_more[:500]:
        harness.handle(RevocationApplied(SUBJECT, asset, purge_id))
    assert len(harness.assets.writes) == 500
    assert max(size for _, size in harness.subjects.writes) < 2000


def test_an_enrollment_before_any_consent_is_held_and_computed_only_once_consent_arrives(
    harness: Harness, gallery: EdgeGallery
) -> None:
    harness.handle(enrollment())
    assert harness.actions() == [AuditAction.ENROLLMENT_DEFERRED]
    assert asyncio.run(gallery.count(SUBJECT)) == 0
    harness.handle(consent(ConsentAction.GRANTED))
    assert AuditAction.ENROLLED in harness.actions()
    assert asyncio.run(gallery.count(SUBJECT)) == 1


def test_an_update_that_narrows_scopes_re_decides_every_named_asset(harness: Harness) -> None:
    assets = enrolled(harness, 3)
    update = dataclasses.replace(consent(ConsentAction.UPDATED), scopes=["archive"])
    sent = harness.handle(update)
    decisions = [r for r in sent if isinstance(r, SubjectDecision)]
    assert sorted(d.asset_id for d in decisions) == assets
    assert all(d.scopes == ["archive"] and d.purge_id is None for d in decisions)
