"""The biometric guard of the audit log: embeddings are refused in every encoding, ordinary long
strings (presigned URLs, identity tokens, signatures) are not."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.audit import AuditAction, AuditChain, BiometricDataError, check_no_biometrics
from pipeline.audit.guard import loggable_text

GOLDEN = Path(__file__).resolve().parents[1] / "models" / "golden"


def _golden_embedding(name: str = "face_recognition__obama.json") -> np.ndarray:
    return np.asarray(json.loads((GOLDEN / name).read_text())["faces"][0]["embedding"], dtype=np.float32)


def _encoded_embeddings() -> list[str]:
    """A real faceprint (dlib, 128-d) in every encoding a careless writer might put in a string."""
    e = _golden_embedding()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return [
        b64(e.tobytes()),
        base64.urlsafe_b64encode(e.tobytes()).decode().rstrip("="),
        b64(e.astype(">f4").tobytes()),
        b64(e.astype(np.float64).tobytes()),
        b64(e.astype(np.float16).tobytes()),
        e.tobytes().hex(),
        "s3://legal/q.pdf?sig-" + b64(e[:40].tobytes()),  # a third of one, behind a prefix
        ", ".join(f"{v:.6f}" for v in e),  # printed
        b64(json.dumps([round(float(v), 5) for v in e]).encode()),  # JSON, then base64
        "Bearer " + b64(json.dumps({"sub": "x", "embedding": e.tolist()}).encode()),
    ]


@pytest.mark.parametrize(
    "detail",
    [
        {"embedding": [0.1, 0.2]},
        {"faceprint": "AAAA"},
        {"face_embedding": "x"},
        {"query-Vector": {"a": 1}},
        {"Descriptors": []},
        {"scores": [float(i) for i in range(17)]},
        {"rows": [[0.5] * 8 for _ in range(16)]},
        {"nested": {"deeper": [{"values": list(range(64))}]}},
        {"blob": b"\x00\x01"},
        {"blob": bytearray(b"x")},
        {"crop": np.zeros((4, 4), dtype=np.uint8)},
        {"as_dict": {str(i): 0.25 for i in range(20)}},
        *({"note": text} for text in _encoded_embeddings()),
        {1: "non-string key"},
    ],
)
def test_guard_refuses_biometric_looking_details(detail: dict[Any, Any]) -> None:
    with pytest.raises(BiometricDataError):
        check_no_biometrics(detail)
    chain = AuditChain()
    with pytest.raises(BiometricDataError):
        chain.append(AuditAction.MATCH_DECIDED, subject_id="S-1", detail=detail)
    assert chain.head is None  # nothing was sealed


def test_guard_allows_decisions_counts_boxes_and_landmarks() -> None:
    detail = {
        "status": "GREEN",
        "reason": "consent:explicit",
        "similarity": 0.31,
        "bbox": [10.0, 20.0, 64.0, 80.0],
        "landmarks": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
        "faceprints_deleted": 3,
        "vector_count": 0,
        "faceprint_ids": None,
        "evidence_uri": "s3://legal/quitclaims/S-1.pdf",
        "faces": [{"x": 1, "y": 2, "w": 3, "h": 4} for _ in range(40)],
        "scopes": ["editorial", "archive"],
        "model_version": "facegate_faces:1",
    }
    check_no_biometrics(detail)
    record = AuditChain().append(AuditAction.MATCH_DECIDED, subject_id="S-1", detail=detail)
    assert json.loads(record.detail) == detail


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=False, width=32), min_size=17, max_size=512))
def test_guard_refuses_any_embedding_sized_list(values: list[float]) -> None:
    with pytest.raises(BiometricDataError):
        check_no_biometrics({"anything": values})


def _jwt(signature_bytes: int) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    claims = {
        "iss": "https://login.example.com/realms/newsroom",
        "sub": "f3a9c2de-8d0b-4c51-9a7e-2b6f1d0c9e44",
        "groups": ["privacy-officers", "legal", "newsroom-editors"] * 6,
        "iat": 1767225600,
        "exp": 1767229200,
        "nonce": secrets.token_hex(32),
    }
    header = part(json.dumps({"alg": "RS512", "typ": "JWT"}).encode())
    return f"{header}.{part(json.dumps(claims).encode())}.{part(secrets.token_bytes(signature_bytes))}"


def _ordinary_long_strings() -> list[str]:
    return [
        _jwt(256),
        _jwt(512),
        "https://storage.googleapis.com/legal/q/S-1.pdf?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        f"&X-Goog-Date=20260101T000000Z&X-Goog-Signature={secrets.token_bytes(256).hex()}",
        "https://legal.s3.eu-west-1.amazonaws.com/q/S-1.pdf?X-Amz-Security-Token="
        + base64.b64encode(secrets.token_bytes(800)).decode()
        + f"&X-Amz-Signature={secrets.token_hex(32)}",
        "https://legal.blob.core.windows.net/q/S-1.pdf?sv=2022-11-02&sig="
        + base64.b64encode(secrets.token_bytes(32)).decode(),
        base64.b64encode(secrets.token_bytes(4096)).decode(),  # a ciphertext or a certificate
        "-----BEGIN CERTIFICATE-----\n" + base64.b64encode(secrets.token_bytes(900)).decode(),
        base64.b64encode(("quitclaim signed in Lyon, " * 40).encode()).decode(),  # encoded text
        "s3://legal/" + "/".join(uuid.uuid4().hex for _ in range(30)) + ".pdf",
        "A" * 3000,
    ]


@pytest.mark.parametrize("text", _ordinary_long_strings())
def test_guard_allows_signed_urls_identity_tokens_and_other_long_strings(text: str) -> None:
    detail = {"evidence_uri": text, "recorded_by": text}
    check_no_biometrics(detail)
    record = AuditChain().append(AuditAction.CONSENT_CHANGED, subject_id="S-1", detail=detail)
    assert json.loads(record.detail) == detail


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=128, max_size=3000))
def test_guard_allows_random_bytes_however_encoded(data: bytes) -> None:
    # Random bytes (signatures, ciphertexts, digests) hold no vector of floats.
    for text in (base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode(), data.hex()):
        check_no_biometrics({"evidence_uri": text})


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(GOLDEN.glob("*.json"))), st.integers(0, 3), st.sampled_from(["<f4", ">f8"]))
def test_guard_refuses_any_golden_faceprint_at_any_offset(path: Path, pad: int, dtype: str) -> None:
    faces = json.loads(path.read_text())["faces"]
    assume(faces)
    vector = np.asarray(faces[0]["embedding"], dtype=np.float32).astype(dtype)
    text = "x" * pad + base64.b64encode(b"\x00" * pad + vector.tobytes()).decode()
    with pytest.raises(BiometricDataError):
        check_no_biometrics({"recorded_by": text})


def test_loggable_text_keeps_ordinary_text_and_withholds_the_rest_by_digest() -> None:
    url = _ordinary_long_strings()[2]
    assert loggable_text(url) == url and loggable_text(None) is None
    smuggled = _encoded_embeddings()[0]
    withheld: Any = loggable_text(smuggled)
    assert isinstance(withheld, dict) and withheld["withheld"] == "refused by the biometric guard"
    assert withheld["sha256"] == hashlib.sha256(smuggled.encode()).hexdigest()
    assert loggable_text("x" * 5000) == {
        "sha256": hashlib.sha256(b"x" * 5000).hexdigest(),
        "chars": 5000,
        "withheld": "too long",
    }
    check_no_biometrics({"v": withheld})
