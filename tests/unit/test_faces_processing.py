"""facegate_faces' pure pre/post-processing (triton_models/facegate_faces/1/faces.py), no models."""

from __future__ import annotations

import importlib.util
import io
import math
import struct
import sys
import time
import zlib
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from PIL import Image

FACES_PY = Path(__file__).resolve().parents[2] / "triton_models" / "facegate_faces" / "1" / "faces.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("facegate_faces_impl", FACES_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


faces = _load()


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty input"),
        (b"GIF89a but not really", "not an image"),
        (b"%PDF-1.7\n" + b"x" * 200, "not an image"),
    ],
)
def test_not_images_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(faces.ImageError, match=message):
        faces.decode_image(data, 10**7)


def test_pixel_limit_is_checked_on_the_header_before_decoding() -> None:
    # Only a header: decoding would fail, so an "over pixel limit" answer proves nothing was decoded.
    start = time.perf_counter()
    with pytest.raises(
        faces.ImageError, match=r"over pixel limit: PNG 8000x8000 = 64000000 pixels > 10000000"
    ):
        faces.decode_image(_png_header_only(8000, 8000), 10_000_000)
    assert time.perf_counter() - start < 1.0


def test_truncated_image_says_truncated() -> None:
    data = _encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG", quality=90)
    with pytest.raises(faces.ImageError, match="truncated"):
        faces.decode_image(data[: len(data) // 2], 10**7)


@pytest.mark.parametrize(
    ("orientation", "stored"),
    [
        (1, None),
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_90),
        (8, Image.Transpose.ROTATE_270),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_exif_orientation_gives_the_upright_image(orientation: int, stored: Image.Transpose | None) -> None:
    upright = Image.new("RGB", (40, 20), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 10, 10))  # red marks the upright top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels = upright if stored is None else upright.transpose(stored)
    rgb = faces.decode_image(_encode(pixels, "PNG", exif=exif.tobytes()), 10**7)
    assert rgb.shape == (20, 40, 3)
    assert tuple(rgb[2, 2]) == (255, 0, 0)
    assert tuple(rgb[15, 35]) == (0, 0, 255)


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 64, 32768, 65535]], dtype=np.uint16)
    rgb = faces.decode_image(_encode(Image.fromarray(values), "PNG"), 10**7)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 64, 127, 255]


def test_alpha_is_composited_over_white() -> None:
    rgba = Image.new("RGBA", (4, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (255, 0, 0, 0))
    rgb = faces.decode_image(_encode(rgba, "PNG"), 10**7)
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (255, 255, 255)


def test_cmyk_and_palette_and_grayscale_become_rgb() -> None:
    source = Image.new("RGB", (8, 8), (200, 30, 30))
    for image, fmt in [
        (source.convert("CMYK"), "JPEG"),
        (source.convert("P"), "PNG"),
        (source.convert("L"), "PNG"),
    ]:
        rgb = faces.decode_image(_encode(image, fmt), 10**7)
        assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    cmyk = faces.decode_image(_encode(source.convert("CMYK"), "JPEG", quality=100), 10**7)
    assert np.abs(cmyk.astype(int) - [200, 30, 30]).max() < 12


def test_letterbox_keeps_aspect_and_pads_with_the_mean() -> None:
    rgb = np.full((100, 200, 3), (127, 117, 104), np.uint8)  # the BGR mean, as RGB
    canvas, scale = faces.letterbox(rgb, 640, max_upscale=2.0)
    assert canvas.shape == (3, 640, 640) and canvas.dtype == np.float32
    assert scale == 2.0  # enlargement capped
    assert np.abs(canvas).max() == 0.0  # mean colour everywhere, image and padding alike
    _, scale = faces.letterbox(np.zeros((1000, 3200, 3), np.uint8), 640, max_upscale=2.0)
    assert scale == pytest.approx(0.2)


def test_priors_match_the_detector_output_length() -> None:
    # 640/8=80, 640/16=40, 640/32=20; two anchors per cell
    assert faces.priors(640, 640).shape == (2 * (80 * 80 + 40 * 40 + 20 * 20), 4) == (16800, 4)
    first = faces.priors(640, 640)[:2]
    assert first.tolist() == [[4.0, 4.0, 16.0, 16.0], [4.0, 4.0, 32.0, 32.0]]


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=float)
    scores = np.array([0.8, 0.9, 0.7])
    assert faces.nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert faces.nms(boxes, scores, 0.9).tolist() == [1, 0, 2]


def test_similarity_recovers_a_known_transform() -> None:
    angle, scale, shift = math.radians(20), 1.7, np.array([30.0, -12.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    src = faces.TEMPLATE
    dst = src @ (scale * rotation).T + shift
    matrix = faces.similarity(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


@pytest.mark.parametrize("zoom", [0.8, 1.6, 4.5])  # 4.5: large face, goes through the pyramid
def test_align_undoes_scale_rotation_and_shift(zoom: float) -> None:
    rng = np.random.default_rng(7)
    chip = cv2.GaussianBlur(rng.integers(0, 255, (150, 150, 3), dtype=np.uint8), (0, 0), 3)
    angle = math.radians(25)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    forward = np.hstack([zoom * rotation, [[500.0], [200.0]]])  # chip pixel -> photo pixel
    photo = cv2.warpAffine(chip, forward, (1400, 1400), flags=cv2.INTER_LINEAR)
    # Landmarks are continuous coordinates: map the template's through the same transform.
    centre = np.array([0.5, 0.5])
    points = (faces.TEMPLATE - centre) @ forward[:, :2].T + forward[:, 2] + centre
    aligned = faces.align(photo, points)
    inner = (slice(20, 130), slice(20, 130))
    # A half-pixel misalignment would give ~0.7 here.
    assert np.abs(aligned[inner].astype(int) - chip[inner].astype(int)).mean() < 0.4


def test_sharpness_is_lower_for_a_blurred_chip() -> None:
    rng = np.random.default_rng(1)
    chip = rng.integers(0, 255, (150, 150, 3), dtype=np.uint8)
    assert faces.sharpness(cv2.GaussianBlur(chip, (0, 0), 2)) < faces.sharpness(chip) / 10


def test_params_from_triton_string_parameters() -> None:
    params = faces.Params.from_strings({"det_score": "0.5", "max_faces": "7", "detector_file": "x.onnx"})
    assert params.det_score == 0.5 and params.max_faces == 7 and isinstance(params.max_faces, int)
    assert params.nms_iou == faces.Params().nms_iou
    assert faces.Params.from_strings({"runtime": "openvino"}).runtime == "openvino"
    with pytest.raises(ValueError, match="runtime"):
        faces.Params.from_strings({"runtime": "tensorflow"})


def test_postscript_is_never_handed_to_ghostscript() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n"
    with pytest.raises(faces.ImageError, match="not an image"):
        faces.decode_image(eps, 10**7)
