"""Verify audit chains: find altered, inserted, removed, reordered and forged records, and say where.

With ``keys`` (the workers' public keys, from the anchor store) every link must carry a valid
signature by one of them: a chain written by anyone else, however well hashed, fails. With
``expected_heads`` (the anchored heads) a chain that ends early, or is missing, fails.

Records are checked per chain in the order given (the order they were read). A reader that
merges several partitions should sort each chain by seq first (``sorted(records, key=by_chain_seq)``);
the links still prove that nothing was changed in between.

An exact copy of the previous record (same chain, seq and hash) is a redelivery from an
at-least-once producer, not tampering: it is counted in ``duplicates`` and otherwise ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..contract import AuditRecord
from .chain import GENESIS, ChainHead, link_message, record_hash


class ProblemKind(enum.StrEnum):
    HASH_MISMATCH = "hash_mismatch"  # the record's content does not match its hash: altered
    BROKEN_LINK = "broken_link"  # prev_hash is not the previous record's hash: altered/replaced
    SEQ_GAP = "seq_gap"  # seqs missing before this record: removed
    OUT_OF_ORDER = "out_of_order"  # seq not after the previous one: inserted, replayed or reordered
    MISSING_START = "missing_start"  # the chain does not begin at seq 0 / its anchor
    TRUNCATED = "truncated"  # the chain ends before the expected head: tail removed
    UNSIGNED = "unsigned"  # no signature where every link must be signed
    UNKNOWN_KEY = "unknown_key"  # signed by a key that is not a worker's: forged
    BAD_SIGNATURE = "bad_signature"  # the signature does not match: altered or forged
    UNANCHORED = "unanchored"  # a chain the anchors do not know: forged (or anchors lost)


@dataclass(frozen=True)
class Problem:
    chain: str
    index: int | None  # position in the verified sequence; None for a missing tail
    seq: int | None
    kind: ProblemKind
    message: str

    def __str__(self) -> str:
        where = f"chain {self.chain}" + (
            f" record #{self.index} (seq {self.seq})" if self.index is not None else ""
        )
        return f"{where}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class ChainSummary:
    chain: str
    records: int
    first_seq: int | None
    head: ChainHead | None  # the last record seen: keep it to detect a rewritten tail later


@dataclass(frozen=True)
class VerifyReport:
    records: int
    chains: Mapping[str, ChainSummary]
    problems: tuple[Problem, ...] = ()
    duplicates: int = 0
    problem_chains: frozenset[str] = field(default_factory=frozenset)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """Lines for an operator: one per chain, then one per problem."""
        lines = []
        for name in sorted(self.chains):
            c = self.chains[name]
            state = "BROKEN" if name in self.problem_chains else "ok"
            span = "empty" if c.head is None else f"seq {c.first_seq}..{c.head.seq}, head {c.head.hash}"
            lines.append(f"chain {name}: {c.records} records, {span}: {state}")
        if self.duplicates:
            lines.append(f"{self.duplicates} redelivered duplicate(s) ignored")
        lines.extend(str(p) for p in self.problems)
        lines.append(
            "audit log verified" if self.ok else f"audit log BROKEN: {len(self.problems)} problem(s)"
        )
        return "\n".join(lines)


def by_chain_seq(record: AuditRecord) -> tuple[str, int]:
    return (record.chain, record.seq)


def verify(
    records: Iterable[AuditRecord],
    *,
    anchors: Mapping[str, ChainHead] | None = None,
    expected_heads: Mapping[str, ChainHead] | None = None,
    keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> VerifyReport:
    """Check every chain in ``records``.

    anchors: per chain, the (seq, hash) of the record just before the first one given, when only
    a suffix is verified (e.g. after retention dropped the start). Without one a chain must begin
    at seq 0 with the genesis prev_hash.
    expected_heads: per chain, the head known from an earlier verification or the anchor store; a
    chain that ends before it (or is absent) is reported as truncated. When given, a chain it
    does not name is reported as unanchored.
    keys: key id -> public key of every key allowed to sign links; None skips signature checks.
    """
    per_chain: dict[str, list[tuple[int, AuditRecord]]] = {}
    total = 0
    for index, record in enumerate(records):
        per_chain.setdefault(record.chain, []).append((index, record))
        total += 1
    anchors = anchors or {}
    expected_heads = expected_heads or {}
    problems: list[Problem] = []
    summaries: dict[str, ChainSummary] = {}
    duplicates = 0
    for name in sorted(set(per_chain) | set(expected_heads)):
        chain_problems, summary, dups = _verify_chain(
            name, per_chain.get(name, []), anchors.get(name), expected_heads.get(name), keys
        )
        if expected_heads and name not in expected_heads:
            chain_problems.append(
                Problem(name, None, None, ProblemKind.UNANCHORED, "no anchored head for this chain")
            )
        problems.extend(chain_problems)
        summaries[name] = summary
        duplicates += dups
    problems.sort(key=lambda p: (p.index is None, p.index or 0, p.chain))
    return VerifyReport(
        records=total,
        chains=summaries,
        problems=tuple(problems),
        duplicates=duplicates,
        problem_chains=frozenset(p.chain for p in problems),
    )


def _verify_chain(
    name: str,
    records: list[tuple[int, AuditRecord]],
    anchor: ChainHead | None,
    expected_head: ChainHead | None,
    keys: Mapping[str, Ed25519PublicKey] | None,
) -> tuple[list[Problem], ChainSummary, int]:
    problems: list[Problem] = []
    expected_seq = 0 if anchor is None else anchor.seq + 1
    expected_prev = GENESIS if anchor is None else anchor.hash
    last: AuditRecord | None = None
    first_seq: int | None = None
    duplicates = 0
    seen: dict[int, str] = {}
    for index, record in records:

        def report(kind: ProblemKind, message: str, index: int = index, record: AuditRecord = record) -> None:
            problems.append(Problem(name, index, record.seq, kind, message))

        own_hash = record_hash(record)
        if last is not None and record == last and own_hash == record.hash:
            duplicates += 1
            continue
        if own_hash != record.hash:
            report(ProblemKind.HASH_MISMATCH, "content does not match its hash: the record was altered")
        if keys is not None:
            signature_problem = _check_signature(record, keys)
            if signature_problem is not None:
                report(*signature_problem)
        if record.seq < expected_seq:
            report(
                ProblemKind.OUT_OF_ORDER,
                f"seq {record.seq} where seq {expected_seq} was expected: inserted, replayed or reordered",
            )
            continue  # keep following the chain from the highest record seen
        if record.seq > expected_seq:
            kind = ProblemKind.MISSING_START if last is None else ProblemKind.SEQ_GAP
            missing = (
                f"{expected_seq}" if record.seq == expected_seq + 1 else f"{expected_seq}..{record.seq - 1}"
            )
            report(kind, f"seq {missing} missing before this record: removed")
        elif record.prev_hash != expected_prev:
            before = "the chain's anchor" if last is None else f"seq {expected_seq - 1}"
            report(
                ProblemKind.BROKEN_LINK,
                f"prev_hash does not match the hash of {before}: that record or this one was altered",
            )
        if first_seq is None:
            first_seq = record.seq
        seen[record.seq] = record.hash
        last = record
        expected_seq = record.seq + 1
        expected_prev = record.hash
    head = None if last is None else ChainHead(last.seq, last.hash)
    if expected_head is not None:
        problem = _check_expected_head(name, expected_head, head, seen)
        if problem is not None:
            problems.append(problem)
    summary = ChainSummary(name, len(records) - duplicates, first_seq, head)
    return problems, summary, duplicates


def _check_expected_head(
    name: str, expected: ChainHead, head: ChainHead | None, seen: Mapping[int, str]
) -> Problem | None:
    if head is None or head.seq < expected.seq:
        have = "no records" if head is None else f"last seq {head.seq}"
        return Problem(name, None, None, ProblemKind.TRUNCATED, f"{have}, expected up to seq {expected.seq}")
    if seen.get(expected.seq, expected.hash) != expected.hash:
        return Problem(
            name,
            None,
            expected.seq,
            ProblemKind.BROKEN_LINK,
            f"seq {expected.seq} differs from the recorded head: the chain was rewritten from there",
        )
    return None


def _check_signature(
    record: AuditRecord, keys: Mapping[str, Ed25519PublicKey]
) -> tuple[ProblemKind, str] | None:
    if not record.signed_by or not record.signature:
        return ProblemKind.UNSIGNED, "the link is not signed"
    key = keys.get(record.signed_by)
    if key is None:
        return ProblemKind.UNKNOWN_KEY, f"signed by {record.signed_by}, which is no worker key"
    try:
        key.verify(record.signature, link_message(record.signed_by, record.hash))
    except InvalidSignature:
        return ProblemKind.BAD_SIGNATURE, f"the signature does not verify under {record.signed_by}"
    return None
