"""``facegate ingest``: upload photos and videos into the assets bucket.

The upload is the whole job: the object store notifies facegate of each new object (filer
webhook embedded, bucket notifications with MinIO), so nothing is sent to Kafka from here.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import click
from minio import Minio
from minio.error import S3Error
from tqdm import tqdm
from urllib3.exceptions import HTTPError

from ..errors import StackError
from ..objects import s3_client
from .common import connected_settings

# Leading bytes of the formats the face model and the video sampler read.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x1aE\xdf\xa3", "video/x-matroska"),
)
_FTYP_BRANDS = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"avif": "image/avif",
    b"qt  ": "video/quicktime",
}


def sniff(head: bytes) -> str | None:
    """The media type from a file's first bytes (at least 16), or None if it is not media."""
    for offset, magic, media_type in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12], "video/mp4")
    return None


def _is_media(media_type: str | None) -> bool:
    return bool(media_type) and str(media_type).split("/", 1)[0] in ("image", "video")


def media_type(path: Path, head: bytes) -> str | None:
    """image/* or video/* by file extension, else by content; None for anything else."""
    guessed = mimetypes.guess_type(path.name)[0]
    if _is_media(guessed):
        return guessed
    sniffed = sniff(head)
    return sniffed if _is_media(sniffed) else None


@dataclass(frozen=True)
class Upload:
    path: Path
    key: str
    content_type: str
    size: int


def object_key(relative: str, prefix: str = "", store_prefix: str = "") -> str:
    """``store_prefix`` (settings.s3.prefix, raw) + ``prefix/`` + the path relative to its folder."""
    parts = [p.strip("/") for p in (prefix, relative) if p.strip("/")]
    return store_prefix + "/".join(parts)


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root``, sorted, leaving out hidden files and folders (.DS_Store, .git)."""
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.is_file():
            yield path


def plan(paths: Iterable[Path], prefix: str = "", store_prefix: str = "") -> tuple[list[Upload], list[Path]]:
    """The uploads for ``paths`` (files, or folders read recursively) and the files skipped."""
    uploads: list[Upload] = []
    skipped: list[Path] = []
    for given in paths:
        pairs = (
            [(f, f.relative_to(given).as_posix()) for f in _walk(given)]
            if given.is_dir()
            else [(given, given.name)]
        )
        for path, relative in pairs:
            with path.open("rb") as f:
                head = f.read(32)
            content_type = media_type(path, head)
            if content_type is None:
                skipped.append(path)
                continue
            key = object_key(relative, prefix, store_prefix)
            uploads.append(Upload(path, key, content_type, path.stat().st_size))
    _refuse_duplicate_keys(uploads)
    return uploads, skipped


def _refuse_duplicate_keys(uploads: list[Upload]) -> None:
    """Two files for one key: the second would silently replace the first."""
    seen: dict[str, Path] = {}
    for item in uploads:
        if item.key in seen and seen[item.key].resolve() != item.path.resolve():
            raise click.UsageError(f"{seen[item.key]} and {item.path} would both be uploaded as {item.key}")
        seen[item.key] = item.path
    unique = {u.key: u for u in uploads}
    uploads[:] = list(unique.values())


class _Counted:
    """A file whose reads advance a progress bar (the SDK reads it in parts)."""

    def __init__(self, file: BinaryIO, bar: tqdm[Any]) -> None:
        self._file = file
        self._bar = bar

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._bar.update(len(data))
        return data


def _upload(client: Minio, bucket: str, item: Upload, bar: tqdm[Any]) -> None:
    with item.path.open("rb") as f:
        data = cast(BinaryIO, _Counted(f, bar))  # the SDK only calls read()
        client.put_object(bucket, item.key, data, length=item.size, content_type=item.content_type)


def _check_bucket(client: Minio, bucket: str, endpoint: str) -> None:
    try:
        exists = client.bucket_exists(bucket)
    except (S3Error, HTTPError, OSError) as exc:
        raise StackError(f"s3: cannot reach {endpoint} ({exc})") from None
    if not exists:
        raise StackError(
            f"s3: bucket {bucket} does not exist on {endpoint}; run `facegate up` (it creates it)"
        )


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--prefix", default="", help="Put the objects under this key prefix (e.g. wire/2026-11-22).")
def ingest_command(paths: tuple[Path, ...], prefix: str) -> None:
    """Upload photos and videos (files, or folders recursively) into the assets bucket.

    Keys are the paths relative to each folder given (a file given by itself keeps its
    name), under --prefix. Images and videos are recognised by extension, else by content;
    other files are skipped with a note, hidden files and folders silently. Each upload
    starts face recognition by itself (bucket notification): follow the results with
    `facegate tail tags --follow`.
    """
    settings = connected_settings(kafka=False, s3=True)
    uploads, skipped = plan(paths, prefix, settings.s3.prefix)
    for path in skipped:
        click.echo(f"skipped {path}: not an image or video", err=True)
    if not uploads:
        raise click.ClickException("nothing to upload")
    client = s3_client(settings)
    bucket = settings.s3.bucket
    _check_bucket(client, bucket, str(settings.s3.endpoint))
    total = sum(u.size for u in uploads)
    failed: list[tuple[Upload, Exception]] = []
    started = time.monotonic()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload", disable=None) as bar:
        for item in uploads:
            try:
                _upload(client, bucket, item, bar)
            except (S3Error, HTTPError, OSError) as exc:
                failed.append((item, exc))
    seconds = time.monotonic() - started
    for item, error in failed:
        click.echo(f"failed {item.path}: {error}", err=True)
    done = len(uploads) - len(failed)
    sent = total - sum(item.size for item, _ in failed)
    click.echo(
        f"uploaded {done} file(s), {sent} bytes in {seconds:.1f} s to s3://{bucket}/"
        + (f"; {len(skipped)} skipped" if skipped else "")
        + (f"; {len(failed)} failed" if failed else "")
    )
    if failed:
        raise SystemExit(1)


COMMANDS = [ingest_command]
