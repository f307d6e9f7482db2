"""recognize: an AssetUploaded in, what its faces are out (boxes and gallery candidates).

facegate.assets ─> recognize ──> facegate.asset-events (FaceObservations, key asset_id)
                            └──> facegate.subject-events (one MatchCandidate per matched subject)
FRAME assets ──> facegate.frames (key video_id) ─> recognize-frames (the same, on one worker per video)
"""

from __future__ import annotations

from typing import ClassVar

from .. import metrics
from ..contract import AssetKind, AssetUploaded
from ..contract.internal import MatchCandidate
from ..interfaces import Recognizer
from ..topology import ASSET_EVENTS, ASSETS, FRAMES, SUBJECT_EVENTS
from .base import Event, Outbox, Stage


class Recognize(Stage):
    name: ClassVar[str] = "recognize"
    inputs = (ASSETS,)

    def __init__(self, recognizer: Recognizer, *, concurrency: int = 16) -> None:
        self.recognizer = recognizer
        self.concurrency = concurrency

    async def process(self, event: Event, out: Outbox) -> None:
        asset = event.decode()
        assert isinstance(asset, AssetUploaded)
        if asset.kind is AssetKind.FRAME and asset.video_id and event.source is not FRAMES:
            # The tracks of frame samples live in the memory of one worker (never on a topic):
            # every frame of a video must reach the worker owning its video id.
            await out.send(FRAMES, asset.video_id, asset, raw=event.value, headers=event.origin())
            return
        observations = await self.recognizer.observe(asset)
        await out.send(ASSET_EVENTS, asset.asset_id, observations)
        for subject_id, faces in sorted(observations.candidates().items()):
            best = max(f.similarity or 0.0 for f in faces)
            candidate = MatchCandidate(
                subject_id, asset.asset_id, asset.etag, [f.face_id for f in faces], best
            )
            await out.send(SUBJECT_EVENTS, subject_id, candidate)
        metrics.ASSETS_PROCESSED.labels(stage="infer", outcome="ok").inc()

    def dead_lettered(self, event: Event, exc: BaseException) -> None:
        metrics.ASSETS_PROCESSED.labels(stage="infer", outcome="dlq").inc()


class RecognizeFrames(Recognize):
    name: ClassVar[str] = "recognize-frames"
    inputs = (FRAMES,)
