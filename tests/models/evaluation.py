"""Detection scoring against dlib's hand-labelled boxes (shared by the tests and bench/models.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def dlib_boxes(xml: Path) -> dict[str, np.ndarray]:
    """{image file: N x 4 boxes (x, y, w, h)} from a dlib imglab XML file."""
    boxes = {}
    for image in ET.parse(xml).getroot().iter("image"):
        boxes[image.get("file", "")] = np.array(
            [[float(b.get(k, 0)) for k in ("left", "top", "width", "height")] for b in image.iter("box")]
        ).reshape(-1, 4)
    return boxes


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match_boxes(truth: np.ndarray, found: Sequence[Sequence[float]], min_iou: float) -> tuple[int, int]:
    """Greedy one-to-one matching: (true boxes found, detections matching no true box)."""
    used: set[int] = set()
    hits = 0
    for t in truth:
        best, best_k = 0.0, -1
        for k, d in enumerate(found):
            if k not in used and (score := iou(t, d)) > best:
                best, best_k = score, k
        if best >= min_iou:
            hits += 1
            used.add(best_k)
    return hits, len(found) - len(used)


# ---- detector input size: a sweep of det_size scored on the labelled photos (bench and tests) ----

MOSAIC_CELL = 500  # dlib's labelled photos are at most 500 px on a side
SWEEP_SIZES = (416, 480, 512, 576, 640, 800)


def mosaics(
    images: dict[str, np.ndarray], truth: dict[str, np.ndarray], k: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The labelled photos tiled k x k per image (black between them), with their boxes moved along.

    A k x k mosaic shows the same faces at 1/k of their size relative to the photo: 2 x 2 is a
    group photo (faces 3.7-11 % of the long side), 3 x 3 a crowd (2.5-7 %).
    """
    names = sorted(truth)
    out = []
    for start in range(0, len(names), k * k):
        canvas = np.zeros((MOSAIC_CELL * k, MOSAIC_CELL * k, 3), np.uint8)
        boxes = []
        for i, name in enumerate(names[start : start + k * k]):
            row, col = divmod(i, k)
            image = images[name]
            h, w = image.shape[:2]
            canvas[row * MOSAIC_CELL : row * MOSAIC_CELL + h, col * MOSAIC_CELL : col * MOSAIC_CELL + w] = (
                image
            )
            boxes.append(truth[name] + np.array([col * MOSAIC_CELL, row * MOSAIC_CELL, 0, 0]))
        out.append((canvas, np.vstack(boxes)))
    return out


def score_detector(
    detect: Callable[[np.ndarray], Sequence[Sequence[float]]],
    images: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
    levels: Sequence[int] = (1, 2, 3),
) -> dict[str, int]:
    """Labelled faces found (IoU >= 0.4) and other detections per mosaic level, bald_guys' count.

    `images` holds the labelled photos and bald_guys.jpg, decoded; `detect` gives one image's boxes.
    """
    row: dict[str, int] = {"bald_guys": len(detect(images["bald_guys.jpg"]))}
    for k in levels:
        hits = others = 0
        for canvas, boxes in mosaics(images, truth, k):
            h, o = match_boxes(boxes, detect(canvas), 0.4)
            hits, others = hits + h, others + o
        row[f"found_{k}x{k}"], row[f"others_{k}x{k}"] = hits, others
    row["labelled"] = sum(len(b) for b in truth.values())
    return row


def passes_gates(row: dict[str, int]) -> bool:
    """The photos as they are: every labelled face, nothing else, bald_guys' 24."""
    return row["found_1x1"] == row["labelled"] and row["others_1x1"] == 0 and row["bald_guys"] == 24


def choose_size(rows: dict[int, dict[str, int]]) -> int:
    """The smallest det_size which, like every larger size in the sweep, passes the gates and finds
    within one face as many of the 2 x 2 mosaic's faces as the best size does."""
    best = max(r["found_2x2"] for r in rows.values())
    good = {s: passes_gates(r) and r["found_2x2"] >= best - 1 for s, r in rows.items()}
    sizes = sorted(rows)
    for i, size in enumerate(sizes):
        if all(good[s] for s in sizes[i:]):
            return size
    raise ValueError("no size in the sweep passes")
