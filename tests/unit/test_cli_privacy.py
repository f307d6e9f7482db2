"""Privacy officer commands: local validation, consent history, the right-of-access view, audit JSON.

No servers: records are built, encoded as they travel, and read back through the same functions
the commands use.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner

from pipeline.audit import AuditAction, AuditChain, by_chain_seq, verify
from pipeline.cli import cli
from pipeline.cli.common import parse_when
from pipeline.cli.history import (
    ERASED,
    audit_detail,
    consent_view,
    current_tags,
    decoded,
    faces_of,
    verify_json,
)
from pipeline.cli.privacy import check_subject_id, consent_lines
from pipeline.contract import (
    AssetFaces,
    AssetKind,
    AuditRecord,
    BBox,
    ConsentAction,
    ConsentChange,
    Face,
    FaceStatus,
    LegalBasis,
    PurgeReason,
    SubjectPurged,
)
from pipeline.kafka.io import Message
from pipeline.settings import PrivacySettings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
PRIVACY = PrivacySettings()


def _change(
    action: ConsentAction = ConsentAction.GRANTED,
    subject: str = "S-1",
    at: datetime = T0,
    **fields: object,
) -> ConsentChange:
    change = ConsentChange(
        event_id=f"{action.value.lower()}-{at.isoformat()}",
        subject_id=subject,
        action=action,
        legal_basis=LegalBasis.EXPLICIT_CONSENT,
        scopes=["archive", "editorial"],
        valid_from=T0,
        valid_until=None,
        evidence_uri="s3://quitclaims/S-1.pdf",
        recorded_at=at,
        recorded_by="dpo",
    )
    return dataclasses.replace(change, **fields)  # type: ignore[arg-type]


def _messages(*records: tuple[str, bytes], partition: int = 0) -> list[Message]:
    return [Message(key=k, value=v, partition=partition, offset=i) for i, (k, v) in enumerate(records)]


def test_subject_ids_are_keys_and_prefixes() -> None:
    assert check_subject_id(" S-1042 ") == "S-1042"
    for bad in ("", "  ", "a/b", "two words", "tab\there", "nul\x00"):
        with pytest.raises(click.BadParameter):
            check_subject_id(bad)


def test_parse_when_dates_and_times_in_utc_at_millisecond_precision() -> None:
    assert parse_when("2027-12-31") == datetime(2027, 12, 31, tzinfo=UTC)
    assert parse_when("2027-12-31T08:30:00") == datetime(2027, 12, 31, 8, 30, tzinfo=UTC)
    assert parse_when("2027-12-31T08:30:00Z") == datetime(2027, 12, 31, 8, 30, tzinfo=UTC)
    assert parse_when("2027-12-31T10:30:00+02:00") == datetime(2027, 12, 31, 8, 30, tzinfo=UTC)
    assert parse_when("2027-12-31T08:30:00.123456").microsecond == 123000
    with pytest.raises(click.BadParameter, match="not a date"):
        parse_when("next tuesday")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--basis", "explicit_consent", "--scope", "editorial"], "explicit consent without evidence_uri"),
        (["--basis", "explicit_consent", "--evidence", "s3://q/1.pdf"], "explicit consent without scopes"),
        (["--basis", "contract", "--evidence", "s3://q/1.pdf"], "contract without scopes"),
        (
            ["--basis", "public_figure", "--from", "2027-01-01", "--until", "2026-01-01"],
            "valid_until 2026-01-01T00:00:00+00:00 is not after valid_from",
        ),
        (["--basis", "explicit_consent", "--scope", "x", "--evidence", "quitclaim"], "is not a URI"),
    ],
)
def test_consent_grant_refuses_an_invalid_grant_before_connecting(args: list[str], reason: str) -> None:
    # No stack exists: the refusal must come from local validation, before any connection.
    result = CliRunner().invoke(
        cli, ["consent", "grant", "S-1", *args], env={"FACEGATE_DATA_DIR": "/nonexistent"}
    )
    assert result.exit_code == 1, result.output
    assert "consent not sent:" in result.output
    assert reason in result.output


def test_grant_basis_is_one_of_the_three() -> None:
    result = CliRunner().invoke(cli, ["consent", "grant", "S-1", "--basis", "legitimate_interest"])
    assert result.exit_code == 2
    assert "legitimate_interest" in result.output


def _register_commands() -> None:
    if "consent" not in cli.commands:
        from pipeline.cli import _register

        _register()


@pytest.fixture(autouse=True)
def _commands() -> None:
    _register_commands()


def test_consent_view_applies_the_subjects_changes_in_order_and_decides_now() -> None:
    grant = _change()
    other = _change(subject="S-2")
    messages = _messages(("S-1", grant.to_bytes()), ("S-2", other.to_bytes()))
    view = consent_view("S-1", messages, PRIVACY, NOW)
    assert view.history == [grant]
    assert view.active
    assert view.state is not None and view.state.scopes == ("archive", "editorial")
    assert view.decision is not None and view.decision.status == FaceStatus.GREEN


def test_consent_view_withdrawal_and_a_change_the_join_would_refuse() -> None:
    grant = _change()
    bad = _change(at=T0 + timedelta(days=1), evidence_uri=None)  # explicit consent without evidence
    withdraw = _change(ConsentAction.WITHDRAWN, at=T0 + timedelta(days=2))
    messages = _messages(
        ("S-1", grant.to_bytes()), ("S-1", bad.to_bytes()), ("S-1", b"not avro"), ("S-1", withdraw.to_bytes())
    )
    view = consent_view("S-1", messages, PRIVACY, NOW)
    assert view.history == [grant, withdraw]
    assert [(c.event_id, r) for c, r in view.rejected] == [
        (bad.event_id, ("explicit consent without evidence_uri",))
    ]
    assert [s.offset for s in view.skipped] == [2]
    assert view.skipped[0].reason  # why it did not decode
    assert not view.active
    assert view.decision is not None and (view.decision.status, view.decision.reason) == (
        FaceStatus.RED,
        "withdrawn",
    )
    lines = consent_lines(view)
    assert lines[0] == "consent history of S-1 (oldest first):"
    assert "current: no consent (withdrawn at 2026-11-03T00:00:00+00:00)" in lines
    assert "a face matched now: RED (withdrawn)" in lines


def test_an_erasure_after_the_last_change_ends_the_consent_a_later_grant_starts_a_new_one() -> None:
    grant = _change()
    erased = SubjectPurged("p-1", "S-1", PurgeReason.ERASURE_REQUEST, [], 2, True, T0 + timedelta(days=1))
    view = consent_view("S-1", _messages(("S-1", grant.to_bytes())), PRIVACY, NOW, [erased])
    assert not view.active
    assert view.erased == erased
    assert view.decision is not None and (view.decision.status, view.decision.reason) == (
        FaceStatus.RED,
        ERASED,
    )
    assert "current: no consent (erased at 2026-11-02T00:00:00+00:00)" in consent_lines(view)
    assert json.loads(json.dumps(view.to_json(), default=str))["erased"]["event_id"] == "p-1"

    regrant = _change(at=T0 + timedelta(days=3))
    messages = _messages(("S-1", grant.to_bytes()), ("S-1", regrant.to_bytes()))
    view = consent_view("S-1", messages, PRIVACY, NOW, [erased])
    assert view.active and view.erased is None


def test_an_expiring_consent_is_amber_with_its_date() -> None:
    grant = _change(valid_until=NOW + timedelta(days=10))
    view = consent_view("S-1", _messages(("S-1", grant.to_bytes())), PRIVACY, NOW)
    assert view.decision is not None
    assert (view.decision.status, view.decision.reason) == (FaceStatus.AMBER, "expiring:2026-12-02")


def _tags(asset: str, subject: str | None, at: datetime) -> AssetFaces:
    status = FaceStatus.GREEN if subject else FaceStatus.RED
    face = Face("f-1", BBox(1, 2, 30, 40), 0.9, status, "x", subject_id=subject)
    other = Face("f-2", BBox(50, 2, 30, 40), 0.9, FaceStatus.RED, "unknown_face")
    return AssetFaces(asset, AssetKind.IMAGE, [face, other], "m", at)


def test_only_the_current_tags_of_an_asset_count_for_the_subject() -> None:
    messages = _messages(
        ("a", _tags("a", "S-1", T0).to_bytes()),
        ("b", _tags("b", "S-1", T0).to_bytes()),
        ("a", _tags("a", None, T0 + timedelta(hours=1)).to_bytes()),  # revoked: re-emitted without S-1
        ("c", _tags("c", "S-2", T0).to_bytes()),
    )
    named = faces_of("S-1", current_tags(messages))
    assert list(named) == ["b"]
    assert [f.face_id for f in named["b"]] == ["f-1"]


def _audit_log() -> list[AuditRecord]:
    one, two = AuditChain("join-0"), AuditChain("join-1")
    at = T0
    return [
        one.append(AuditAction.CONSENT_CHANGED, subject_id="S-1", detail={"event_id": "e1"}, at=at),
        two.append(AuditAction.ENROLLED, subject_id="S-2", detail={"event_id": "e2"}, at=at),
        one.append(AuditAction.MATCH_DECIDED, subject_id="S-1", asset_id="a", at=at),
        one.append(AuditAction.PURGED, subject_id="S-1", at=at),
    ]


def test_audit_detail_is_the_parsed_json() -> None:
    assert audit_detail(_audit_log()[0]) == {"event_id": "e1"}
    assert audit_detail(dataclasses.replace(_audit_log()[0], detail="not json")) == {}


def test_verify_json_of_a_sound_log_and_of_a_tampered_one() -> None:
    log = _audit_log()
    messages = _messages(*(("S", r.to_bytes()) for r in log), ("S", b"junk"))
    records, undecodable = decoded(messages, AuditRecord)
    report = verify(sorted(records, key=by_chain_seq))
    data = verify_json(report, [])
    assert data["ok"] and data["records"] == 4
    assert data["chains"]["join-0"]["records"] == 3
    assert data["chains"]["join-0"]["last_seq"] == 2
    assert data["chains"]["join-1"]["ok"]
    assert verify_json(report, undecodable)["ok"] is False  # a record that is not an AuditRecord
    assert verify_json(report, undecodable)["undecodable"][0]["offset"] == 4

    tampered = [log[0], log[1], dataclasses.replace(log[2], detail='{"status":"GREEN"}'), log[3]]
    data = verify_json(verify(sorted(tampered, key=by_chain_seq)), [])
    assert data["ok"] is False
    assert data["chains"]["join-0"]["ok"] is False and data["chains"]["join-1"]["ok"] is True
    assert [(p["chain"], p["seq"], p["kind"]) for p in data["problems"]] == [("join-0", 1, "hash_mismatch")]

    missing = [log[0], log[1], log[3]]
    data = verify_json(verify(sorted(missing, key=by_chain_seq)), [])
    assert [(p["seq"], p["kind"]) for p in data["problems"]] == [(2, "seq_gap")]
