"""The alignment template in faces.py is what its recipe gives on dlib's own aligned chips."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytestmark = [pytest.mark.models, pytest.mark.slow]


def test_template_rederived_from_dlib_johns_chips(
    photos: Path, model_dir: Path, faces_module: ModuleType
) -> None:
    faces = faces_module
    pipeline = faces.FacePipeline.from_files(
        model_dir / "1" / "detector.onnx", model_dir / "1" / "embedder.onnx"
    )
    chips = [faces.decode_image(p.read_bytes(), 10**6) for p in sorted((photos / "johns").glob("*/*.jpg"))]
    assert len(chips) == 55 and all(chip.shape == (150, 150, 3) for chip in chips)
    derived = faces.derive_template(pipeline, chips)
    print("derived template:", np.round(derived, 2).tolist())
    assert np.abs(derived - faces.TEMPLATE).max() < 0.5


def test_aligning_a_dlib_chip_reproduces_it(photos: Path, model_dir: Path, faces_module: ModuleType) -> None:
    """dlib's chips re-aligned through the template land within a few pixels of themselves."""
    faces = faces_module
    pipeline = faces.FacePipeline.from_files(
        model_dir / "1" / "detector.onnx", model_dir / "1" / "embedder.onnx"
    )
    report = []
    for path in sorted((photos / "johns").glob("*/*.jpg"))[::5]:
        chip = faces.decode_image(path.read_bytes(), 10**6)
        found = pipeline.detect([chip])[0]
        matrix = faces.similarity(found.landmarks[0], faces.TEMPLATE)
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        degrees = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
        shift = float(np.linalg.norm(matrix @ np.array([75.0, 75.0, 1.0]) - 75.0))
        report.append((round(scale, 3), round(degrees, 1), round(shift, 1)))
    print("per chip (scale, rotation deg, centre shift px):", report)
    assert all(0.9 < scale < 1.1 and abs(degrees) < 5 and shift < 6 for scale, degrees, shift in report)
