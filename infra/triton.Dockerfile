# Triton for facegate: NVIDIA's server image plus what the facegate_faces python-backend model
# imports, with the model repository built by `make models` baked in.
# Build from the repository root: docker build -f infra/triton.Dockerfile .
#   GPU (default): onnxruntime-gpu and instance kind KIND_GPU; CPU: --build-arg DEVICE=cpu
# 24.10 ships tritonserver 2.51, the version the embedded stack runs.
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
FROM ${TRITON_IMAGE}

ARG DEVICE=gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

COPY triton_models/requirements.txt /opt/facegate/requirements.txt
# requirements.txt names the CPU onnxruntime; on a GPU swap in the CUDA build of the same version.
RUN pip install -r /opt/facegate/requirements.txt \
 && if [ "${DEVICE}" = "gpu" ]; then \
      version="$(python3 -c 'import importlib.metadata as m; print(m.version("onnxruntime"))')" \
      && pip uninstall -y onnxruntime \
      && pip install "onnxruntime-gpu==${version}"; \
    fi

COPY triton_models/ /models/
# config.pbtxt ships KIND_CPU (the embedded stack); model.py asks onnxruntime for CUDA on KIND_GPU.
RUN if [ "${DEVICE}" = "gpu" ]; then \
      sed -i 's/kind: KIND_CPU/kind: KIND_GPU/' /models/facegate_faces/config.pbtxt \
      && grep -q 'kind: KIND_GPU' /models/facegate_faces/config.pbtxt; \
    fi
EXPOSE 8000 8001 8002
