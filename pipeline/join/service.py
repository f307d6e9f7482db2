"""The consent join: every event about one subject, in order, in one place.

Its input stream (partitioned by subject_id) merges consent changes, enrollments, match
candidates from the recognize stage, erasure requests and revocation acknowledgements. Because
one partition is one sequence, "no tag after withdrawal" needs no locks: a candidate processed
after the withdrawal is decided RED, and every asset named before it is revoked.

A purge runs in two steps. Start: the data key is destroyed (crypto-shredding the vault copy),
the gallery points deleted, and each asset that named the subject gets a revocation. Finish:
when the assembler has re-emitted every one of those assets without the subject, the
SubjectPurged record (the proof) and its audit receipt are written. So by the time a
SubjectPurged is published, no AssetFaces naming the subject can follow it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from .. import metrics
from ..audit import AuditAction
from ..consent import policy
from ..contract import (
    ConsentAction,
    ConsentChange,
    FaceStatus,
    PurgeReason,
    Record,
    SubjectEnrollment,
    SubjectPurged,
)
from ..contract.internal import (
    ConsentReview,
    ErasureRequest,
    GalleryAction,
    GalleryChange,
    MatchCandidate,
    RevocationApplied,
    SubjectDecision,
)
from ..errors import PermanentError
from ..gallery import GalleryIndex
from ..recognize.retry import until_done
from ..settings import Settings
from ..vault import FaceprintVault, UndecryptableError
from .subject import PendingPurge, SubjectRecord

log = logging.getLogger(__name__)

ANY_VERSION = "*"
_PURGE_REASON_TEXT = {
    PurgeReason.WITHDRAWN: policy.REASON_WITHDRAWN,
    PurgeReason.EXPIRED: policy.REASON_EXPIRED,
    PurgeReason.ERASURE_REQUEST: "erased",
}


class InvalidConsent(PermanentError):
    """A consent change the policy rejects; dead-lettered with the reasons."""


class RemoveObject(Protocol):
    async def __call__(self, bucket: str, key: str) -> None: ...


class ReferenceFaces(Protocol):
    """Embeddings of the faces in one reference photo, and the model version that computed them."""

    async def __call__(self, bucket: str, key: str) -> tuple[list[np.ndarray], str]: ...


@dataclass
class Effects:
    """What the agent gives the join for one event: where output goes, and the clock."""

    send: Callable[[str, str, Record], Awaitable[None]]  # topic, key, record
    audit: Callable[..., Awaitable[None]]  # (action, subject_id=, asset_id=, detail=)
    now: datetime


class ConsentJoin:
    def __init__(
        self,
        settings: Settings,
        vault: FaceprintVault,
        gallery: GalleryIndex,
        reference_faces: ReferenceFaces,
        remove_object: RemoveObject,
    ) -> None:
        self.settings = settings
        self.topics = settings.kafka
        self.vault = vault
        self.gallery = gallery
        self.reference_faces = reference_faces
        self.remove_object = remove_object
        self.amber_window = timedelta(days=settings.privacy.amber_window_days)

    def decide(self, state: SubjectRecord, now: datetime) -> policy.Decision:
        return policy.decide(state.consent, now, self.amber_window, self.settings.privacy.standard_scopes)

    async def handle(self, state: SubjectRecord, message: Record, fx: Effects) -> None:
        match message:
            case ConsentChange():
                await self.on_consent(state, message, fx)
            case SubjectEnrollment():
                await self.on_enrollment(state, message, fx)
            case MatchCandidate():
                await self.on_candidate(state, message, fx)
            case ErasureRequest():
                await self.on_erasure(state, message, fx)
            case RevocationApplied():
                await self.on_revocation_applied(state, message, fx)
            case ConsentReview():
                await self.on_review(state, message, fx)
            case _:
                raise PermanentError(f"{type(message).__name__} does not belong on the join's input")

    # --- consent ------------------------------------------------------------------------------

    async def on_consent(self, state: SubjectRecord, change: ConsentChange, fx: Effects) -> None:
        reasons = policy.validate(change, state.consent)
        if reasons:
            await fx.audit(
                AuditAction.CONSENT_REJECTED,
                subject_id=change.subject_id,
                detail={"event_id": change.event_id, "reasons": reasons},
            )
            raise InvalidConsent("; ".join(reasons))
        already = state.consent is not None and change.event_id in state.consent.history
        state.consent = policy.apply(state.consent, change)
        if already:
            return
        about = {"subject_id": change.subject_id, "stage": "join"}
        log.info("consent %s applied", change.action.value, extra=about)
        await fx.audit(
            AuditAction.CONSENT_CHANGED,
            subject_id=change.subject_id,
            detail={
                "event_id": change.event_id,
                "action": change.action.value,
                "legal_basis": change.legal_basis.value,
                "scopes": list(change.scopes),
                "valid_from": change.valid_from.isoformat(),
                "valid_until": change.valid_until.isoformat() if change.valid_until else None,
                "evidence_uri": change.evidence_uri,
                "recorded_by": change.recorded_by,
            },
        )
        if change.action == ConsentAction.WITHDRAWN:
            await self.start_purge(state, PurgeReason.WITHDRAWN, change.event_id, fx)
        else:
            # Scopes or validity changed: bring the tags that name the subject up to date.
            await self.redecide_named(state, fx)
        deferred, state.deferred = state.deferred, []
        for encoded in deferred:
            await self.on_enrollment(state, SubjectEnrollment.from_bytes(bytes.fromhex(encoded)), fx)

    async def redecide_named(self, state: SubjectRecord, fx: Effects) -> None:
        decision = self.decide(state, fx.now)
        if not decision.may_name:
            # e.g. an UPDATED that moved valid_until into the past: the same as an expiry.
            cause = f"expired:{state.consent.changed_at.isoformat() if state.consent else ''}"
            await self.start_purge(state, PurgeReason.EXPIRED, cause, fx)
            return
        for asset_id, etag in state.assets.named().items():
            await fx.send(
                self.topics.topic_asset_events,
                asset_id,
                SubjectDecision(
                    asset_id, etag, state.subject_id, decision.status, decision.reason, list(decision.scopes)
                ),
            )

    async def on_review(self, state: SubjectRecord, review: ConsentReview, fx: Effects) -> None:
        """The expiry timer saw the consent enter the AMBER window: tags that name them go AMBER."""
        if state.consent is None or state.consent.expiry_warned_at is not None:
            return
        state.consent = policy.mark_expiry_warned(state.consent, fx.now)
        await fx.audit(
            AuditAction.EXPIRY_WARNED, subject_id=state.subject_id, detail={"reason": review.reason}
        )
        await self.redecide_named(state, fx)

    # --- enrollment ---------------------------------------------------------------------------

    async def on_enrollment(self, state: SubjectRecord, enrollment: SubjectEnrollment, fx: Effects) -> None:
        subject = enrollment.subject_id
        if state.consent is None and not state.purged:
            # The consent may still be on its way (no order between topics): hold the request,
            # compute nothing, and decide when the consent arrives.
            state.deferred.append(enrollment.to_bytes().hex())
            log.info("enrollment held for its consent", extra={"subject_id": subject, "stage": "enroll"})
            await fx.audit(
                AuditAction.ENROLLMENT_DEFERRED,
                subject_id=subject,
                detail={"event_id": enrollment.event_id, "reason": "no consent received yet"},
            )
            return
        decision = self.decide(state, fx.now)
        if not decision.may_name:
            # Art. 9: no faceprint is computed and kept without a valid basis.
            await fx.audit(
                AuditAction.ENROLLMENT_REFUSED,
                subject_id=subject,
                detail={"event_id": enrollment.event_id, "reason": decision.reason},
            )
            return
        model_version = ""
        stored, refused = 0, []
        for ref in enrollment.references:
            reference = f"{ref.bucket}/{ref.object_key}"
            try:
                embeddings, model_version = await self.reference_faces(ref.bucket, ref.object_key)
            except PermanentError as exc:
                refused.append({"reference": reference, "reason": f"{type(exc).__name__}: {exc}"})
                continue
            if len(embeddings) != 1:
                refused.append(
                    {
                        "reference": reference,
                        "reason": "no face" if not embeddings else f"{len(embeddings)} faces",
                    }
                )
                continue
            await asyncio.to_thread(
                self.vault.store, subject, embeddings[0], reference=reference, model_version=model_version
            )
            stored += 1
        if stored:
            faceprints = await asyncio.to_thread(self.vault.faceprints, subject, model_version=model_version)
            state.faceprints = await self.gallery.upsert(
                subject, [(f.record_id, f.vector) for f in faceprints], model_version
            )
            await fx.send(
                self.topics.topic_gallery,
                subject,
                GalleryChange(subject, GalleryAction.UPSERT, state.faceprints, fx.now),
            )
        action = AuditAction.ENROLLED if stored else AuditAction.ENROLLMENT_REFUSED
        log.info(
            "enrollment: %d of %d reference(s) stored",
            stored,
            len(enrollment.references),
            extra={"subject_id": subject, "stage": "enroll"},
        )
        await fx.audit(
            action,
            subject_id=subject,
            detail={
                "event_id": enrollment.event_id,
                "references": len(enrollment.references),
                "stored": stored,
                "refused": refused,
                "faceprints": state.faceprints,
                "model_version": model_version,
            },
        )
        metrics.ASSETS_PROCESSED.labels(stage="enroll", outcome="ok" if stored else "skipped").inc()

    # --- match decisions ----------------------------------------------------------------------

    async def on_candidate(self, state: SubjectRecord, candidate: MatchCandidate, fx: Effects) -> None:
        decision = self.decide(state, fx.now)
        if decision.may_name:
            state.assets.name(candidate.asset_id, candidate.etag)
        else:
            state.assets.unname(candidate.asset_id)
        await fx.send(
            self.topics.topic_asset_events,
            candidate.asset_id,
            SubjectDecision(
                candidate.asset_id,
                candidate.etag,
                candidate.subject_id,
                decision.status,
                decision.reason,
                list(decision.scopes),
            ),
        )
        await fx.audit(
            AuditAction.MATCH_DECIDED,
            subject_id=candidate.subject_id,
            asset_id=candidate.asset_id,
            detail={
                "etag": candidate.etag,
                "faces": len(candidate.face_ids),
                "similarity": round(float(candidate.similarity), 4),
                "status": decision.status.value,
                "reason": decision.reason,
            },
        )
        metrics.FACES_PROCESSED.labels(stage="join", outcome=decision.status.value.lower()).inc(
            len(candidate.face_ids)
        )

    # --- purges -------------------------------------------------------------------------------

    async def on_erasure(self, state: SubjectRecord, request: ErasureRequest, fx: Effects) -> None:
        if request.reason == PurgeReason.EXPIRED:
            decision = self.decide(state, fx.now)
            if decision.status != FaceStatus.RED or state.consent is None or state.consent.purged_at:
                return  # a stale timer tick: renewed, or already purged
        else:
            await fx.audit(
                AuditAction.ERASURE_REQUESTED,
                subject_id=state.subject_id,
                detail={
                    "event_id": request.event_id,
                    "reason": request.reason.value,
                    "by": request.requested_by,
                },
            )
            if request.reason == PurgeReason.ERASURE_REQUEST:
                # Erasure ends every basis for processing: nothing may name them afterwards.
                state.consent = None
        await self.start_purge(state, request.reason, request.event_id, fx)

    async def start_purge(self, state: SubjectRecord, reason: PurgeReason, cause: str, fx: Effects) -> None:
        purge_id = _purge_id(state.subject_id, cause)
        if purge_id in state.purged or (state.purge and state.purge.purge_id == purge_id):
            return  # the same event redelivered
        if state.purge is not None:
            purge_id = state.purge.purge_id
        subject = state.subject_id
        references = await self._references(subject)
        receipt = await asyncio.to_thread(self.vault.destroy_subject, subject)
        for reference in references:
            # The reference photos are the subject's personal data too: they go with the faceprints.
            await until_done(functools.partial(self._remove_reference, reference), stage="purge")
        points = await self.gallery.delete_subject(subject)
        await fx.send(
            self.topics.topic_gallery, subject, GalleryChange(subject, GalleryAction.DELETE, 0, fx.now)
        )
        await fx.audit(
            AuditAction.KEY_DESTROYED,
            subject_id=subject,
            detail={
                "purge_id": purge_id,
                "gallery_points_deleted": points,
                "reference_photos_deleted": len(references),
                **receipt.to_detail(),
            },
        )
        if state.purge is None:
            state.purge = PendingPurge(
                purge_id=purge_id,
                reason=reason,
                started_at=time.time(),
                remaining=0,
                faceprints_deleted=receipt.faceprints_deleted,
                key_destroyed=receipt.key_destroyed,
            )
            metrics.PURGES_PENDING.inc()
        else:
            # A second cause while the first purge waits for acknowledgements: one purge, one proof.
            state.purge.faceprints_deleted += receipt.faceprints_deleted
            state.purge.key_destroyed = state.purge.key_destroyed or receipt.key_destroyed
        purge_id = state.purge.purge_id
        revoked, awaited = state.assets.revoke_named(purge_id)
        state.purge.remaining += awaited
        text = _PURGE_REASON_TEXT[reason]
        for asset_id in revoked:
            await fx.send(
                self.topics.topic_asset_events,
                asset_id,
                SubjectDecision(asset_id, ANY_VERSION, subject, FaceStatus.RED, text, [], purge_id),
            )
        state.faceprints = 0
        if not state.purge.remaining:
            await self.finish_purge(state, fx)

    async def _remove_reference(self, reference: str) -> None:
        bucket, _, key = reference.partition("/")
        await self.remove_object(bucket, key)

    async def _references(self, subject: str) -> list[str]:
        try:
            faceprints = await asyncio.to_thread(self.vault.faceprints, subject)
        except UndecryptableError:
            return []  # already shredded
        return sorted({f.reference for f in faceprints})

    async def on_revocation_applied(self, state: SubjectRecord, ack: RevocationApplied, fx: Effects) -> None:
        purge = state.purge
        if purge is None or ack.purge_id != purge.purge_id:
            return  # an acknowledgement of a purge already proven, redelivered
        if not state.assets.acknowledge(purge.purge_id, ack.asset_id):
            return  # redelivered
        purge.remaining -= 1
        if purge.remaining <= 0:
            await self.finish_purge(state, fx)

    async def finish_purge(self, state: SubjectRecord, fx: Effects) -> None:
        purge = state.purge
        assert purge is not None
        assets = state.assets.revoked(purge.purge_id)
        purged = SubjectPurged(
            event_id=purge.purge_id,
            subject_id=state.subject_id,
            reason=purge.reason,
            asset_ids=assets,
            faceprints_deleted=purge.faceprints_deleted,
            key_destroyed=purge.key_destroyed,
            purged_at=fx.now,
        )
        await fx.send(self.topics.topic_purges, state.subject_id, purged)
        await fx.audit(
            AuditAction.PURGED,
            subject_id=state.subject_id,
            detail={
                "purge_id": purge.purge_id,
                "reason": purge.reason.value,
                "asset_ids": assets,
                "faceprints_deleted": purge.faceprints_deleted,
                "key_destroyed": purge.key_destroyed,
            },
        )
        if state.consent is not None:
            state.consent = policy.mark_purged(state.consent, fx.now)
        state.purged.append(purge.purge_id)
        state.purge = None
        state.assets.close(assets)
        metrics.PURGES_PENDING.dec()
        metrics.PURGES.labels(reason=purged.reason.value.lower()).inc()
        metrics.PURGE_DURATION.observe(max(0.0, time.time() - purge.started_at))
        log.info("purge complete", extra={"subject_id": state.subject_id, "stage": "purge"})


def _purge_id(subject_id: str, cause: str) -> str:
    """Deterministic: the same triggering event gives the same purge (redelivery is a no-op)."""
    return "purge-" + hashlib.sha256(f"{subject_id}\0{cause}".encode()).hexdigest()[:24]
