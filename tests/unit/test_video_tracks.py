"""Face tracks from per-frame faces: pure logic on synthetic boxes and embeddings.

Synthetic people are 128-d points about 1.0 apart (L2); each sighting adds noise of about 0.2,
the spread dlib's ResNet shows for one person across frames.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.contract import AssetKind, AssetUploaded
from pipeline.ingest.notifications import Scope, normalise
from pipeline.settings import VideoSettings
from pipeline.video.tracks import (
    FrameFace,
    TrackBuilder,
    TrackerConfig,
    frame_key,
    iou,
    link_tracks,
    track_id,
)

RNG = np.random.default_rng(20261122)
DIM = 128


def person() -> np.ndarray:
    return RNG.normal(size=DIM) * 0.7 / np.sqrt(DIM)


def seen(identity: np.ndarray, noise: float = 0.15) -> np.ndarray:
    return (identity + RNG.normal(size=DIM) * noise / np.sqrt(DIM)).astype(np.float32)


def face(
    identity: np.ndarray, x: float, y: float = 100.0, size: float = 120.0, score: float = 0.99
) -> FrameFace:
    return FrameFace(bbox=(x, y, size, size), det_score=score, embedding=seen(identity))


def test_one_person_moving_is_one_track_spanning_the_frames() -> None:
    alice = person()
    frames = [(t, [face(alice, x=100 + t / 50)]) for t in range(0, 5000, 500)]
    (track,) = link_tracks("vid", frames)
    assert (track.first_ms, track.last_ms, track.faces) == (0, 4500, 10)
    assert track.embedding is not None
    assert np.linalg.norm(track.embedding - alice) < 0.1  # the mean is closer than any one sighting


def test_a_face_that_leaves_ends_its_track_there() -> None:
    alice = person()
    frames = [(t, [face(alice, x=200)] if t <= 2000 else []) for t in range(0, 6500, 500)]
    (track,) = link_tracks("vid", frames)
    assert (track.first_ms, track.last_ms) == (0, 2000)


def test_a_face_missed_for_two_samples_keeps_its_track_but_a_longer_absence_does_not() -> None:
    alice = person()
    missed_two = {1000, 1500}
    frames = [(t, [] if t in missed_two else [face(alice, x=200)]) for t in range(0, 3000, 500)]
    (track,) = link_tracks("vid", frames)
    assert (track.first_ms, track.last_ms, track.faces) == (0, 2500, 4)

    away = {1000, 1500, 2000}
    frames = [(t, [] if t in away else [face(alice, x=200)]) for t in range(0, 3500, 500)]
    first, second = link_tracks("vid", frames)
    assert (first.first_ms, first.last_ms) == (0, 500)
    assert (second.first_ms, second.last_ms) == (2500, 3000)


def test_no_faces_no_tracks() -> None:
    assert link_tracks("vid", [(t, []) for t in range(0, 4000, 500)]) == []


def test_two_people_who_swap_places_keep_their_tracks_by_embedding() -> None:
    alice, bob = person(), person()
    frames = []
    for n, t in enumerate(range(0, 4000, 500)):
        xa = 100 + 60 * n  # alice walks right, bob walks left, they cross
        xb = 520 - 60 * n
        frames.append((t, [face(alice, x=xa), face(bob, x=xb)]))
    builder = TrackBuilder("vid")
    ids = [builder.add_frame(t, faces) for t, faces in frames]
    assert len(builder.tracks) == 2
    assert all(pair == ids[0] for pair in ids)  # alice is always the first id, bob the second
    assert ids[0][0] != ids[0][1]


def test_overlap_links_a_turned_head_but_not_a_different_person_in_the_same_place() -> None:
    alice, carol = person(), person()
    config = TrackerConfig()
    builder = TrackBuilder("vid", config)
    [a] = builder.add_frame(0, [face(alice, x=200)])
    # same place, embedding off by more than 0.6 (a profile view): linked by overlap
    direction = RNG.normal(size=DIM)
    turned = alice + direction / np.linalg.norm(direction) * 0.65
    distance = builder.tracks[0].distance(turned)
    assert distance is not None and config.match_distance < distance < config.match_distance * 1.25
    [same] = builder.add_frame(500, [FrameFace((205, 100, 120, 120), 0.9, turned.astype(np.float32))])
    assert same == a
    # same place, a different person: a new track despite the overlap
    builder2 = TrackBuilder("vid", config)
    [first] = builder2.add_frame(0, [face(alice, x=200)])
    [other] = builder2.add_frame(500, [face(carol, x=205)])
    assert other != first
    # far away but clearly the same person: linked by embedding
    [far] = builder.add_frame(1000, [face(alice, x=900)])
    assert far == a


def test_track_ids_are_deterministic_and_ordered_left_to_right() -> None:
    alice, bob = person(), person()
    frames = [(t, [face(bob, x=500), face(alice, x=100)]) for t in (1000, 1500)]
    again = [(t, list(reversed(faces))) for t, faces in frames]
    first = link_tracks("bucket/clip.mp4", frames)
    second = link_tracks("bucket/clip.mp4", again)
    assert [t.track_id for t in first] == [t.track_id for t in second]
    assert [t.ordinal for t in first] == [0, 1]
    assert first[0].last_bbox[0] == 100  # ordinal 0 is the leftmost
    assert first[0].track_id == track_id("bucket/clip.mp4", 1000, 0)
    other_video = link_tracks("bucket/other.mp4", frames)
    assert {t.track_id for t in other_video}.isdisjoint({t.track_id for t in first})


def test_best_face_is_the_sharpest_largest_one() -> None:
    alice = person()
    frames = [
        (0, [face(alice, x=200, size=60, score=0.99)]),
        (500, [face(alice, x=200, size=130, score=0.95)]),
        (1000, [face(alice, x=200, size=140, score=0.60)]),
    ]
    (track,) = link_tracks("vid", frames)
    assert track.best_ms == 500
    assert track.best_bbox == (200, 100, 130, 130)
    assert track.best_det_score == pytest.approx(0.95)


def test_a_redelivered_frame_changes_nothing() -> None:
    alice = person()
    builder = TrackBuilder("vid")
    ids = builder.add_frame(0, [face(alice, x=200)])
    builder.add_frame(500, [face(alice, x=205)])
    assert builder.add_frame(0, [face(alice, x=200)]) == ids
    assert builder.frame_tracks(0) == ids
    assert builder.tracks[0].faces == 2


def test_a_late_frame_sample_joins_the_track_it_falls_in_by_embedding() -> None:
    alice, bob = person(), person()
    builder = TrackBuilder("vid")
    for t in (500, 1000, 2000, 2500):  # the 0 and 1500 ms samples arrive last
        builder.add_frame(t, [face(alice, x=200 + t / 10)])
    (alice_track,) = builder.tracks
    [late_alice, late_bob] = builder.add_frame(1500, [face(alice, x=600), face(bob, x=300)])
    assert late_alice == alice_track.track_id
    assert (alice_track.first_ms, alice_track.last_ms, alice_track.faces) == (500, 2500, 5)
    assert alice_track.last_bbox[0] == 450  # a late frame does not move the track's last box
    assert late_bob != late_alice and builder.newest_ms == 2500
    # a sample before the start widens the track backwards; its id stays
    [earliest] = builder.add_frame(0, [face(alice, x=900)])
    assert earliest == alice_track.track_id
    assert (alice_track.first_ms, alice_track.faces) == (0, 6)


def test_state_without_embeddings_is_json_and_holds_no_biometric_data() -> None:
    alice = person()
    builder = TrackBuilder("vid")
    for t in (0, 500, 1000):
        builder.add_frame(t, [face(alice, x=200 + t / 100)])
    state = builder.to_state()
    text = json.dumps(state)
    assert "embedding" not in text
    numbers = [v for track in state["tracks"] for v in track.values() if isinstance(v, list)]
    assert all(len(v) == 4 for v in numbers)  # boxes only
    restored = TrackBuilder.from_state(json.loads(text))
    assert [t.track_id for t in restored.tracks] == [t.track_id for t in builder.tracks]
    assert restored.tracks[0].embedding is None
    # after a restore, the next face links by overlap, and the track learns its embedding again
    [same] = restored.add_frame(1500, [face(alice, x=215)])
    assert same == builder.tracks[0].track_id
    assert restored.tracks[0].embedding is not None and restored.tracks[0].faces == 4
    # a stranger far away does not join by overlap
    [new] = restored.add_frame(2000, [face(person(), x=900)])
    assert new != same


def test_state_with_embeddings_round_trips_exactly() -> None:
    alice, bob = person(), person()
    builder = TrackBuilder("vid")
    for t in (0, 500):
        builder.add_frame(t, [face(alice, x=100), face(bob, x=400)])
    restored = TrackBuilder.from_state(json.loads(json.dumps(builder.to_state(embeddings=True))))
    assert restored.to_state(embeddings=True) == builder.to_state(embeddings=True)
    later = [face(bob, x=900), face(alice, x=5)]  # far from their boxes: embeddings must decide
    assert restored.add_frame(1000, later) == builder.add_frame(1000, later)
    assert restored.frame_tracks(1000) == [builder.tracks[1].track_id, builder.tracks[0].track_id]


def test_open_tracks_are_those_a_next_frame_can_extend() -> None:
    alice, bob = person(), person()
    builder = TrackBuilder("vid", TrackerConfig(max_gap_ms=1000))
    builder.add_frame(0, [face(alice, x=100), face(bob, x=400)])
    builder.add_frame(500, [face(alice, x=100)])
    builder.add_frame(1500, [face(alice, x=100)])
    assert [t.faces for t in builder.open_tracks()] == [3]


def test_unknown_state_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        TrackBuilder.from_state({"version": 99})


def test_frame_key_convention_is_the_one_the_notification_normaliser_reads() -> None:
    key = frame_key("match-2026-11-21", 754000, "jpg")
    assert key == "frames/match-2026-11-21/754000.jpg"
    event = {
        "EventName": "s3:ObjectCreated:Put",
        "Records": [
            {
                "eventName": "s3:ObjectCreated:Put",
                "eventTime": "2026-11-22T10:00:00.000Z",
                "s3": {
                    "bucket": {"name": "assets"},
                    "object": {"key": key, "size": 1000, "eTag": "e", "contentType": "image/jpeg"},
                },
            }
        ],
    }
    (asset,) = normalise(event, Scope(bucket="assets"))
    assert isinstance(asset, AssetUploaded)
    assert (asset.kind, asset.video_id, asset.frame_time_ms) == (AssetKind.FRAME, "match-2026-11-21", 754000)
    for video_id, ms in (("a/b", 0), ("", 0), ("clip", -1)):
        with pytest.raises(ValueError):
            frame_key(video_id, ms)


def test_config_from_settings() -> None:
    config = TrackerConfig.from_settings(VideoSettings(track_max_gap_s=2.0, track_min_iou=0.5))
    assert config == TrackerConfig(max_gap_ms=2000, match_distance=0.6, min_iou=0.5)


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
