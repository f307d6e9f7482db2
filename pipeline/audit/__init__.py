"""The signed, hash-chained audit log (facegate.audit): sealing records, checking them, keeping faces out.

signer = WorkerSigner.from_master(keyring.current)
chain = AuditChain("join-3", head=resume_head(saved, anchors.head("join-3")), signer=signer)
record = chain.append(AuditAction.PURGED, subject_id=sid, detail={"faceprints_deleted": 2})
... publish record.to_bytes(); once delivered: anchors.advance(chain.chain, chain.head) ...
report = verify(records, expected_heads=anchors.heads(), keys=public_keys(anchors.keys()))
"""

from . import details
from .actions import AuditAction
from .anchors import ANCHORS_FILE, AnchorStore, SqliteAnchorStore, resume_head
from .chain import (
    GENESIS,
    AuditChain,
    ChainHead,
    Signer,
    canonical_bytes,
    detail_json,
    link_message,
    record_hash,
)
from .guard import MAX_NUMBERS, BiometricDataError, check_no_biometrics
from .keys import WorkerSigner, public_keys, worker_signers
from .receipts import ReceiptInvalid, purged_record, sign_receipt, verify_receipt_signature
from .verify import ChainSummary, Problem, ProblemKind, VerifyReport, by_chain_seq, verify

__all__ = [
    "ANCHORS_FILE",
    "GENESIS",
    "MAX_NUMBERS",
    "AnchorStore",
    "AuditAction",
    "AuditChain",
    "BiometricDataError",
    "ChainHead",
    "ChainSummary",
    "Problem",
    "ProblemKind",
    "ReceiptInvalid",
    "Signer",
    "SqliteAnchorStore",
    "VerifyReport",
    "WorkerSigner",
    "by_chain_seq",
    "canonical_bytes",
    "check_no_biometrics",
    "detail_json",
    "details",
    "link_message",
    "public_keys",
    "purged_record",
    "record_hash",
    "resume_head",
    "sign_receipt",
    "verify",
    "verify_receipt_signature",
    "worker_signers",
]
