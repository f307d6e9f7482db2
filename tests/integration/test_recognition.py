"""Ingest-time recognition end to end: S3 upload -> tags on Kafka, on the real embedded stack.

Uploads go through the minio SDK into the bucket; the object store's notification produces the
AssetUploaded; the worker started by the stack does the rest. Nothing is published by hand except
consent and enrollment events (which come from other systems) and, for the malformed-event case,
garbage bytes.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import stack_settings
from flow import (
    PHOTOS,
    Publisher,
    Watcher,
    enroll_consenting,
    erase,
    latest_tags,
    put,
    tags_of,
    worker_pid,
)
from PIL import Image

from pipeline.contract import AssetFaces, FaceStatus, utcnow
from pipeline.inference import TritonFaceClient
from pipeline.stack import up

pytestmark = [pytest.mark.integration, pytest.mark.models]

OBAMA = PHOTOS / "face_recognition"
GROUP = PHOTOS / "faces" / "2008_002506.jpg"  # three people, dlib's hand-labelled test set


@pytest.fixture(scope="module")
def topics(stack):
    stack.require_model()
    k = stack.settings.kafka
    watcher = Watcher(stack.kafka_config(), [k.topic_tags, k.topic_dlq, k.topic_purges, k.topic_audit])
    yield watcher
    watcher.close()


@pytest.fixture(scope="module")
def publisher(stack):
    return Publisher(stack.kafka_config())


def upload(stack, path: Path, key: str | None = None) -> str:
    key = key or f"{uuid.uuid4().hex[:8]}/{path.name}"
    put(stack, key, path.read_bytes(), "image/png" if path.suffix == ".png" else "image/jpeg")
    return f"{stack.bucket}/{key}"


def wait_tags(stack, topics: Watcher, asset_id: str, timeout: float = 60.0, pred=None) -> AssetFaces:
    tags_topic = stack.settings.kafka.topic_tags

    def found(messages):
        tags = tags_of(messages, tags_topic, asset_id)
        tags = [t for t in tags if pred is None or pred(t)]
        return tags[-1] if tags else None

    return topics.until(found, timeout, f"AssetFaces for {asset_id}")


def wait_dlq(stack, topics: Watcher, key: str, timeout: float = 60.0):
    dlq = stack.settings.kafka.topic_dlq
    return topics.until(
        lambda ms: next((m for m in ms if m.topic == dlq and m.key == key), None), timeout, f"DLQ for {key}"
    )


def analyze_directly(stack, path: Path):
    async def run():
        async with TritonFaceClient.from_settings(stack.settings) as client:
            return await client.analyze(path.read_bytes())

    return asyncio.run(run())


@pytest.fixture
def consenting_subject(stack, topics, publisher) -> Iterator[str]:
    """A subject with explicit consent, enrolled from one reference photo; erased afterwards."""
    subject = f"S-{uuid.uuid4().hex[:10]}"
    enroll_consenting(stack, topics, publisher, subject, {"obama2.jpg": (OBAMA / "obama2.jpg").read_bytes()})
    yield subject
    erase(stack, topics, publisher, subject, by="test-teardown")


def iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    h = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_real_photos_come_back_with_their_faces(stack, topics):
    started = time.monotonic()
    asset_id = upload(stack, GROUP)
    tags = wait_tags(stack, topics, asset_id)
    print(f"upload -> tags: {time.monotonic() - started:.2f}s")
    direct = analyze_directly(stack, GROUP)
    assert len(tags.faces) == len(direct.faces) == 3
    for face, expected in zip(
        sorted(tags.faces, key=lambda f: f.bbox.x), sorted(direct.faces, key=lambda f: f.box.x), strict=True
    ):
        assert (
            iou(
                (face.bbox.x, face.bbox.y, face.bbox.w, face.bbox.h),
                (expected.box.x, expected.box.y, expected.box.w, expected.box.h),
            )
            > 0.99
        )
    assert all(f.status is FaceStatus.RED and f.subject_id is None for f in tags.faces)
    assert tags.model_version == direct.model_version
    assert tags.etag and tags.kind.value == "IMAGE"


def test_consenting_subject_green_stranger_red(stack, topics, consenting_subject):
    obama = upload(stack, OBAMA / "obama3.jpg")
    biden = upload(stack, OBAMA / "biden.jpg")
    named = wait_tags(stack, topics, obama)
    assert [f.status for f in named.faces] == [FaceStatus.GREEN]
    face = named.faces[0]
    assert face.subject_id == consenting_subject
    assert face.reason == "consent:explicit" and sorted(face.scopes) == ["archive", "editorial"]
    assert face.similarity is not None and 0 < face.similarity <= 1
    stranger = wait_tags(stack, topics, biden)
    assert [(f.status, f.subject_id, f.similarity) for f in stranger.faces] == [(FaceStatus.RED, None, None)]


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _pixel_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A small PNG file whose header declares 900 megapixels (the IDAT is a tiny valid stream)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    row = b"\x00" + b"\x00" * width
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_corpus() -> dict[str, tuple[bytes, str, str]]:
    """name -> (bytes, content type, expected outcome: 'tags' or 'dlq')."""
    obama = (OBAMA / "obama.jpg").read_bytes()
    with Image.open(OBAMA / "obama.jpg") as photo:
        rgb = photo.convert("RGB")
    cmyk = io.BytesIO()
    rgb.convert("CMYK").save(cmyk, "JPEG", quality=90)
    sixteen = Image.fromarray((np.asarray(rgb.convert("L"), dtype="<u2") * 257).astype("<u2"))
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to view
    rgb.transpose(Image.Transpose.ROTATE_90).save(rotated, "JPEG", quality=90, exif=exif)
    alpha = rgb.copy()
    alpha.putalpha(200)
    return {
        "truncated.jpg": (obama[: len(obama) // 3], "image/jpeg", "dlq"),
        "zero.jpg": (b"", "image/jpeg", "dlq"),
        "text.jpg": (b"this is not a photo, it is a text file named .jpg\n" * 20, "image/jpeg", "dlq"),
        "bomb.png": (_pixel_bomb(), "image/png", "dlq"),
        "sixteen-bit.png": (_png(sixteen), "image/png", "tags"),
        "cmyk.jpg": (cmyk.getvalue(), "image/jpeg", "tags"),
        "exif-rotated.jpg": (rotated.getvalue(), "image/jpeg", "tags"),
        "alpha.png": (_png(alpha), "image/png", "tags"),
    }


def test_bad_inputs_end_in_a_tag_or_the_dlq_and_the_worker_goes_on(stack, topics, publisher):
    k = stack.settings.kafka
    prefix = f"bad-{uuid.uuid4().hex[:6]}"
    expected = {}
    for name, (data, content_type, outcome) in bad_corpus().items():
        put(stack, f"{prefix}/{name}", data, content_type)
        expected[f"{stack.bucket}/{prefix}/{name}"] = outcome

    # an object deleted before the worker fetches it: published by hand, as a notification
    # that raced its deletion would be
    from pipeline.contract import AssetKind, AssetUploaded

    gone = f"{prefix}/deleted.jpg"
    publisher.send(
        k.topic_assets,
        f"{stack.bucket}/{gone}",
        AssetUploaded(
            f"{stack.bucket}/{gone}",
            stack.bucket,
            gone,
            "etag-gone",
            1234,
            "image/jpeg",
            AssetKind.IMAGE,
            utcnow(),
        ),
    )
    expected[f"{stack.bucket}/{gone}"] = "dlq"
    garbage_key = f"{prefix}/garbage-event"
    publisher.send(k.topic_assets, garbage_key, b"\x00\x01garbage that is no Avro record")
    expected[garbage_key] = "dlq"

    for key, outcome in expected.items():
        if outcome == "dlq":
            record = wait_dlq(stack, topics, key)
            assert record.headers["stage"] and record.headers["error_class"], record.headers
            assert record.headers["source_topic"] == k.topic_assets
            assert int(record.headers["source_offset"]) >= 0
            print(f"{key}: DLQ {record.headers['error_class']}: {record.headers['error_message'][:80]}")
        else:
            tags = wait_tags(stack, topics, key)
            assert len(tags.faces) == 1, (key, tags.faces)
            print(f"{key}: {len(tags.faces)} face(s)")
    bomb = wait_dlq(stack, topics, f"{stack.bucket}/{prefix}/bomb.png")
    assert "pixels" in bomb.headers["error_message"]
    assert worker_pid(stack) is not None

    # The EXIF-rotated copy gives the same face, mapped to the upright image.
    upright = analyze_directly(stack, OBAMA / "obama.jpg").faces[0].box
    rotated = wait_tags(stack, topics, f"{stack.bucket}/{prefix}/exif-rotated.jpg").faces[0].bbox
    assert (
        iou((upright.x, upright.y, upright.w, upright.h), (rotated.x, rotated.y, rotated.w, rotated.h)) > 0.8
    )

    # and the worker still processes good photos
    after = upload(stack, OBAMA / "obama.jpg")
    assert len(wait_tags(stack, topics, after).faces) == 1


def test_redelivery_gives_the_same_faces(stack, topics, publisher):
    """At-least-once: an AssetUploaded processed twice yields the same face ids and tags."""
    k = stack.settings.kafka
    asset_id = upload(stack, GROUP)
    first = wait_tags(stack, topics, asset_id)
    uploaded = next(m for m in _assets(stack) if m.key == asset_id)
    publisher.send(k.topic_assets, asset_id, uploaded.value)
    time.sleep(3)  # the duplicate is processed; the assembler publishes an unchanged state once
    topics.poll(1)
    all_tags = tags_of(topics.messages, k.topic_tags, asset_id)
    assert {f.face_id for f in all_tags[-1].faces} == {f.face_id for f in first.faces}
    assert all([f.face_id for f in t.faces] == [f.face_id for f in first.faces] for t in all_tags)


def _assets(stack):
    watcher = Watcher(stack.kafka_config(), [stack.settings.kafka.topic_assets])
    watcher.poll(2)
    watcher.close()
    return watcher.messages


def test_worker_killed_mid_stream_loses_nothing(stack, topics):
    """kill -9 the worker while photos are in flight; restart it; every asset is tagged once."""
    k = stack.settings.kafka
    prefix = f"kill-{uuid.uuid4().hex[:6]}"
    photos = sorted((PHOTOS / "faces").glob("*.jpg"))
    assets = [upload(stack, p, f"{prefix}/{p.name}") for p in photos]
    topics.until(lambda ms: any(m.topic == k.topic_tags and m.key in assets for m in ms), 60, "first tag")
    pid = worker_pid(stack)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    time.sleep(1)
    up(stack_settings(Path(stack.data_dir)))  # `facegate up` again: restarts the crashed worker
    view = topics.until(
        lambda ms: (lambda v: v if all(a in v for a in assets) else None)(latest_tags(ms, k.topic_tags)),
        180,
        "every asset tagged after the restart",
    )
    for asset_id in assets:
        records = tags_of(topics.messages, k.topic_tags, asset_id)
        # Reprocessing after the crash is idempotent: every record of an asset has the same faces.
        assert len({tuple(f.face_id for f in r.faces) for r in records}) == 1, asset_id
        assert view[asset_id].faces == records[-1].faces
