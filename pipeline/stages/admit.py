"""admit: consent changes and enrollments from other systems, re-keyed onto the join's input.

    facegate.consent + facegate.enrollments ─> admit ──> facegate.subject-events (key subject_id)

Other systems' producers may partition by another hash than facegate's (librdkafka's default is
CRC32, Kafka's Java client murmur2). Re-keying puts everything about one subject in one
partition of facegate.subject-events, in order, whatever produced it. The bytes are forwarded
as read, with origin_* headers naming where they arrived (for the join's dead letters).
"""

from __future__ import annotations

from typing import ClassVar

from ..consent import policy
from ..contract import ContractError
from ..contract.ids import check_subject_id
from ..topology import CONSENT, ENROLLMENTS, SUBJECT_EVENTS
from .base import Event, Outbox, Stage


class Admit(Stage):
    name: ClassVar[str] = "admit"
    inputs = (CONSENT, ENROLLMENTS)

    async def process(self, event: Event, out: Outbox) -> None:
        # A key the join could not keep (blank, a path, a control character: the join's own
        # table keys start with NUL) goes no further, with the rule's reason.
        check_subject_id(event.key)
        try:
            record = event.decode()
            if not event.key or getattr(record, "subject_id", None) != event.key:
                raise ContractError(f"key {event.key!r} is not the record's subject_id")
        except ContractError as exc:
            if event.source is CONSENT:
                raise ContractError(policy.contract_error_reason(exc)) from exc
            raise
        await out.send(SUBJECT_EVENTS, event.key, record, raw=event.value, headers=event.origin())
