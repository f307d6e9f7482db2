"""Master keys: the key-encryption keys that wrap every subject's data key.

The master key comes from ``privacy.master_key`` (base64 of 32 bytes). A deployment without one
(development, tests) gets a key generated into ``<data_dir>/vault/master.key`` with mode 0600,
and a warning says so: data encrypted under a key that sits next to it is only as safe as the
directory. Each key is known by a short id derived from it, stored with every wrapped data key,
so a vault can tell which master key opens which data key while a rotation is under way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from ..settings import PrivacySettings
from .errors import MasterKeyError

log = logging.getLogger(__name__)

KEY_BYTES = 32  # AES-256
KEY_FILE = "master.key"


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    secret: bytes = field(repr=False)

    @classmethod
    def from_bytes(cls, secret: bytes) -> MasterKey:
        if len(secret) != KEY_BYTES:
            raise MasterKeyError(f"a master key is {KEY_BYTES} bytes, got {len(secret)}")
        # The id names the key without revealing it: a domain-separated hash, first 8 bytes.
        key_id = hashlib.sha256(b"facegate.master-key-id\0" + secret).hexdigest()[:16]
        return cls(key_id, secret)

    @classmethod
    def from_base64(cls, text: str, *, what: str = "privacy.master_key") -> MasterKey:
        try:
            secret = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError(f"{what} is not valid base64") from None
        if len(secret) != KEY_BYTES:
            raise MasterKeyError(f"{what} must be base64 of {KEY_BYTES} bytes, got {len(secret)} bytes")
        return cls.from_bytes(secret)

    @classmethod
    def generate(cls) -> MasterKey:
        return cls.from_bytes(secrets.token_bytes(KEY_BYTES))

    def to_base64(self) -> str:
        return base64.b64encode(self.secret).decode("ascii")


@dataclass(frozen=True)
class MasterKeyring:
    """The current master key (wraps new data keys) and retired ones (only unwrap, until rotated)."""

    current: MasterKey
    retired: tuple[MasterKey, ...] = ()
    source: str = "settings"  # where the current key came from, for operators

    def __post_init__(self) -> None:
        ids = [k.key_id for k in (self.current, *self.retired)]
        if len(set(ids)) != len(ids):
            raise MasterKeyError("the same master key is configured twice")

    def find(self, key_id: str) -> MasterKey | None:
        return next((k for k in (self.current, *self.retired) if k.key_id == key_id), None)

    def with_current(self, new: MasterKey) -> MasterKeyring:
        """A keyring where ``new`` wraps and every other key known here only unwraps."""
        retired = tuple(k for k in (self.current, *self.retired) if k.key_id != new.key_id)
        return MasterKeyring(new, retired, source=self.source)


def generate_master_key() -> str:
    """A fresh key as the base64 text ``privacy.master_key`` expects."""
    return MasterKey.generate().to_base64()


def _read_key_file(path: Path) -> MasterKey:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(f"{path} is readable by other users (mode {stat.filemode(mode)}): chmod 600 it")
    return MasterKey.from_base64(path.read_text(encoding="ascii"), what=str(path))


def _create_key_file(path: Path) -> MasterKey:
    """Write a new key with mode 0600, atomically: two processes racing end up with one key."""
    key = MasterKey.generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise MasterKeyError(f"cannot generate a master key into {path.parent}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key.to_base64() + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another process won the race
        except FileExistsError:
            return _read_key_file(path)
    finally:
        tmp.unlink(missing_ok=True)
    log.warning(
        "privacy.master_key is not set: generated a master key into %s (mode 0600). Back it up apart "
        "from the data, and set FACEGATE_PRIVACY__MASTER_KEY in production.",
        path,
    )
    return key


def _decode_all(texts: Iterable[SecretStr], what: str) -> list[MasterKey]:
    return [MasterKey.from_base64(t.get_secret_value(), what=f"{what}[{i}]") for i, t in enumerate(texts)]


def load_master_keyring(privacy: PrivacySettings, vault_dir: Path) -> MasterKeyring:
    """The keyring the settings describe, generating a key file when no master key is set.

    When a master key is set and a generated key file is still in ``vault_dir``, that file's key
    joins the retired keys, so moving from a generated key to a managed one is a rotation.
    """
    retired: Sequence[MasterKey] = _decode_all(privacy.retired_master_keys, "privacy.retired_master_keys")
    key_file = vault_dir / KEY_FILE
    configured = privacy.master_key.get_secret_value()
    if configured:
        current = MasterKey.from_base64(configured)
        if key_file.exists():
            generated = _read_key_file(key_file)
            if generated.key_id != current.key_id:
                retired = [*retired, generated]
        source = "settings"
    elif key_file.exists():
        current = _read_key_file(key_file)
        source = f"file {key_file}"
    else:
        current = _create_key_file(key_file)
        source = f"generated {key_file}"
    unique = {k.key_id: k for k in retired if k.key_id != current.key_id}
    return MasterKeyring(current, tuple(unique.values()), source=source)
