"""A python-backend stand-in for Triton's onnxruntime backend, for the split repository on CPU.

The tritonserver of the embedded stack (nvidia-pytriton) ships only the python backend, so the
split repository's `platform: "onnxruntime_onnx"` models cannot load there. This model serves the
same `1/model.onnx` under the same config (names, dims, max_batch_size, dynamic batching) with
onnxruntime on the CPU, so the composition can be run and compared with the single model
(tests/models/test_split.py, bench/models.py; tests/models/triton_launch.py builds the repository).
Requests batched together run through the network as one batch, then are split again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (self.input_name,) = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = np.cumsum([len(b) for b in batches])[:-1]
        try:
            outputs = self.session.run(self.output_names, {self.input_name: np.concatenate(batches)})
        except Exception as exc:  # e.g. a wrong shape: every request of this batch is told
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        per_request = zip(*(np.split(output, sizes) for output in outputs), strict=True)
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(part))
                    for name, part in zip(self.output_names, parts, strict=True)
                ]
            )
            for parts in per_request
        ]
