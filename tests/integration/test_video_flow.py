"""Videos and frame samples end to end on the embedded stack: S3 upload -> tracks on facegate.tags.

A VIDEO upload becomes one AssetFaces with one face per track (face_id = track_id, the time the
person comes in and goes out), decided once per track by the consent join; a bad video ends on
the DLQ with its stable reason and the worker goes on. Frame samples uploaded as images keep
their own AssetFaces, with the track ids that link them across the frames of one video.

Needs the built models (`make models`) and the test videos and photos (`make data`).
"""

from __future__ import annotations

import io
import typing
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from flow import (
    PHOTOS,
    Publisher,
    Watcher,
    enroll_consenting,
    erase,
    put,
    tags_of,
    worker_pid,
)
from PIL import Image

from pipeline.contract import AssetFaces, AssetKind, FaceStatus
from pipeline.settings import VideoSettings
from pipeline.video.sampler import SampledFrame, sample_frames
from pipeline.video.tracks import frame_key

pytestmark = [pytest.mark.integration, pytest.mark.models]

VIDEOS = Path(__file__).resolve().parents[1] / "data" / "videos"
SINGLE_FACE = VIDEOS / "single_face.mp4"  # one person, 2.4 s
FACE_NOFACE = VIDEOS / "face_noface.mov"  # a person, then an empty scene
NO_FACE = VIDEOS / "no_face.mp4"
CONTENT_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime"}


@pytest.fixture(scope="module")
def topics(stack) -> Iterator[Watcher]:
    stack.require_model()
    if not SINGLE_FACE.exists():
        pytest.fail("test videos missing: run `make data`", pytrace=False)
    k = stack.settings.kafka
    watcher = Watcher(stack.kafka_config(), [k.topic_tags, k.topic_dlq, k.topic_purges, k.topic_audit])
    yield watcher
    watcher.close()


@pytest.fixture(scope="module")
def publisher(stack) -> Publisher:
    return Publisher(stack.kafka_config())


def upload_video(stack, data: bytes, name: str, content_type: str | None = None) -> str:
    key = f"videos-{uuid.uuid4().hex[:8]}/{name}"
    put(stack, key, data, content_type or CONTENT_TYPES[Path(name).suffix])
    return f"{stack.bucket}/{key}"


def wait_tags(stack, topics: Watcher, asset_id: str, timeout: float = 120.0) -> AssetFaces:
    tags_topic = stack.settings.kafka.topic_tags

    def latest(messages) -> AssetFaces | None:
        tags = tags_of(messages, tags_topic, asset_id)
        return tags[-1] if tags else None

    return topics.until(latest, timeout, f"AssetFaces for {asset_id}")


def wait_dlq(stack, topics: Watcher, key: str, timeout: float = 120.0):
    dlq = stack.settings.kafka.topic_dlq
    return topics.until(
        lambda ms: next((m for m in ms if m.topic == dlq and m.key == key), None), timeout, f"DLQ for {key}"
    )


