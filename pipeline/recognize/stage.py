"""One asset in, its FaceObservations out: fetch, analyse on Triton, search the gallery.

Embeddings exist here only, in memory, between the Triton response and the gallery search;
what leaves the stage is boxes, scores and candidate subject ids (design invariants 1 and 2).
A candidate is not a decision: the consent join decides whether a face may be named.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import metrics
from ..contract import AssetKind, AssetUploaded, BBox
from ..contract.internal import FaceObservations, ObservedFace
from ..errors import PermanentError
from ..gallery import GalleryIndex, Match
from ..inference.types import DetectedFace, FaceAnalyzer, FacesResult
from ..interfaces import ObjectStorage
from ..settings import RecognitionSettings, VideoSettings
from .retry import until_done
from .video import FrameTracks, VideoRecognizer

log = logging.getLogger(__name__)


class TooManyPixels(PermanentError):
    """A decompression bomb: the image header declares more pixels than recognition.max_pixels."""


def face_id(asset_id: str, etag: str, frame_time_ms: int | None, box: BBox) -> str:
    """Deterministic: reprocessing the same object version gives the same ids (idempotent tags)."""
    where = f"{round(box.x)},{round(box.y)},{round(box.w)},{round(box.h)}"
    text = f"{asset_id}\0{etag}\0{frame_time_ms if frame_time_ms is not None else ''}\0{where}"
    return "face-" + hashlib.sha256(text.encode()).hexdigest()[:20]


def check_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse a decompression bomb from its header alone, before any byte goes to Triton."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return  # not for us to judge: Triton's decoder says precisely what is wrong
    if width * height > max_pixels:
        raise TooManyPixels(f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}")


def select_faces(result: FacesResult, limits: RecognitionSettings) -> list[DetectedFace]:
    """The faces worth recognising: big enough, at most max_faces, highest scores first."""
    faces = [f for f in result.faces if f.quality.face_px >= limits.min_face_px]
    faces.sort(key=lambda f: f.det_score, reverse=True)
    return faces[: limits.max_faces]


def similarity(match: Match, threshold: float) -> float:
    return max(0.0, 1.0 - match.distance / threshold)


@dataclass
class RecognizeStage:
    store: ObjectStorage
    analyzer: FaceAnalyzer
    gallery: GalleryIndex
    limits: RecognitionSettings
    match_threshold: float
    video: VideoSettings = field(default_factory=VideoSettings)
    batch_size: int = 8  # frames of a video sent to Triton at once

    def __post_init__(self) -> None:
        self.videos = VideoRecognizer(
            self.store,
            self.analyzer,
            self.gallery,
            self.video,
            select=lambda result: select_faces(result, self.limits),
            similarity=lambda match: similarity(match, self.match_threshold),
            batch_size=self.batch_size,
        )
        self.frames = FrameTracks(self.video, self.video.frame_track_videos, self.video.frame_track_idle_s)

    async def analyze(self, data: bytes, request_id: str) -> FacesResult:
        check_pixels(data, self.limits.max_pixels)
        return await until_done(lambda: self.analyzer.analyze(data, request_id=request_id), stage="infer")

    async def observe(self, asset: AssetUploaded) -> FaceObservations:
        """The faces of an asset: one per face of an image or frame, one per track of a video."""
        if asset.kind is AssetKind.VIDEO:
            return await self.videos.observe(asset)
        with metrics.in_flight(metrics.Stage.INFER):
            data = await until_done(lambda: self.store.read(asset.bucket, asset.object_key), stage="fetch")
            result = await self.analyze(data, asset.asset_id)
            faces = select_faces(result, self.limits)
            embeddings = np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 128), np.float32)
            matches = await until_done(lambda: self.gallery.search(embeddings), stage="match")
        tracks: list[str | None] = [None] * len(faces)
        if asset.kind is AssetKind.FRAME and asset.video_id and asset.frame_time_ms is not None:
            tracks = self.frames.link(asset.video_id, asset.frame_time_ms, faces)
        observed = []
        for face, match, track in zip(faces, matches, tracks, strict=True):
            box = BBox(face.box.x, face.box.y, face.box.w, face.box.h)
            observed.append(
                ObservedFace(
                    face_id=face_id(asset.asset_id, asset.etag, asset.frame_time_ms, box),
                    bbox=box,
                    det_score=face.det_score,
                    frame_time_ms=asset.frame_time_ms,
                    track_id=track,
                    candidate=match.subject_id if match else None,
                    similarity=similarity(match, self.match_threshold) if match else None,
                )
            )
        metrics.FACES_PROCESSED.labels(stage="infer", outcome="ok").inc(len(observed))
        return FaceObservations(
            asset_id=asset.asset_id,
            etag=asset.etag,
            kind=asset.kind,
            model_version=result.model_version,
            uploaded_at=asset.uploaded_at,
            faces=observed,
            video_id=asset.video_id,
            frame_time_ms=asset.frame_time_ms,
        )

    async def reference_faces(self, bucket: str, key: str) -> tuple[list[np.ndarray], str]:
        """Embeddings of every face in an enrollment reference photo (the join keeps one)."""
        data = await until_done(lambda: self.store.read(bucket, key), stage="fetch")
        return await self.faces_in_reference(data, f"{bucket}/{key}")

    async def faces_in_reference(self, photo: bytes, reference: str) -> tuple[list[np.ndarray], str]:
        """Embeddings of every face in a reference photo already read (and opened) by the caller."""
        result = await self.analyze(photo, reference)
        return [f.embedding for f in select_faces(result, self.limits)], result.model_version
