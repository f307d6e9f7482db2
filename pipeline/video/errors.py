"""Why a video cannot be processed.

Every error here is permanent: the same bytes fail the same way on every retry, so the event
belongs on the dead-letter topic with ``reason`` (a stable, machine-readable word) in its headers.
They are ``PermanentError``s, so the recognize agent dead-letters them like any bad input.
"""

from __future__ import annotations

from typing import ClassVar

from pipeline.errors import PermanentError


class VideoError(PermanentError):
    """A video that cannot be processed; ``reason`` is stable, the message is for people."""

    reason: ClassVar[str] = "video_error"
    permanent: ClassVar[bool] = True


class Corrupt(VideoError):
    """Not a readable container, or a stream that cannot be decoded."""

    reason = "corrupt"


class Truncated(VideoError):
    """The file ends before its container says it should."""

    reason = "truncated"


class NoVideoStream(VideoError):
    """A container without a video stream (e.g. audio only)."""

    reason = "no_video_stream"


class Empty(VideoError):
    """Zero bytes, or a video stream without a single frame."""

    reason = "empty"


class UnsupportedCodec(VideoError):
    """A video stream whose codec this build of FFmpeg cannot decode."""

    reason = "unsupported_codec"


class TooLong(VideoError):
    """Longer than settings.video.max_duration_s (by metadata or by decoded time)."""

    reason = "too_long"


class FrameTooLarge(VideoError):
    """Frames of more pixels than settings.video.max_frame_pixels."""

    reason = "frame_too_large"


class TooLarge(VideoError):
    """Larger than settings.video.max_bytes."""

    reason = "too_large"
