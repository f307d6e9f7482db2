# syntax=docker/dockerfile:1
# Triton for facegate: NVIDIA's server image plus what the facegate_faces python-backend model
# imports, with a model repository built by `make models` baked in as /models.
# Build from the repository root: docker build -f infra/triton.Dockerfile .
#   GPU (default): triton_models/split, facegate_faces as a BLS model (decode, align) and the
#     detector and embedder as onnxruntime-backend models on the GPU with dynamic batching;
#   CPU (--build-arg DEVICE=cpu): the single python model triton_models/facegate_faces.
# 24.10 ships tritonserver 2.51, the version the embedded stack runs.
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
FROM ${TRITON_IMAGE}

ARG DEVICE=gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

COPY triton_models/requirements.txt /opt/facegate/requirements.txt
RUN pip install -r /opt/facegate/requirements.txt

# The split repository links its python files and ONNX files to the single model's (one copy in
# the source tree): cp -L puts real files into the image.
RUN --mount=type=bind,source=triton_models,target=/src \
    if [ "${DEVICE}" = "gpu" ]; then \
      cp -rL /src/split /models \
      && test -s /models/facegate_detector/1/model.onnx && test -s /models/facegate_embedder/1/model.onnx; \
    else \
      mkdir -p /models && cp -rL /src/facegate_faces /models/facegate_faces; \
    fi \
 && rm -rf /models/*/1/__pycache__
EXPOSE 8000 8001 8002
