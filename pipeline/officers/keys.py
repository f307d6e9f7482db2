"""An officer's Ed25519 key pair, and the file that keeps the private half (mode 0600).

The key file is JSON, so it says whose key it is without a registry at hand::

    {"format": "facegate-officer-key/1", "officer_id": "dpo-anna", "key_id": "ed25519:…",
     "public_key": "<base64>", "private_key": {"protection": "scrypt-aes256gcm", …}}

With a passphrase the 32-byte seed is sealed with AES-256-GCM under a key scrypt derives from
the passphrase (n=2^15, r=8, p=1: about 0.2 s to unlock, so guessing is slow); the officer id
and key id are the AEAD's associated data, so a sealed seed cannot be moved under another name.
The console unlocks the key with the officer's login passphrase the same way. Without a
passphrase (the embedded stack's first officer) the seed is stored as is: the file's mode is
then its only protection, and ``facegate up`` says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from ..errors import ConfigError

KEY_FORMAT = "facegate-officer-key/1"
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_OFFICER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class OfficerKeyError(ConfigError):
    """An officer key file that cannot be read, unlocked or trusted."""


def check_officer_id(officer_id: str) -> str:
    """Officer ids name files and appear in audit records: short, printable, no path separators."""
    if not _OFFICER_ID.match(officer_id):
        raise ValueError(
            f"{officer_id!r}: an officer id is 1-64 letters, digits, '.', '_', '@' or '-' (no spaces or '/')"
        )
    return officer_id


def key_id_of(public_key: bytes) -> str:
    """The name of a public key in ``signed_by``: a hash of it, never the key's owner."""
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:16]


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class OfficerKey:
    """An unlocked officer key: what signs. Never log or print it."""

    officer_id: str
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, officer_id: str) -> OfficerKey:
        return cls(check_officer_id(officer_id), Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return public_key_bytes(self.private_key.public_key())

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def _seed(self) -> bytes:
        return self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise OfficerKeyError(f"{what} is not base64") from None


def _derive(passphrase: bytes, salt: bytes, params: dict[str, int]) -> bytes:
    return Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"]).derive(passphrase)


def key_file_json(key: OfficerKey, passphrase: bytes | None) -> dict[str, Any]:
    aad = f"{key.officer_id}\0{key.key_id}".encode()
    if passphrase:
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        sealed = AESGCM(_derive(passphrase, salt, _SCRYPT)).encrypt(nonce, key._seed(), aad)
        private: dict[str, Any] = {
            "protection": "scrypt-aes256gcm",
            **_SCRYPT,
            "salt": _b64(salt),
            "nonce": _b64(nonce),
            "ciphertext": _b64(sealed),
        }
    else:
        private = {"protection": "none", "seed": _b64(key._seed())}
    return {
        "format": KEY_FORMAT,
        "officer_id": key.officer_id,
        "key_id": key.key_id,
        "public_key": _b64(key.public_key),
        "private_key": private,
    }


def save_key(key: OfficerKey, path: Path, passphrase: bytes | None = None) -> Path:
    """Write the key file with mode 0600 (its directory 0700); never overwrites one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OfficerKeyError(f"{path} exists already: an officer key is never overwritten") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(key_file_json(key, passphrase), f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    return path


def read_key_file(path: Path) -> dict[str, Any]:
    """The key file's JSON, refused if other users may read it."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise OfficerKeyError(
                f"{path} is readable by other users (mode {stat.filemode(mode)}): chmod 600 it"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OfficerKeyError(f"no officer key at {path}") from None
    except (OSError, ValueError) as exc:
        raise OfficerKeyError(f"cannot read the officer key {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != KEY_FORMAT:
        raise OfficerKeyError(f"{path} is not a facegate officer key ({KEY_FORMAT})")
    return data


def needs_passphrase(path: Path) -> bool:
    private = read_key_file(path).get("private_key") or {}
    return bool(private.get("protection") != "none")


def load_key(path: Path, passphrase: bytes | None = None) -> OfficerKey:
    """Unlock an officer key file (``passphrase`` if it has one)."""
    data = read_key_file(path)
    officer_id = check_officer_id(str(data.get("officer_id", "")))
    private = data.get("private_key") or {}
    protection = private.get("protection")
    if protection == "none":
        seed = _unb64(private.get("seed"), f"{path}: seed")
    elif protection == "scrypt-aes256gcm":
        if not passphrase:
            raise OfficerKeyError(f"the officer key {path} needs its passphrase")
        aad = f"{officer_id}\0{data.get('key_id')}".encode()
        params = {name: int(private[name]) for name in ("n", "r", "p")}
        kek = _derive(passphrase, _unb64(private.get("salt"), "salt"), params)
        try:
            seed = AESGCM(kek).decrypt(
                _unb64(private.get("nonce"), "nonce"), _unb64(private.get("ciphertext"), "ciphertext"), aad
            )
        except InvalidTag:
            raise OfficerKeyError(f"wrong passphrase for the officer key {path}") from None
    else:
        raise OfficerKeyError(f"{path}: unknown key protection {protection!r}")
    try:
        key = OfficerKey(officer_id, Ed25519PrivateKey.from_private_bytes(seed))
    except ValueError as exc:
        raise OfficerKeyError(f"{path}: not an Ed25519 key ({exc})") from None
    if key.key_id != data.get("key_id") or _b64(key.public_key) != data.get("public_key"):
        raise OfficerKeyError(f"{path}: the private key does not match the public key recorded with it")
    return key
