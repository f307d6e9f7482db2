"""Fail closed (design invariant 7): once a withdrawal, expiry or erasure is read, the subject is
RED for every later decision, whatever fails afterwards, and every purge step is retried until
done, never dead-lettered. Faults are injected into the real vault and in-memory Qdrant."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_join import (
    FAST_RETRY,
    SUBJECT,
    Harness,
    candidate,
    consent,
    enrolled,
    enrollment,
    gallery,
    harness,
    revocations,
    vault,
)

from pipeline import metrics
from pipeline.audit import AuditAction
from pipeline.contract import (
    ConsentAction,
    FaceStatus,
    ObjectRef,
    PurgeReason,
    SubjectEnrollment,
    SubjectPurged,
    utcnow,
)
from pipeline.contract.ids import InvalidSubjectId
from pipeline.contract.internal import ErasureRequest, RevocationApplied, SubjectDecision
from pipeline.gallery import GalleryUnavailable
from pipeline.gallery.edge import EdgeGallery
from pipeline.join.service import ConsentJoin
from pipeline.objects import ObjectAccessDenied
from pipeline.settings import Settings
from pipeline.vault import FaceprintVault

__all__ = ["gallery", "harness", "vault"]  # fixtures, used by name

GOLDEN = Path(__file__).resolve().parents[1] / "models" / "golden" / "face_recognition__obama.json"


class WorkerDied(BaseException):
    """Stands for kill -9 in the middle of an event: nothing after it runs, nothing is caught."""


class FlakyGallery:
    """The real gallery, whose deletes fail ``failures`` times first (a Qdrant outage or timeout),
    or kill the worker once (``die``)."""

    def __init__(self, inner: EdgeGallery, failures: int = 0, die: bool = False) -> None:
        self.inner = inner
        self.failures = failures
        self.die = die

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def delete_subject(self, subject_id: str) -> int:
        if self.die:
            self.die = False
            raise WorkerDied
        if self.failures:
            self.failures -= 1
            raise GalleryUnavailable("qdrant delete failed: timed out")
        return await self.inner.delete_subject(subject_id)


def make_harness(vault: FaceprintVault, gallery: Any, removed: list[str], **faults: Any) -> Harness:
    denied: set[str] = faults.get("denied", set())

    async def reference_faces(bucket: str, key: str) -> tuple[list[np.ndarray], str]:
        return [np.full(128, 0.09, dtype=np.float32)], "test-model"

    async def remove_object(bucket: str, key: str) -> None:
        if f"{bucket}/{key}" in denied:
            raise ObjectAccessDenied(f"s3://{bucket}/{key}: AccessDenied (delete): check the policy")
        removed.append(f"{bucket}/{key}")

    h = Harness(ConsentJoin(Settings(), vault, gallery, reference_faces, remove_object, retry=FAST_RETRY))
    h.removed = removed
    return h


def failures(step: str) -> float:
    return metrics.REGISTRY.get_sample_value("facegate_purge_step_failures_total", {"step": step}) or 0.0


def acknowledge_all(h: Harness, sent: list[Any]) -> SubjectPurged:
    proofs: list[SubjectPurged] = [r for r in sent if isinstance(r, SubjectPurged)]
    for r in revocations(sent):
        assert r.purge_id is not None
        proofs += [
            p
            for p in h.handle(RevocationApplied(SUBJECT, r.asset_id, r.purge_id))
            if isinstance(p, SubjectPurged)
        ]
    (proof,) = proofs
    return proof


def identity_token() -> str:
    """An OIDC identity token as a login service issues it: base64url JSON and an RS512 signature."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    claims = {
        "iss": "https://login.example.com/realms/newsroom",
        "sub": "f3a9c2de-8d0b-4c51-9a7e-2b6f1d0c9e44",
        "aud": "facegate-console",
        "iat": 1767225600,
        "exp": 1767229200,
        "groups": ["privacy-officers", "legal", "newsroom-editors"] * 4,
        "email": "dpo@example.com",
        "nonce": secrets.token_hex(32),
    }
    header = {"alg": "RS512", "typ": "JWT", "kid": "2026-01"}
    signature = secrets.token_bytes(512)
    return ".".join([part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(signature)])


