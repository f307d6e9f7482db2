"""join: the consent join, one subject's events in order (pipeline/join/service.py decides).

    facegate.subject-events ─> join (tables: subjects, subject-assets)
                    ──> facegate.asset-events (SubjectDecision), facegate.gallery, facegate.audit,
                        facegate.purges

Each partition of the input writes its own audit hash chain; its head is kept in the subjects
table under a key no subject id can take, so that the chain goes on where it stopped after a
restart or a rebalance.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import metrics
from ..audit import AuditAction, AuditChain, ChainHead
from ..contract import ContractError, utcnow
from ..join.ledger import AssetLedger
from ..join.service import ConsentJoin, Effects
from ..join.subject import SubjectRecord
from ..topology import AUDIT, SUBJECT_EVENTS
from .base import Changelog, Event, Outbox, Stage, StagedTable

AUDIT_KEY = "\x00audit-chain:{partition}"  # the join's audit chain head, kept in its own table


class Join(Stage):
    name: ClassVar[str] = "join"
    inputs = (SUBJECT_EVENTS,)

    def __init__(self, join: ConsentJoin, subjects: Changelog | Any, subject_assets: Changelog | Any) -> None:
        self.join = join
        self.subjects = StagedTable(subjects)
        self.subject_assets = StagedTable(subject_assets)
        self.tables = (self.subjects, self.subject_assets)

    async def process(self, event: Event, out: Outbox) -> None:
        subject_id = event.key
        record = event.decode()
        if getattr(record, "subject_id", None) != subject_id:
            raise ContractError(f"key {subject_id!r} is not the record's subject_id")
        saved = self.subjects.get(subject_id)
        ledger = AssetLedger(self.subject_assets, subject_id)
        state = SubjectRecord.from_dict(saved, ledger) if saved else SubjectRecord(subject_id, ledger)
        chain = self._chain(event.partition)
        fx = Effects(send=out.send_to, audit=_auditor(chain, out), now=utcnow())
        try:
            await self.join.handle(state, record, fx)
        finally:
            # Also when the policy dead-letters the event: what it did (audit records included)
            # stands, so the state and the chain head that say so must be kept with it.
            self.subjects[subject_id] = state.to_dict()
            if chain.head is not None:
                self.subjects[AUDIT_KEY.format(partition=event.partition)] = list(chain.head)
        metrics.CONSENT_TABLE_SUBJECTS.set(subject_count(self.subjects.table))

    def _chain(self, partition: int) -> AuditChain:
        head = self.subjects.get(AUDIT_KEY.format(partition=partition))
        return AuditChain(f"join-{partition}", head=ChainHead(*head) if head else None)


def _auditor(chain: AuditChain, out: Outbox) -> Any:
    async def audit(action: AuditAction, **fields: Any) -> None:
        sealed = chain.append(action, **fields)
        await out.send(AUDIT, sealed.subject_id or sealed.asset_id or "", sealed)
        metrics.AUDIT_RECORDS.labels(action=str(action)).inc()

    return audit


def subject_count(table: Any) -> int:
    return sum(1 for key in list(table.keys()) if not str(key).startswith("\x00"))
