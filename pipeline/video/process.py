"""Sampled frames -> face model in batches -> tracks, with decoding overlapped with inference.

The face model is any callable taking a batch of encoded frames and returning the faces of each
(the Triton client in the pipeline, the in-process model in tests and benchmarks). At most
``prefetch`` batches of frames wait between the decoder and the model, so memory depends on the
frame size and batch size, never on the length of the video.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from pipeline.inference import DetectedFace, FaceAnalyzer, FacesResult

from .sampler import SampledFrame
from .tracks import FrameFace, Track, TrackBuilder, TrackerConfig

Analyze = Callable[[Sequence[bytes]], Sequence[Sequence[FrameFace]]]
AnalyzeAsync = Callable[[Sequence[bytes]], Awaitable[Sequence[Sequence[FrameFace]]]]


@dataclass
class VideoFaces:
    video_id: str
    tracks: list[Track]
    frames: int = 0  # frames sampled and analysed
    sightings: int = 0  # faces found over all frames
    # time -> track ids of each sampled frame; grows with the video, so only kept on request
    frame_tracks: list[tuple[int, list[str]]] = field(default_factory=list)


def _batches(frames: Iterable[SampledFrame], size: int) -> Iterator[list[SampledFrame]]:
    it = iter(frames)
    while batch := list(itertools.islice(it, size)):
        yield batch


class _Run:
    def __init__(self, video_id: str, config: TrackerConfig | None, frame_log: bool) -> None:
        self.builder = TrackBuilder(video_id, config, remember_frames=frame_log)
        self.result = VideoFaces(video_id, [])
        self.frame_log = frame_log

    def feed(self, batch: Sequence[SampledFrame], faces: Sequence[Sequence[FrameFace]]) -> None:
        if len(faces) != len(batch):
            raise ValueError(f"face model answered {len(faces)} results for {len(batch)} frames")
        for frame, found in zip(batch, faces, strict=True):
            ids = self.builder.add_frame(frame.time_ms, found)
            self.result.frames += 1
            self.result.sightings += len(found)
            if self.frame_log:
                self.result.frame_tracks.append((frame.time_ms, ids))

    def done(self) -> VideoFaces:
        self.result.tracks = self.builder.tracks
        return self.result


_END = object()


def track_video(
    video_id: str,
    frames: Iterable[SampledFrame],
    analyze: Analyze,
    *,
    batch_size: int = 8,
    prefetch: int = 2,
    config: TrackerConfig | None = None,
    frame_log: bool = True,
) -> VideoFaces:
    """Tracks of a video; frames are decoded on a second thread while a batch is analysed.

    Errors from either side (a VideoError from the sampler, the model's own) are raised here.
    ``frame_log=False`` leaves ``frame_tracks`` empty: memory then depends on the number of
    tracks, not on the length of the video.
    """
    run = _Run(video_id, config, frame_log)
    handoff: queue.Queue[object] = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()
    source = _batches(frames, batch_size)

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the caller gave up

    def decode() -> None:
        try:
            for batch in source:
                if not hand_over(batch):
                    return
            hand_over(_END)
        except BaseException as e:  # raised in the caller's thread
            hand_over(e)

    decoder = threading.Thread(target=decode, name=f"video-decode:{video_id}", daemon=True)
    decoder.start()
    try:
        while (item := handoff.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, list)
            run.feed(item, analyze([f.image for f in item]))
    finally:
        stop.set()
        decoder.join()
        _close(frames)
    return run.done()


async def track_video_async(
    video_id: str,
    frames: Iterable[SampledFrame],
    analyze: AnalyzeAsync,
    *,
    batch_size: int = 8,
    config: TrackerConfig | None = None,
    frame_log: bool = True,
) -> VideoFaces:
    """The same for an event loop: decoding runs in a worker thread, one batch ahead."""
    run = _Run(video_id, config, frame_log)
    source = _batches(frames, batch_size)
    pending = asyncio.ensure_future(asyncio.to_thread(next, source, None))
    try:
        while (batch := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next, source, None))
            run.feed(batch, await analyze([f.image for f in batch]))
    finally:
        if not pending.done():
            await asyncio.wait([pending])  # a decoding thread cannot be cancelled; let it finish
        if not pending.cancelled():
            pending.exception()  # retrieved: the error that matters is the one propagating
        _close(frames)
    return run.done()


SelectFaces = Callable[[FacesResult], Sequence[DetectedFace]]


def frame_faces(result: FacesResult, select: SelectFaces | None = None) -> list[FrameFace]:
    """The faces of one frame as the tracker takes them (those ``select`` keeps, or all)."""
    return [
        FrameFace(bbox=(f.box.x, f.box.y, f.box.w, f.box.h), det_score=f.det_score, embedding=f.embedding)
        for f in (select(result) if select is not None else result.faces)
    ]


class BatchAnalyzer:
    """An ``AnalyzeAsync`` over a FaceAnalyzer (TritonFaceClient): one concurrent request per
    frame, so Triton's dynamic batcher forms the batch; the first failure cancels the rest.
    ``model_version`` is that of the last answer, for the AssetFaces record; ``select`` picks the
    faces of a frame worth tracking (the recognize stage's size and count limits)."""

    def __init__(
        self, analyzer: FaceAnalyzer, request_id: str = "", select: SelectFaces | None = None
    ) -> None:
        self._analyzer = analyzer
        self._request_id = request_id
        self._select = select
        self.model_version: str | None = None

    async def __call__(self, images: Sequence[bytes]) -> list[list[FrameFace]]:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._analyzer.analyze(image, request_id=self._request_id))
                    for image in images
                ]
        except ExceptionGroup as failed:  # the stage's error handling expects the error itself
            raise failed.exceptions[0] from None
        results = [task.result() for task in tasks]
        if results:
            self.model_version = results[-1].model_version
        return [frame_faces(result, self._select) for result in results]


def _close(frames: Iterable[SampledFrame]) -> None:
    close = getattr(frames, "close", None)
    if callable(close):
        close()
