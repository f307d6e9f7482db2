"""Faces linked across the sampled frames of one video into tracks: one person on screen each.

A face joins a track last seen at most ``max_gap_ms`` before it (a face may be missed for a
sample or two) when it is the same person: the L2 distance between its dlib embedding and the
track's (the running mean, or the last face) is under ``match_distance`` (dlib: same person
below 0.6), or its box overlaps the track's last box by ``min_iou`` and the distance is under a
looser bound (a turned head embeds less reliably than it moves). Pairs are taken greedily from
the best (distance minus half the overlap), so one face joins one track and a track takes one
face per frame. A face that joins nothing starts a track.

Track ids are derived from the video id, the time the track starts and its ordinal among the
tracks starting in that frame (left to right), so processing the same frames again gives the
same ids. Each track keeps its time in and out, its best face (highest detection score times
size, up to 112 px) and the mean of its embeddings, which is what the identity decision uses.

Frames are fed in time order for a video file. Frame samples (images uploaded on their own)
may arrive in any order: a frame older than the newest one seen links by embedding alone to a
track whose span it falls in (widened by the gap), else starts one; a frame time seen before is
answered from memory and changes nothing, so a redelivered event is harmless.

Frame-sample convention: an image uploaded under ``frames/<video_id>/<frame_time_ms>.<ext>``
(below the bucket prefix; ``<video_id>`` without ``/``, the time in whole milliseconds from the
start of the video, e.g. ``frames/match-2026-11-21/754000.jpg``), or under any key with the user
metadata ``video-id`` and ``frame-time-ms`` (``x-amz-meta-video-id``, ``x-amz-meta-frame-time-ms``),
is a FRAME asset of that video. pipeline/ingest/notifications.py reads it into
AssetUploaded.video_id / frame_time_ms; ``frame_key`` writes the key form.

State: ``to_state()`` gives a JSON-able dict for a table keyed by video id. By default it holds
no embeddings (boxes, times and ids only): a builder restored from it links by box overlap until
a track has seen a face again, so biometric data need never reach a changelog topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.settings import VideoSettings

_NAMESPACE = uuid.UUID("5d0c3f7e-6a0b-4d52-9a43-6c1f0a7e2b11")  # facegate face tracks
_LOOSE_FACTOR = 1.25  # distance bound, relative to match_distance, for faces linked by overlap
_FULL_SIZE_PX = 112.0  # faces this small or larger count as full size for quality
_STATE_VERSION = 1

BBox = tuple[float, float, float, float]  # x, y, w, h in pixels of the upright frame


def frame_key(video_id: str, frame_time_ms: int, ext: str = "jpg") -> str:
    """The object key (below the bucket prefix) of a frame sample."""
    if not video_id or "/" in video_id or frame_time_ms < 0:
        raise ValueError(f"no frame key for video id {video_id!r} at {frame_time_ms} ms")
    return f"frames/{video_id}/{frame_time_ms}.{ext}"


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    max_gap_ms: int = 1500
    match_distance: float = 0.6
    min_iou: float = 0.3

    @classmethod
    def from_settings(cls, video: VideoSettings) -> TrackerConfig:
        return cls(
            max_gap_ms=round(video.track_max_gap_s * 1000),
            match_distance=video.track_match_distance,
            min_iou=video.track_min_iou,
        )


@dataclass(frozen=True, slots=True)
class FrameFace:
    """One face found in one sampled frame."""

    bbox: BBox
    det_score: float
    embedding: np.ndarray  # dlib ResNet, 128 floats

    @property
    def quality(self) -> float:
        return self.det_score * min(1.0, min(self.bbox[2], self.bbox[3]) / _FULL_SIZE_PX)

    @classmethod
    def from_arrays(
        cls, boxes: np.ndarray, det_scores: np.ndarray, embeddings: np.ndarray
    ) -> list[FrameFace]:
        """The faces of one frame from the face model's outputs (F x 4, F, F x 128)."""
        if not len(boxes) == len(det_scores) == len(embeddings):
            raise ValueError(f"face arrays disagree: {len(boxes)}, {len(det_scores)}, {len(embeddings)}")
        return [
            cls(bbox=_bbox(box), det_score=float(score), embedding=np.asarray(embedding, dtype=np.float32))
            for box, score, embedding in zip(boxes, det_scores, embeddings, strict=True)
        ]


