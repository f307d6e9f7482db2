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
