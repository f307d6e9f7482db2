"""The production (GPU) model repository triton_models/split, checked by its structure.

No GPU and no onnxruntime backend here: the configs are parsed with Triton's own ModelConfig
message and checked against each other, the single model's config, the Dockerfile and the
compose file. tests/models/test_split.py runs the same composition on CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "triton_models"
SPLIT = MODELS / "split"
GPU = model_config_pb2.ModelInstanceGroup.KIND_GPU
CPU = model_config_pb2.ModelInstanceGroup.KIND_CPU


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _params(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


def _io(config: model_config_pb2.ModelConfig) -> list[tuple[str, int, list[int]]]:
    return [(t.name, t.data_type, list(t.dims)) for t in [*config.input, *config.output]]


BLS = _config(SPLIT / "facegate_faces" / "config.pbtxt")
DETECTOR = _config(SPLIT / "facegate_detector" / "config.pbtxt")
EMBEDDER = _config(SPLIT / "facegate_embedder" / "config.pbtxt")
SINGLE = _config(MODELS / "facegate_faces" / "config.pbtxt")


def test_networks_run_on_the_gpu_with_onnxruntime_and_dynamic_batching() -> None:
    for config in (DETECTOR, EMBEDDER):
        assert config.platform == "onnxruntime_onnx" and not config.backend, config.name
        assert config.instance_group and all(g.kind == GPU for g in config.instance_group), config.name
        assert config.HasField("dynamic_batching"), config.name
        assert config.max_batch_size > 0, config.name
        assert all(b <= config.max_batch_size for b in config.dynamic_batching.preferred_batch_size)


def test_bls_model_keeps_the_single_models_interface_and_parameters() -> None:
    assert BLS.name == SINGLE.name == "facegate_faces"
    assert BLS.backend == "python"
    assert _io(BLS) == _io(SINGLE), "clients must not see which repository serves them"
    assert all(g.kind == CPU for g in BLS.instance_group), "decode/align are CPU work"
    assert BLS.HasField("dynamic_batching")
    params, single = _params(BLS), _params(SINGLE)
    shared = {"det_score", "nms_iou", "min_face_px", "max_faces", "max_pixels", "det_size", "max_upscale"}
    assert {k: params[k] for k in shared} == {k: single[k] for k in shared}


def test_bls_calls_fit_the_networks_models() -> None:
    params = _params(BLS)
    assert params["detector_model"] == DETECTOR.name and params["embedder_model"] == EMBEDDER.name
    for config in (DETECTOR, EMBEDDER):
        assert (SPLIT / config.name / "config.pbtxt").exists()
    det_size = int(params["det_size"])
    assert [list(t.dims) for t in DETECTOR.input] == [[3, det_size, det_size]]
    assert [list(t.dims) for t in EMBEDDER.input] == [[3, 150, 150]]
    # model.py sends at most max_batch_size canvases and embed_batch chips per BLS call.
    assert BLS.max_batch_size <= DETECTOR.max_batch_size
    assert int(params["embed_batch"]) <= EMBEDDER.max_batch_size


def test_split_files_are_the_single_models_files() -> None:
    links = {
        SPLIT / "facegate_faces" / "1" / "model.py": MODELS / "facegate_faces" / "1" / "model.py",
        SPLIT / "facegate_faces" / "1" / "faces.py": MODELS / "facegate_faces" / "1" / "faces.py",
        SPLIT / "facegate_detector" / "1" / "model.onnx": MODELS / "facegate_faces" / "1" / "detector.onnx",
        SPLIT / "facegate_embedder" / "1" / "model.onnx": MODELS / "facegate_faces" / "1" / "embedder.onnx",
    }
    for link, target in links.items():
        assert link.is_symlink(), link
        # Relative, so that the tree can be copied (the Dockerfile copies it with cp -L).
        assert not os.readlink(link).startswith("/"), link
        assert (link.parent / os.readlink(link)).resolve() == target.resolve(), link


def test_gpu_image_and_compose_serve_the_split_repository() -> None:
    dockerfile = (ROOT / "infra" / "triton.Dockerfile").read_text()
    assert "cp -rL /src/split /models" in dockerfile
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["triton"]["command"]
    loaded = {part.split("=", 1)[1] for part in command if part.startswith("--load-model=")}
    assert loaded == {p.name for p in SPLIT.iterdir() if (p / "config.pbtxt").exists()}
    assert "--model-repository=/models" in command
    ignored = (ROOT / "infra" / "triton.Dockerfile.dockerignore").read_text().split()
    assert "!triton_models/" in ignored and "triton_models/cpu_standin/" in ignored
