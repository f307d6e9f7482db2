"""TritonFaceClient without a Triton: contract checks on metadata, retries against a closed port."""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from pipeline.errors import ConfigError, PermanentError, TransientError
from pipeline.inference import (
    BadImage,
    Box,
    DetectedFace,
    FaceQuality,
    ImageAnalysisFailed,
    InferenceProtocolError,
    InferenceUnavailable,
    TritonFaceClient,
)
from pipeline.inference.client import _signature, classify
from pipeline.settings import Settings

METADATA = {
    "inputs": [{"name": "image", "datatype": "BYTES", "shape": ["-1", "1"]}],
    "outputs": [
        {"name": "image_size", "datatype": "INT32", "shape": ["-1", "2"]},
        {"name": "boxes", "datatype": "FP32", "shape": ["-1", "-1", "4"]},
        {"name": "landmarks", "datatype": "FP32", "shape": ["-1", "-1", "5", "2"]},
        {"name": "det_scores", "datatype": "FP32", "shape": ["-1", "-1"]},
        {"name": "embeddings", "datatype": "FP32", "shape": ["-1", "-1", "128"]},
        {"name": "face_px", "datatype": "FP32", "shape": ["-1", "-1"]},
        {"name": "sharpness", "datatype": "FP32", "shape": ["-1", "-1"]},
        {"name": "model_version", "datatype": "BYTES", "shape": ["-1", "1"]},
    ],
}


def test_signature_takes_the_input_name_and_type_from_metadata() -> None:
    renamed = {**METADATA, "inputs": [{"name": "encoded", "datatype": "BYTES", "shape": ["-1", "1"]}]}
    signature = _signature("facegate_faces", renamed)
    assert (signature.input_name, signature.input_datatype) == ("encoded", "BYTES")


@pytest.mark.parametrize(
    "broken",
    [
        {**METADATA, "inputs": [{"name": "image", "datatype": "UINT8", "shape": ["-1", "-1"]}]},
        {**METADATA, "outputs": [o for o in METADATA["outputs"] if o["name"] != "embeddings"]},
        {
            **METADATA,
            "outputs": [
                {**o, "datatype": "FP16"} if o["name"] == "embeddings" else o for o in METADATA["outputs"]
            ],
        },
    ],
)
def test_a_model_that_breaks_the_contract_is_reported(broken: dict[str, list[dict[str, object]]]) -> None:
    with pytest.raises(InferenceProtocolError):
        _signature("facegate_faces", broken)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_triton_is_retried_then_reported_unavailable() -> None:
    client = TritonFaceClient(f"127.0.0.1:{_closed_port()}", retries=3, backoff_s=0.05, timeout_s=2)

    async def go() -> None:
        try:
            await client.analyze(b"\xff\xd8 jpeg")
        finally:
            await client.close()

    start = time.monotonic()
    with pytest.raises(InferenceUnavailable, match="after 4 attempts") as caught:
        asyncio.run(go())
    assert isinstance(caught.value, TransientError)  # the worker retries later, never dead-letters
    assert time.monotonic() - start >= 0.05 * (0.5 + 1 + 2) * 0.5  # it did back off


def test_from_settings_needs_an_address() -> None:
    settings = Settings()
    if settings.triton.grpc_url:
        pytest.skip("FACEGATE_TRITON__GRPC_URL is set in this environment")
    with pytest.raises(ConfigError):
        TritonFaceClient.from_settings(settings)
    client = TritonFaceClient.from_settings(settings, url="127.0.0.1:8001")
    assert (client.url, client.model, client.retries) == (
        "127.0.0.1:8001",
        settings.triton.model,
        settings.triton.retries,
    )


def test_embeddings_stay_out_of_repr() -> None:
    face = DetectedFace(
        box=Box(1, 2, 3, 4),
        landmarks=np.zeros((5, 2), np.float32),
        det_score=0.9,
        embedding=np.full(128, 0.123456, np.float32),
        quality=FaceQuality(40.0, 100.0),
    )
    assert "0.123" not in repr(face)
    assert "embedding" not in repr(face)


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        ("StatusCode.INVALID_ARGUMENT", "bad image: truncated image: JPEG 10x10", BadImage),
        ("StatusCode.INTERNAL", "face analysis failed: ValueError: x", ImageAnalysisFailed),
        ("StatusCode.INTERNAL", "Stub process 'facegate_faces_0_0' is not healthy.", None),
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", None),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", None),
        ("StatusCode.UNIMPLEMENTED", "no such method", InferenceProtocolError),
    ],
)
def test_triton_errors_are_classified(status: str, message: str, expected: type[Exception] | None) -> None:
    error = classify(InferenceServerException(message, status=status))
    if expected is None:
        assert error is None  # retried
    else:
        assert isinstance(error, expected)
        assert message in str(error)
    if isinstance(error, BadImage | ImageAnalysisFailed):
        assert isinstance(error, PermanentError)
