"""The detail of each kind of audit record, built in one place so every writer logs the same facts.

Details say what was decided and on which basis (ids, statuses, scopes, windows, counts), never
who the person is and never their faceprint: the guard in ``chain.append`` enforces the latter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..consent.policy import Decision
from ..contract import ConsentChange, SubjectPurged


def consent_changed(change: ConsentChange) -> dict[str, Any]:
    """For CONSENT_CHANGED: the change as applied (the quitclaim by reference only)."""
    return {
        "event_id": change.event_id,
        "change": change.action.value,
        "legal_basis": change.legal_basis.value,
        "scopes": sorted(change.scopes),
        "valid_from": change.valid_from.isoformat(),
        "valid_until": None if change.valid_until is None else change.valid_until.isoformat(),
        "evidence_uri": change.evidence_uri,
        "recorded_at": change.recorded_at.isoformat(),
        "recorded_by": change.recorded_by,
    }


def consent_rejected(
    reasons: Sequence[str], *, event_id: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """For CONSENT_REJECTED: why the change went to the DLQ, and its source (topic/partition/offset)."""
    return {"event_id": event_id, "reasons": list(reasons), "source": source}


def match_decided(
    decision: Decision, *, face_id: str, similarity: float | None, model_version: str
) -> dict[str, Any]:
    """For MATCH_DECIDED: the status a face got for a subject, and why."""
    return {
        "face_id": face_id,
        "status": decision.status.value,
        "reason": decision.reason,
        "scopes": list(decision.scopes),
        "similarity": similarity,
        "model_version": model_version,
    }


def purged(purge: SubjectPurged) -> dict[str, Any]:
    """For PURGED: what the purge removed (the key's destruction has its own KEY_DESTROYED record)."""
    return {
        "event_id": purge.event_id,
        "reason": purge.reason.value,
        "asset_ids": list(purge.asset_ids),
        "faceprints_deleted": purge.faceprints_deleted,
        "key_destroyed": purge.key_destroyed,
        "purged_at": purge.purged_at.isoformat(),
    }
