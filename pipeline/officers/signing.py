"""Signing consent-plane records as an officer, and verifying them as a worker.

    signed = sign(change, key)                 # recorded_by = key's officer, signed_by = key id
    officer = verify(message, record, registry, now)   # or raises SignatureRefused

What each record kind names as its signer and its signing time:

| record | signer field | signed at |
|---|---|---|
| ConsentChange | recorded_by | recorded_at |
| SubjectEnrollment | recorded_by | recorded_at (set when signing) |
| ErasureRequest | requested_by | requested_at |
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta
from typing import TypeVar

from cryptography.exceptions import InvalidSignature

from ..contract import ConsentChange, ContractError, ErasureRequest, Record, SubjectEnrollment, utcnow
from ..contract.signature import signed_message, unsigned_message
from ..errors import PermanentError
from .keys import OfficerKey, load_public_key
from .registry import Officer, OfficerRegistry

R = TypeVar("R", bound=Record)

# Who signed and when, per record class: (signer field, time field).
SIGNER_FIELDS: dict[type[Record], tuple[str, str]] = {
    ConsentChange: ("recorded_by", "recorded_at"),
    SubjectEnrollment: ("recorded_by", "recorded_at"),
    ErasureRequest: ("requested_by", "requested_at"),
}
# A record dated later than this ahead of the worker's clock is refused: a record dated in the
# future would outlive its officer's revocation.
CLOCK_SKEW = timedelta(minutes=5)


class Refusal(enum.StrEnum):
    """Why a consent-plane record did not take effect (stable: audit records and DLQ headers)."""

    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    REVOKED = "revoked_key"
    NOT_PERMITTED = "not_permitted"
    WRONG_SIGNER = "wrong_signer"
    FUTURE_DATED = "future_dated"


class SignatureRefused(PermanentError):
    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(f"{refusal}: {message}")
        self.refusal = refusal


def sign(record: R, key: OfficerKey, *, now: datetime | None = None) -> R:
    """``record`` as ``key``'s officer signs it: signer field set to the officer id, then signed."""
    fields = SIGNER_FIELDS.get(type(record))
    if fields is None:
        raise ContractError(f"{type(record).__name__} is not signed by privacy officers")
    by, at = fields
    changes: dict[str, object] = {by: key.officer_id, "signed_by": key.key_id, "signature": None}
    if getattr(record, at) is None:
        changes[at] = now or utcnow()
    unsigned = dataclasses.replace(record, **changes)  # type: ignore[type-var]
    return dataclasses.replace(unsigned, signature=key.sign(unsigned_message(unsigned)))  # type: ignore[type-var]


def verify(message: bytes, record: Record, registry: OfficerRegistry, now: datetime) -> Officer:
    """The officer whose signature makes ``record`` (decoded from ``message``) take effect."""
    fields = SIGNER_FIELDS.get(type(record))
    if fields is None:
        raise SignatureRefused(Refusal.NOT_PERMITTED, f"{type(record).__name__} is not an officer's record")
    by, at = fields
    key_id, signature = getattr(record, "signed_by", None), getattr(record, "signature", None)
    if not key_id or not signature:
        raise SignatureRefused(Refusal.UNSIGNED, "no officer signature")
    officer = registry.by_key_id(key_id)
    if officer is None:
        raise SignatureRefused(Refusal.UNKNOWN_KEY, f"key {key_id} is not a registered officer's")
    try:
        load_public_key(officer.public_key).verify(signature, signed_message(message))
    except (InvalidSignature, ValueError):
        raise SignatureRefused(
            Refusal.BAD_SIGNATURE, f"signature does not verify under {officer.officer_id}'s key {key_id}"
        ) from None
    signed_at: datetime | None = getattr(record, at)
    if signed_at is None:
        raise SignatureRefused(Refusal.UNSIGNED, f"signed without {at}")
    if not officer.valid_at(signed_at):
        assert officer.revoked_at is not None
        why = "compromised" if officer.compromised else f"revoked at {officer.revoked_at.isoformat()}"
        raise SignatureRefused(Refusal.REVOKED, f"officer {officer.officer_id}'s key is {why}")
    if signed_at > now + CLOCK_SKEW:
        raise SignatureRefused(Refusal.FUTURE_DATED, f"{at} {signed_at.isoformat()} is in the future")
    schema = type(record).SCHEMA_NAME
    if not officer.may_sign(schema):
        raise SignatureRefused(
            Refusal.NOT_PERMITTED, f"officer {officer.officer_id} ({officer.role}) may not sign {schema}"
        )
    if getattr(record, by) != officer.officer_id:
        raise SignatureRefused(
            Refusal.WRONG_SIGNER, f"{by} {getattr(record, by)!r} is not the signer {officer.officer_id}"
        )
    return officer
