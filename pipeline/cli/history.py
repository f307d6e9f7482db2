"""A subject's records, gathered from what the topics hold: pure functions over read messages."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..audit import VerifyReport
from ..consent import policy
from ..contract import (
    AssetFaces,
    AuditRecord,
    ConsentChange,
    Face,
    FaceStatus,
    PurgeReason,
    Record,
    SubjectPurged,
)
from ..kafka.io import Message
from ..settings import PrivacySettings
from .render import try_decode

ERASED = "erased"  # the decision reason after an erasure (as the consent join gives it)


@dataclass(frozen=True)
class Skipped:
    """A record on the topic that could not be used, and why."""

    partition: int
    offset: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "offset": self.offset, "reason": self.reason}


def _in_order(messages: Iterable[Message]) -> list[Message]:
    return sorted(messages, key=lambda m: (m.partition, m.offset))


def decoded(messages: Iterable[Message], kind: type[Record]) -> tuple[list[Any], list[Skipped]]:
    """The messages' records of type ``kind`` in topic order, and the ones that are not."""
    records: list[Any] = []
    skipped: list[Skipped] = []
    for m in _in_order(messages):
        record, error = try_decode(m.value)
        if isinstance(record, kind):
            records.append(record)
        else:
            what = error or f"a {type(record).__name__}, not a {kind.__name__}"
            skipped.append(Skipped(m.partition, m.offset, what))
    return records, skipped


@dataclass
class ConsentView:
    """The consent history of one subject, the state it adds up to, and what a face gets now."""

    subject_id: str
    history: list[ConsentChange] = field(default_factory=list)
    rejected: list[tuple[ConsentChange, tuple[str, ...]]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    state: policy.ConsentState | None = None
    erased: SubjectPurged | None = None  # an erasure after the last change ended the consent
    decision: policy.Decision | None = None

    @property
    def active(self) -> bool:
        return self.state is not None and not self.state.withdrawn and self.erased is None

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        return {
            "subject_id": self.subject_id,
            "history": [c.to_avro() for c in self.history],
            "rejected": [{"event_id": c.event_id, "reasons": list(r)} for c, r in self.rejected],
            "skipped": [s.to_json() for s in self.skipped],
            "state": self.state.to_dict() if self.state else None,
            "erased": self.erased.to_avro() if self.erased else None,
            "decision": None
            if d is None
            else {"status": d.status.value, "reason": d.reason, "scopes": list(d.scopes)},
        }


def consent_view(
    subject_id: str,
    messages: Iterable[Message],
    privacy: PrivacySettings,
    now: datetime,
    purges: Iterable[SubjectPurged] = (),
) -> ConsentView:
    """Every ConsentChange keyed ``subject_id`` in topic order, applied as the consent join would.

    Changes the join would refuse (invalid; it dead-letters them) are listed as rejected and
    not applied. An erasure (the receipt of an erasure request) ends the consent it follows,
    as it does in the join. The consent topic is compacted: older changes may have been
    compacted away; the audit log keeps the full record.
    """
    mine = [m for m in messages if m.key == subject_id]
    changes, skipped = decoded(mine, ConsentChange)
    view = ConsentView(subject_id, skipped=skipped)
    for change in changes:
        try:
            view.state = policy.apply(view.state, change)
            view.history.append(change)
        except policy.InvalidConsentChange as exc:
            view.rejected.append((change, exc.reasons))
    erasures = [p for p in purges if p.subject_id == subject_id and p.reason == PurgeReason.ERASURE_REQUEST]
    last_change = view.history[-1].recorded_at if view.history else None
    view.erased = next(
        (p for p in reversed(erasures) if last_change is None or p.purged_at >= last_change), None
    )
    if view.erased is not None:
        view.decision = policy.Decision(FaceStatus.RED, ERASED, ())
        return view
    window = timedelta(days=privacy.amber_window_days)
    view.decision = policy.decide(view.state, now, window, privacy.standard_scopes)
    return view


def current_tags(messages: Iterable[Message]) -> dict[str, AssetFaces]:
    """The latest AssetFaces per asset (what the compacted tags topic means)."""
    latest: dict[str, AssetFaces] = {}
    for record in decoded(messages, AssetFaces)[0]:
        latest[record.asset_id] = record
    return latest


def faces_of(subject_id: str, tags: dict[str, AssetFaces]) -> dict[str, list[Face]]:
    """Per asset, the faces its current tags name as ``subject_id``."""
    named = {asset: [f for f in t.faces if f.subject_id == subject_id] for asset, t in sorted(tags.items())}
    return {asset: faces for asset, faces in named.items() if faces}


def purges_of(subject_id: str, messages: Iterable[Message]) -> list[SubjectPurged]:
    return [p for p in decoded(messages, SubjectPurged)[0] if p.subject_id == subject_id]


def audit_of(subject_id: str, records: Iterable[AuditRecord]) -> list[AuditRecord]:
    return [r for r in records if r.subject_id == subject_id]


def audit_detail(record: AuditRecord) -> dict[str, Any]:
    try:
        detail = json.loads(record.detail)
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def verify_json(report: VerifyReport, undecodable: list[Skipped]) -> dict[str, Any]:
    chains = {
        name: {
            "records": c.records,
            "first_seq": c.first_seq,
            "last_seq": c.head.seq if c.head else None,
            "head": c.head.hash if c.head else None,
            "ok": name not in report.problem_chains,
        }
        for name, c in sorted(report.chains.items())
    }
    return {
        "ok": report.ok and not undecodable,
        "records": report.records,
        "duplicates": report.duplicates,
        "chains": chains,
        "problems": [
            {"chain": p.chain, "index": p.index, "seq": p.seq, "kind": p.kind.value, "message": p.message}
            for p in report.problems
        ],
        "undecodable": [s.to_json() for s in undecodable],
    }