def declared_ms(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.duration is not None and stream.time_base is not None
        return int(stream.duration * stream.time_base * 1000)


def jpeg(frame: SampledFrame) -> bytes:
    with Image.open(io.BytesIO(frame.image)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


def pan_over(photo: Path) -> bytes:
    """A 3 s 640x360 clip of a real photo sliding across the frame (a stranger on screen); the
    same construction as tests/models/test_video_faces.py."""
    face = Image.open(photo).convert("RGB")
    face.thumbnail((300, 300))
    out_file = io.BytesIO()
    with av.open(out_file, "w", format="mp4") as o:
        out = typing.cast(av.VideoStream, o.add_stream("mpeg4", rate=15, options={"qscale": "3"}))
        out.width, out.height, out.pix_fmt = 640, 360, "yuv420p"
        for n in range(45):
            canvas = Image.new("RGB", (640, 360), (90, 110, 130))
            canvas.paste(face, (20 + 6 * n, 30))
            frame = av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, 15)
            o.mux(out.encode(frame))
        o.mux(out.encode(None))
    return out_file.getvalue()


def audio_only(src: Path) -> bytes:
    """The audio track of a real clip alone, in an MP4 container."""
    out_file = io.BytesIO()
    with av.open(str(src)) as i, av.open(out_file, "w", format="mp4") as o:
        stream = i.streams.audio[0]
        out = o.add_stream_from_template(stream)
        for packet in i.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = out
            o.mux(packet)
    return out_file.getvalue()


@pytest.fixture
def video_subject(stack, topics, publisher) -> Iterator[str]:
    """The person of single_face.mp4 with explicit consent, enrolled from one still frame of the
    clip; erased afterwards so that other tests' galleries stay clean."""
    subject = f"V-{uuid.uuid4().hex[:10]}"
    frames = sample_frames(SINGLE_FACE, VideoSettings())
    still = next(frames)
    frames.close()
    enroll_consenting(stack, topics, publisher, subject, {f"still-{still.time_ms}.jpg": jpeg(still)})
    yield subject
    erase(stack, topics, publisher, subject, by="test-teardown")


def test_one_face_on_screen_gives_one_track_spanning_the_clip(stack, topics):
    asset_id = upload_video(stack, SINGLE_FACE.read_bytes(), SINGLE_FACE.name)
    tags = wait_tags(stack, topics, asset_id)
    assert tags.kind is AssetKind.VIDEO
    (face,) = tags.faces
    assert face.track_id and face.face_id == face.track_id
    assert face.frame_time_ms == 0
    assert face.track_end_ms is not None and 0 <= declared_ms(SINGLE_FACE) - face.track_end_ms < 500
    assert face.bbox.w > 100 and 150 < face.bbox.x + face.bbox.w / 2 < 450  # 640x360, centred
    assert (face.status, face.subject_id, face.reason) == (FaceStatus.RED, None, "unknown_face")
    assert tags.model_version and tags.etag


def test_a_face_that_leaves_gives_a_track_that_ends_there(stack, topics):
    asset_id = upload_video(stack, FACE_NOFACE.read_bytes(), FACE_NOFACE.name)
    (face,) = wait_tags(stack, topics, asset_id).faces
    assert face.frame_time_ms == 0 and face.track_id
    assert face.track_end_ms is not None and declared_ms(FACE_NOFACE) - face.track_end_ms > 3000


def test_a_clip_without_faces_gives_no_faces(stack, topics):
    asset_id = upload_video(stack, NO_FACE.read_bytes(), NO_FACE.name)
    tags = wait_tags(stack, topics, asset_id)
    assert tags.kind is AssetKind.VIDEO and tags.faces == []


def test_a_consenting_subjects_track_is_green_and_a_strangers_red(stack, topics, video_subject):
    named_id = upload_video(stack, SINGLE_FACE.read_bytes(), SINGLE_FACE.name)
    stranger_id = upload_video(stack, pan_over(PHOTOS / "face_recognition" / "biden.jpg"), "stranger.mp4")
    (named,) = wait_tags(stack, topics, named_id).faces
    assert (named.status, named.subject_id) == (FaceStatus.GREEN, video_subject)
    assert named.reason == "consent:explicit" and sorted(named.scopes) == ["archive", "editorial"]
    assert named.similarity is not None and 0 < named.similarity <= 1 and named.track_id
    (stranger,) = wait_tags(stack, topics, stranger_id).faces
    assert (stranger.status, stranger.subject_id, stranger.similarity) == (FaceStatus.RED, None, None)
    assert stranger.track_id and stranger.frame_time_ms is not None and stranger.track_end_ms


def test_redelivered_video_gives_the_same_tracks(stack, topics, publisher):
    k = stack.settings.kafka
    asset_id = upload_video(stack, FACE_NOFACE.read_bytes(), FACE_NOFACE.name)
    first = wait_tags(stack, topics, asset_id)
    assets = Watcher(stack.kafka_config(), [k.topic_assets])
    uploaded = assets.until(
        lambda ms: next((m for m in ms if m.key == asset_id), None), 30, "the AssetUploaded"
    )
    assets.close()
    publisher.send(k.topic_assets, asset_id, uploaded.value)
    topics.poll(5)  # the duplicate is processed; an unchanged state is not published again
    for tags in tags_of(topics.messages, k.topic_tags, asset_id):
        assert [(f.face_id, f.frame_time_ms, f.track_end_ms) for f in tags.faces] == [
            (f.face_id, f.frame_time_ms, f.track_end_ms) for f in first.faces
        ]


def test_bad_videos_go_to_the_dlq_with_their_reason_and_the_worker_goes_on(stack, topics):
    k = stack.settings.kafka
    data = SINGLE_FACE.read_bytes()
    bad = {
        upload_video(stack, data[: len(data) // 2], "truncated.mp4"): ("Truncated", "truncated"),
        upload_video(stack, b"", "zero.mp4"): ("Empty", "empty"),
        upload_video(stack, audio_only(FACE_NOFACE), "audio_only.mp4"): ("NoVideoStream", "no_video_stream"),
    }
    for asset_id, (error_class, reason) in bad.items():
        record = wait_dlq(stack, topics, asset_id)
        assert record.headers["error_class"] == error_class, record.headers
        assert record.headers["error_message"].startswith(f"{reason}: "), record.headers
        assert record.headers["stage"] == "recognize" and record.headers["source_topic"] == k.topic_assets
        print(f"{asset_id}: {record.headers['error_class']}: {record.headers['error_message']}")
    assert worker_pid(stack) is not None
    after = upload_video(stack, NO_FACE.read_bytes(), NO_FACE.name)
    assert wait_tags(stack, topics, after).faces == []


def test_frame_samples_keep_their_own_tags_linked_by_track(stack, topics):
    """Frames of one video uploaded as images: each its own AssetFaces (kind FRAME, its time),
    the same person's faces on one track id across the frames."""
    video_id = f"clip-{uuid.uuid4().hex[:8]}"
    frames = list(sample_frames(SINGLE_FACE, VideoSettings()))[:3]
    assets = []
    for frame in frames:
        key = stack.settings.s3.prefix + frame_key(video_id, frame.time_ms)
        put(stack, key, jpeg(frame))
        assets.append(f"{stack.bucket}/{key}")
    tags = [wait_tags(stack, topics, asset_id) for asset_id in assets]
    tracks = set()
    for frame, tag in zip(frames, tags, strict=True):
        assert tag.kind is AssetKind.FRAME and tag.video_id == video_id
        assert tag.frame_time_ms == frame.time_ms
        (face,) = tag.faces
        assert face.frame_time_ms == frame.time_ms and face.track_id
        tracks.add(face.track_id)
    assert len(tracks) == 1, tracks
    # they went through the frames topic, keyed by the video id (one worker sees them all)
    routed = Watcher(stack.kafka_config(), [stack.settings.kafka.topic_frames])
    try:
        routed.until(lambda ms: len([m for m in ms if m.key == video_id]) >= len(assets), 30, "frames")
    finally:
        routed.close()
