"""Inference errors, classified for the stage that calls the client."""

from __future__ import annotations

from ..errors import PermanentError, TransientError


class BadImage(PermanentError):
    """The model refused this image (truncated, not an image, over the pixel limit, ...).

    Retrying cannot help: the asset goes to the dead-letter topic with this message.
    """


class ImageAnalysisFailed(PermanentError):
    """The model failed on this one image (its own error, not Triton's); the batch was re-run image by
    image, so the failure belongs to this image and retrying it would only fail again."""


class InferenceUnavailable(TransientError):
    """Triton could not be reached or did not answer after every retry."""


class InferenceProtocolError(TransientError):
    """Triton answered, but not with what the model's metadata promised (wrong model deployed?)."""