@dataclass(slots=True)
class Track:
    track_id: str
    ordinal: int  # among the tracks starting in the same frame, left to right
    first_ms: int
    last_ms: int
    last_bbox: BBox
    best_bbox: BBox
    best_det_score: float
    best_quality: float
    best_ms: int
    faces: int = 1
    # in memory only unless a state is written with embeddings=True
    embedding_sum: np.ndarray | None = field(default=None, repr=False)
    embedding_count: int = 0
    last_embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def embedding(self) -> np.ndarray | None:
        """Mean embedding of the faces seen (since the last restore without embeddings)."""
        if self.embedding_sum is None or not self.embedding_count:
            return None
        return (self.embedding_sum / self.embedding_count).astype(np.float32)

    def distance(self, embedding: np.ndarray) -> float | None:
        known = [e for e in (self.embedding, self.last_embedding) if e is not None]
        if not known:
            return None
        return min(float(np.linalg.norm(e - embedding)) for e in known)

    def add(self, time_ms: int, face: FrameFace, *, latest: bool) -> None:
        self.first_ms = min(self.first_ms, time_ms)
        self.last_ms = max(self.last_ms, time_ms)
        self.faces += 1
        embedding = np.asarray(face.embedding, dtype=np.float64)
        if latest:
            self.last_bbox = face.bbox
            self.last_embedding = embedding
        self.embedding_sum = (
            embedding.copy() if self.embedding_sum is None else self.embedding_sum + embedding
        )
        self.embedding_count += 1
        if face.quality > self.best_quality:
            self.best_bbox, self.best_det_score = face.bbox, face.det_score
            self.best_quality, self.best_ms = face.quality, time_ms


