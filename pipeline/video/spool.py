"""Spool a streamed object (an S3 GET body) to a temporary file that FFmpeg can seek in.

Containers such as MP4 with the index at the end need random access, so a video is copied to
local disk first, chunk by chunk (never whole in memory), and refused as soon as it passes
settings.video.max_bytes, without reading the rest.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from .errors import Empty, TooLarge


@contextlib.contextmanager
def spooled(
    chunks: Iterable[bytes],
    *,
    max_bytes: int,
    declared_size: int | None = None,
    name: str = "",
    directory: Path | None = None,
) -> Iterator[Path]:
    """Write ``chunks`` to a temporary file and yield its path; the file is removed on exit.

    ``chunks`` is any iterable of byte strings, e.g. ``minio_response.stream(1 << 20)``.
    ``declared_size`` (the size in the upload event) refuses an oversized object before any
    byte is read; the running count refuses one whose event understated it.
    ``name`` (the object key) only lends its extension to the temporary file.
    Raises TooLarge, or Empty for zero bytes.
    """
    if declared_size is not None and declared_size > max_bytes:
        raise TooLarge(f"object of {declared_size} bytes exceeds the video limit of {max_bytes} bytes")
    suffix = PurePosixPath(name).suffix[:16]
    fd, raw = tempfile.mkstemp(prefix="facegate-video-", suffix=suffix, dir=directory)
    path = Path(raw)
    try:
        written = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                written += len(chunk)
                if written > max_bytes:
                    raise TooLarge(f"object exceeds the video limit of {max_bytes} bytes")
                out.write(chunk)
        if written == 0:
            raise Empty("object has zero bytes")
        yield path
    finally:
        path.unlink(missing_ok=True)
