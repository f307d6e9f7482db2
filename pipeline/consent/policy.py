"""Consent policy: pure functions from consent changes to consent state to face decisions.

No I/O and no clock: every function is given ``now``, so the consent join, the expiry timer and
the tests all reason the same way. The faust agents keep ``ConsentState.to_dict()`` in a Table
keyed by subject_id and call ``validate`` / ``apply`` / ``decide`` / ``due_for_expiry``.

Statuses (design.md): GREEN = a valid basis covering the organisation's standard scopes (or a
public figure); AMBER = valid but expiring within the AMBER window, or covering fewer scopes;
RED = no valid basis (unknown face, no consent, withdrawn, expired, not yet valid). Only GREEN
and AMBER faces may carry the subject's id (``Decision.may_name``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from ..contract import ConsentAction, ConsentChange, ContractError, FaceStatus, LegalBasis, PurgeReason

# Decision reasons: short, stable strings that end up in AssetFaces.reason.
REASON_EXPLICIT = "consent:explicit"
REASON_CONTRACT = "consent:contract"
REASON_PUBLIC_FIGURE = "public_figure"
REASON_EXPIRING = "expiring"  # "expiring:2026-12-01" (valid_until's UTC date)
REASON_SCOPE_LIMITED = "scope_limited"  # "scope_limited:editorial" (the scopes the consent covers)
REASON_NO_CONSENT = "no_consent"
REASON_WITHDRAWN = "withdrawn"
REASON_EXPIRED = "expired"
REASON_NOT_YET_VALID = "not_yet_valid"
REASON_UNKNOWN_FACE = "unknown_face"

_STATE_VERSION = 1


class InvalidConsentChange(ValueError):
    """A change ``validate`` rejects; ``reasons`` go to the DLQ headers."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = tuple(reasons)


