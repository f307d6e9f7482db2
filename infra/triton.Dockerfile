# Triton for facegate: NVIDIA's server image plus what the facegate_faces python-backend model
# imports, with the model repository built by `make models` baked in.
# Build from the repository root: docker build -f infra/triton.Dockerfile .
#   GPU (default): onnxruntime-gpu; CPU: --build-arg ONNXRUNTIME=onnxruntime
# 24.10 ships tritonserver 2.51, the version the embedded stack runs.
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
FROM ${TRITON_IMAGE}

ARG ONNXRUNTIME=onnxruntime-gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

COPY triton_models/requirements.txt /opt/facegate/requirements.txt
# requirements.txt names the CPU onnxruntime; swap in the CUDA build at the same version.
RUN pip install -r /opt/facegate/requirements.txt \
 && if [ "${ONNXRUNTIME}" != "onnxruntime" ]; then \
      version="$(python3 -c 'import importlib.metadata as m; print(m.version("onnxruntime"))')" \
      && pip uninstall -y onnxruntime \
      && pip install "${ONNXRUNTIME}==${version}"; \
    fi

COPY triton_models/ /models/
EXPOSE 8000 8001 8002
