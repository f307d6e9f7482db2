"""Consent policy: validation, state changes, GREEN/AMBER/RED decisions and the expiry timer."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pipeline.consent.policy import (
    UNKNOWN_FACE,
    ConsentState,
    Decision,
    InvalidConsentChange,
    apply,
    contract_error_reason,
    decide,
    due_for_expiry,
    due_for_expiry_warning,
    mark_expiry_warned,
    mark_purged,
    normalise_scopes,
    parse_legal_basis,
    pending_purges,
    validate,
)
from pipeline.contract import (
    ConsentAction,
    ConsentChange,
    ContractError,
    FaceStatus,
    LegalBasis,
    PurgeReason,
)
from pipeline.contract.avro import SCHEMA_DIR, Schema, SchemaRegistry
from pipeline.settings import PrivacySettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WINDOW = timedelta(days=30)
STANDARD = PrivacySettings().standard_scopes
EVIDENCE = "s3://legal/quitclaims/S-1.pdf"

_counter = iter(range(1_000_000))


def change(
    action: ConsentAction = ConsentAction.GRANTED,
    basis: LegalBasis = LegalBasis.EXPLICIT_CONSENT,
    *,
    subject_id: str = "S-1",
    scopes: list[str] | None = None,
    valid_from: datetime = NOW - 10 * DAY,
    valid_until: datetime | None = NOW + 365 * DAY,
    evidence_uri: str | None = EVIDENCE,
    event_id: str | None = None,
    recorded_at: datetime = NOW - DAY,
    recorded_by: str = "privacy-officer@example.org",
    justification: str | None = None,
) -> ConsentChange:
    if justification is None and basis == LegalBasis.PUBLIC_FIGURE:
        justification = "head of government, photographed in office"
    return ConsentChange(
        event_id=f"ev-{next(_counter)}" if event_id is None else event_id,
        subject_id=subject_id,
        action=action,
        legal_basis=basis,
        scopes=list(STANDARD) if scopes is None else scopes,
        valid_from=valid_from,
        valid_until=valid_until,
        evidence_uri=evidence_uri,
        recorded_at=recorded_at,
        recorded_by=recorded_by,
        justification=justification,
    )


def state_of(*changes: ConsentChange) -> ConsentState:
    state: ConsentState | None = None
    for c in changes:
        state = apply(state, c)
    assert state is not None
    return state


def decision(state: ConsentState | None, now: datetime = NOW) -> Decision:
    return decide(state, now, WINDOW, STANDARD)


# --- validation ------------------------------------------------------------------------------


def test_a_complete_explicit_consent_is_valid() -> None:
    assert validate(change()) == []


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"evidence_uri": None}, "explicit consent without evidence_uri"),
        ({"evidence_uri": "   "}, "explicit consent without evidence_uri"),
        ({"evidence_uri": "quitclaim signed on paper"}, "is not a URI"),
        ({"scopes": []}, "explicit consent without scopes"),
        ({"scopes": ["editorial", " "]}, "blank scope"),
        ({"valid_until": NOW - 10 * DAY}, "is not after valid_from"),
        ({"valid_until": NOW - 11 * DAY}, "is not after valid_from"),
        ({"subject_id": " "}, "blank subject_id"),
        ({"event_id": ""}, "blank event_id"),
        ({"recorded_by": ""}, "blank recorded_by"),
        ({"recorded_at": None}, "recorded_at missing"),
        ({"recorded_at": datetime(2026, 11, 1)}, "recorded_at has no timezone"),
        ({"valid_from": datetime(2026, 11, 1)}, "valid_from has no timezone"),
        ({"basis": LegalBasis.CONTRACT, "scopes": []}, "contract without scopes"),
        ({"basis": "LEGITIMATE_INTEREST"}, "unknown legal_basis"),
    ],
)
def test_invalid_changes_are_rejected_with_a_reason(kwargs: dict[str, Any], reason: str) -> None:
    bad = change(**kwargs)
    reasons = validate(bad)
    assert any(reason in r for r in reasons), reasons
    with pytest.raises(InvalidConsentChange) as err:
        apply(None, bad)
    assert err.value.reasons == tuple(reasons)


def test_every_reason_is_listed_not_just_the_first() -> None:
    reasons = validate(change(subject_id="", evidence_uri=None, scopes=[]))
    assert len(reasons) == 3


def test_contracts_need_no_evidence() -> None:
    assert validate(change(basis=LegalBasis.CONTRACT, evidence_uri=None)) == []


def test_a_public_figure_needs_evidence_and_a_justification_like_any_basis() -> None:
    assert validate(change(basis=LegalBasis.PUBLIC_FIGURE, scopes=[])) == []
    assert validate(change(basis=LegalBasis.PUBLIC_FIGURE, evidence_uri=None)) == [
        "public figure without evidence_uri"
    ]
    assert validate(change(basis=LegalBasis.PUBLIC_FIGURE, justification=" ")) == [
        "public figure without a justification"
    ]


def test_a_withdrawal_is_honoured_whatever_else_is_missing() -> None:
    withdrawal = change(
        ConsentAction.WITHDRAWN, evidence_uri=None, scopes=[], valid_until=NOW - 20 * DAY, recorded_by=""
    )
    assert validate(withdrawal) == []
    assert validate(change(ConsentAction.WITHDRAWN, subject_id="")) == ["blank subject_id"]


def test_updating_a_withdrawn_consent_needs_a_new_grant() -> None:
    withdrawn = state_of(change(), change(ConsentAction.WITHDRAWN))
    assert validate(change(ConsentAction.UPDATED), withdrawn) == [
        "UPDATED after WITHDRAWN: consent must be GRANTED anew"
    ]
    assert validate(change(ConsentAction.GRANTED), withdrawn) == []


def test_a_change_for_another_subject_is_refused() -> None:
    with pytest.raises(InvalidConsentChange, match="applied to the state of"):
        apply(state_of(change()), change(subject_id="S-2"))


def test_legal_basis_from_user_input() -> None:
    assert parse_legal_basis(" public_figure ") == LegalBasis.PUBLIC_FIGURE
    with pytest.raises(ValueError, match="one of EXPLICIT_CONSENT, PUBLIC_FIGURE, CONTRACT"):
        parse_legal_basis("legitimate interest")


# --- undecodable consent messages ------------------------------------------------------------


def newer_consent_schema() -> Schema:
    schema = json.loads((SCHEMA_DIR / "ConsentChange.avsc").read_text())
    newer = copy.deepcopy(schema)
    newer["fields"][3]["type"]["symbols"].append("LEGITIMATE_INTEREST")
    return Schema.from_json(newer)


def encode_with(schema: Schema, **overrides: Any) -> bytes:
    datum = change().to_avro() | overrides
    return schema.encode(datum)


def test_an_unknown_basis_from_a_newer_producer_gets_a_clear_reason() -> None:
    newer = newer_consent_schema()
    message = encode_with(newer, legal_basis="LEGITIMATE_INTEREST")
    # A reader that knows the newer writer schema fails on the symbol...
    registry = SchemaRegistry().load_dir()
    registry.add(newer, current=False)
    with pytest.raises(ContractError) as err:
        registry.decode(message, registry.current("facegate.ConsentChange"))
    assert contract_error_reason(err.value) == "unknown legal_basis LEGITIMATE_INTEREST"
    # ...and one that does not know it fails on the fingerprint.
    with pytest.raises(ContractError) as err:
        ConsentChange.from_bytes(message)
    assert contract_error_reason(err.value).startswith("unknown ConsentChange schema")


def test_other_undecodable_messages_get_a_reason() -> None:
    with pytest.raises(ContractError) as err:
        ConsentChange.from_bytes(b'{"subject_id": "S-1"}')
    assert contract_error_reason(err.value) == "not an Avro ConsentChange (no single-object header)"
    truncated = change().to_bytes()[:-5]
    with pytest.raises(ContractError) as err:
        ConsentChange.from_bytes(truncated)
    assert contract_error_reason(err.value).startswith("undecodable ConsentChange")


# --- state -----------------------------------------------------------------------------------


def test_a_grant_becomes_the_state() -> None:
    grant = change(scopes=["Editorial", "archive", "editorial "])
    state = state_of(grant)
    assert state.subject_id == "S-1" and state.basis == LegalBasis.EXPLICIT_CONSENT
    assert state.scopes == ("archive", "editorial")
    assert (state.valid_from, state.valid_until) == (grant.valid_from, grant.valid_until)
    assert state.evidence_uri == EVIDENCE and not state.withdrawn
    assert state.history == (grant.event_id,) and state.changed_at == grant.recorded_at


def test_an_update_replaces_the_consent() -> None:
    first = change()
    update = change(ConsentAction.UPDATED, scopes=["editorial"], valid_until=NOW + 5 * DAY)
    state = state_of(first, update)
    assert state.scopes == ("editorial",) and state.valid_until == NOW + 5 * DAY
    assert state.history == (first.event_id, update.event_id)


def test_an_update_whose_grant_was_compacted_away_still_counts() -> None:
    assert decision(state_of(change(ConsentAction.UPDATED))).status == FaceStatus.GREEN


def test_a_withdrawal_clears_the_scopes_and_keeps_the_record() -> None:
    grant, withdrawal = change(), change(ConsentAction.WITHDRAWN, evidence_uri=None, recorded_at=NOW)
    state = state_of(grant, withdrawal)
    assert state.withdrawn and state.withdrawn_at == NOW and state.scopes == ()
    assert state.evidence_uri == EVIDENCE  # the grant's evidence stays on record
    assert state.history == (grant.event_id, withdrawal.event_id)
    # A withdrawal for a subject never seen still records the withdrawal.
    assert state_of(change(ConsentAction.WITHDRAWN)).withdrawn


def test_a_new_grant_after_withdrawal_restores_consent() -> None:
    state = state_of(change(), change(ConsentAction.WITHDRAWN), change())
    assert not state.withdrawn and state.withdrawn_at is None and state.purged_at is None
    assert decision(state).status == FaceStatus.GREEN


def test_applying_the_same_event_twice_changes_nothing() -> None:
    grant = change()
    withdrawal = change(ConsentAction.WITHDRAWN)
    state = state_of(grant, withdrawal)
    assert apply(state, grant) is state
    assert apply(state, withdrawal) is state


def test_the_state_round_trips_through_json() -> None:
    state = mark_expiry_warned(mark_purged(state_of(change(), change(ConsentAction.WITHDRAWN)), NOW), NOW)
    text = json.dumps(state.to_dict())
    assert ConsentState.from_dict(json.loads(text)) == state
    open_ended = state_of(change(valid_until=None, basis=LegalBasis.PUBLIC_FIGURE))
    assert ConsentState.from_dict(json.loads(json.dumps(open_ended.to_dict()))) == open_ended


def test_an_unknown_state_version_is_refused() -> None:
    data = state_of(change()).to_dict() | {"v": 99}
    with pytest.raises(ValueError, match="version"):
        ConsentState.from_dict(data)


# --- decisions -------------------------------------------------------------------------------


def test_valid_explicit_consent_covering_the_standard_scopes_is_green() -> None:
    assert decision(state_of(change())) == Decision(
        FaceStatus.GREEN, "consent:explicit", ("archive", "editorial")
    )
    extra = state_of(change(scopes=["editorial", "archive", "marketing"]))
    assert decision(extra).status == FaceStatus.GREEN and "marketing" in decision(extra).scopes


def test_a_contract_covering_the_scopes_is_green() -> None:
    assert decision(state_of(change(basis=LegalBasis.CONTRACT))).reason == "consent:contract"


def test_a_public_figure_is_green_with_the_scopes_given() -> None:
    state = state_of(change(basis=LegalBasis.PUBLIC_FIGURE, scopes=["editorial"]))
    assert decision(state) == Decision(FaceStatus.GREEN, "public_figure", ("editorial",))
    assert decision(state).may_name


def test_fewer_scopes_than_the_standard_ones_is_amber_scope_limited() -> None:
    state = state_of(change(scopes=["editorial"]))
    assert decision(state) == Decision(FaceStatus.AMBER, "scope_limited:editorial", ("editorial",))
    assert decision(state).may_name
    # The organisation's standard scopes are a setting.
    assert decide(state, NOW, WINDOW, ("editorial",)).status == FaceStatus.GREEN
    assert decide(state, NOW, WINDOW, ("Editorial ",)).status == FaceStatus.GREEN


def test_expiring_within_the_window_is_amber_with_the_date() -> None:
    state = state_of(change(valid_until=datetime(2026, 12, 1, 8, 0, tzinfo=UTC)))
    assert decision(state) == Decision(FaceStatus.AMBER, "expiring:2026-12-01", ("archive", "editorial"))
    assert decide(state, NOW, timedelta(days=5), STANDARD).status == FaceStatus.GREEN
    public = state_of(change(basis=LegalBasis.PUBLIC_FIGURE, valid_until=NOW + 2 * DAY))
    assert decision(public).status == FaceStatus.AMBER


def test_the_expiry_date_is_given_in_utc() -> None:
    until = datetime(2026, 12, 2, 1, 0, tzinfo=timezone(timedelta(hours=5)))  # 2026-12-01 20:00 UTC
    assert decision(state_of(change(valid_until=until))).reason == "expiring:2026-12-01"


@pytest.mark.parametrize(
    ("state_changes", "now", "reason"),
    [
        ((), NOW, "no_consent"),
        ((change(), change(ConsentAction.WITHDRAWN)), NOW, "withdrawn"),
        ((change(valid_until=NOW - DAY, valid_from=NOW - 30 * DAY),), NOW, "expired"),
        ((change(valid_until=NOW),), NOW, "expired"),  # valid_until is exclusive
        ((change(valid_from=NOW + DAY),), NOW, "not_yet_valid"),
        ((change(basis=LegalBasis.PUBLIC_FIGURE, valid_from=NOW + DAY),), NOW, "not_yet_valid"),
    ],
)
def test_no_valid_basis_is_red(state_changes: tuple[ConsentChange, ...], now: datetime, reason: str) -> None:
    state = state_of(*state_changes) if state_changes else None
    result = decision(state, now)
    assert result == Decision(FaceStatus.RED, reason, ())
    assert not result.may_name


def test_valid_from_is_inclusive() -> None:
    assert decision(state_of(change(valid_from=NOW))).status == FaceStatus.GREEN


def test_an_unmatched_face_is_red_unknown() -> None:
    assert Decision(FaceStatus.RED, "unknown_face", ()) == UNKNOWN_FACE
    assert not UNKNOWN_FACE.may_name


def test_decisions_need_an_aware_clock() -> None:
    with pytest.raises(ValueError):
        decide(state_of(change()), datetime(2026, 11, 22), WINDOW, STANDARD)


def test_a_decision_follows_the_consent_at_decision_time() -> None:
    state = state_of(change(valid_from=NOW, valid_until=NOW + 60 * DAY, scopes=["editorial", "archive"]))
    timeline = [decision(state, NOW + d * DAY).reason for d in (-1, 0, 29, 31, 59, 60)]
    assert timeline == [
        "not_yet_valid",
        "consent:explicit",
        "consent:explicit",
        "expiring:2027-01-21",
        "expiring:2027-01-21",
        "expired",
    ]


# --- the expiry timer ------------------------------------------------------------------------


def test_due_for_expiry_finds_passed_consents_once() -> None:
    expired = state_of(change(subject_id="S-1", valid_from=NOW - 90 * DAY, valid_until=NOW - DAY))
    just = state_of(change(subject_id="S-2", valid_from=NOW - 90 * DAY, valid_until=NOW))
    valid = state_of(change(subject_id="S-3"))
    forever = state_of(change(subject_id="S-4", valid_until=None))
    withdrawn = state_of(change(subject_id="S-5", valid_until=NOW - DAY, valid_from=NOW - 9 * DAY))
    withdrawn = apply(withdrawn, change(ConsentAction.WITHDRAWN, subject_id="S-5"))
    states = [valid, just, forever, expired, withdrawn]
    assert due_for_expiry(states, NOW) == [expired, just]
    done = [mark_purged(s, NOW) if s in (expired, just) else s for s in states]
    assert due_for_expiry(done, NOW) == []


def test_pending_purges_also_finishes_withdrawals() -> None:
    expired = state_of(change(subject_id="S-1", valid_from=NOW - 90 * DAY, valid_until=NOW - DAY))
    withdrawn = state_of(change(subject_id="S-2"), change(ConsentAction.WITHDRAWN, subject_id="S-2"))
    assert pending_purges([expired, withdrawn], NOW) == [
        (withdrawn, PurgeReason.WITHDRAWN),
        (expired, PurgeReason.EXPIRED),
    ]
    assert pending_purges([mark_purged(expired, NOW), mark_purged(withdrawn, NOW)], NOW) == []


def test_entering_the_amber_window_is_announced_once() -> None:
    soon = state_of(change(subject_id="S-1", valid_until=NOW + 10 * DAY))
    later = state_of(change(subject_id="S-2", valid_until=NOW + 100 * DAY))
    gone = state_of(change(subject_id="S-3", valid_from=NOW - 90 * DAY, valid_until=NOW - DAY))
    future = state_of(change(subject_id="S-4", valid_from=NOW + DAY, valid_until=NOW + 5 * DAY))
    assert due_for_expiry_warning([later, soon, gone, future], NOW, WINDOW) == [soon]
    assert due_for_expiry_warning([mark_expiry_warned(soon, NOW)], NOW, WINDOW) == []


def test_an_update_with_the_same_window_keeps_the_timer_state_a_new_window_resets_it() -> None:
    grant = change(valid_until=NOW + 10 * DAY)
    warned = mark_expiry_warned(state_of(grant), NOW)
    same = apply(warned, change(ConsentAction.UPDATED, valid_until=NOW + 10 * DAY, scopes=["editorial"]))
    assert same.expiry_warned_at == NOW
    extended = apply(warned, change(ConsentAction.UPDATED, valid_until=NOW + 400 * DAY))
    assert extended.expiry_warned_at is None


# --- properties ------------------------------------------------------------------------------

times = st.integers(min_value=-400, max_value=400).map(lambda d: NOW + timedelta(hours=d * 6))
scope_sets = st.lists(st.sampled_from(["editorial", "archive", "marketing", "social"]), max_size=4)


@st.composite
def changes(draw: st.DrawFn) -> ConsentChange:
    action = draw(st.sampled_from(list(ConsentAction)))
    basis = draw(st.sampled_from(list(LegalBasis)))
    start = draw(times)
    until = draw(
        st.one_of(
            st.none(), st.integers(min_value=1, max_value=4800).map(lambda h: start + timedelta(hours=h))
        )
    )
    scopes = draw(scope_sets)
    if basis != LegalBasis.PUBLIC_FIGURE and not scopes:
        scopes = ["editorial"]
    return change(action, basis, scopes=scopes, valid_from=start, valid_until=until)


@settings(max_examples=300, deadline=None)
@given(history=st.lists(changes(), min_size=1, max_size=8), now=times, window_days=st.integers(0, 60))
def test_decisions_follow_the_last_effective_change(
    history: list[ConsentChange], now: datetime, window_days: int
) -> None:
    state: ConsentState | None = None
    last_effective: ConsentChange | None = None
    for c in history:
        if validate(c, state):
            continue  # an UPDATED after WITHDRAWN goes to the DLQ and changes nothing
        state = apply(state, c)
        last_effective = c
    result = decide(state, now, timedelta(days=window_days), STANDARD)
    if last_effective is None:
        assert result.reason == "no_consent"
        return
    assert state is not None
    # The JSON form decides the same.
    assert (
        decide(
            ConsentState.from_dict(json.loads(json.dumps(state.to_dict()))),
            now,
            timedelta(days=window_days),
            STANDARD,
        )
        == result
    )
    c = last_effective
    valid = (
        c.action != ConsentAction.WITHDRAWN
        and c.valid_from <= now
        and (c.valid_until is None or now < c.valid_until)
    )
    assert result.may_name == valid
    event("named" if valid else "red")
    if not valid:
        assert result.status == FaceStatus.RED and result.scopes == ()
        return
    assert result.scopes == normalise_scopes(c.scopes)
    expiring = c.valid_until is not None and c.valid_until - now <= timedelta(days=window_days)
    limited = c.legal_basis != LegalBasis.PUBLIC_FIGURE and not set(STANDARD) <= set(c.scopes)
    assert (result.status == FaceStatus.AMBER) == (expiring or limited)
    # Everything that is not valid now is either due for a purge or not yet valid.
    if c.valid_until is not None and now >= c.valid_until:
        assert state in due_for_expiry([state], now)


@settings(max_examples=200, deadline=None)
@given(history=st.lists(changes(), min_size=1, max_size=6))
def test_replaying_any_prefix_changes_nothing(history: list[ConsentChange]) -> None:
    state: ConsentState | None = None
    applied: list[ConsentChange] = []
    for c in history:
        if not validate(c, state):
            state = apply(state, c)
            applied.append(c)
    for c in applied:  # an at-least-once consumer sees them all again
        assert apply(state, c) == state
    if state is not None:
        assert state.history == tuple(c.event_id for c in applied)
        assert dataclasses.asdict(ConsentState.from_dict(state.to_dict())) == dataclasses.asdict(state)
