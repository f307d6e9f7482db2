"""Frames -> face model in batches -> tracks: batching, bounded read-ahead, errors and clean-up.

Pure plumbing, so the face model here is a stand-in that reports a synthetic face per frame.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator, Iterator, Sequence

import numpy as np
import pytest

from pipeline.inference import BadImage, Box, DetectedFace, FaceQuality, FacesResult
from pipeline.video.errors import Truncated
from pipeline.video.process import BatchAnalyzer, track_video, track_video_async
from pipeline.video.sampler import SampledFrame
from pipeline.video.tracks import FrameFace

IDENTITY = np.random.default_rng(5).normal(size=128).astype(np.float32) * 0.06


class Source:
    """Frames every 500 ms; records how far it was read and whether it was closed."""

    def __init__(self, count: int, fail_after: int | None = None) -> None:
        self.count, self.fail_after = count, fail_after
        self.produced = 0
        self.closed = False
        self.threads: set[str] = set()
        self._gen = self._frames()

    def _frames(self) -> Generator[SampledFrame, None, None]:
        try:
            for n in range(self.count):
                if self.fail_after is not None and n == self.fail_after:
                    raise Truncated("stream breaks off")
                self.produced += 1
                self.threads.add(threading.current_thread().name)
                yield SampledFrame(time_ms=500 * n, image=b"%d" % n, width=64, height=36, scene_cut=False)
        finally:
            self.closed = True

    def __iter__(self) -> Iterator[SampledFrame]:
        return self._gen

    def close(self) -> None:
        self._gen.close()


class Model:
    def __init__(self, source: Source, fail_on_batch: int | None = None) -> None:
        self.source, self.fail_on_batch = source, fail_on_batch
        self.batches: list[list[bytes]] = []
        self.read_ahead: list[int] = []

    def __call__(self, images: Sequence[bytes]) -> list[list[FrameFace]]:
        if self.fail_on_batch == len(self.batches):
            raise RuntimeError("model unavailable")
        self.batches.append(list(images))
        analysed = sum(len(b) for b in self.batches)
        self.read_ahead.append(self.source.produced - analysed)
        return [[FrameFace((100.0, 100.0, 120.0, 120.0), 0.99, IDENTITY)] for _ in images]


def test_frames_go_in_order_in_batches_and_make_one_track() -> None:
    source = Source(10)
    model = Model(source)
    result = track_video("v", source, model, batch_size=4)
    assert [len(b) for b in model.batches] == [4, 4, 2]
    assert [img for b in model.batches for img in b] == [b"%d" % n for n in range(10)]
    (track,) = result.tracks
    assert (track.first_ms, track.last_ms, track.faces) == (0, 4500, 10)
    assert result.frames == result.sightings == 10
    assert [t for t, _ in result.frame_tracks] == [500 * n for n in range(10)]
    assert source.threads == {"video-decode:v"}  # decoded beside the model, not in its thread
    assert source.closed


def test_without_a_frame_log_nothing_is_kept_per_frame() -> None:
    """The pipeline's setting: memory grows with the tracks, not with the video's length."""
    logged = track_video("v", Source(10), Model(Source(10)), batch_size=4)
    result = track_video("v", Source(10), Model(Source(10)), batch_size=4, frame_log=False)
    assert result.frame_tracks == [] and result.frames == 10
    assert [(t.track_id, t.first_ms, t.last_ms, t.faces) for t in result.tracks] == [
        (t.track_id, t.first_ms, t.last_ms, t.faces) for t in logged.tracks
    ]


def test_read_ahead_is_bounded() -> None:
    source = Source(200)
    model = Model(source)
    track_video("v", source, model, batch_size=4, prefetch=2)
    # queued batches + the one being assembled
    assert max(model.read_ahead) <= (2 + 1) * 4


def test_a_sampler_error_reaches_the_caller_after_the_frames_before_it() -> None:
    source = Source(10, fail_after=6)
    model = Model(source)
    with pytest.raises(Truncated):
        track_video("v", source, model, batch_size=4)
    assert [len(b) for b in model.batches] == [4]  # the incomplete second batch is not analysed
    assert source.closed


def test_a_model_error_stops_decoding_and_closes_the_video() -> None:
    source = Source(10_000)
    model = Model(source, fail_on_batch=1)
    with pytest.raises(RuntimeError, match="model unavailable"):
        track_video("v", source, model, batch_size=4, prefetch=1)
    assert source.closed
    assert source.produced < 100


def test_a_model_answering_the_wrong_number_of_results_is_an_error() -> None:
    source = Source(4)
    with pytest.raises(ValueError, match="3 results for 4 frames"):
        track_video("v", source, lambda images: [[] for _ in images[1:]], batch_size=4)


def test_event_loop_variant() -> None:
    source = Source(9)
    model = Model(source)

    async def analyze(images: Sequence[bytes]) -> list[list[FrameFace]]:
        await asyncio.sleep(0)
        return model(images)

    result = asyncio.run(track_video_async("v", source, analyze, batch_size=4))
    assert [len(b) for b in model.batches] == [4, 4, 1]
    assert [(t.first_ms, t.last_ms) for t in result.tracks] == [(0, 4000)]
    assert source.closed


def test_event_loop_variant_propagates_errors_and_closes() -> None:
    source = Source(10, fail_after=5)
    model = Model(source)

    async def analyze(images: Sequence[bytes]) -> list[list[FrameFace]]:
        return model(images)

    with pytest.raises(Truncated):
        asyncio.run(track_video_async("v", source, analyze, batch_size=4))
    assert source.closed

    source = Source(100)
    failing = Model(source, fail_on_batch=0)

    async def broken(images: Sequence[bytes]) -> list[list[FrameFace]]:
        return failing(images)

    with pytest.raises(RuntimeError):
        asyncio.run(track_video_async("v", source, broken, batch_size=4))
    assert source.closed and source.produced <= 8


class Analyzer:
    """A FaceAnalyzer stand-in: one face per image whose box encodes the image; b"bad" is refused."""

    def __init__(self) -> None:
        self.started: list[bytes] = []
        self.cancelled = 0

    async def analyze(self, image: bytes, *, request_id: str = "") -> FacesResult:
        self.started.append(image)
        if image == b"bad":
            raise BadImage("not an image")
        try:
            await asyncio.sleep(0.05 if image == b"slow" else 0)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        face = DetectedFace(
            box=Box(float(len(image)), 2.0, 30.0, 40.0),
            landmarks=np.zeros((5, 2), np.float32),
            det_score=0.9,
            embedding=IDENTITY,
            quality=FaceQuality(face_px=30.0, sharpness=100.0),
        )
        return FacesResult(width=64, height=36, faces=(face,), model_version=f"m:{request_id}")

    async def close(self) -> None:
        return None


def test_batch_analyzer_sends_every_frame_and_keeps_the_order() -> None:
    analyzer = BatchAnalyzer(Analyzer(), request_id="vid")
    faces = asyncio.run(analyzer([b"a", b"bb", b"ccc"]))
    assert [[f.bbox for f in frame] for frame in faces] == [
        [(1.0, 2.0, 30.0, 40.0)],
        [(2.0, 2.0, 30.0, 40.0)],
        [(3.0, 2.0, 30.0, 40.0)],
    ]
    assert analyzer.model_version == "m:vid"


def test_batch_analyzer_raises_the_error_itself_and_cancels_the_rest() -> None:
    inner = Analyzer()
    with pytest.raises(BadImage):
        asyncio.run(BatchAnalyzer(inner)([b"slow", b"bad", b"slow"]))
    assert inner.cancelled == 2
