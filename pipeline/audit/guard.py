"""Keep biometric data out of the audit log (privacy invariant 5).

The audit log is kept for years and read by people who have no business seeing faceprints, so a
record's detail is checked before it is hashed: a writer that tries to log an embedding fails
loudly instead of leaking it. The checks are deliberately blunt: a long list of numbers, a key
named after a biometric template holding more than a count, raw bytes, or a long run of base64
are all refused, wherever they sit in the detail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Longest list of numbers a detail may hold: a bounding box (4) or five landmarks (10) pass,
# any embedding (128-d and up) does not.
MAX_NUMBERS = 16
BIOMETRIC_WORDS = frozenset(
    {"embedding", "embeddings", "faceprint", "faceprints", "vector", "vectors", "descriptor", "descriptors"}
)
# 256 bytes or more written as base64: 64 float32s, half a dlib faceprint.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{344,}={0,2}")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


class BiometricDataError(ValueError):
    """An audit detail holds (or looks like it holds) biometric data."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _biometric_key(key: str) -> bool:
    words = _WORD_SPLIT.split(key.lower())
    return any(w in BIOMETRIC_WORDS for w in words)


def check_no_biometrics(detail: Mapping[str, Any]) -> None:
    """Raise BiometricDataError if ``detail`` (a JSON-able mapping) may hold biometric data."""
    _check(detail, "detail")


def _check(value: Any, path: str) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        raise BiometricDataError(f"{path}: raw bytes are not allowed in an audit record")
    if hasattr(value, "__array__"):
        raise BiometricDataError(f"{path}: arrays are not allowed in an audit record")
    if isinstance(value, str):
        if _BASE64_RUN.search(value):
            raise BiometricDataError(f"{path}: long base64 run (encoded binary) in an audit record")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BiometricDataError(f"{path}: key {key!r} is not a string")
            # A count or a flag under such a key (faceprints_deleted: 3) carries no template.
            if _biometric_key(key) and not (isinstance(item, int) or item is None):
                raise BiometricDataError(f"{path}.{key}: biometric field names are not allowed")
            _check(item, f"{path}.{key}")
        if sum(1 for v in value.values() if _is_number(v)) > MAX_NUMBERS:
            raise BiometricDataError(
                f"{path}: more than {MAX_NUMBERS} numeric values (looks like an embedding)"
            )
        return
    if isinstance(value, list | tuple | set | frozenset):
        # Counted through nested lists too, so an embedding split into short rows is still caught.
        if _numbers_in(value) > MAX_NUMBERS:
            raise BiometricDataError(
                f"{path}: list of more than {MAX_NUMBERS} numbers (looks like an embedding)"
            )
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")


def _numbers_in(value: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any]) -> int:
    count = 0
    for item in value:
        if _is_number(item):
            count += 1
        elif isinstance(item, list | tuple | set | frozenset):
            count += _numbers_in(item)
    return count
