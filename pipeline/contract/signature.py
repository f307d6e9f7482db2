"""What a record's signature covers: the record itself, in the contract's encoding, unsigned.

A signed record (ConsentChange, SubjectEnrollment, ErasureRequest, SubjectPurged) carries two
optional fields, ``signed_by`` (a key id) and ``signature`` (64 bytes of Ed25519). The signed
message is::

    b"facegate.signature.v1\\x00" + the record's single object encoding with signature = null

Everything else, ``signed_by`` included, is covered. The fields are in the record rather than in
Kafka headers so that a record keeps its proof wherever it is copied: a compacted topic keeps
the latest record per subject (and its signature with it), and a record exported, mirrored or
stored elsewhere can still be checked. Other systems' producers sign the same bytes: write the
record with any Avro library with ``signature`` null, prefix the domain, sign with Ed25519.

The verifier rebuilds those bytes from the message as received, by the writer's own schema (from
the fingerprint in its header), so a record signed under an older schema version still verifies
after the schema has grown.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import fastavro

from .avro import HEADER_LEN, REGISTRY, ContractError
from .records import Record

DOMAIN = b"facegate.signature.v1\x00"
SIGNATURE_FIELDS = ("signed_by", "signature")


def is_signable(record: Record) -> bool:
    names = {f.name for f in dataclasses.fields(record)}  # type: ignore[arg-type]
    return all(name in names for name in SIGNATURE_FIELDS)


def unsigned_message(record: Record) -> bytes:
    """The bytes a signer signs for ``record`` (its ``signed_by`` already set)."""
    if not is_signable(record):
        raise ContractError(f"{type(record).__name__} has no signature fields")
    unsigned = dataclasses.replace(record, signature=None)  # type: ignore[type-var]
    return DOMAIN + unsigned.to_bytes()


def signed_message(message: bytes) -> bytes:
    """The bytes the signature of ``message`` (a record as received) must cover."""
    writer = REGISTRY.writer_of(message)
    try:
        datum: Any = fastavro.schemaless_reader(io.BytesIO(message[HEADER_LEN:]), writer.parsed, None)
    except Exception as exc:  # fastavro raises many types for a bad body
        raise ContractError(f"corrupt {writer.name} body: {exc}") from exc
    if not isinstance(datum, dict) or "signature" not in datum:
        raise ContractError(f"{writer.name} has no signature field")
    datum["signature"] = None
    return DOMAIN + writer.encode(datum)
