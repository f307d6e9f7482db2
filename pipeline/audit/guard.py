"""Keep biometric data out of the audit log (privacy invariant 5).

The audit log is kept for years and read by people who have no business seeing faceprints, so a
record's detail is checked before it is hashed: a writer that tries to log an embedding fails
loudly instead of leaking it. Refused, wherever they sit in the detail: a long list of numbers, a
key named after a biometric template holding more than a count, raw bytes or arrays, a string
with many decimal numbers in it, and an encoded run (base64, base64url, hex) whose bytes read as
a vector of floats.

Strings are judged by what they hold, not by their length. Ordinary long strings reach the log
too: an evidence URI that is a presigned URL, a ``recorded_by`` that is an identity token (a JWT
is base64url JSON plus a signature). Refusing those would make the join fail on a withdrawal,
and a lost withdrawal keeps naming the person, the worst outcome there is. So an encoded run is
decoded and looked at: text (a token's JSON) is checked again as text; random-looking bytes (a
signature, a ciphertext, a digest) pass; bytes that read as a run of plausible float16, float32 or
float64 values, in either byte order and at any alignment, are an embedding and are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

# Longest list of numbers a detail may hold: a bounding box (4) or five landmarks (10) pass,
# any embedding (128-d and up) does not.
MAX_NUMBERS = 16
BIOMETRIC_WORDS = frozenset(
    {"embedding", "embeddings", "faceprint", "faceprints", "vector", "vectors", "descriptor", "descriptors"}
)
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
# 128 bytes or more as base64 (171 characters) or hex (256): 32 float32s, a quarter of a dlib
# faceprint. Shorter runs cannot hold enough of one to matter.
_ENCODED_RUN = re.compile(r"[A-Za-z0-9+/_-]{160,}={0,2}")
_HEX = re.compile(r"[0-9a-fA-F]+")
# A decimal with 3+ fraction digits: how an embedding reads when printed (0.0123, -1.5e-03).
_DECIMAL = re.compile(r"-?\d+\.\d{3,}(?:[eE][-+]?\d+)?")
# dtype, consecutive plausible values that make a vector, smallest plausible magnitude
_FLOAT_LAYOUTS = (
    ("<f4", 32, 1e-6),
    (">f4", 32, 1e-6),
    ("<f8", 16, 1e-6),
    (">f8", 16, 1e-6),
    ("<f2", 64, 1e-4),
    (">f2", 64, 1e-4),
)
_LARGEST_COMPONENT = 16.0  # embedding components are small (dlib's: |v| < 0.5)
_TEXT_SHARE = 0.85  # decoded bytes this printable are text (floats' bytes are ~40 % printable)
_NESTING = 2  # base64 of text holding base64 ...: how deep decoded text is checked again


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
        problem = string_problem(value)
        if problem:
            raise BiometricDataError(f"{path}: {problem}")
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


def loggable_text(value: str | None, limit: int = 2048) -> str | dict[str, Any] | None:
    """Free text from a producer (an evidence URI, who recorded a change) as a detail may hold it.

    Itself, normally. Text too long for an audit record, or that the guard would refuse, is
    replaced by its SHA-256 and length: still verifiable against the original, and never a reason
    for the record, and so the change it records, to fail.
    """
    if value is None or (len(value) <= limit and string_problem(value) is None):
        return value
    reason = "too long" if len(value) > limit else "refused by the biometric guard"
    digest = hashlib.sha256(value.encode("utf-8", errors="surrogatepass")).hexdigest()
    return {"sha256": digest, "chars": len(value), "withheld": reason}


# --- strings -----------------------------------------------------------------------------------


def string_problem(text: str, depth: int = 0) -> str | None:
    """Why ``text`` may hold an embedding (None: it holds none that this guard can see)."""
    if len(_DECIMAL.findall(text)) > MAX_NUMBERS:
        return f"more than {MAX_NUMBERS} decimal numbers in a string (looks like an embedding)"
    for run in _ENCODED_RUN.finditer(text):
        for data in _decodings(run.group()):
            if _is_text(data):
                if depth < _NESTING:
                    inner = string_problem(data.decode("utf-8", errors="replace"), depth + 1)
                    if inner:
                        return f"encoded text: {inner}"
            elif _holds_float_vector(data):
                return "an encoded run of bytes that reads as a vector of floats (an embedding)"
    return None


def _decodings(run: str) -> Iterator[bytes]:
    """Every reading of ``run`` worth a look: hex, base64 and base64url, from each start offset
    (a run may begin with characters that are not part of the encoding, e.g. ``sig-``)."""
    if _HEX.fullmatch(run):
        for start in (0, 1):
            usable = (len(run) - start) // 2 * 2
            yield bytes.fromhex(run[start : start + usable])
    body = run.rstrip("=")
    for start in range(4):
        part = body[start:]
        part = part[: len(part) // 4 * 4]
        if not part:
            continue
        for altchars in (b"+/", b"-_"):
            try:
                yield base64.b64decode(part, altchars=altchars, validate=True)
            except (binascii.Error, ValueError):
                continue


def _is_text(data: bytes) -> bool:
    octets = np.frombuffer(data, dtype=np.uint8)
    printable = ((octets >= 32) & (octets < 127)) | (octets == 9) | (octets == 10) | (octets == 13)
    return bool(printable.sum() >= _TEXT_SHARE * len(octets))


def _holds_float_vector(data: bytes) -> bool:
    for dtype, needed, smallest in _FLOAT_LAYOUTS:
        size = np.dtype(dtype).itemsize
        for offset in range(size):
            count = (len(data) - offset) // size
            if count < needed:
                continue
            with np.errstate(invalid="ignore", over="ignore"):
                values = np.frombuffer(data, dtype=dtype, count=count, offset=offset).astype(np.float64)
                magnitude = np.abs(values)
                plausible = np.isfinite(values) & (
                    (magnitude == 0) | ((magnitude >= smallest) & (magnitude <= _LARGEST_COMPONENT))
                )
            if _has_varied_run(values, plausible, needed):
                return True
    return False


def _has_varied_run(values: np.ndarray, plausible: np.ndarray, needed: int) -> bool:
    """A run of ``needed`` plausible values that is not one value repeated (zero padding)."""
    edges = np.diff(np.concatenate(([0], plausible.astype(np.int8), [0])))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    long_enough = ends - starts >= needed
    return any(
        len(np.unique(values[start:end])) > (end - start) // 2
        for start, end in zip(starts[long_enough], ends[long_enough], strict=True)
    )
