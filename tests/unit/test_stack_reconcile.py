"""Reconcile at `up`: which vault subjects the consent registry gives no basis."""

from __future__ import annotations

import uuid
from datetime import timedelta

from pipeline.contract import ConsentAction, ConsentChange, LegalBasis, utcnow
from pipeline.kafka.io import Message
from pipeline.settings import Settings
from pipeline.stack.reconcile import without_consent


def change(subject: str, action: ConsentAction) -> ConsentChange:
    now = utcnow()
    return ConsentChange(
        event_id=uuid.uuid4().hex,
        subject_id=subject,
        action=action,
        legal_basis=LegalBasis.EXPLICIT_CONSENT,
        scopes=["editorial"] if action != ConsentAction.WITHDRAWN else [],
        valid_from=now - timedelta(days=1),
        valid_until=None,
        evidence_uri=f"s3://legal/{subject}.pdf",
        recorded_at=now,
        recorded_by="dpo@test",
    )


def registry(*changes: ConsentChange) -> list[Message]:
    return [Message(c.subject_id, c.to_bytes(), offset=i) for i, c in enumerate(changes)]


def test_no_record_and_a_withdrawal_have_no_basis_a_grant_has() -> None:
    consent = registry(
        change("S-granted", ConsentAction.GRANTED),
        change("S-withdrawn", ConsentAction.GRANTED),
        change("S-withdrawn", ConsentAction.WITHDRAWN),
        change("S-not-in-vault", ConsentAction.GRANTED),
    )
    vault = ["S-granted", "S-withdrawn", "S-unknown"]
    assert without_consent(vault, consent, Settings()) == {
        "S-withdrawn": "consent_withdrawn",
        "S-unknown": "no_consent_on_record",
    }


def test_a_record_that_is_not_a_consent_change_is_no_basis() -> None:
    junk = [Message("S-1", b"\xc3\x01not avro at all")]
    assert without_consent(["S-1"], junk, Settings()) == {"S-1": "no_consent_on_record"}
