"""What the consent join keeps per subject, as a JSON-able value for a faust Table.

It holds consent state and an unfinished purge, never faceprints: those live encrypted in the
vault and indexed in the gallery. Which assets name the subject is kept beside it, one table key
per asset (see ledger.py), so that this entry stays small however many assets name them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..consent.policy import ConsentState
from ..contract import PurgeReason
from .ledger import AssetLedger


@dataclass
class PendingPurge:
    """A purge, saved before its first step and after each: a crash resumes it, never forgets it.

    It waits until every asset that named the subject has been re-emitted without them.
    """

    purge_id: str
    reason: PurgeReason
    started_at: float  # epoch seconds, for the purge latency
    remaining: int  # revocations not acknowledged yet (the ledger lists the assets)
    faceprints_deleted: int
    key_destroyed: bool
    # The reference photos to delete, read from the vault before the key goes (after, they
    # cannot be read), as "bucket/key".
    references: list[str] = field(default_factory=list)
    # Key destroyed, references and gallery points deleted, revocations sent. False while any
    # of those may still be owed: the next event of the subject (a redelivery) finishes them.
    # A purge saved before this field existed had done them all before it was saved.
    effects_done: bool = True
    # References the purge may not delete (out of scope, access denied), with the reason.
    kept: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingPurge:
        return cls(**{**data, "reason": PurgeReason(data["reason"])})


@dataclass
class SubjectRecord:
    subject_id: str
    assets: AssetLedger  # which assets name them; its own table keys, not part of to_dict()
    consent: ConsentState | None = None
    purge: PendingPurge | None = None
    faceprints: int = 0  # reference faceprints held in the vault
    purged: list[str] = field(default_factory=list)  # ids of completed purges (idempotency)
    # Enrollments that arrived before any consent (topics are not ordered between each other):
    # the encoded SubjectEnrollment (object refs only), held until the consent decides.
    deferred: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject_id": self.subject_id,
            "consent": self.consent.to_dict() if self.consent else None,
            "purge": self.purge.to_dict() if self.purge else None,
            "faceprints": self.faceprints,
            "purged": list(self.purged[-20:]),
            "deferred": list(self.deferred),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], assets: AssetLedger) -> SubjectRecord:
        return cls(
            subject_id=data["subject_id"],
            assets=assets,
            consent=ConsentState.from_dict(data["consent"]) if data.get("consent") else None,
            purge=PendingPurge.from_dict(data["purge"]) if data.get("purge") else None,
            faceprints=int(data.get("faceprints", 0)),
            purged=list(data.get("purged", [])),
            deferred=list(data.get("deferred", [])),
        )
