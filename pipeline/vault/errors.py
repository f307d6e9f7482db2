"""Vault errors. A vault problem stops the stage that hit it (retry or DLQ is the caller's call)."""

from __future__ import annotations

from ..errors import ConfigError, FacegateError, TransientError


class VaultError(FacegateError):
    """The faceprint vault could not do what was asked."""


class UndecryptableError(VaultError):
    """A sealed faceprint or wrapped key does not open: wrong or destroyed key, or altered bytes."""


class MasterKeyError(ConfigError):
    """privacy.master_key (or a retired one) is missing, malformed or unsafely stored."""


class VaultUnavailable(VaultError, TransientError):
    """The vault's database cannot be reached (yet): retry."""
