"""expiry: a timer that turns a consent's end into an erasure, with no manual step.

    subjects table (read) ──> facegate.subject-events (ErasureRequest EXPIRED, ConsentReview)

The join decides what an expiry means (it checks again that the consent has really ended); the
timer only notices. It scans the partitions this worker owns (no standby replicas), so each
subject is looked at by one worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ..consent import policy
from ..contract import utcnow
from ..contract.internal import ConsentReview, ErasureRequest
from ..settings import PrivacySettings
from ..topology import SUBJECT_EVENTS
from .base import Outbox, StagedTable


class Expiry:
    name = "expiry"
    tables: tuple[StagedTable, ...] = ()

    def __init__(self, subjects: Mapping[str, Any], privacy: PrivacySettings) -> None:
        self.subjects = subjects
        self.interval_s = privacy.expiry_check_interval_s
        self.window = timedelta(days=privacy.amber_window_days)

    async def tick(self, out: Outbox) -> None:
        now = utcnow()
        states = [
            policy.ConsentState.from_dict(v["consent"])
            for key, v in list(self.subjects.items())
            if not str(key).startswith("\x00") and v and v.get("consent")
        ]
        for state in policy.due_for_expiry(states, now):
            request = ErasureRequest(
                f"expiry:{state.subject_id}:{state.valid_until}",
                state.subject_id,
                policy.PurgeReason.EXPIRED,
                now,
                "facegate-expiry-timer",
            )
            await out.send(SUBJECT_EVENTS, state.subject_id, request)
        for state in policy.due_for_expiry_warning(states, now, self.window):
            await out.send(
                SUBJECT_EVENTS, state.subject_id, ConsentReview(state.subject_id, "amber_window", now)
            )