def normalise_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes compare case- and space-insensitively ("Editorial " is "editorial"); sorted, unique."""
    return tuple(sorted({s.strip().lower() for s in scopes if s.strip()}))


def parse_legal_basis(text: str) -> LegalBasis:
    """A legal basis from user input (CLI, API), with a message naming the valid ones."""
    try:
        return LegalBasis(text.strip().upper())
    except ValueError:
        known = ", ".join(b.value for b in LegalBasis)
        raise ValueError(f"unknown legal basis {text!r}: one of {known}") from None


# --- validation ------------------------------------------------------------------------------


def _aware(at: datetime | None) -> bool:
    return at is not None and at.tzinfo is not None and at.utcoffset() is not None


def validate(change: ConsentChange, state: ConsentState | None = None) -> list[str]:
    """Why ``change`` must not be applied (empty: it may). Given ``state``, transitions are checked too.

    A withdrawal needs no evidence, scopes, window or author: withdrawing must be as easy as
    consenting (GDPR Art. 7(3)), and refusing one would keep naming the person. It is refused only
    when it cannot be attributed to a subject and an event.
    """
    reasons: list[str] = []
    if not (change.subject_id or "").strip():
        reasons.append("blank subject_id")
    if not (change.event_id or "").strip():
        reasons.append("blank event_id")
    if change.recorded_at is None:
        reasons.append("recorded_at missing")
    elif not _aware(change.recorded_at):
        reasons.append("recorded_at has no timezone")
    if not isinstance(change.action, ConsentAction):
        reasons.append(f"unknown action {change.action!r}")
    if not isinstance(change.legal_basis, LegalBasis):
        reasons.append(f"unknown legal_basis {change.legal_basis!r}")
    if change.action in (ConsentAction.GRANTED, ConsentAction.UPDATED):
        if not (change.recorded_by or "").strip():
            reasons.append("blank recorded_by")
        reasons.extend(_window_reasons(change))
        reasons.extend(_grant_reasons(change))
    if state is not None:
        reasons.extend(_transition_reasons(change, state))
    return reasons


def _window_reasons(change: ConsentChange) -> list[str]:
    if change.valid_from is None:
        return ["valid_from missing"]
    if not _aware(change.valid_from):
        return ["valid_from has no timezone"]
    if change.valid_until is not None:
        if not _aware(change.valid_until):
            return ["valid_until has no timezone"]
        if change.valid_until <= change.valid_from:
            until, start = change.valid_until.isoformat(), change.valid_from.isoformat()
            return [f"valid_until {until} is not after valid_from {start}"]
    return []


def _grant_reasons(change: ConsentChange) -> list[str]:
    reasons = []
    scopes = change.scopes or []
    if any(not s.strip() for s in scopes):
        reasons.append("blank scope")
    evidence = (change.evidence_uri or "").strip()
    if change.legal_basis == LegalBasis.EXPLICIT_CONSENT:
        if not evidence:
            reasons.append("explicit consent without evidence_uri")
        if not normalise_scopes(scopes):
            reasons.append("explicit consent without scopes")
    if change.legal_basis == LegalBasis.CONTRACT and not normalise_scopes(scopes):
        reasons.append("contract without scopes")
    if change.legal_basis == LegalBasis.PUBLIC_FIGURE:
        # Art. 9(2)(e) covers data "manifestly made public" by the person: the officer must say
        # what makes them a public figure and point at the record of it, as for any basis.
        if not evidence:
            reasons.append("public figure without evidence_uri")
        if not (change.justification or "").strip():
            reasons.append("public figure without a justification")
    parts = urlsplit(evidence)
    if evidence and not (parts.scheme and (parts.netloc or parts.path)):
        reasons.append(f"evidence_uri {evidence!r} is not a URI")
    return reasons


def _transition_reasons(change: ConsentChange, state: ConsentState) -> list[str]:
    if change.subject_id != state.subject_id:
        return [f"change for subject {change.subject_id!r} applied to the state of {state.subject_id!r}"]
    if change.event_id in state.history:
        return []  # a redelivery: apply() ignores it
    if change.action == ConsentAction.UPDATED and state.withdrawn:
        return ["UPDATED after WITHDRAWN: consent must be GRANTED anew"]
    return []


_UNKNOWN_SYMBOL = re.compile(r"(\S+) not found in reader symbol list facegate\.(\w+)")
_FIELD_OF_ENUM = {"LegalBasis": "legal_basis", "ConsentAction": "action"}


def contract_error_reason(exc: ContractError) -> str:
    """The DLQ reason for a consent message that did not decode.

    An unknown legal basis or action never reaches ``validate``: the writer's enum symbol is not
    in ours, so Avro resolution fails (or the writer schema itself is unknown). This names it.
    """
    text = str(exc)
    match = _UNKNOWN_SYMBOL.search(text)
    if match:
        symbol, enum_name = match.groups()
        return f"unknown {_FIELD_OF_ENUM.get(enum_name, enum_name)} {symbol}"
    if "unknown writer schema fingerprint" in text:
        return f"unknown ConsentChange schema (a basis, action or field this version does not know): {text}"
    if "missing C3 01 header" in text:
        return "not an Avro ConsentChange (no single-object header)"
    return f"undecodable ConsentChange: {text}"


# --- state -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentState:
    """A subject's consent after every change so far, in topic order."""

    subject_id: str
    basis: LegalBasis
    scopes: tuple[str, ...]  # normalised; empty once withdrawn
    valid_from: datetime
    valid_until: datetime | None
    evidence_uri: str | None
    withdrawn: bool
    changed_at: datetime  # recorded_at of the last change applied
    history: tuple[str, ...]  # event ids applied, oldest first (makes apply idempotent)
    withdrawn_at: datetime | None = None
    purged_at: datetime | None = None  # the purge for a withdrawal or expiry has been done
    expiry_warned_at: datetime | None = None  # the AMBER window was entered and announced

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (timestamps as ISO-8601) for a faust Table."""
        out: dict[str, Any] = {"v": _STATE_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, LegalBasis):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsentState:
        if data.get("v") != _STATE_VERSION:
            raise ValueError(f"unknown consent state version {data.get('v')!r}")

        def at(name: str) -> datetime | None:
            value = data.get(name)
            return None if value is None else datetime.fromisoformat(value)

        valid_from, changed_at = at("valid_from"), at("changed_at")
        if valid_from is None or changed_at is None:
            raise ValueError("consent state without valid_from or changed_at")
        return cls(
            subject_id=data["subject_id"],
            basis=LegalBasis(data["basis"]),
            scopes=tuple(data["scopes"]),
            valid_from=valid_from,
            valid_until=at("valid_until"),
            evidence_uri=data.get("evidence_uri"),
            withdrawn=bool(data["withdrawn"]),
            changed_at=changed_at,
            history=tuple(data["history"]),
            withdrawn_at=at("withdrawn_at"),
            purged_at=at("purged_at"),
            expiry_warned_at=at("expiry_warned_at"),
        )


def apply(state: ConsentState | None, change: ConsentChange) -> ConsentState:
    """The state after ``change``. Raises InvalidConsentChange for a change ``validate`` rejects.

    Every GRANTED/UPDATED carries the whole consent (basis, scopes, window, evidence), so it
    replaces the previous one; that also makes an UPDATED without its GRANTED (compacted away)
    meaningful. Applying the same event twice changes nothing.
    """
    reasons = validate(change, state)
    if reasons:
        raise InvalidConsentChange(reasons)
    if state is not None and change.event_id in state.history:
        return state
    history = (*(state.history if state else ()), change.event_id)
    if change.action == ConsentAction.WITHDRAWN:
        base = state or _from_change(change, history)
        return dataclasses.replace(
            base,
            scopes=(),
            withdrawn=True,
            withdrawn_at=change.recorded_at,
            evidence_uri=change.evidence_uri or base.evidence_uri,
            changed_at=change.recorded_at,
            history=history,
            purged_at=None,
        )
    new = _from_change(change, history)
    same_window = (
        state is not None
        and not state.withdrawn
        and change.action == ConsentAction.UPDATED
        and (state.valid_from, state.valid_until) == (new.valid_from, new.valid_until)
    )
    if same_window and state is not None:
        # Same window: an expiry already purged or announced stays done.
        new = dataclasses.replace(new, purged_at=state.purged_at, expiry_warned_at=state.expiry_warned_at)
    return new


def _from_change(change: ConsentChange, history: tuple[str, ...]) -> ConsentState:
    evidence = (change.evidence_uri or "").strip() or None
    return ConsentState(
        subject_id=change.subject_id,
        basis=change.legal_basis,
        scopes=normalise_scopes(change.scopes),
        valid_from=change.valid_from,
        valid_until=change.valid_until,
        evidence_uri=evidence,
        withdrawn=False,
        changed_at=change.recorded_at,
        history=history,
    )


def mark_purged(state: ConsentState, at: datetime) -> ConsentState:
    """Record that the purge for this state's withdrawal or expiry has been carried out."""
    return dataclasses.replace(state, purged_at=at)


