"""Face analysis: encoded image bytes in, every face with its box, landmarks and embedding out.

The pure pre/post-processing of the `facegate_faces` Triton model. It imports only numpy, Pillow,
OpenCV and onnxruntime, so the Triton python backend (model.py) and the benchmark run the very same
code. Steps:

1. decode: Pillow, pixel limit checked on the header before any pixel is decoded, EXIF orientation
   applied, every mode (grayscale, palette, CMYK, 16-bit, float, alpha) brought to 8-bit RGB;
2. detect: RetinaFace MobileNet-0.25 on a square letterboxed canvas (one shape for all images, so
   any number of images batch together), anchors decoded, score threshold, NMS, boxes mapped back
   to upright image pixels;
3. align: a similarity transform from the 5 landmarks onto TEMPLATE, dlib's 150x150 chip geometry,
   pyramid-downsampled first when the face is large (as dlib's extract_image_chip does);
4. embed: dlib ResNet v1 on the chips (RGB 0..255, normalisation inside the ONNX graph), 128-d;
5. quality: face size (short side of the box, px) and sharpness (variance of the Laplacian of the
   grayscale chip).

The two networks run through a Runner (a batch in, the network's outputs in graph order out): an
onnxruntime or OpenVINO session on the ONNX file, or, in the split Triton repository, a BLS call
to the model that serves the network (model.py builds those).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps, UnidentifiedImageError

CHIP_SIZE = 150
EMBEDDING_DIM = 128

# Where dlib's 150x150 aligned chips put the RetinaFace landmarks (x, y in chip pixels): left eye,
# right eye (as seen in the image), nose tip, left and right mouth corner; continuous coordinates
# (pixel i spans [i, i+1]), as the detector reports them. derive_template() on the 55 dlib-aligned
# chips of dlib's examples/johns (tests/models/test_template.py re-derives and compares).
TEMPLATE = np.array(
    [
        [46.79, 45.63],
        [100.97, 45.80],
        [74.08, 77.82],
        [49.46, 100.75],
        [97.94, 100.90],
    ],
    dtype=np.float64,
)

# RetinaFace MobileNet-0.25 prior boxes and box coding.
_BGR_MEAN = np.array([104.0, 117.0, 127.0], dtype=np.float32)
_STRIDES = (8, 16, 32)
_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
_VARIANCE_CENTER = 0.1
_VARIANCE_SIZE = 0.2


# A network as facegate_faces uses it: one input batch in, the outputs in graph order out.
Runner = Callable[[np.ndarray], Sequence[np.ndarray]]
RUNTIMES = ("onnxruntime", "openvino")

# Formats never opened: EPS is rendered by running Ghostscript on the input (a known attack surface);
# the others are metadata or scientific containers that only ever reach us as junk.
_REFUSED_FORMATS = frozenset({"EPS", "IPTC", "BUFR", "GRIB", "HDF5", "MPEG", "WMF"})


def _formats() -> list[str]:
    Image.init()
    return [f for f in Image.ID if f not in _REFUSED_FORMATS]


class ImageError(ValueError):
    """The bytes are not an image this model can analyse; the message says why (for the client)."""


@dataclass(frozen=True)
class Params:
    """Thresholds and sizes; the Triton model reads them from config.pbtxt parameters."""

    det_score: float = 0.8  # minimum RetinaFace face probability
    nms_iou: float = 0.4  # boxes overlapping more than this are one face
    min_face_px: float = 16.0  # faces whose box short side (upright image px) is smaller are dropped
    max_faces: int = 100  # per image, highest scores first
    max_pixels: int = 40_000_000  # width * height above this is refused before decoding
    det_size: int = 640  # side of the square detector canvas
    max_upscale: float = 2.0  # small images are enlarged at most this much for detection
    embed_batch: int = 32  # chips per embedder run
    threads: int = 0  # intra-op threads per session; 0: the runtime decides (one per core)
    runtime: str = "onnxruntime"  # which runtime runs the ONNX files: one of RUNTIMES

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime {self.runtime!r} is not one of {RUNTIMES}")

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> Params:
        """Build from string values (Triton parameters), ignoring keys that are not fields."""
        kinds = {"int": int, "float": float, "str": str}
        kwargs: dict[str, object] = {}
        for name, f in cls.__dataclass_fields__.items():
            if name in values:
                kwargs[name] = kinds[str(f.type)](values[name])
        return cls(**kwargs)  # type: ignore[arg-type]


@dataclass
class Faces:
    """Every face found in one image; arrays share the first dimension F (faces)."""

    width: int  # upright image size in pixels
    height: int
    boxes: np.ndarray  # F x 4 float32: x, y, w, h in upright image pixels
    landmarks: np.ndarray  # F x 5 x 2 float32: eyes, nose, mouth corners (upright image pixels)
    scores: np.ndarray  # F float32 detection probability
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, EMBEDDING_DIM), np.float32))
    face_px: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    sharpness: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.scores)


# ---------------------------------------------------------------------------------------- decode


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode encoded image bytes to an upright H x W x 3 uint8 RGB array, or raise ImageError."""
    if not data:
        raise ImageError("empty input (zero bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=_formats())
    except Image.DecompressionBombError as exc:
        # Pillow's own bomb check (2 x Image.MAX_IMAGE_PIXELS) fired before ours could.
        raise ImageError(f"over pixel limit of {max_pixels} pixels: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"not an image: format not recognised ({len(data)} bytes)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt image header: {exc}") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            f"over pixel limit: {image.format} {width}x{height} = {width * height} pixels > {max_pixels}"
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        message = str(exc) or type(exc).__name__
        kind = "truncated image" if "truncated" in message.lower() else "corrupt image data"
        raise ImageError(f"{kind}: {image.format} {width}x{height}: {message}") from None
    try:
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        upright = image  # unreadable EXIF: the pixels are fine, take them as stored
    return to_rgb8(upright)


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to H x W x 3 uint8 RGB; alpha is composited over white."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16/32-bit and float grayscale: Pillow's own conversion clips at 255, so scale instead.
        values = np.asarray(image).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(values.max()), 1.0)
        if mode == "I" and top <= 255.0:
            top = 255.0
        low = min(float(values.min()), 0.0) if mode == "F" else 0.0
        gray = np.clip((values - low) * (255.0 / max(top - low, 1e-6)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as exc:
        raise ImageError(f"unsupported colour mode {mode}: {exc}") from None


# ---------------------------------------------------------------------------------------- detect


def letterbox(rgb: np.ndarray, size: int, max_upscale: float) -> tuple[np.ndarray, float]:
    """The detector input (3 x size x size float32 BGR minus mean) and the image->canvas scale."""
    height, width = rgb.shape[:2]
    scale = min(size / max(height, width), max_upscale)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (new_w, new_h) != (width, height):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((3, size, size), dtype=np.float32)  # zero == the mean colour after subtraction
    bgr = rgb[:, :, ::-1].astype(np.float32) - _BGR_MEAN
    canvas[:, :new_h, :new_w] = bgr.transpose(2, 0, 1)
    return canvas, scale


def priors(height: int, width: int) -> np.ndarray:
    """RetinaFace anchors (cx, cy, w, h in canvas pixels) in the detector's output order."""
    rows = []
    for stride, sizes in zip(_STRIDES, _MIN_SIZES, strict=True):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centers = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        for_cells = np.repeat(centers, len(sizes), axis=0)
        wh = np.tile(np.array([[s, s] for s in sizes], dtype=np.float64), (nx * ny, 1))
        rows.append(np.hstack([for_cells, wh]))
    return np.vstack(rows)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression; boxes are x1, y1, x2, y2."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        xx1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.array(keep, dtype=np.int64)


def decode_detections(
    loc: np.ndarray,
    conf: np.ndarray,
    landmarks: np.ndarray,
    anchors: np.ndarray,
    scale: float,
    image_size: tuple[int, int],
    params: Params,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw detector outputs -> (boxes x,y,w,h; scores; landmarks 5x2), upright pixels."""
    scores = conf[:, 1]
    candidates = np.flatnonzero(scores >= params.det_score)
    width, height = image_size
    if candidates.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    a = anchors[candidates]
    d = loc[candidates].astype(np.float64)
    centers = a[:, :2] + d[:, :2] * _VARIANCE_CENTER * a[:, 2:]
    sizes = a[:, 2:] * np.exp(d[:, 2:] * _VARIANCE_SIZE)
    corners = np.hstack([centers - sizes / 2, centers + sizes / 2]) / scale
    points = landmarks[candidates].astype(np.float64).reshape(-1, 5, 2)
    points = (a[:, None, :2] + points * _VARIANCE_CENTER * a[:, None, 2:]) / scale
    corners[:, [0, 2]] = corners[:, [0, 2]].clip(0, width)
    corners[:, [1, 3]] = corners[:, [1, 3]].clip(0, height)
    s = scores[candidates]
    kept = nms(corners, s, params.nms_iou)
    corners, s, points = corners[kept], s[kept], points[kept]
    wh = corners[:, 2:] - corners[:, :2]
    big_enough = wh.min(axis=1) >= params.min_face_px
    corners, s, points, wh = corners[big_enough], s[big_enough], points[big_enough], wh[big_enough]
    top = np.argsort(-s, kind="stable")[: params.max_faces]
    boxes = np.hstack([corners[top, :2], wh[top]]).astype(np.float32)
    return boxes, s[top].astype(np.float32), points[top].astype(np.float32)


# ----------------------------------------------------------------------------------------- align


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity transform (Umeyama) mapping src points onto dst points."""
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    var = (src_c**2).sum() / len(src)
    scale = (d * sign).sum() / var if var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def align(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 150x150 RGB chip of the face with these 5 landmarks, in dlib's chip geometry."""
    matrix = similarity(points, TEMPLATE)
    # Landmarks and template are continuous coordinates; warpAffine maps pixel indices.
    matrix[:, 2] += matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5
    # Only the region the chip sees is warped; large faces are halved first (pyrDown) until the
    # remaining scale is >= 1/2, as dlib's extract_image_chip does, so the chip does not alias.
    inverse = cv2.invertAffineTransform(matrix)
    chip_corners = np.array([[0, 0, 1], [CHIP_SIZE, 0, 1], [0, CHIP_SIZE, 1], [CHIP_SIZE, CHIP_SIZE, 1]])
    region = chip_corners @ inverse.T
    height, width = rgb.shape[:2]
    x0 = int(np.clip(np.floor(region[:, 0].min()) - 2, 0, width - 1))
    y0 = int(np.clip(np.floor(region[:, 1].min()) - 2, 0, height - 1))
    x1 = int(np.clip(np.ceil(region[:, 0].max()) + 3, x0 + 1, width))
    y1 = int(np.clip(np.ceil(region[:, 1].max()) + 3, y0 + 1, height))
    crop = rgb[y0:y1, x0:x1]
    matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    while scale < 0.5 and min(crop.shape[:2]) >= 4:
        crop = cv2.pyrDown(crop)
        matrix[:, :2] *= 2.0
        scale *= 2.0
    return cv2.warpAffine(
        np.ascontiguousarray(crop),
        matrix,
        (CHIP_SIZE, CHIP_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def derive_template(pipeline: FacePipeline, chips: Sequence[np.ndarray]) -> np.ndarray:
    """TEMPLATE's recipe: mean RetinaFace landmarks on dlib-aligned 150x150 chips.

    Each chip and its mirror image (landmarks mapped back, which averages out the chips' own
    left/right asymmetries) is padded with 75 px of black so the face is not at the canvas edge,
    and detected at scales 1 and 2; the highest-scoring face's landmarks are averaged.
    """
    pad = CHIP_SIZE // 2
    mirror = [1, 0, 2, 4, 3]
    found = []
    for chip in chips:
        for flipped in (False, True):
            image = chip[:, ::-1] if flipped else chip
            padded = cv2.copyMakeBorder(
                np.ascontiguousarray(image), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0)
            )
            for scale in (1.0, 2.0):
                enlarged = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
                faces = pipeline.detect([enlarged])[0]
                if not len(faces):
                    continue
                points = faces.landmarks[0].astype(np.float64) / scale - pad
                if flipped:
                    points = points[mirror]
                    points[:, 0] = CHIP_SIZE - points[:, 0]
                found.append(points)
    if not found:
        raise ValueError("no face found on any chip")
    return np.mean(found, axis=0)


def sharpness(chip: np.ndarray) -> float:
    """Variance of the Laplacian of the grayscale chip: low for blurred or flat faces."""
    gray = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


# -------------------------------------------------------------------------------------- pipeline


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnxruntime_runner(
    path: Path, threads: int, providers: Sequence[object] = ("CPUExecutionProvider",)
) -> Runner:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=list(providers))
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})


def openvino_runner(path: Path, threads: int) -> Runner:
    """OpenVINO on the CPU, compiled from the ONNX file at load (no converted files to build).

    fp32 kept (no bf16/int8 precision hint): parity with the onnxruntime results is the gate.
    Pinning off: the cores are shared with the rest of the stack.
    """
    try:
        import openvino as ov  # only where chosen: the split repository's models do not need it
    except ImportError as exc:
        raise ImportError(
            f"runtime 'openvino' needs the openvino package ({exc}): pip install -r "
            "triton_models/requirements.txt (in facegate's venv: make venv), or set the model's "
            "`runtime` parameter to onnxruntime"
        ) from exc

    config: dict[str, object] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "ENABLE_CPU_PINNING": False,
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    outputs = list(compiled.outputs)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        result = request.infer([batch])
        # Copies: the request reuses its output buffers on the next call.
        return [np.array(result[output]) for output in outputs]

    return run


def session_runner(
    path: Path, params: Params, providers: Sequence[object] = ("CPUExecutionProvider",)
) -> Runner:
    if params.runtime == "openvino":
        return openvino_runner(path, params.threads)
    return onnxruntime_runner(path, params.threads, providers)


def weights_version(detector: Path, embedder: Path) -> str:
    """Identifies exactly which weights computed a result; goes into every tag."""
    return f"retinaface-mnet025:{file_sha256(detector)[:12]}+dlib-resnet-v1:{file_sha256(embedder)[:12]}"


class FacePipeline:
    """The steps above for many images at once, on a detector and an embedder Runner."""

    def __init__(self, detector: Runner, embedder: Runner, params: Params, model_version: str) -> None:
        self.params = params
        self._detector = detector
        self._embedder = embedder
        size = self.params.det_size
        self._anchors = priors(size, size)
        self.model_version = model_version

    @classmethod
    def from_files(
        cls,
        detector: Path,
        embedder: Path,
        params: Params | None = None,
        providers: Sequence[object] = ("CPUExecutionProvider",),
    ) -> FacePipeline:
        """Sessions of params.runtime on the two ONNX files."""
        params = params or Params()
        return cls(
            session_runner(detector, params, providers),
            session_runner(embedder, params, providers),
            params,
            weights_version(detector, embedder),
        )

    def warm_up(self) -> None:
        """One detector and one embedder run, so the first real request does not pay for
        onnxruntime's first-run allocations."""
        self.detect([np.zeros((self.params.det_size, self.params.det_size, 3), np.uint8)])
        self.embed([np.zeros((CHIP_SIZE, CHIP_SIZE, 3), np.uint8)])

    def analyze(self, images: Sequence[bytes], det_batch: int = 8) -> list[Faces | ImageError]:
        """Faces of every image, in order; a bad image gives its ImageError in its place."""
        errors: dict[int, ImageError] = {}
        decoded: dict[int, np.ndarray] = {}
        for index, data in enumerate(images):
            try:
                decoded[index] = decode_image(data, self.params.max_pixels)
            except ImageError as exc:
                errors[index] = exc
        found: dict[int, Faces] = {}
        good = list(decoded)
        for start in range(0, len(good), det_batch):
            chunk = good[start : start + det_batch]
            found.update(zip(chunk, self.detect([decoded[i] for i in chunk]), strict=True))
        chips = [align(decoded[i], points) for i in good for points in found[i].landmarks]
        embeddings = self.embed(chips)
        quality = np.array([sharpness(chip) for chip in chips], dtype=np.float32)
        offset = 0
        for index in good:
            faces = found[index]
            count = len(faces)
            faces.embeddings = embeddings[offset : offset + count]
            faces.sharpness = quality[offset : offset + count]
            faces.face_px = faces.boxes[:, 2:].min(axis=1)
            offset += count
        return [errors[i] if i in errors else found[i] for i in range(len(images))]

    def detect(self, rgbs: Sequence[np.ndarray]) -> list[Faces]:
        """Detections (no embeddings yet) for decoded upright RGB images, one detector run."""
        if not rgbs:
            return []
        canvases, scales = zip(
            *(letterbox(rgb, self.params.det_size, self.params.max_upscale) for rgb in rgbs), strict=True
        )
        loc, conf, landmarks = self._detector(np.stack(canvases))
        out = []
        for k, rgb in enumerate(rgbs):
            height, width = rgb.shape[:2]
            boxes, scores, points = decode_detections(
                loc[k], conf[k], landmarks[k], self._anchors, scales[k], (width, height), self.params
            )
            out.append(Faces(width, height, boxes, points, scores))
        return out

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """128-d embeddings of 150x150 RGB uint8 chips, in batches of params.embed_batch."""
        if not chips:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        parts = []
        for start in range(0, len(chips), self.params.embed_batch):
            batch = np.stack(chips[start : start + self.params.embed_batch]).astype(np.float32)
            parts.append(self._embedder(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))[0])
        return np.vstack(parts).astype(np.float32)
