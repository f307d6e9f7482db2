"""What the consent join keeps per subject, as a JSON-able value for a faust Table.

It holds consent state, which assets currently name the subject, and an unfinished purge —
never faceprints: those live encrypted in the vault and indexed in the gallery.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..consent.policy import ConsentState
from ..contract import PurgeReason


@dataclass
class PendingPurge:
    """A purge waits until every asset that named the subject has been re-emitted without them."""

    purge_id: str
    reason: PurgeReason
    started_at: float  # epoch seconds, for the purge latency
    assets: list[str]  # every asset that named the subject: listed in SubjectPurged
    remaining: list[str]  # those whose revocation is not acknowledged yet
    faceprints_deleted: int
    key_destroyed: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingPurge:
        return cls(**{**data, "reason": PurgeReason(data["reason"])})


@dataclass
class SubjectRecord:
    subject_id: str
    consent: ConsentState | None = None
    named: dict[str, str] = field(default_factory=dict)  # asset_id -> etag of the naming version
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
            "named": dict(self.named),
            "purge": self.purge.to_dict() if self.purge else None,
            "faceprints": self.faceprints,
            "purged": list(self.purged[-20:]),
            "deferred": list(self.deferred),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubjectRecord:
        return cls(
            subject_id=data["subject_id"],
            consent=ConsentState.from_dict(data["consent"]) if data.get("consent") else None,
            named=dict(data.get("named", {})),
            purge=PendingPurge.from_dict(data["purge"]) if data.get("purge") else None,
            faceprints=int(data.get("faceprints", 0)),
            purged=list(data.get("purged", [])),
            deferred=list(data.get("deferred", [])),
        )
