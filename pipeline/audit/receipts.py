"""Erasure receipts (SubjectPurged) signed by the workers' key, and checking one.

A receipt is what a privacy officer hands on as proof of erasure, so it must stand on its own:
its signature covers every field (contract/signature.py), and ``check_receipt`` also finds the
PURGED audit record that tells the same story (same purge id, assets and counts) in a chain
whose links verify.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..contract import AuditRecord, ContractError, SubjectPurged
from ..contract.signature import signed_message, unsigned_message
from .actions import AuditAction
from .chain import Signer


class ReceiptInvalid(ValueError):
    """A receipt whose signature or audit record does not hold up."""


def sign_receipt(receipt: SubjectPurged, signer: Signer) -> SubjectPurged:
    unsigned = dataclasses.replace(receipt, signed_by=signer.key_id, signature=None)
    return dataclasses.replace(unsigned, signature=signer.sign(unsigned_message(unsigned)))


def verify_receipt_signature(message: bytes, keys: Mapping[str, Ed25519PublicKey]) -> SubjectPurged:
    """The receipt in ``message`` (bytes as read from facegate.purges) if a worker key signed it."""
    try:
        receipt = SubjectPurged.from_bytes(message)
        covered = signed_message(message)
    except ContractError as exc:
        raise ReceiptInvalid(f"not a SubjectPurged: {exc}") from None
    if not receipt.signed_by or not receipt.signature:
        raise ReceiptInvalid("the receipt is not signed")
    key = keys.get(receipt.signed_by)
    if key is None:
        raise ReceiptInvalid(f"signed by {receipt.signed_by}, which is no worker key")
    try:
        key.verify(receipt.signature, covered)
    except InvalidSignature:
        raise ReceiptInvalid(f"the signature does not verify under {receipt.signed_by}") from None
    return receipt


def purged_record(receipt: SubjectPurged, records: Iterable[AuditRecord]) -> AuditRecord:
    """The PURGED audit record that matches ``receipt`` field for field."""
    for record in records:
        if record.action != AuditAction.PURGED.value or record.subject_id != receipt.subject_id:
            continue
        try:
            detail = json.loads(record.detail)
        except ValueError:
            continue
        if detail.get("purge_id") != receipt.event_id:
            continue
        expected = {
            "reason": receipt.reason.value,
            "asset_ids": list(receipt.asset_ids),
            "faceprints_deleted": receipt.faceprints_deleted,
            "key_destroyed": receipt.key_destroyed,
        }
        differing = sorted(name for name, value in expected.items() if detail.get(name) != value)
        if differing:
            raise ReceiptInvalid(
                f"audit record {record.chain}/{record.seq} of purge {receipt.event_id} differs in {differing}"
            )
        return record
    raise ReceiptInvalid(f"no PURGED audit record of purge {receipt.event_id} for {receipt.subject_id}")
