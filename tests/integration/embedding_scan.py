"""Find an embedding in arbitrary bytes, whatever format stored it.

An embedding could sit in a file or message as float32 or float64, either byte order, at any
offset, packed (numpy, Avro) or with a byte or two between the numbers (pickle's float opcodes,
msgpack), or as decimal text (JSON, logs). It is also never byte-identical across two runs of the
model (batch composition changes the last bits). So the scan looks for four consecutive values
of the embedding, each within a small tolerance, at increasing positions close together.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

_WINDOW = slice(8, 12)  # four components; any four do
_MAX_GAP = 24  # bytes between the starts of two consecutive numbers
_NUMBER = re.compile(rb"-?\d+\.\d{3,}(?:[eE]-?\d+)?")


def _positions(data: bytes, value: float, dtype: str, size: int) -> np.ndarray:
    hits = []
    tolerance = 1e-5 + 1e-4 * abs(value)
    for align in range(size):
        usable = (len(data) - align) // size * size
        if usable <= 0:
            continue
        arr = np.frombuffer(data, dtype=dtype, count=usable // size, offset=align)
        with np.errstate(invalid="ignore", over="ignore"):
            found = np.nonzero(np.abs(arr.astype(np.float64) - value) <= tolerance)[0]
        hits.append(found * size + align)
    return np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)


def _chained(position_sets: list[np.ndarray]) -> bool:
    current = np.sort(position_sets[0])
    for nxt in position_sets[1:]:
        nxt = np.sort(nxt)
        if len(current) == 0 or len(nxt) == 0:
            return False
        # keep positions of the next value that follow some current position closely
        idx = np.searchsorted(current, nxt, side="left") - 1
        ok = idx >= 0
        gaps = np.where(ok, nxt - current[np.clip(idx, 0, None)], _MAX_GAP + 1)
        current = nxt[(gaps > 0) & (gaps <= _MAX_GAP)]
    return len(current) > 0


def contains_binary(data: bytes, embedding: np.ndarray) -> bool:
    values = [float(v) for v in np.asarray(embedding, dtype=np.float32)[_WINDOW]]
    for dtype, size in (("<f4", 4), (">f4", 4), ("<f8", 8), (">f8", 8)):
        if _chained([_positions(data, v, dtype, size) for v in values]):
            return True
    return False


def contains_text(data: bytes, embedding: np.ndarray) -> bool:
    values = [float(v) for v in np.asarray(embedding, dtype=np.float32)[_WINDOW]]
    numbers = [(m.start(), float(m.group())) for m in _NUMBER.finditer(data)]
    if not numbers:
        return False
    starts = np.array([s for s, _ in numbers])
    parsed = np.array([v for _, v in numbers])
    sets = [starts[np.abs(parsed - v) <= 1e-5 + 1e-4 * abs(v)] for v in values]
    return _chained_text(sets)


def _chained_text(position_sets: list[np.ndarray]) -> bool:
    current = np.sort(position_sets[0])
    for nxt in position_sets[1:]:
        nxt = np.sort(nxt)
        if len(current) == 0 or len(nxt) == 0:
            return False
        idx = np.searchsorted(current, nxt, side="left") - 1
        ok = idx >= 0
        gaps = np.where(ok, nxt - current[np.clip(idx, 0, None)], 10_000)
        current = nxt[(gaps > 0) & (gaps <= 40)]  # "0.123456, " is about 10-25 characters
    return len(current) > 0


def contains(data: bytes, embedding: np.ndarray) -> bool:
    return contains_binary(data, embedding) or contains_text(data, embedding)


def files_containing(root: Path, embedding: np.ndarray, max_bytes: int = 256 * 1024 * 1024) -> list[Path]:
    return [
        path
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.stat().st_size <= max_bytes and contains(path.read_bytes(), embedding)
    ]
