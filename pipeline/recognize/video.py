"""Videos and frame samples in the recognize stage: faces linked into tracks, one identity per track.

A VIDEO asset is spooled to a temporary file (FFmpeg needs to seek), sampled (settings.video),
its frames sent to Triton in batches with decoding one batch ahead, and its faces linked into
tracks. Each track is searched in the gallery once, with the mean of its embeddings, and becomes
one ObservedFace (face_id = track_id, the best box, time in and out), so the consent join decides
once per track. Nothing leaves the stage before the whole video is done; memory holds one batch
of frames and the tracks' running sums, whatever the length. Embeddings stay in this process.

A FRAME asset (one frame sample uploaded as an image) keeps its own AssetFaces; its faces get the
track ids of a TrackBuilder per video id, kept in memory in a bounded LRU (``FrameTracks``), never
in a table or topic (design invariant 2). Limits of that design:

- frames of one video must reach the same worker: the app re-keys FRAME assets by video id
  onto settings.kafka.topic_frames, so one partition, hence one worker, sees all of them;
- a video dropped from the LRU or idle for settings.video.frame_track_idle_s, a worker restart or
  a partition moving to another worker starts that video's tracks afresh: the next face gets a
  new track id even if it is the same person;
- a redelivered frame changes no track (its ids are answered from memory) while its video is
  kept;
- frames processed out of time order link by embedding alone (box overlap needs the order).
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import metrics
from ..contract import AssetUploaded, BBox
from ..contract.internal import FaceObservations, ObservedFace
from ..gallery import GalleryIndex, Match
from ..inference.types import DetectedFace, FaceAnalyzer
from ..interfaces import ObjectStorage
from ..settings import VideoSettings
from ..video.errors import VideoError
from ..video.process import BatchAnalyzer, SelectFaces, track_video_async
from ..video.sampler import sample_frames
from ..video.spool import spooled
from ..video.tracks import FrameFace, Track, TrackBuilder, TrackerConfig
from .retry import until_done

Similarity = Callable[[Match], float]


class VideoRecognizer:
    """A VIDEO asset -> one FaceObservations with one face per track."""

    def __init__(
        self,
        store: ObjectStorage,
        analyzer: FaceAnalyzer,
        gallery: GalleryIndex,
        settings: VideoSettings,
        *,
        select: SelectFaces,
        similarity: Similarity,
        batch_size: int = 8,
    ) -> None:
        self.store = store
        self.analyzer = analyzer
        self.gallery = gallery
        self.settings = settings
        self.select = select
        self.similarity = similarity
        self.batch_size = batch_size
        self.tracker = TrackerConfig.from_settings(settings)

    async def observe(self, asset: AssetUploaded) -> FaceObservations:
        """Raises a VideoError (permanent, with its stable reason first in the message) for a
        video that cannot be processed; transient failures of S3, Triton or Qdrant are retried."""
        try:
            tracks, model_version, frames = await self._tracks(asset)
        except VideoError as exc:
            metrics.ASSETS_PROCESSED.labels(stage=metrics.Stage.VIDEO, outcome=metrics.Outcome.DLQ).inc()
            raise type(exc)(f"{exc.reason}: {exc}") from exc
        metrics.ASSETS_PROCESSED.labels(stage=metrics.Stage.VIDEO, outcome=metrics.Outcome.OK).inc()
        metrics.FRAMES_PROCESSED.labels(stage=metrics.Stage.INFER, outcome=metrics.Outcome.OK).inc(frames)
        matches = await self._search(tracks)
        faces = [self._observed(track, match) for track, match in zip(tracks, matches, strict=True)]
        metrics.FACES_PROCESSED.labels(stage=metrics.Stage.INFER, outcome=metrics.Outcome.OK).inc(len(faces))
        return FaceObservations(
            asset_id=asset.asset_id,
            etag=asset.etag,
            kind=asset.kind,
            model_version=model_version,
            uploaded_at=asset.uploaded_at,
            faces=faces,
            video_id=asset.video_id,
            frame_time_ms=asset.frame_time_ms,
        )

    async def _tracks(self, asset: AssetUploaded) -> tuple[list[Track], str, int]:
        batch = BatchAnalyzer(self.analyzer, request_id=asset.asset_id, select=self.select)

        async def analyze(images: Sequence[bytes]) -> Sequence[Sequence[FrameFace]]:
            return await until_done(lambda: batch(images), stage=metrics.Stage.INFER)

        with contextlib.ExitStack() as cleanup:

            def spool() -> Path:
                chunks = self.store.stream(asset.bucket, asset.object_key)
                return cleanup.enter_context(
                    spooled(
                        chunks,
                        max_bytes=self.settings.max_bytes,
                        declared_size=asset.size,
                        name=asset.object_key,
                        directory=self.settings.spool_dir,
                    )
                )

            with metrics.in_flight(metrics.Stage.FETCH):
                path = await until_done(lambda: self.store.run(spool), stage=metrics.Stage.FETCH)
            with metrics.in_flight(metrics.Stage.VIDEO):
                result = await track_video_async(
                    # the object version is part of the ids: a replaced video gets new tracks
                    f"{asset.asset_id}@{asset.etag}",
                    sample_frames(path, self.settings),
                    analyze,
                    batch_size=self.batch_size,
                    config=self.tracker,
                    frame_log=False,
                )
        # a video always has a frame (else Empty), so the model has answered at least once
        return result.tracks, batch.model_version or "", result.frames

    async def _search(self, tracks: list[Track]) -> list[Match | None]:
        """One gallery query per track, with the mean embedding of its faces."""
        means = [t.embedding for t in tracks]
        embeddings = (
            np.stack([m for m in means if m is not None]) if tracks else np.zeros((0, 128), np.float32)
        )
        if len(embeddings) != len(tracks):
            raise AssertionError("a track of a video file always has embeddings")
        with metrics.in_flight(metrics.Stage.MATCH):
            return await until_done(lambda: self.gallery.search(embeddings), stage=metrics.Stage.MATCH)

    def _observed(self, track: Track, match: Match | None) -> ObservedFace:
        return ObservedFace(
            face_id=track.track_id,
            bbox=BBox(*track.best_bbox),
            det_score=track.best_det_score,
            frame_time_ms=track.first_ms,
            track_id=track.track_id,
            track_end_ms=track.last_ms,
            candidate=match.subject_id if match else None,
            similarity=self.similarity(match) if match else None,
        )


class FrameTracks:
    """Track ids for the faces of frame samples: a TrackBuilder per video id, in memory only
    (see the module docstring). At most ``capacity`` videos are kept, the least recently used
    dropped first, and a video is forgotten ``idle_s`` after its last frame, so the embeddings
    its tracks hold (a withdrawn subject's among them) do not outlive the need for them."""

    def __init__(
        self,
        settings: VideoSettings,
        capacity: int,
        idle_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = TrackerConfig.from_settings(settings)
        self._capacity = capacity
        self._idle_s = idle_s
        self._clock = clock
        self._videos: OrderedDict[str, tuple[TrackBuilder, float]] = OrderedDict()  # by last use

    def __len__(self) -> int:
        return len(self._videos)

    def expire(self) -> int:
        """Forget the videos idle for longer than ``idle_s``; returns how many."""
        stale = self._clock() - self._idle_s
        dropped = 0
        while self._videos and next(iter(self._videos.values()))[1] < stale:
            self._videos.popitem(last=False)
            dropped += 1
        return dropped

    def link(self, video_id: str, frame_time_ms: int, faces: Sequence[DetectedFace]) -> list[str | None]:
        """The track id of each face of one frame, in order; a frame seen before changes nothing
        (a replaced frame with another number of faces gets no track ids)."""
        self.expire()
        builder = self._videos.pop(video_id, (None, 0.0))[0] or TrackBuilder(video_id, self._config)
        self._videos[video_id] = (builder, self._clock())
        while len(self._videos) > self._capacity:
            self._videos.popitem(last=False)
        found = [
            FrameFace(bbox=(f.box.x, f.box.y, f.box.w, f.box.h), det_score=f.det_score, embedding=f.embedding)
            for f in faces
        ]
        ids = builder.add_frame(frame_time_ms, found)
        return list(ids) if len(ids) == len(faces) else [None] * len(faces)
