"""Runtimes and precision: the same pipeline on onnxruntime fp32, OpenVINO fp32 and onnxruntime int8.

For each variant, on the benchmark's photos (bench/model_photos.py) and dlib's johns:
- speed: images/s and faces/s of the whole in-process pipeline (batches of 8), and each network
  alone (detector on batches of 8 canvases, embedder on the 55 johns chips), rounds interleaved
  so all variants see the same load;
- parity with onnxruntime fp32 (the reference the golden outputs and dlib parity were taken
  with): largest embedding L2 distance on the johns chips and on the photos' faces (matched by
  box), the gate being <= 0.02;
- the gates themselves: johns same-person pairs < 0.6 and different-person pairs > 0.6, all 43
  labelled faces and bald_guys' 24 found.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench import quantize
from bench.model_photos import PHOTOS, Photo, accuracy, load_faces
from pipeline.settings import get_settings

PARITY_L2 = 0.02
SAME_PERSON = 0.6
REFERENCE = "onnxruntime fp32"


def _johns() -> tuple[list[str], np.ndarray]:
    files = sorted((PHOTOS / "johns").glob("*/*.jpg"))
    return [f.parent.name for f in files], np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


def _thresholds(people: Sequence[str], embeddings: np.ndarray) -> dict[str, float]:
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=-1)
    same = np.array(people)[:, None] == np.array(people)[None, :]
    upper = np.triu(np.ones_like(same), 1).astype(bool)
    return {
        "johns_max_same_l2": round(float(distances[same & upper].max()), 4),
        "johns_min_different_l2": round(float(distances[~same & upper].min()), 4),
    }


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _photo_parity(reference: Sequence[Any], found: Sequence[Any]) -> float:
    """Largest embedding distance between a reference face and the variant's face on it (IoU > 0.5)."""
    worst = 0.0
    for ref, got in zip(reference, found, strict=True):
        for box, embedding in zip(ref.boxes, ref.embeddings, strict=True):
            overlaps = [_iou(box, other) for other in got.boxes]
            if overlaps and max(overlaps) > 0.5:
                other = got.embeddings[int(np.argmax(overlaps))]
                worst = max(worst, float(np.linalg.norm(embedding - other)))
    return worst


def run(items: Sequence[Photo], rounds: int) -> dict[str, Any]:
    faces = load_faces()
    model: Path = get_settings().model_repository / "facegate_faces" / "1"
    fp32 = {"detector": model / "detector.onnx", "embedder": model / "embedder.onnx"}
    started = time.perf_counter()
    int8 = quantize.build(faces, model)
    quantise_s = time.perf_counter() - started
    variants = {
        REFERENCE: ("onnxruntime", fp32),
        "openvino fp32": ("openvino", fp32),
        "onnxruntime int8": ("onnxruntime", int8),
    }
    pipelines = {}
    for name, (runtime, files) in variants.items():
        pipelines[name] = faces.FacePipeline.from_files(
            files["detector"], files["embedder"], faces.Params(runtime=runtime)
        )
        pipelines[name].warm_up()
    people, johns = _johns()
    canvases = np.stack([faces.letterbox(faces.decode_image(p.jpeg, 10**8), 640, 2.0)[0] for p in items[:8]])
    seconds = {name: {"pipeline": 0.0, "detector": 0.0, "embedder": 0.0} for name in variants}
    results: dict[str, list[Any]] = {}
    for _ in range(rounds):
        for name, pipeline in pipelines.items():
            start = time.perf_counter()
            found: list[Any] = []
            for i in range(0, len(items), 8):
                found += pipeline.analyze([p.jpeg for p in items[i : i + 8]], det_batch=8)
            seconds[name]["pipeline"] += time.perf_counter() - start
            results[name] = found
            start = time.perf_counter()
            pipeline._detector(canvases)
            seconds[name]["detector"] += time.perf_counter() - start
            start = time.perf_counter()
            pipeline.embed(list(johns))
            seconds[name]["embedder"] += time.perf_counter() - start
    reference_johns = pipelines[REFERENCE].embed(list(johns))
    out: dict[str, Any] = {
        "reference": REFERENCE,
        "parity_gate_l2": PARITY_L2,
        "int8_build_s": round(quantise_s, 1),
    }
    for name, pipeline in pipelines.items():
        embeddings = pipeline.embed(list(johns))
        face_count = sum(len(r) for r in results[name])
        figures: dict[str, Any] = {
            "images_per_s": round(len(items) * rounds / seconds[name]["pipeline"], 2),
            "faces_per_s": round(face_count * rounds / seconds[name]["pipeline"], 2),
            "detector_ms_per_image": round(seconds[name]["detector"] / (rounds * len(canvases)) * 1000, 1),
            "embedder_ms_per_chip": round(seconds[name]["embedder"] / (rounds * len(johns)) * 1000, 2),
            "johns_parity_max_l2": round(
                float(np.linalg.norm(embeddings - reference_johns, axis=1).max()), 6
            ),
            "photos_parity_max_l2": round(_photo_parity(results[REFERENCE], results[name]), 6),
        }
        figures |= _thresholds(people, embeddings)
        figures |= accuracy(items, [[tuple(b) for b in r.boxes] for r in results[name]])
        figures["gates_pass"] = bool(
            figures["johns_max_same_l2"] < SAME_PERSON < figures["johns_min_different_l2"]
            and figures["labelled_found"] == "43/43"
            and figures["bald_guys_faces_of_24"] == 24
            and max(figures["johns_parity_max_l2"], figures["photos_parity_max_l2"]) <= PARITY_L2
        )
        out[name] = figures
    base = out[REFERENCE]
    for name in variants:
        out[name]["speed_vs_reference"] = round(out[name]["images_per_s"] / base["images_per_s"], 3)
    return out
