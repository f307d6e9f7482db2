"""assemble: an asset's observations and the join's verdicts into its AssetFaces.

facegate.asset-events ─> assemble (table: assets) ──> facegate.tags
                                                 └──> facegate.subject-events (RevocationApplied)
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import metrics
from ..assemble import AssetAssembly, assemble
from ..contract.internal import FaceObservations, RevocationApplied, SubjectDecision
from ..topology import ASSET_EVENTS, SUBJECT_EVENTS, TAGS
from .base import Changelog, Event, Outbox, Stage, StagedTable


class Assemble(Stage):
    name: ClassVar[str] = "assemble"
    inputs = (ASSET_EVENTS,)

    def __init__(self, assets: Changelog | Any) -> None:
        self.assets = StagedTable(assets)
        self.tables = (self.assets,)

    async def process(self, event: Event, out: Outbox) -> None:
        record = event.decode()
        assert isinstance(record, FaceObservations | SubjectDecision)
        asset_id = event.key
        saved = self.assets.get(asset_id)
        state = AssetAssembly.from_dict(saved) if saved else AssetAssembly(asset_id)
        tags = assemble(state, record)
        revocation = isinstance(record, SubjectDecision) and record.purge_id is not None
        if tags is not None:
            # A revocation's tag is acknowledged before its acknowledgement is even sent: the
            # join's SubjectPurged, which follows the last acknowledgement, can never precede it.
            await out.send(TAGS, asset_id, tags, acknowledged=revocation)
            if state.observations is not None and not revocation:
                lag = (tags.processed_at - state.observations.uploaded_at).total_seconds()
                metrics.UPLOAD_TO_TAG.labels(kind=tags.kind.value.lower()).observe(max(0.0, lag))
            metrics.ASSETS_PROCESSED.labels(stage="tag", outcome="ok").inc()
        if isinstance(record, SubjectDecision) and record.purge_id is not None:
            ack = RevocationApplied(record.subject_id, asset_id, record.purge_id)
            await out.send(SUBJECT_EVENTS, record.subject_id, ack)
        self.assets[asset_id] = state.to_dict()