def presigned_url() -> str:
    return (
        "https://storage.googleapis.com/legal/withdrawals/S-1.pdf?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Credential=legal%40newsroom.iam.gserviceaccount.com%2F20260101%2Fauto%2Fstorage"
        f"%2Fgoog4_request&X-Goog-Date=20260101T000000Z&X-Goog-Expires=900&X-Goog-SignedHeaders=host"
        f"&X-Goog-Signature={secrets.token_bytes(256).hex()}"
    )


# --- the audit guard's false positives no longer lose a withdrawal -----------------------------


def test_a_withdrawal_recorded_by_an_identity_token_purges_and_is_audited_as_recorded(
    harness: Harness,
) -> None:
    assets = enrolled(harness, 2)
    token, url = identity_token(), presigned_url()
    withdrawal = dataclasses.replace(consent(ConsentAction.WITHDRAWN), recorded_by=token, evidence_uri=url)
    proof = acknowledge_all(harness, harness.handle(withdrawal))
    assert proof.asset_ids == assets and proof.key_destroyed
    (changed,) = [f for a, f in harness.audit if a == AuditAction.CONSENT_CHANGED and "WITHDRAWN" in str(f)]
    assert changed["detail"]["recorded_by"] == token and changed["detail"]["evidence_uri"] == url
    (late,) = harness.handle(candidate("photos/late.jpg"))
    assert isinstance(late, SubjectDecision) and late.status == FaceStatus.RED


def test_free_text_holding_an_embedding_is_withheld_from_the_audit_not_refused(harness: Harness) -> None:
    enrolled(harness, 1)
    embedding = np.asarray(json.loads(GOLDEN.read_text())["faces"][0]["embedding"], dtype=np.float32)
    smuggled = "officer;" + base64.b64encode(embedding.tobytes()).decode()
    sent = harness.handle(dataclasses.replace(consent(ConsentAction.WITHDRAWN), recorded_by=smuggled))
    acknowledge_all(harness, sent)
    (changed,) = [f for a, f in harness.audit if a == AuditAction.CONSENT_CHANGED and "WITHDRAWN" in str(f)]
    withheld = changed["detail"]["recorded_by"]
    assert withheld["withheld"] == "refused by the biometric guard" and withheld["chars"] == len(smuggled)
    assert smuggled not in json.dumps([f for _, f in harness.audit])


# --- faults after the withdrawal was read ------------------------------------------------------


def test_a_gallery_outage_after_the_key_was_destroyed_is_retried_until_the_purge_is_done(
    vault: FaceprintVault, gallery: EdgeGallery
) -> None:
    flaky = FlakyGallery(gallery)
    h = make_harness(vault, flaky, [])
    assets = enrolled(h, 3)
    before = failures("gallery_delete")
    flaky.failures = 5
    proof = acknowledge_all(h, h.handle(consent(ConsentAction.WITHDRAWN)))
    assert failures("gallery_delete") == before + 5
    assert proof.asset_ids == assets and proof.key_destroyed
    assert asyncio.run(gallery.count(SUBJECT)) == 0 and not vault.has_subject(SUBJECT)


def test_a_worker_dying_mid_purge_leaves_the_subject_red_and_the_redelivery_finishes_it(
    vault: FaceprintVault, gallery: EdgeGallery
) -> None:
    flaky = FlakyGallery(gallery)
    h = make_harness(vault, flaky, [])
    assets = enrolled(h, 2)
    withdrawal = consent(ConsentAction.WITHDRAWN)
    flaky.die = True
    with pytest.raises(WorkerDied):
        h.handle(withdrawal)
    saved = h.subjects[SUBJECT]
    assert saved["consent"]["withdrawn"] and saved["purge"] and not saved["purge"]["effects_done"]
    assert not vault.has_subject(SUBJECT), "the key went before the gallery step died"
    # The withdrawal is redelivered (its offset was never committed): the purge resumes.
    sent = h.handle(withdrawal)
    assert sorted(r.asset_id for r in revocations(sent)) == assets
    assert asyncio.run(gallery.count(SUBJECT)) == 0
    proof = acknowledge_all(h, sent)
    assert proof.asset_ids == assets and proof.key_destroyed and proof.faceprints_deleted == 1
    assert [a for a in h.actions() if a == AuditAction.PURGED] == [AuditAction.PURGED]


