"""The consent join: every event about one subject, in order, in one place.

Its input stream (partitioned by subject_id) merges consent changes, enrollments, match
candidates from the recognize stage, erasure requests and revocation acknowledgements. Because
one partition is one sequence, "no tag after withdrawal" needs no locks: a candidate processed
after the withdrawal is decided RED, and every asset named before it is revoked.

Fail closed (design invariant 7): a withdrawal or an erasure changes the subject's state and has
it saved (``Effects.checkpoint``) before anything that can fail; the purge that follows is saved
and retried step by step until done (purge.py). When the assembler has re-emitted every asset
that named the subject without them, the SubjectPurged record (the proof) and its audit receipt
are written, so no AssetFaces naming the subject can follow a SubjectPurged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from .. import metrics
from ..audit import AuditAction
from ..audit.guard import loggable_text
from ..consent import policy
from ..contract import (
    ConsentAction,
    ConsentChange,
    FaceStatus,
    PurgeReason,
    Record,
    SubjectEnrollment,
)
from ..contract.ids import check_subject_id, reference_problem
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
from ..settings import Settings
from ..vault import FaceprintVault
from .purge import Compact, ListObjects, Purges, RemoveObject, RetryPolicy
from .subject import SubjectRecord

log = logging.getLogger(__name__)


class InvalidConsent(PermanentError):
    """A consent change the policy rejects; dead-lettered with the reasons."""


class SealReference(Protocol):
    """Re-write a reference photo sealed under the subject's data key (references.py)."""

    async def __call__(self, subject_id: str, bucket: str, key: str) -> None: ...


class ReferenceFaces(Protocol):
    """Embeddings of the faces in one reference photo, and the model version that computed them."""

    async def __call__(self, bucket: str, key: str) -> tuple[list[np.ndarray], str]: ...


async def _nothing() -> None:
    return None


@dataclass
class Effects:
    """What the agent gives the join for one event: where output goes, the clock, and
    ``checkpoint``: make what the event did so far durable in the middle of it (wait for the
    records sent so far to be acknowledged, then save the subject's state, its asset ledger and
    the audit chain's head), so that a failure later in the event cannot undo it."""

    send: Callable[[str, str, Record], Awaitable[None]]  # topic, key, record
    audit: Callable[..., Awaitable[None]]  # (action, subject_id=, asset_id=, detail=)
    now: datetime
    checkpoint: Callable[[], Awaitable[None]] = field(default=_nothing)


class ConsentJoin:
    def __init__(
        self,
        settings: Settings,
        vault: FaceprintVault,
        gallery: GalleryIndex,
        reference_faces: ReferenceFaces,
        remove_object: RemoveObject,
        *,
        list_objects: ListObjects | None = None,
        compact: Compact | None = None,
        seal_reference: SealReference | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.seal_reference = seal_reference
        self.topics = settings.kafka
        self.vault = vault
        self.gallery = gallery
        self.reference_faces = reference_faces
        self.amber_window = timedelta(days=settings.privacy.amber_window_days)
        self.enrollment_bucket = settings.s3.enrollment_bucket
        self.purges = Purges(
            settings, vault, gallery, remove_object, list_objects=list_objects, compact=compact, retry=retry
        )

    def decide(self, state: SubjectRecord, now: datetime) -> policy.Decision:
        return policy.decide(state.consent, now, self.amber_window, self.settings.privacy.standard_scopes)

    async def handle(self, state: SubjectRecord, message: Record, fx: Effects) -> None:
        check_subject_id(state.subject_id)  # a table key; the join's own keys are not subject ids
        if state.purge is not None:
            # A purge saved but not finished (the worker died in it): it comes first, so the
            # event that follows sees the subject purged.
            await self.purges.resume(state, fx)
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
            if change.action == ConsentAction.WITHDRAWN:
                # Redelivered after a crash: the state was saved, the purge may not have been.
                await self.purges.start(state, PurgeReason.WITHDRAWN, change.event_id, fx)
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
                # Free text from the producer (a presigned URL, an identity token): never a reason
                # for the audit, and so the withdrawal, to fail.
                "evidence_uri": loggable_text(change.evidence_uri),
                "recorded_by": loggable_text(change.recorded_by),
            },
        )
        # Saved with its audit record before anything else is attempted: from here on the
        # change holds (a withdrawal keeps the subject RED), whatever fails.
        await fx.checkpoint()
        if change.action == ConsentAction.WITHDRAWN:
            await self.purges.start(state, PurgeReason.WITHDRAWN, change.event_id, fx)
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
            await self.purges.start(state, PurgeReason.EXPIRED, cause, fx)
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
        unsealed: list[dict[str, str]] = []
        for ref in enrollment.references:
            reference = f"{ref.bucket}/{ref.object_key}"
            problem = reference_problem(
                subject, ref.bucket, ref.object_key, self.settings.s3.enrollment_bucket
            )
            if problem:  # never read, and so never deleted by a purge: it is not the subject's
                refused.append({"reference": reference, "reason": problem})
                continue
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
            await self._seal(subject, ref.bucket, ref.object_key, unsealed)
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
                "not_sealed": unsealed,
                "faceprints": state.faceprints,
                "model_version": model_version,
            },
        )
        metrics.ASSETS_PROCESSED.labels(stage="enroll", outcome="ok" if stored else "skipped").inc()

    async def _seal(self, subject: str, bucket: str, key: str, unsealed: list[dict[str, str]]) -> None:
        """The reference photo, now that its faceprint is kept, re-written under the subject's key."""
        if self.seal_reference is None:
            return
        try:
            await self.seal_reference(subject, bucket, key)
        except PermanentError as exc:  # e.g. AccessDenied on the put: it stays as uploaded
            about = {"subject_id": subject, "stage": "enroll"}
            log.error("reference %s/%s not re-sealed: %s", bucket, key, exc, extra=about)
            unsealed.append({"reference": f"{bucket}/{key}", "reason": f"{type(exc).__name__}: {exc}"})

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
            if request.reason == PurgeReason.ERASURE_REQUEST:
                # Erasure ends every basis for processing: nothing may name them afterwards.
                state.consent = None
            await fx.audit(
                AuditAction.ERASURE_REQUESTED,
                subject_id=state.subject_id,
                detail={
                    "event_id": request.event_id,
                    "reason": request.reason.value,
                    "by": loggable_text(request.requested_by),
                },
            )
            await fx.checkpoint()  # RED from here on, whatever fails
        await self.purges.start(state, request.reason, request.event_id, fx)

    async def on_revocation_applied(self, state: SubjectRecord, ack: RevocationApplied, fx: Effects) -> None:
        await self.purges.acknowledged(state, ack.purge_id, ack.asset_id, fx)
