"""Errors an operator sees as one line (no traceback) with a non-zero exit code."""

from __future__ import annotations


class FacegateError(Exception):
    exit_code = 1


class ConfigError(FacegateError):
    """A setting is missing or wrong."""

    exit_code = 2


class StackError(FacegateError):
    """A part of the stack could not be started or reached."""

    exit_code = 3


class PermanentError(Exception):
    """Processing this input again cannot succeed (corrupt file, deleted object, bad event).

    The record goes to the dead-letter topic with the error in its headers; the worker goes on.
    """


class TransientError(Exception):
    """A dependency is down or slow (Triton, S3, Qdrant). Retried with backoff; never dead-lettered."""
