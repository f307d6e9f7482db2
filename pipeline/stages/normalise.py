"""normalise: MinIO's S3 event records (production) into AssetUploaded.

facegate.minio-events ─> normalise ──> facegate.assets
"""

from __future__ import annotations

from typing import ClassVar

from .. import metrics
from ..contract import AssetUploaded
from ..ingest.notifications import Scope, normalise, parse_notification
from ..topology import ASSETS, OBJECT_EVENTS
from .base import Event, Outbox, Stage


class Normalise(Stage):
    name: ClassVar[str] = "normalise"
    inputs = (OBJECT_EVENTS,)

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def process(self, event: Event, out: Outbox) -> None:
        for outcome in normalise(parse_notification(event.value), self.scope):
            if isinstance(outcome, AssetUploaded):
                await out.send(ASSETS, outcome.asset_id, outcome)
                metrics.NOTIFICATIONS_RECEIVED.labels(source="minio").inc()
