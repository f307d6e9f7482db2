"""Detection scoring against dlib's hand-labelled boxes (shared by the tests and bench/models.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
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
