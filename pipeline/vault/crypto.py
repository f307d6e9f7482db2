"""Envelope encryption: AES-256-GCM under per-subject data keys, data keys wrapped by a master key.

Why envelopes: erasing a subject means destroying one 32-byte data key, after which every copy
of their faceprints anywhere (replicas, backups) is noise; and rotating the master key means
re-wrapping small data keys, never re-encrypting the faceprints.

The associated data binds each ciphertext to where it belongs: a faceprint to its subject, record
and model version; a wrapped data key to its subject and master key. Moving a ciphertext to
another row, subject or model makes it fail to open instead of decrypting into the wrong place.
Data keys are wrapped with AES-GCM rather than AES key wrap (RFC 3394) for exactly that binding.
"""

from __future__ import annotations

import json
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from numpy.typing import NDArray

from .errors import UndecryptableError
from .master import KEY_BYTES, MasterKey

NONCE_BYTES = 12  # random per message: a data key seals a handful of faceprints, far from any limit
_PAYLOAD_VERSION = 1


def _aad(*parts: str) -> bytes:
    # Length-prefixed so that ("ab", "c") and ("a", "bc") differ.
    return b"".join(struct.pack(">I", len(p.encode())) + p.encode() for p in parts)


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes, what: str) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise UndecryptableError(f"{what} does not open: wrong or destroyed key, or altered bytes") from None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def wrap_data_key(master: MasterKey, subject_id: str, data_key: bytes) -> bytes:
    return _seal(master.secret, data_key, _aad("facegate.datakey.v1", subject_id, master.key_id))


def unwrap_data_key(master: MasterKey, subject_id: str, wrapped: bytes) -> bytes:
    return _open(
        master.secret,
        wrapped,
        _aad("facegate.datakey.v1", subject_id, master.key_id),
        f"data key of subject {subject_id}",
    )


@dataclass(frozen=True)
class FaceprintPayload:
    """What is encrypted: the vector and where it came from (the reference photo is personal data)."""

    vector: NDArray[np.float32]
    reference: str
    meta: Mapping[str, Any]


def _faceprint_aad(subject_id: str, record_id: str, model_version: str) -> bytes:
    return _aad("facegate.faceprint.v1", subject_id, record_id, model_version)


def seal_faceprint(
    data_key: bytes, subject_id: str, record_id: str, model_version: str, payload: FaceprintPayload
) -> bytes:
    vector = np.ascontiguousarray(payload.vector, dtype="<f4")
    header = json.dumps(
        {"reference": payload.reference, "dim": int(vector.shape[0]), "meta": dict(payload.meta)},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    ).encode("utf-8")
    plaintext = struct.pack(">BI", _PAYLOAD_VERSION, len(header)) + header + vector.tobytes()
    return _seal(data_key, plaintext, _faceprint_aad(subject_id, record_id, model_version))


def open_faceprint(
    data_key: bytes, subject_id: str, record_id: str, model_version: str, sealed: bytes
) -> FaceprintPayload:
    plaintext = _open(
        data_key,
        sealed,
        _faceprint_aad(subject_id, record_id, model_version),
        f"faceprint {record_id} of subject {subject_id}",
    )
    version, header_len = struct.unpack_from(">BI", plaintext)
    if version != _PAYLOAD_VERSION:
        raise UndecryptableError(f"faceprint {record_id}: unknown payload version {version}")
    start = struct.calcsize(">BI")
    header = json.loads(plaintext[start : start + header_len])
    vector = np.frombuffer(plaintext[start + header_len :], dtype="<f4").astype(np.float32)
    if vector.shape[0] != header["dim"]:
        raise UndecryptableError(
            f"faceprint {record_id}: {vector.shape[0]} values, header says {header['dim']}"
        )
    return FaceprintPayload(vector=vector, reference=header["reference"], meta=header["meta"])
