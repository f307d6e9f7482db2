"""The hash-chained audit log (facegate.audit): sealing records, checking them, keeping faces out.

chain = AuditChain.resume(last_record_of_my_chain, chain="consent-join-3")
record = chain.append(AuditAction.PURGED, subject_id=sid, detail={"faceprints_deleted": 2})
... publish record.to_bytes() ...
report = verify(records)   # report.ok, report.problems, report.describe()
"""

from . import details
from .actions import AuditAction
from .chain import GENESIS, AuditChain, ChainHead, canonical_bytes, detail_json, record_hash
from .guard import MAX_NUMBERS, BiometricDataError, check_no_biometrics
from .verify import ChainSummary, Problem, ProblemKind, VerifyReport, by_chain_seq, verify

__all__ = [
    "GENESIS",
    "MAX_NUMBERS",
    "AuditAction",
    "AuditChain",
    "BiometricDataError",
    "ChainHead",
    "ChainSummary",
    "Problem",
    "ProblemKind",
    "VerifyReport",
    "by_chain_seq",
    "canonical_bytes",
    "check_no_biometrics",
    "detail_json",
    "details",
    "record_hash",
    "verify",
]
