"""Triton python backend for facegate_faces: one response per request, errors per request.

All the work is in faces.py (shared with the benchmark); this module only maps Triton requests to
FacePipeline.analyze() and its results to output tensors named in config.pbtxt.

Two ways to run the networks, chosen by config.pbtxt's parameters:
- single model (this repository, the embedded CPU stack): onnxruntime or OpenVINO sessions
  (parameter `runtime`) on the two ONNX files in this version directory;
- split (the `split/` repository, GPU): parameters `detector_model` and `embedder_model` name
  Triton models of their own that serve the networks with dynamic batching; this model decodes
  and aligns, and reaches them by BLS (business logic scripting) calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from faces import FacePipeline, Faces, ImageError, Params, Runner, weights_version

# The networks' tensor names (triton_models/README.md, "Tensors"), for the BLS calls; the split
# repository's detector and embedder configs declare the same (tests/models/test_split.py).
DETECTOR_INPUT, DETECTOR_OUTPUTS = "input", ("loc", "conf", "landmarks")
EMBEDDER_INPUT, EMBEDDER_OUTPUTS = "chip", ("embedding",)


def _bls_runner(model: str, input_name: str, output_names: tuple[str, ...]) -> Runner:
    """A network served by another Triton model, called from this one (BLS)."""
    # The answer in CPU memory even when that model runs on a GPU: the post-processing is numpy.
    cpu = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name=model,
            inputs=[pb_utils.Tensor(input_name, np.ascontiguousarray(batch, dtype=np.float32))],
            requested_output_names=list(output_names),
            preferred_memory=cpu,
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in output_names]

    return run


def _error(message: str, invalid_input: bool) -> Any:
    codes = pb_utils.TritonError
    code = codes.INVALID_ARG if invalid_input else codes.INTERNAL
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        values = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        params = Params.from_strings(values)
        if "detector_model" in values:
            self.pipeline = self._split(args, values, params)
        else:
            self.pipeline = self._single(args, values, params)
            self.pipeline.warm_up()
        self.det_batch = int(config.get("max_batch_size", 8)) or 8
        self.input_name = config["input"][0]["name"]
        self.output_types = {
            output["name"]: pb_utils.triton_string_to_numpy(output["data_type"])
            for output in config["output"]
        }
        self.version = np.array([[self.pipeline.model_version.encode()]], dtype=np.object_)
        pb_utils.Logger.log_info(f"facegate_faces ready: {self.pipeline.model_version} {params}")

    @staticmethod
    def _single(args: dict[str, str], values: dict[str, str], params: Params) -> FacePipeline:
        here = Path(args["model_repository"]) / args["model_version"]
        providers: list[Any] = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU":
            device = int(args.get("model_instance_device_id", "0"))
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
        return FacePipeline.from_files(
            here / values.get("detector_file", "detector.onnx"),
            here / values.get("embedder_file", "embedder.onnx"),
            params,
            providers=providers,
        )

    @staticmethod
    def _split(args: dict[str, str], values: dict[str, str], params: Params) -> FacePipeline:
        detector, embedder = values["detector_model"], values["embedder_model"]
        # The networks' files sit in their own models' directories, beside this one; the version
        # string is computed from them, so it is the single model's for the same weights.
        repository = Path(args["model_repository"]).parent
        version = weights_version(
            repository / detector / "1" / "model.onnx", repository / embedder / "1" / "model.onnx"
        )
        # No warm-up here: the networks' models may not be loaded yet.
        return FacePipeline(
            _bls_runner(detector, DETECTOR_INPUT, DETECTOR_OUTPUTS),
            _bls_runner(embedder, EMBEDDER_INPUT, EMBEDDER_OUTPUTS),
            params,
            version,
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        blobs: list[bytes | None] = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            blobs.append(bytes(tensor.reshape(-1)[0]) if tensor.size == 1 else None)
        wanted = [i for i, blob in enumerate(blobs) if blob is not None]
        results: dict[int, Faces | ImageError | Exception] = {}
        try:
            analysed = self.pipeline.analyze([blobs[i] for i in wanted], det_batch=self.det_batch)  # type: ignore[misc]
            results.update(zip(wanted, analysed, strict=True))
        except Exception:  # a failure of the batch must not fail every request in it
            for i in wanted:
                try:
                    results[i] = self.pipeline.analyze([blobs[i]])[0]  # type: ignore[list-item]
                except Exception as exc:
                    results[i] = exc
        responses = []
        for i in range(len(requests)):
            result = results.get(i)
            if result is None:
                responses.append(_error("send exactly one image per request (input shape [1, 1])", True))
            elif isinstance(result, ImageError):
                responses.append(_error(f"bad image: {result}", True))
            elif isinstance(result, Exception):
                responses.append(_error(f"face analysis failed: {type(result).__name__}: {result}", False))
            else:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._tensors(result)))
        return responses

    def _tensors(self, faces: Faces) -> list[Any]:
        arrays = {
            "image_size": np.array([[faces.width, faces.height]]),
            "boxes": faces.boxes[None],
            "landmarks": faces.landmarks[None],
            "det_scores": faces.scores[None],
            "embeddings": faces.embeddings[None],
            "face_px": faces.face_px[None],
            "sharpness": faces.sharpness[None],
            "model_version": self.version,
        }
        return [
            pb_utils.Tensor(name, np.ascontiguousarray(array, dtype=self.output_types[name]))
            for name, array in arrays.items()
        ]

    def finalize(self) -> None:
        self.pipeline = None  # type: ignore[assignment]