def mark_expiry_warned(state: ConsentState, at: datetime) -> ConsentState:
    """Record that entering the AMBER window was announced (tags re-emitted as AMBER)."""
    return dataclasses.replace(state, expiry_warned_at=at)


# --- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    status: FaceStatus
    reason: str
    scopes: tuple[str, ...]  # what the face may be used for; empty when RED

    @property
    def may_name(self) -> bool:
        """Whether the face may carry the subject's id (and the vault/gallery keep their faceprints)."""
        return self.status != FaceStatus.RED


UNKNOWN_FACE = Decision(FaceStatus.RED, REASON_UNKNOWN_FACE, ())
"""The decision for a face that matched no subject in the gallery."""


def _require_aware(now: datetime) -> None:
    if not _aware(now):
        raise ValueError("now must be timezone-aware")


def _expiring(state: ConsentState, now: datetime, amber_window: timedelta) -> bool:
    return state.valid_until is not None and state.valid_until - now <= amber_window


def decide(
    state: ConsentState | None,
    now: datetime,
    amber_window: timedelta,
    required_scopes: Iterable[str],
) -> Decision:
    """What a face matched to this subject may show at ``now``.

    ``required_scopes`` are the organisation's standard scopes (``privacy.standard_scopes``); a
    consent covering fewer is AMBER. A public figure is named on that basis alone, with the
    scopes as given, and is never scope-limited.
    """
    _require_aware(now)
    if state is None:
        return Decision(FaceStatus.RED, REASON_NO_CONSENT, ())
    if state.withdrawn:
        return Decision(FaceStatus.RED, REASON_WITHDRAWN, ())
    if now < state.valid_from:
        return Decision(FaceStatus.RED, REASON_NOT_YET_VALID, ())
    if state.valid_until is not None and now >= state.valid_until:
        return Decision(FaceStatus.RED, REASON_EXPIRED, ())
    if _expiring(state, now, amber_window):
        assert state.valid_until is not None
        until = state.valid_until.astimezone(UTC).date().isoformat()
        return Decision(FaceStatus.AMBER, f"{REASON_EXPIRING}:{until}", state.scopes)
    if state.basis == LegalBasis.PUBLIC_FIGURE:
        return Decision(FaceStatus.GREEN, REASON_PUBLIC_FIGURE, state.scopes)
    if not set(normalise_scopes(required_scopes)) <= set(state.scopes):
        return Decision(FaceStatus.AMBER, f"{REASON_SCOPE_LIMITED}:{','.join(state.scopes)}", state.scopes)
    reason = REASON_EXPLICIT if state.basis == LegalBasis.EXPLICIT_CONSENT else REASON_CONTRACT
    return Decision(FaceStatus.GREEN, reason, state.scopes)


# --- the expiry timer ------------------------------------------------------------------------


def due_for_expiry(states: Iterable[ConsentState], now: datetime) -> list[ConsentState]:
    """States whose valid_until has passed and whose purge (reason EXPIRED) is not done yet."""
    _require_aware(now)
    due = [
        s
        for s in states
        if not s.withdrawn and s.purged_at is None and s.valid_until is not None and s.valid_until <= now
    ]
    return sorted(due, key=lambda s: (s.valid_until, s.subject_id))


def due_for_expiry_warning(
    states: Iterable[ConsentState], now: datetime, amber_window: timedelta
) -> list[ConsentState]:
    """Valid states that entered the AMBER window and were not announced yet (tags go AMBER)."""
    _require_aware(now)
    due = [
        s
        for s in states
        if not s.withdrawn
        and s.expiry_warned_at is None
        and s.valid_until is not None
        and s.valid_from <= now < s.valid_until
        and _expiring(s, now, amber_window)
    ]
    return sorted(due, key=lambda s: (s.valid_until, s.subject_id))


def pending_purges(states: Iterable[ConsentState], now: datetime) -> list[tuple[ConsentState, PurgeReason]]:
    """Every purge owed: expiries, and withdrawals whose purge did not complete (e.g. a crash)."""
    states = list(states)
    withdrawn = [(s, PurgeReason.WITHDRAWN) for s in states if s.withdrawn and s.purged_at is None]
    return withdrawn + [(s, PurgeReason.EXPIRED) for s in due_for_expiry(states, now)]