def test_any_event_after_an_interrupted_purge_first_finishes_it_and_is_decided_red(
    vault: FaceprintVault, gallery: EdgeGallery
) -> None:
    flaky = FlakyGallery(gallery)
    h = make_harness(vault, flaky, [])
    enrolled(h, 1)
    flaky.die = True
    with pytest.raises(WorkerDied):
        h.handle(consent(ConsentAction.WITHDRAWN))
    sent = h.handle(candidate("photos/next.jpg"))  # as if the withdrawal had been skipped
    assert revocations(sent), "the purge's revocations go out before the candidate is decided"
    (decision,) = [r for r in sent if isinstance(r, SubjectDecision) and r.purge_id is None]
    assert decision.status == FaceStatus.RED and decision.reason == "withdrawn"


def test_an_erasure_is_red_from_the_moment_it_is_read(vault: FaceprintVault, gallery: EdgeGallery) -> None:
    flaky = FlakyGallery(gallery)
    h = make_harness(vault, flaky, [])
    enrolled(h, 1)
    flaky.die = True
    request = ErasureRequest(uuid.uuid4().hex, SUBJECT, PurgeReason.ERASURE_REQUEST, utcnow(), "dpo@test")
    with pytest.raises(WorkerDied):
        h.handle(request)
    assert h.subjects[SUBJECT]["consent"] is None
    (decision,) = [r for r in h.handle(candidate("photos/x.jpg")) if isinstance(r, SubjectDecision)][-1:]
    assert decision.status == FaceStatus.RED


# --- purge scope -------------------------------------------------------------------------------


def test_references_outside_the_subjects_prefix_are_refused_never_read_never_deleted(
    vault: FaceprintVault, gallery: EdgeGallery
) -> None:
    removed: list[str] = []
    h = make_harness(vault, gallery, removed)
    h.handle(consent(ConsentAction.GRANTED))
    outside = [
        ObjectRef("assets", f"{SUBJECT}/dam-original.jpg"),  # a DAM original
        ObjectRef("enrollments", "S-other/front.jpg"),  # another subject's photo
        ObjectRef("enrollments", f"{SUBJECT}/../S-other/front.jpg"),
        ObjectRef("enrollments", f"{SUBJECT}x/front.jpg"),
    ]
    h.handle(SubjectEnrollment(uuid.uuid4().hex, SUBJECT, outside, utcnow(), "dpo@test"))
    (fields,) = [f for a, f in h.audit if a == AuditAction.ENROLLMENT_REFUSED]
    reasons = [r["reason"] for r in fields["detail"]["refused"]]
    assert len(reasons) == 4 and "not the enrollment bucket" in reasons[0], reasons
    h.handle(enrollment())
    acknowledge_all(h, h.handle(consent(ConsentAction.WITHDRAWN)))
    assert removed == [f"enrollments/{SUBJECT}/a.jpg"]


def test_access_denied_on_a_reference_is_kept_and_reported_not_retried_forever(
    vault: FaceprintVault, gallery: EdgeGallery
) -> None:
    h = make_harness(vault, gallery, [], denied={f"enrollments/{SUBJECT}/a.jpg"})
    enrolled(h, 1)
    kept = _kept("access_denied")
    proof = acknowledge_all(h, h.handle(consent(ConsentAction.WITHDRAWN)))
    assert proof.key_destroyed  # the photo's key is gone with the faceprints
    ((_, fields),) = [(a, f) for a, f in h.audit if a == AuditAction.KEY_DESTROYED]
    (entry,) = fields["detail"]["reference_photos_kept"]
    assert entry["reference"] == f"enrollments/{SUBJECT}/a.jpg" and "AccessDenied" in entry["reason"]
    assert _kept("access_denied") == kept + 1


def _kept(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value("facegate_purge_references_kept_total", {"reason": reason})
    return value or 0.0


# --- subject ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["\x00audit-chain:0", "a\x00named\x00photos/1.jpg", "", "a/b", "x" * 201])
def test_a_subject_id_the_rule_refuses_never_reaches_the_tables(harness: Harness, subject: str) -> None:
    with pytest.raises(InvalidSubjectId):
        harness.handle(candidate("photos/1.jpg"), subject=subject)
    assert subject not in harness.subjects
