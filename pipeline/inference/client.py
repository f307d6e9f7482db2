"""Asyncio gRPC client of the facegate_faces Triton model.

Tensor names and dtypes come from the model's metadata (config.pbtxt is the source of truth): the
client knows only the roles of the outputs, which are their names in the config. One client serves
any number of concurrent analyze() calls on one gRPC channel.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput
from tritonclient.utils import InferenceServerException

from .. import metrics
from ..errors import ConfigError
from ..settings import Settings
from .errors import BadImage, ImageAnalysisFailed, InferenceProtocolError, InferenceUnavailable
from .types import EMBEDDING_DIM, Box, DetectedFace, FaceQuality, FacesResult

log = logging.getLogger(__name__)

# Output roles -> the datatype and rank (without the batch dimension) the client relies on.
_OUTPUT_ROLES: dict[str, tuple[str, int]] = {
    "image_size": ("INT32", 1),
    "boxes": ("FP32", 2),
    "landmarks": ("FP32", 3),
    "det_scores": ("FP32", 1),
    "embeddings": ("FP32", 2),
    "face_px": ("FP32", 1),
    "sharpness": ("FP32", 1),
    "model_version": ("BYTES", 1),
}
# gRPC statuses after which the same request can succeed later (server starting, model loading,
# overloaded, restarted mid-request).
_RETRYABLE = {
    "StatusCode.UNAVAILABLE",
    "StatusCode.DEADLINE_EXCEEDED",
    "StatusCode.INTERNAL",
    "StatusCode.UNKNOWN",
    "StatusCode.CANCELLED",
    "StatusCode.NOT_FOUND",
    "StatusCode.ABORTED",
}
_PERMANENT = {"StatusCode.INVALID_ARGUMENT", "StatusCode.RESOURCE_EXHAUSTED", "StatusCode.OUT_OF_RANGE"}
# model.py's prefix for an INTERNAL error that belongs to one image (anything else INTERNAL, such as
# a crashed backend stub, is Triton's and retried).
_MODEL_FAILURE = "face analysis failed"


@dataclass(frozen=True)
class _Signature:
    input_name: str
    input_datatype: str


class TritonFaceClient:
    """FaceAnalyzer over Triton gRPC, with timeouts and retries while Triton is unavailable."""

    def __init__(
        self,
        url: str,
        model: str = "facegate_faces",
        *,
        timeout_s: float = 30.0,
        retries: int = 8,
        backoff_s: float = 0.2,
        backoff_max_s: float = 5.0,
    ) -> None:
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._client: triton_aio.InferenceServerClient | None = None
        self._signature: _Signature | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> TritonFaceClient:
        """`url` overrides settings.triton.grpc_url (the embedded stack reports its own)."""
        target = url or settings.triton.grpc_url
        if not target:
            raise ConfigError("triton.grpc_url is not set and no embedded tritonserver address was given")
        return cls(
            target,
            settings.triton.model,
            timeout_s=settings.triton.timeout_s,
            retries=settings.triton.retries,
        )

    async def __aenter__(self) -> TritonFaceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def analyze(self, image: bytes, *, request_id: str = "") -> FacesResult:
        """All faces of one encoded image (timed in facegate_triton_request_* by outcome)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._analyze(image, request_id)
            outcome = "ok"
            metrics.TRITON_REQUEST_IMAGES.observe(1)
            metrics.TRITON_REQUEST_FACES.observe(len(result.faces))
            return result
        except (BadImage, ImageAnalysisFailed):
            outcome = "rejected"  # the model refused this image: bad input, not a failing server
            raise
        finally:
            metrics.TRITON_REQUEST_DURATION.labels(outcome=outcome).observe(time.perf_counter() - started)

    async def _analyze(self, image: bytes, request_id: str) -> FacesResult:
        """All faces of one encoded image.

        Raises BadImage when the model refuses the image and ImageAnalysisFailed when the model
        failed on it (both permanent); InferenceUnavailable when Triton did not answer after
        `retries` retries and InferenceProtocolError when the deployed model does not match the
        contract (both transient).
        """
        attempt = 0
        while True:
            try:
                signature = await self._ensure_signature()
                tensor = InferInput(signature.input_name, [1, 1], signature.input_datatype)
                tensor.set_data_from_numpy(np.array([[image]], dtype=np.object_))
                client = self._ensure_client()
                response = await client.infer(
                    self.model, [tensor], request_id=request_id, client_timeout=self.timeout_s
                )
                return _parse(response)
            except InferenceServerException as exc:
                final = classify(exc)
                if final is not None:
                    raise final from None
                status = str(exc.status() or "")
                if attempt >= self.retries:
                    raise InferenceUnavailable(
                        f"Triton at {self.url} ({self.model}) unavailable after {attempt + 1} attempts: "
                        f"{status} {exc.message()}"
                    ) from exc
                delay = min(self.backoff_max_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning(
                    "triton unavailable, retrying",
                    extra={"attempt": attempt + 1, "delay_s": round(delay, 3), "status": status},
                )
                attempt += 1
                await asyncio.sleep(delay)

    def _ensure_client(self) -> triton_aio.InferenceServerClient:
        if self._client is None:
            # Images can be large: lift gRPC's 4 MiB default on both directions.
            self._client = triton_aio.InferenceServerClient(
                self.url,
                channel_args=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
            )
        return self._client

    async def _ensure_signature(self) -> _Signature:
        if self._signature is not None:
            return self._signature
        async with self._lock:
            if self._signature is None:
                metadata = await self._ensure_client().get_model_metadata(
                    self.model, as_json=True, client_timeout=self.timeout_s
                )
                self._signature = _signature(self.model, metadata)
            return self._signature


def classify(exc: InferenceServerException) -> Exception | None:
    """The error to raise for a Triton error, or None when the request should be retried."""
    status = str(exc.status() or "")
    message = exc.message() or ""
    if status in _PERMANENT:
        return BadImage(message or status)
    if status == "StatusCode.INTERNAL" and message.startswith(_MODEL_FAILURE):
        return ImageAnalysisFailed(message)
    if status and status not in _RETRYABLE:
        return InferenceProtocolError(f"{status}: {message}")
    return None


def _signature(model: str, metadata: dict[str, Any]) -> _Signature:
    inputs = metadata.get("inputs", [])
    if len(inputs) != 1 or inputs[0].get("datatype") != "BYTES":
        raise InferenceProtocolError(f"{model}: expected one BYTES input, metadata has {inputs}")
    outputs = {o["name"]: o for o in metadata.get("outputs", [])}
    for role, (datatype, rank) in _OUTPUT_ROLES.items():
        found = outputs.get(role)
        # Metadata shapes include the batch dimension.
        if found is None or found.get("datatype") != datatype or len(found.get("shape", [])) != rank + 1:
            raise InferenceProtocolError(
                f"{model}: output {role!r} should be {datatype} of rank {rank}, metadata has {found}"
            )
    return _Signature(inputs[0]["name"], inputs[0]["datatype"])


def _parse(response: Any) -> FacesResult:
    def out(role: str) -> np.ndarray:
        array = response.as_numpy(role)
        if array is None:
            raise InferenceProtocolError(f"response lacks output {role!r}")
        return array[0]

    width, height = (int(v) for v in out("image_size"))
    boxes, landmarks, scores = out("boxes"), out("landmarks"), out("det_scores")
    embeddings, face_px, sharpness = out("embeddings"), out("face_px"), out("sharpness")
    count = len(scores)
    if not (len(boxes) == len(landmarks) == len(embeddings) == len(face_px) == len(sharpness) == count):
        raise InferenceProtocolError("per-face outputs disagree on the number of faces")
    if count and embeddings.shape[1] != EMBEDDING_DIM:
        raise InferenceProtocolError(f"embeddings have {embeddings.shape[1]} dimensions, not {EMBEDDING_DIM}")
    version = out("model_version")[0]
    faces = tuple(
        DetectedFace(
            box=Box(*(float(v) for v in boxes[i])),
            landmarks=np.ascontiguousarray(landmarks[i], dtype=np.float32),
            det_score=float(scores[i]),
            embedding=np.ascontiguousarray(embeddings[i], dtype=np.float32),
            quality=FaceQuality(face_px=float(face_px[i]), sharpness=float(sharpness[i])),
        )
        for i in range(count)
    )
    return FacesResult(
        width=width,
        height=height,
        faces=faces,
        model_version=version.decode() if isinstance(version, bytes) else str(version),
    )
