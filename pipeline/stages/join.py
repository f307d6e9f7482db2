"""join: the consent join, one subject's events in order (pipeline/join/service.py decides).

    facegate.subject-events ─> join (tables: subjects, subject-assets)
                    ──> facegate.asset-events (SubjectDecision), facegate.gallery, facegate.audit,
                        facegate.purges

Each partition of the input writes its own audit hash chain; its head is kept in the subjects
table under a key no subject id can take (ids are checked first: pipeline/contract/ids.py), so
that the chain goes on where it stopped after a restart or a rebalance.

The chain never forks. Two records with one seq would appear if an event sent audit records and
was then done again (a RETRY, a crash) from the head saved before it: the records sealed again
differ (their times, a receipt's details). So each record is written ahead: its head, with the
record's bytes, goes to the table (and is acknowledged) before the record is sent; an event that
finds records written ahead sends those same bytes again (an exact redelivery, which verify
accepts) and goes on after them. Once an event's records are delivered, the head is saved plain.

Fail closed: the join checkpoints (``Effects.checkpoint``) after a consent change and its audit
record and after each purge step, which here means: wait for the records sent so far, then
apply the subject's state, its ledger and the chain head, so that nothing done before a later
failure is undone by it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import metrics
from ..audit import AuditAction, AuditChain, ChainHead
from ..contract import AuditRecord, ContractError, utcnow
from ..contract.ids import check_subject_id
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
        subject_id = check_subject_id(event.key)  # before any table is touched under that key
        record = event.decode()
        if getattr(record, "subject_id", None) != subject_id:
            raise ContractError(f"key {subject_id!r} is not the record's subject_id")
        saved = self.subjects.get(subject_id)
        ledger = AssetLedger(self.subject_assets, subject_id)
        state = SubjectRecord.from_dict(saved, ledger) if saved else SubjectRecord(subject_id, ledger)
        auditor = await self._auditor(event.partition, out)

        async def checkpoint() -> None:
            await out.delivered()
            auditor.delivered()
            self.subjects[subject_id] = state.to_dict()
            auditor.save()
            for table in self.tables:
                await table.apply()

        fx = Effects(send=out.send_to, audit=auditor, now=utcnow(), checkpoint=checkpoint)
        try:
            await self.join.handle(state, record, fx)
        finally:
            # Also when the policy dead-letters the event: what it did (audit records included)
            # stands, so the state and the chain head that say so must be kept with it. (The
            # runner applies these writes only once the event's records are acknowledged.)
            self.subjects[subject_id] = state.to_dict()
            auditor.delivered()
            auditor.save()
        metrics.CONSENT_TABLE_SUBJECTS.set(subject_count(self.subjects.table))

    async def _auditor(self, partition: int, out: Outbox) -> _Auditor:
        key = AUDIT_KEY.format(partition=partition)
        entry = self.subjects.get(key)
        head = ChainHead(entry[0], entry[1]) if entry else None
        auditor = _Auditor(AuditChain(f"join-{partition}", head=head), out, self.subjects, key)
        for written_ahead in entry[2] if entry and len(entry) > 2 else []:
            await auditor.resend(bytes.fromhex(written_ahead))
        return auditor


class _Auditor:
    """Seals the partition's audit records, each written ahead (see the module's docstring)."""

    def __init__(self, chain: AuditChain, out: Outbox, subjects: StagedTable, key: str) -> None:
        self.chain = chain
        self.out = out
        self.subjects = subjects
        self.key = key
        self.unconfirmed: list[str] = []  # records sealed and maybe not delivered yet (hex)

    async def __call__(self, action: AuditAction, **fields: Any) -> None:
        sealed = self.chain.append(action, **fields)
        self.unconfirmed.append(sealed.to_bytes().hex())
        assert self.chain.head is not None
        table = self.subjects.table  # straight to the table: ahead of the event's other writes
        table[self.key] = [*self.chain.head, list(self.unconfirmed)]
        acknowledged = getattr(table, "acknowledged", None)
        if acknowledged is not None:
            await acknowledged()
        await self.out.send(AUDIT, sealed.subject_id or sealed.asset_id or "", sealed)
        metrics.AUDIT_RECORDS.labels(action=str(action)).inc()

    async def resend(self, data: bytes) -> None:
        """A record written ahead by an event that did not finish: the same bytes again."""
        sealed = AuditRecord.from_bytes(data)
        self.unconfirmed.append(data.hex())
        await self.out.send(AUDIT, sealed.subject_id or sealed.asset_id or "", sealed, raw=data)

    def delivered(self) -> None:
        """Every record so far is acknowledged (called after Outbox.delivered, or before the
        runner's own wait for it at the event's end)."""
        self.unconfirmed = []

    def save(self) -> None:
        if self.chain.head is not None:
            self.subjects[self.key] = [*self.chain.head, list(self.unconfirmed)]


def subject_count(table: Any) -> int:
    return sum(1 for key in list(table.keys()) if not str(key).startswith("\x00"))
