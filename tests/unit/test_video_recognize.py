"""The recognize stage's video path (pipeline.recognize.video.VideoRecognizer) on a real clip,
with in-process stand-ins for S3, Triton and Qdrant: retries, one gallery search per track, one
observed face per track, permanent errors with their reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.contract import AssetKind, AssetUploaded
from pipeline.gallery import Match
from pipeline.inference import Box, DetectedFace, FaceQuality, FacesResult, InferenceUnavailable
from pipeline.objects import ObjectStoreUnavailable
from pipeline.recognize.video import VideoRecognizer
from pipeline.settings import VideoSettings
from pipeline.video.errors import Truncated

SINGLE_FACE = Path(__file__).resolve().parents[1] / "data" / "videos" / "single_face.mp4"
IDENTITY = np.random.default_rng(3).normal(size=128).astype(np.float32) * 0.06

pytestmark = pytest.mark.skipif(not SINGLE_FACE.exists(), reason="test videos missing: run `make data`")


class Store:
    """Serves bytes in chunks; the first ``fail_streams`` reads break off after one chunk."""

    def __init__(self, data: bytes, fail_streams: int = 0) -> None:
        self.data, self.fail_streams, self.streams = data, fail_streams, 0

    def stream(self, bucket: str, key: str, chunk: int = 1 << 16) -> Iterator[bytes]:
        self.streams += 1
        for start in range(0, len(self.data), chunk):
            if self.streams <= self.fail_streams and start > 0:
                raise ObjectStoreUnavailable("connection reset")
            yield self.data[start : start + chunk]

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)


class Analyzer:
    """One face in the middle of every frame; the first ``fail`` requests find Triton down."""

    def __init__(self, fail: int = 0) -> None:
        self.fail, self.requests = fail, 0

    async def analyze(self, image: bytes, *, request_id: str = "") -> FacesResult:
        self.requests += 1
        if self.requests <= self.fail:
            raise InferenceUnavailable("triton: connection refused")
        assert image.startswith(b"P6\n")  # sampled frames go as PPM
        face = DetectedFace(
            box=Box(260, 90, 130 + self.requests % 3, 130),
            landmarks=np.zeros((5, 2), np.float32),
            det_score=0.9 + 0.01 * (self.requests % 5),
            embedding=IDENTITY.copy(),
            quality=FaceQuality(face_px=130, sharpness=50),
        )
        return FacesResult(640, 360, (face,), "fake-model-1")

    async def close(self) -> None:
        return None


class Gallery:
    def __init__(self) -> None:
        self.searches: list[np.ndarray] = []

    async def search(self, embeddings: np.ndarray) -> list[Match | None]:
        self.searches.append(embeddings)
        return [Match("subject-1", float(np.linalg.norm(e - IDENTITY))) for e in embeddings]


def _asset(size: int) -> AssetUploaded:
    return AssetUploaded(
        "assets/clips/single_face.mp4",
        "assets",
        "clips/single_face.mp4",
        "etag-1",
        size,
        "video/mp4",
        AssetKind.VIDEO,
        datetime(2026, 11, 22, tzinfo=UTC),
    )


def _recognizer(store: Store, analyzer: Analyzer, gallery: Gallery) -> VideoRecognizer:
    return VideoRecognizer(
        store,  # type: ignore[arg-type]
        analyzer,
        gallery,  # type: ignore[arg-type]
        VideoSettings(),
        select=lambda result: list(result.faces),
        similarity=lambda match: 1.0 - match.distance,
        batch_size=2,
    )


def test_one_track_one_search_one_face_after_transient_failures() -> None:
    data = SINGLE_FACE.read_bytes()
    store, analyzer, gallery = Store(data, fail_streams=1), Analyzer(fail=1), Gallery()
    observations = asyncio.run(_recognizer(store, analyzer, gallery).observe(_asset(len(data))))
    assert store.streams == 2  # the broken read was spooled again
    (face,) = observations.faces
    assert face.face_id == face.track_id and face.track_id
    assert (face.frame_time_ms, face.track_end_ms) == (0, 2000)  # 2.4 s sampled at 2/s
    assert face.candidate == "subject-1" and face.similarity is not None
    (search,) = gallery.searches  # one query for the one track, with its mean embedding
    assert search.shape == (1, 128)
    assert float(np.linalg.norm(search[0] - IDENTITY)) < 1e-5
    assert observations.kind is AssetKind.VIDEO and observations.model_version == "fake-model-1"
    # every one of the 5 samples analysed once, plus the failed request of the retried batch
    assert analyzer.requests >= 5 + 1


def test_a_broken_video_is_a_permanent_error_with_its_reason_first() -> None:
    data = SINGLE_FACE.read_bytes()[:100_000]
    gallery = Gallery()
    with pytest.raises(Truncated) as caught:
        asyncio.run(_recognizer(Store(data), Analyzer(), gallery).observe(_asset(len(data))))
    assert str(caught.value).startswith("truncated: ")
    assert gallery.searches == []  # nothing searched, nothing emitted
