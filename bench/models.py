"""Face model benchmark: facegate_faces through Triton vs the same code bare vs face_recognition,
then the split repository against the single model, runtimes and precision (bench/runtimes.py) and
the detector input size sweep (bench/detector_size.py).

On the same photos, every one resized to 1024 px on its long side and JPEG-encoded once:
- triton: images/s and faces/s through a real tritonserver (python backend, dynamic batching)
  with `concurrency` (16, the max batch) TritonFaceClient requests in flight;
- bare: the same ONNX models and the same faces.py code in this process (batches of 8), its rounds
  alternating with Triton's so both see the same load;
- face_recognition 1.3.0: dlib's HOG detector (upsample 1, its default) + dlib's ResNet embedder;
- recall of each on dlib's labelled faces (examples/faces training.xml + testing.xml, boxes scaled
  to the 1024-px copies, IoU >= 0.4) and the number of other detections, plus bald_guys.jpg's count.

`run()` returns the figures as a dict; `main()` prints them as JSON. Needs `make models`,
`make data`, and for the peer: dlib-bin, face_recognition_models and
`pip install --no-deps face_recognition==1.3.0` (its declared dlib dependency is a source build).
On a shared machine the absolute figures are noisy; the ratios are taken back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from pipeline.inference import FacesResult, TritonFaceClient
from pipeline.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "photos"
sys.path.insert(0, str(ROOT / "tests" / "models"))
from triton_launch import split_cpu_repository, tritonserver  # noqa: E402

from bench import detector_size, runtimes  # noqa: E402
from bench.model_photos import LONG_SIDE, Photo, accuracy, load_faces, photos, rate  # noqa: E402


class _Bare:
    """The same faces.py and ONNX files in this process, batches of 8 (Triton's typical batch)."""

    def __init__(self, batch: int = 8) -> None:
        faces = load_faces()
        model = ROOT / get_settings().model_repository / "facegate_faces" / "1"
        self.pipeline = faces.FacePipeline.from_files(
            model / "detector.onnx", model / "embedder.onnx", faces.Params()
        )
        self.pipeline.warm_up()
        self.batch = batch

    def round(self, items: Sequence[Photo]) -> list[list[tuple[float, ...]]]:
        found: list[Any] = []
        for i in range(0, len(items), self.batch):
            found += self.pipeline.analyze([p.jpeg for p in items[i : i + self.batch]], det_batch=self.batch)
        return [[tuple(b) for b in r.boxes] for r in found]


class Encoded(Protocol):
    """A photo as the contenders read it (this module's Photo, or the end-to-end part's)."""

    @property
    def jpeg(self) -> bytes: ...


class TritonContender:
    """TritonFaceClient with `concurrency` requests in flight, on its own event loop."""

    def __init__(self, url: str, concurrency: int, model: str = "facegate_faces") -> None:
        self.url = url
        self.concurrency = concurrency
        self.model = model
        self.latencies: list[float] = []
        self.model_version = ""

    def round(self, items: Sequence[Encoded]) -> list[list[tuple[float, ...]]]:
        async def go() -> list[FacesResult]:
            async with TritonFaceClient(self.url, self.model, timeout_s=300) as client:
                gate = asyncio.Semaphore(self.concurrency)

                async def one(photo: Encoded) -> FacesResult:
                    async with gate:
                        start = time.perf_counter()
                        result = await client.analyze(photo.jpeg)
                        self.latencies.append(time.perf_counter() - start)
                        return result

                return list(await asyncio.gather(*(one(p) for p in items)))

        results = asyncio.run(go())
        self.model_version = results[0].model_version
        return [[(f.box.x, f.box.y, f.box.w, f.box.h) for f in r.faces] for r in results]


def bench_triton_and_bare(items: Sequence[Photo], rounds: int, concurrency: int) -> dict[str, Any]:
    """Rounds alternate between Triton (the single model and the split repository) and bare, so all
    see the same (shared, noisy) machine. The split repository runs on its CPU stand-in
    (tests/models/triton_launch.split_cpu_repository): the composition's cost on CPU, not a GPU."""
    model = (ROOT / get_settings().model_repository / "facegate_faces").resolve()
    with (
        tempfile.TemporaryDirectory(prefix="facegate-bench-triton-") as tmp,
        tempfile.TemporaryDirectory(prefix="facegate-bench-split-") as split_tmp,
        tritonserver(Path(tmp), model) as srv,
        tritonserver(Path(split_tmp), *split_cpu_repository(Path(split_tmp))) as split,
    ):
        contenders: dict[str, Any] = {
            "triton": TritonContender(srv.grpc_url, concurrency),
            "triton_split": TritonContender(split.grpc_url, concurrency),
            "bare": _Bare(),
        }
        contenders["triton"].round(items[:2])  # warm-up (connection, metadata)
        contenders["triton_split"].round(items[:2])
        seconds = dict.fromkeys(contenders, 0.0)
        boxes: dict[str, list[list[tuple[float, ...]]]] = {}
        for _ in range(rounds):
            for name, contender in contenders.items():
                start = time.perf_counter()
                boxes[name] = contender.round(items)
                seconds[name] += time.perf_counter() - start
    out: dict[str, Any] = {}
    for name in contenders:
        faces = sum(len(b) for b in boxes[name])
        out[name] = rate(len(items) * rounds, faces * rounds, seconds[name]) | accuracy(items, boxes[name])
    for name in ("triton", "triton_split"):
        triton = contenders[name]
        out[name] |= {
            "concurrency": concurrency,
            "request_p50_ms": round(float(np.percentile(triton.latencies, 50)) * 1000, 1),
            "request_p95_ms": round(float(np.percentile(triton.latencies, 95)) * 1000, 1),
            "model_version": triton.model_version,
        }
    out["ratio_split_vs_single"] = round(
        out["triton_split"]["images_per_s"] / out["triton"]["images_per_s"], 3
    )
    out["bare"]["batch"] = contenders["bare"].batch
    return out


def bench_face_recognition(items: Sequence[Photo]) -> dict[str, Any]:
    try:
        import face_recognition
    except ImportError as exc:
        return {"skipped": f"face_recognition not importable ({exc}); see this module's docstring"}
    arrays = [np.asarray(Image.open(io.BytesIO(p.jpeg)).convert("RGB")) for p in items]
    boxes, faces = [], 0
    start = time.perf_counter()
    for array in arrays:
        locations = face_recognition.face_locations(array, number_of_times_to_upsample=1, model="hog")
        faces += len(face_recognition.face_encodings(array, locations))
        boxes.append([(left, top, right - left, bottom - top) for top, right, bottom, left in locations])
    seconds = time.perf_counter() - start
    return rate(len(items), faces, seconds) | {"detector": "dlib HOG, upsample 1"} | accuracy(items, boxes)


def run(rounds: int = 3, concurrency: int = 16, peer: bool = True) -> dict[str, Any]:
    items = photos()
    report: dict[str, Any] = {
        "photos": len(items),
        "long_side_px": LONG_SIDE,
        "rounds": rounds,
        "note": "CPU shared with other work while measured: absolute figures are noisy",
    }
    report |= bench_triton_and_bare(items, rounds, concurrency)
    report["runtimes"] = runtimes.run(items, rounds)
    report["detector_size"] = detector_size.run()
    if peer:
        report["face_recognition"] = bench_face_recognition(items)
    bare_rate = report["bare"]["images_per_s"]
    report["ratio_triton_vs_bare"] = round(report["triton"]["images_per_s"] / bare_rate, 3)
    peer_rate = report.get("face_recognition", {}).get("images_per_s")
    if peer_rate:
        report["ratio_bare_vs_face_recognition"] = round(bare_rate / peer_rate, 2)
        report["ratio_triton_vs_face_recognition"] = round(report["triton"]["images_per_s"] / peer_rate, 2)
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="facegate_faces: Triton vs bare vs face_recognition")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-peer", action="store_true", help="skip face_recognition (slow)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    report = run(args.rounds, args.concurrency, not args.no_peer)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
