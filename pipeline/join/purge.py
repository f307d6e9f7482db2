"""Purges: what a withdrawal, an expiry or an erasure does to a subject, step by step, until done.

Fail closed (design invariant 7). The consent state that makes the subject RED is saved before
any of this starts (the join checkpoints it), and the purge itself is saved before its first
step and after each one, so whatever fails afterwards the subject stays RED and the purge is
owed. Every step is retried until it is done and never dead-lettered: a Qdrant timeout after the
key was destroyed, a broker that refuses a send, a vault that is locked, a bug. Retrying stalls
the subject's partition, which is the safe side (lag alerts fire, and
facegate_purge_step_failures_total with the PurgeStepFailing alert names the step); dropping a
purge would leave the person named. If the worker dies mid-purge, the next event of the subject
(the redelivered withdrawal) resumes it from what was saved.

Steps, in order: record the reference photos (before the key goes: afterwards the vault cannot
be read), destroy the data key (crypto-shredding the vault copy and every reference photo sealed
under it), delete the reference photos and compact the store's deleted blobs away, delete the
gallery points and tell the other replicas, audit KEY_DESTROYED, send a revocation for every
asset that named the subject. The proof (SubjectPurged and its PURGED audit record) follows when
the assembler has acknowledged every revocation.

The one thing not retried is a reference photo the purge must not or cannot delete: outside the
subject's prefix in the enrollment bucket (never deleted: it is not the subject's), or refused
with AccessDenied (a policy to fix, which retrying cannot). Those are kept, listed in the
KEY_DESTROYED record, counted (facegate_purge_references_kept_total) and alerted on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from .. import metrics
from ..audit import AuditAction
from ..consent import policy
from ..contract import FaceStatus, PurgeReason, SubjectPurged
from ..contract.ids import reference_problem
from ..contract.internal import GalleryAction, GalleryChange, SubjectDecision
from ..errors import PermanentError
from ..gallery import GalleryIndex
from ..settings import Settings
from ..vault import FaceprintVault, UndecryptableError
from .subject import PendingPurge, SubjectRecord

if TYPE_CHECKING:
    from .service import Effects

log = logging.getLogger(__name__)
T = TypeVar("T")

ANY_VERSION = "*"
_REASON_TEXT = {
    PurgeReason.WITHDRAWN: policy.REASON_WITHDRAWN,
    PurgeReason.EXPIRED: policy.REASON_EXPIRED,
    PurgeReason.ERASURE_REQUEST: "erased",
}


class RemoveObject(Protocol):
    async def __call__(self, bucket: str, key: str) -> None: ...


class ListObjects(Protocol):
    """Keys under a prefix of a bucket (the subject's reference photos)."""

    async def __call__(self, bucket: str, prefix: str) -> list[str]: ...


class Compact(Protocol):
    """Make the object store drop deleted blobs from its files (SeaweedFS keeps them until a vacuum)."""

    async def __call__(self, bucket: str) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    first_delay_s: float = 0.2
    max_delay_s: float = 10.0


def purge_id(subject_id: str, cause: str) -> str:
    """Deterministic: the same triggering event gives the same purge (redelivery is a no-op)."""
    return "purge-" + hashlib.sha256(f"{subject_id}\0{cause}".encode()).hexdigest()[:24]


class Purges:
    def __init__(
        self,
        settings: Settings,
        vault: FaceprintVault,
        gallery: GalleryIndex,
        remove_object: RemoveObject,
        *,
        list_objects: ListObjects | None = None,
        compact: Compact | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.topics = settings.kafka
        self.enrollment_bucket = settings.s3.enrollment_bucket
        self.vault = vault
        self.gallery = gallery
        self.remove_object = remove_object
        self.list_objects = list_objects
        self.compact = compact
        self.retry = retry or RetryPolicy()

    async def until_done(
        self,
        step: str,
        call: Callable[[], Awaitable[T]],
        subject: str,
        keep: tuple[type[BaseException], ...] = (),
    ) -> T:
        """``call()`` retried with capped backoff until it returns; only ``keep`` errors get out."""
        delay = self.retry.first_delay_s
        attempt = 0
        while True:
            try:
                return await call()
            except keep:
                raise
            except Exception as exc:
                attempt += 1
                metrics.PURGE_STEP_FAILURES.labels(step=step).inc()
                log.warning(
                    "purge step %s failed (attempt %d), retrying in %.1fs: %s: %s",
                    step,
                    attempt,
                    delay,
                    type(exc).__name__,
                    exc,
                    exc_info=attempt == 1,  # the first traceback shows a bug; the rest repeat it
                    extra={"subject_id": subject, "stage": "purge"},
                )
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(self.retry.max_delay_s, delay * 2)

    # --- start ----------------------------------------------------------------------------------

    async def start(self, state: SubjectRecord, reason: PurgeReason, cause: str, fx: Effects) -> None:
        """Owe a purge for ``cause`` (saved at once), then carry out its steps."""
        pid = purge_id(state.subject_id, cause)
        if pid in state.purged or (state.purge is not None and state.purge.purge_id == pid):
            await self.resume(state, fx)  # the same event redelivered: finish what it started
            return
        subject = state.subject_id
        references = await self.until_done(
            "references", functools.partial(self._references, subject), subject
        )
        if state.purge is None:
            state.purge = PendingPurge(
                purge_id=pid,
                reason=reason,
                started_at=time.time(),
                remaining=0,
                faceprints_deleted=0,
                key_destroyed=False,
                references=references,
                effects_done=False,
            )
            metrics.PURGES_PENDING.inc()
        else:
            # A second cause while the first purge waits for acknowledgements: one purge, one proof.
            state.purge.references = sorted({*state.purge.references, *references})
            state.purge.effects_done = False
        revoked, awaited = state.assets.revoke_named(state.purge.purge_id)
        state.purge.remaining += awaited
        state.faceprints = 0
        await fx.checkpoint()  # from here on a crash resumes this purge, never forgets it
        await self._effects(state, state.purge, fx, revoked)
        if state.purge.remaining <= 0:
            await self.finish(state, fx)

    async def _references(self, subject: str) -> list[str]:
        found: set[str] = set()
        with contextlib.suppress(UndecryptableError):  # shredded already: the listing finds them
            found.update(f.reference for f in await asyncio.to_thread(self.vault.faceprints, subject))
        if self.list_objects is not None:
            try:
                keys = await self.list_objects(self.enrollment_bucket, f"{subject}/")
            except PermanentError as exc:  # a policy without ListBucket: the vault's list must do
                metrics.PURGE_REFERENCES_KEPT.labels(reason="listing_denied").inc()
                log.error("purge cannot list reference photos: %s", exc, extra={"subject_id": subject})
                keys = []
            found.update(f"{self.enrollment_bucket}/{key}" for key in keys)
        return sorted(found)

    # --- the steps ------------------------------------------------------------------------------

    async def resume(self, state: SubjectRecord, fx: Effects) -> None:
        """Carry out whatever the saved purge still owes; each step is idempotent."""
        purge = state.purge
        if purge is None:
            return
        if not purge.effects_done:
            await self._effects(state, purge, fx, None)
        if purge.remaining <= 0:
            await self.finish(state, fx)

    async def _effects(
        self, state: SubjectRecord, purge: PendingPurge, fx: Effects, revoke: list[str] | None
    ) -> None:
        """The purge's steps; ``revoke``: the assets to send revocations for (None: every one
        not acknowledged yet, as after a crash, when what was sent is not known)."""
        subject = state.subject_id
        receipt = await self.until_done(
            "destroy_key", functools.partial(asyncio.to_thread, self.vault.destroy_subject, subject), subject
        )
        purge.faceprints_deleted += receipt.faceprints_deleted
        purge.key_destroyed = purge.key_destroyed or receipt.key_destroyed
        await fx.checkpoint()

        deleted = 0
        for reference in purge.references:
            if reference in {k["reference"] for k in purge.kept}:
                continue
            if await self._delete_reference(subject, reference, purge):
                deleted += 1
        if deleted and self.compact is not None:
            compact = self.compact
            await self.until_done("compact", lambda: compact(self.enrollment_bucket), subject)

        points = await self.until_done(
            "gallery_delete", lambda: self.gallery.delete_subject(subject), subject
        )
        change = GalleryChange(subject, GalleryAction.DELETE, 0, fx.now)
        await self.until_done(
            "gallery_change", lambda: fx.send(self.topics.topic_gallery, subject, change), subject
        )
        detail = {
            "purge_id": purge.purge_id,
            "gallery_points_deleted": points,
            "reference_photos_deleted": deleted,
            "reference_photos_kept": list(purge.kept),
            **receipt.to_detail(),
        }
        await self.until_done(
            "audit", lambda: fx.audit(AuditAction.KEY_DESTROYED, subject_id=subject, detail=detail), subject
        )

        text = _REASON_TEXT[purge.reason]
        for asset_id in state.assets.awaiting(purge.purge_id) if revoke is None else revoke:
            revocation = SubjectDecision(
                asset_id, ANY_VERSION, subject, FaceStatus.RED, text, [], purge.purge_id
            )
            await self.until_done(
                "revoke",
                functools.partial(fx.send, self.topics.topic_asset_events, asset_id, revocation),
                subject,
            )
        purge.effects_done = True
        await fx.checkpoint()

    async def _delete_reference(self, subject: str, reference: str, purge: PendingPurge) -> bool:
        bucket, _, key = reference.partition("/")
        problem = reference_problem(subject, bucket, key, self.enrollment_bucket)
        if problem is None:
            try:
                await self.until_done(
                    "delete_reference",
                    functools.partial(self.remove_object, bucket, key),
                    subject,
                    keep=(PermanentError,),
                )
                return True
            except PermanentError as exc:  # AccessDenied: the same call would be refused again
                problem = f"{type(exc).__name__}: {exc}"
                label = "access_denied"
        else:
            label = "out_of_scope"
        metrics.PURGE_REFERENCES_KEPT.labels(reason=label).inc()
        log.error(
            "purge keeps reference %s: %s",
            reference,
            problem,
            extra={"subject_id": subject, "stage": "purge"},
        )
        purge.kept.append({"reference": reference, "reason": problem})
        return False

    # --- the proof ------------------------------------------------------------------------------

    async def acknowledged(self, state: SubjectRecord, purge_id_: str, asset_id: str, fx: Effects) -> None:
        purge = state.purge
        if purge is None or purge_id_ != purge.purge_id:
            return  # an acknowledgement of a purge already proven, redelivered
        if state.assets.acknowledge(purge.purge_id, asset_id):
            purge.remaining -= 1
        else:
            # Counted before, normally. After a crash between the ledger's write and the
            # subject's it was not: count again from the ledger (a scan, on this rare path only).
            purge.remaining = len(state.assets.awaiting(purge.purge_id))
        if purge.remaining <= 0 and purge.effects_done:
            await self.finish(state, fx)

    async def finish(self, state: SubjectRecord, fx: Effects) -> None:
        purge = state.purge
        assert purge is not None
        subject = state.subject_id
        assets = state.assets.revoked(purge.purge_id)
        purged = SubjectPurged(
            event_id=purge.purge_id,
            subject_id=subject,
            reason=purge.reason,
            asset_ids=assets,
            faceprints_deleted=purge.faceprints_deleted,
            key_destroyed=purge.key_destroyed,
            purged_at=fx.now,
        )
        await self.until_done("receipt", lambda: fx.send(self.topics.topic_purges, subject, purged), subject)
        detail = {
            "purge_id": purge.purge_id,
            "reason": purge.reason.value,
            "asset_ids": assets,
            "faceprints_deleted": purge.faceprints_deleted,
            "key_destroyed": purge.key_destroyed,
        }
        await self.until_done(
            "audit", lambda: fx.audit(AuditAction.PURGED, subject_id=subject, detail=detail), subject
        )
        if state.consent is not None:
            state.consent = policy.mark_purged(state.consent, fx.now)
        state.purged.append(purge.purge_id)
        state.purge = None
        state.assets.close(assets)
        metrics.PURGES_PENDING.dec()
        metrics.PURGES.labels(reason=purged.reason.value.lower()).inc()
        metrics.PURGE_DURATION.observe(max(0.0, time.time() - purge.started_at))
        log.info("purge complete", extra={"subject_id": subject, "stage": "purge"})