def track_id(video_id: str, first_ms: int, ordinal: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{video_id}\n{first_ms}\n{ordinal}"))


def iou(a: BBox, b: BBox) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class TrackBuilder:
    """Tracks of one video, built frame by frame."""

    def __init__(
        self, video_id: str, config: TrackerConfig | None = None, *, remember_frames: bool = True
    ) -> None:
        """``remember_frames=False``: frames come once, in time order (a video file), so the
        ids given to each frame are not kept and memory does not grow with the video's length."""
        self.video_id = video_id
        self.config = config or TrackerConfig()
        self._remember_frames = remember_frames
        self._tracks: list[Track] = []
        self._frames: dict[int, list[str]] = {}  # frame time -> track id of each face, in order
        self._newest_ms: int | None = None

    @property
    def tracks(self) -> list[Track]:
        """Every track, by time in (then ordinal)."""
        return sorted(self._tracks, key=lambda t: (t.first_ms, t.ordinal))

    @property
    def newest_ms(self) -> int | None:
        return self._newest_ms

    def frame_tracks(self, frame_time_ms: int) -> list[str] | None:
        """Track ids given to the faces of a frame already added, in the order they came."""
        ids = self._frames.get(frame_time_ms)
        return list(ids) if ids is not None else None

    def open_tracks(self) -> list[Track]:
        """Tracks that a frame after the newest one could still extend."""
        if self._newest_ms is None:
            return []
        return [t for t in self.tracks if self._newest_ms - t.last_ms <= self.config.max_gap_ms]

    def add_frame(self, frame_time_ms: int, faces: Sequence[FrameFace]) -> list[str]:
        """Link the faces of one frame; returns the track id of each face, in order."""
        if frame_time_ms in self._frames:
            return list(self._frames[frame_time_ms])
        latest = self._newest_ms is None or frame_time_ms >= self._newest_ms
        candidates = [t for t in self._tracks if self._reachable(t, frame_time_ms, latest)]
        pairs: list[tuple[float, int, int]] = []
        for ti, track in enumerate(candidates):
            for fi, face in enumerate(faces):
                cost = self._cost(track, face, latest)
                if cost is not None:
                    pairs.append((cost, ti, fi))
        pairs.sort()
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for _, ti, fi in pairs:
            if ti in used or fi in assigned:
                continue
            used.add(ti)
            assigned[fi] = candidates[ti]
        for fi, track in assigned.items():
            track.add(frame_time_ms, faces[fi], latest=latest)
        starting = sorted(
            (fi for fi in range(len(faces)) if fi not in assigned),
            key=lambda fi: (faces[fi].bbox[0], faces[fi].bbox[1], fi),
        )
        ordinal = sum(1 for t in self._tracks if t.first_ms == frame_time_ms)
        for fi in starting:
            assigned[fi] = self._start(frame_time_ms, faces[fi], ordinal)
            ordinal += 1
        ids = [assigned[fi].track_id for fi in range(len(faces))]
        if self._remember_frames:
            self._frames[frame_time_ms] = ids
        if latest:
            self._newest_ms = frame_time_ms
        return list(ids)

    def _reachable(self, track: Track, time_ms: int, latest: bool) -> bool:
        gap = self.config.max_gap_ms
        if latest:
            return time_ms - track.last_ms <= gap
        return track.first_ms - gap <= time_ms <= track.last_ms + gap

    def _cost(self, track: Track, face: FrameFace, latest: bool) -> float | None:
        distance = track.distance(np.asarray(face.embedding, dtype=np.float64))
        overlap = iou(track.last_bbox, face.bbox) if latest else 0.0
        if distance is not None and distance < self.config.match_distance:
            return distance - 0.5 * overlap
        if overlap < self.config.min_iou:
            return None
        loose = self.config.match_distance * _LOOSE_FACTOR
        if distance is None:  # restored without embeddings: overlap alone
            return loose - 0.5 * overlap
        return distance - 0.5 * overlap if distance < loose else None

    def _start(self, time_ms: int, face: FrameFace, ordinal: int) -> Track:
        embedding = np.asarray(face.embedding, dtype=np.float64)
        track = Track(
            track_id=track_id(self.video_id, time_ms, ordinal),
            ordinal=ordinal,
            first_ms=time_ms,
            last_ms=time_ms,
            last_bbox=face.bbox,
            best_bbox=face.bbox,
            best_det_score=face.det_score,
            best_quality=face.quality,
            best_ms=time_ms,
            embedding_sum=embedding.copy(),
            embedding_count=1,
            last_embedding=embedding,
        )
        self._tracks.append(track)
        return track

    def to_state(self, *, embeddings: bool = False) -> dict[str, Any]:
        """A JSON-able snapshot; ``embeddings=True`` includes biometric data (keep it off Kafka)."""
        tracks = []
        for t in self._tracks:
            item: dict[str, Any] = {
                "track_id": t.track_id,
                "ordinal": t.ordinal,
                "first_ms": t.first_ms,
                "last_ms": t.last_ms,
                "last_bbox": list(t.last_bbox),
                "best_bbox": list(t.best_bbox),
                "best_det_score": t.best_det_score,
                "best_quality": t.best_quality,
                "best_ms": t.best_ms,
                "faces": t.faces,
            }
            if embeddings and t.embedding_sum is not None:
                item["embedding_sum"] = t.embedding_sum.tolist()
                item["embedding_count"] = t.embedding_count
                if t.last_embedding is not None:
                    item["last_embedding"] = t.last_embedding.tolist()
            tracks.append(item)
        return {
            "version": _STATE_VERSION,
            "video_id": self.video_id,
            "newest_ms": self._newest_ms,
            "tracks": tracks,
            "frames": [[ms, ids] for ms, ids in sorted(self._frames.items())],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: TrackerConfig | None = None) -> TrackBuilder:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unknown track state version {state.get('version')!r}")
        builder = cls(state["video_id"], config)
        builder._newest_ms = state["newest_ms"]
        for item in state["tracks"]:
            track = Track(
                track_id=item["track_id"],
                ordinal=item["ordinal"],
                first_ms=item["first_ms"],
                last_ms=item["last_ms"],
                last_bbox=_bbox(item["last_bbox"]),
                best_bbox=_bbox(item["best_bbox"]),
                best_det_score=item["best_det_score"],
                best_quality=item["best_quality"],
                best_ms=item["best_ms"],
                faces=item["faces"],
            )
            if "embedding_sum" in item:
                track.embedding_sum = np.asarray(item["embedding_sum"], dtype=np.float64)
                track.embedding_count = item["embedding_count"]
            if "last_embedding" in item:
                track.last_embedding = np.asarray(item["last_embedding"], dtype=np.float64)
            builder._tracks.append(track)
        builder._frames = {int(ms): list(ids) for ms, ids in state["frames"]}
        return builder


def _bbox(values: Iterable[float]) -> BBox:
    x, y, w, h = (float(v) for v in values)
    return (x, y, w, h)


def link_tracks(
    video_id: str, frames: Iterable[tuple[int, Sequence[FrameFace]]], config: TrackerConfig | None = None
) -> list[Track]:
    """Tracks of a whole video from its frames' faces, in time order."""
    builder = TrackBuilder(video_id, config)
    for time_ms, faces in frames:
        builder.add_frame(time_ms, faces)
    return builder.tracks
