"""Track ids for frame samples (pipeline.recognize.video.FrameTracks): pure logic, no servers."""

from __future__ import annotations

import numpy as np

from pipeline.inference.types import Box, DetectedFace, FaceQuality
from pipeline.recognize.video import FrameTracks
from pipeline.settings import VideoSettings


def _face(x: float, person: int) -> DetectedFace:
    embedding = np.zeros(128, np.float32)
    embedding[person] = 1.0  # people 1 apart in L2 (> 0.6): never the same person
    return DetectedFace(
        box=Box(x, 50, 120, 120),
        landmarks=np.zeros((5, 2), np.float32),
        det_score=0.99,
        embedding=embedding,
        quality=FaceQuality(face_px=120, sharpness=100),
    )


def test_the_same_person_keeps_a_track_across_frames_of_one_video() -> None:
    tracks = FrameTracks(VideoSettings(), capacity=4, idle_s=600)
    (first,) = tracks.link("v1", 0, [_face(100, 0)])
    (second,) = tracks.link("v1", 500, [_face(110, 0)])
    a, b = tracks.link("v1", 1000, [_face(120, 0), _face(400, 1)])
    assert first == second == a and b not in (None, a)
    (other_video,) = tracks.link("v2", 0, [_face(100, 0)])
    assert other_video != first


def test_frames_out_of_order_link_by_embedding() -> None:
    tracks = FrameTracks(VideoSettings(), capacity=4, idle_s=600)
    (late,) = tracks.link("v1", 1000, [_face(300, 0)])
    (early,) = tracks.link("v1", 500, [_face(100, 0)])
    assert early == late


def test_a_redelivered_frame_changes_nothing() -> None:
    tracks = FrameTracks(VideoSettings(), capacity=4, idle_s=600)
    ids = tracks.link("v1", 0, [_face(100, 0), _face(400, 1)])
    assert tracks.link("v1", 0, [_face(100, 0), _face(400, 1)]) == ids
    # a replaced frame with another number of faces gets no track ids rather than wrong ones
    assert tracks.link("v1", 0, [_face(100, 0)]) == [None]


def test_least_recently_used_videos_are_dropped() -> None:
    tracks = FrameTracks(VideoSettings(), capacity=2, idle_s=600)
    (v1,) = tracks.link("v1", 0, [_face(100, 0)])
    (v2,) = tracks.link("v2", 0, [_face(100, 0)])
    tracks.link("v1", 500, [_face(100, 0)])  # v1 used again: v2 is the oldest
    tracks.link("v3", 0, [_face(100, 0)])
    assert len(tracks) == 2
    (again,) = tracks.link("v1", 1000, [_face(100, 0)])
    assert again == v1  # kept
    # v2 was dropped: its next frame starts a new track although it is the same person (a
    # documented limit)
    (v2_later,) = tracks.link("v2", 500, [_face(100, 0)])
    assert v2_later != v2


def test_a_video_idle_too_long_is_forgotten() -> None:
    now = [1000.0]
    tracks = FrameTracks(VideoSettings(), capacity=4, idle_s=60, clock=lambda: now[0])
    (first,) = tracks.link("v1", 0, [_face(100, 0)])
    tracks.link("v2", 0, [_face(100, 0)])
    now[0] += 30
    tracks.link("v2", 500, [_face(100, 0)])
    now[0] += 45  # v1 idle 75 s, v2 45 s
    assert tracks.expire() == 1 and len(tracks) == 1
    (again,) = tracks.link("v1", 500, [_face(100, 0)])
    assert again != first  # its tracks (and their embeddings) are gone
