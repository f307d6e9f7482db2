"""The hash chain: each audit record carries the hash of the one before it, and is signed.

``hash = sha256(canonical form of every other field, prev_hash included)``, hex. Changing any
field of a record changes its hash; recomputing that hash breaks the next record's link; removing
or inserting a record breaks the seq run and a link. A hash alone cannot stop someone who
rewrites the whole tail, or writes a whole new chain: so each link is also signed with the
workers' key (``signature`` = Ed25519 over ``link_message(signed_by, hash)``, audit/keys.py), and
the heads are anchored outside the topic (audit/anchors.py) to detect a removed tail.

Several writers append in parallel (one per partition of the consent join), each to its own chain
named by ``AuditRecord.chain``; order and links only mean something within one chain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from ..contract import AuditRecord, utcnow
from .actions import AuditAction
from .guard import check_no_biometrics

GENESIS = "0" * 64  # prev_hash of the first record (seq 0) of every chain
_DOMAIN = "facegate.audit.v1"
_LINK_DOMAIN = b"facegate.audit.signature.v1\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ChainHead(NamedTuple):
    """Where a chain stands: the last record's seq and hash."""

    seq: int
    hash: str


def _millis(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    # Integer arithmetic, as Avro's timestamp-millis encoder does: floats would drift by a milli.
    return (at - _EPOCH) // timedelta(milliseconds=1)


def canonical_bytes(record: AuditRecord) -> bytes:
    """The bytes that are hashed: every field but ``hash`` and the signature, as sorted compact JSON.

    ``at`` is written as epoch milliseconds, the precision Avro's timestamp-millis keeps, so a
    record hashes the same before and after a round trip through the topic.
    """
    fields: dict[str, Any] = {
        "v": _DOMAIN,
        "chain": record.chain,
        "seq": record.seq,
        "at": _millis(record.at),
        "action": record.action,
        "subject_id": record.subject_id,
        "asset_id": record.asset_id,
        "detail": record.detail,
        "prev_hash": record.prev_hash,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def record_hash(record: AuditRecord) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def link_message(key_id: str, hash_hex: str) -> bytes:
    """What a link's signature covers: the signing key's id and the record's hash (all of it)."""
    return _LINK_DOMAIN + key_id.encode("utf-8") + b"\x00" + hash_hex.encode("ascii")


class Signer(Protocol):
    @property
    def key_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


def detail_json(detail: Mapping[str, Any]) -> str:
    """A detail mapping as the canonical JSON text stored in ``AuditRecord.detail``.

    Refuses biometric data (BiometricDataError) and anything JSON cannot carry exactly (NaN,
    non-string keys, arbitrary objects) with ValueError/TypeError.
    """
    check_no_biometrics(detail)
    return json.dumps(
        dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _truncate_to_millis(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


class AuditChain:
    """One writer's chain. Not thread-safe: one chain per worker (per partition).

    ``append`` advances the head and returns the sealed record to publish. If publishing fails,
    publish that same record again; appending again would leave a gap in the chain.
    """

    def __init__(
        self, chain: str = "main", *, head: ChainHead | None = None, signer: Signer | None = None
    ) -> None:
        if not chain or chain != chain.strip():
            raise ValueError(f"bad chain name {chain!r}")
        self.chain = chain
        self.signer = signer
        self._next_seq = 0 if head is None else head.seq + 1
        self._prev_hash = GENESIS if head is None else head.hash

    @classmethod
    def resume(
        cls, last: AuditRecord | None, chain: str = "main", signer: Signer | None = None
    ) -> AuditChain:
        """Continue after ``last``, the newest record already written to this chain (None: start).

        The last record is re-hashed first: resuming from a tampered head would bless it.
        """
        if last is None:
            return cls(chain, signer=signer)
        if last.chain != chain:
            raise ValueError(f"record belongs to chain {last.chain!r}, not {chain!r}")
        if record_hash(last) != last.hash:
            raise ValueError(f"cannot resume chain {chain!r}: record seq {last.seq} does not match its hash")
        return cls(chain, head=ChainHead(last.seq, last.hash), signer=signer)

    @property
    def head(self) -> ChainHead | None:
        """The last appended (or resumed-from) record, None before the first."""
        return None if self._next_seq == 0 else ChainHead(self._next_seq - 1, self._prev_hash)

    def append(
        self,
        action: AuditAction | str,
        *,
        subject_id: str | None = None,
        asset_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """Seal the next record. ``detail`` must be JSON-able and free of biometric data."""
        unsealed = AuditRecord(
            seq=self._next_seq,
            at=_truncate_to_millis(at) if at is not None else utcnow(),
            action=str(action),
            subject_id=subject_id,
            asset_id=asset_id,
            detail=detail_json(detail or {}),
            prev_hash=self._prev_hash,
            hash="",
            chain=self.chain,
        )
        digest = record_hash(unsealed)
        sealed = dataclasses.replace(unsealed, hash=digest)
        if self.signer is not None:
            key_id = self.signer.key_id
            signature = self.signer.sign(link_message(key_id, digest))
            sealed = dataclasses.replace(sealed, signed_by=key_id, signature=signature)
        self._next_seq += 1
        self._prev_hash = sealed.hash
        return sealed
