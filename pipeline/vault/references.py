"""Reference photos at rest: never in plaintext, and shredded with the subject's data key.

A reference photo is personal data from which a faceprint can be computed again, so it gets the
faceprint's protection. Two seals, told apart by their first bytes:

* **for the workers** (``FGRW1``): what ``facegate enroll`` uploads. The privacy officer's machine
  has no master key and no subject data key, so it seals each photo to the workers' enrollment
  public key (X25519, ephemeral-static, HKDF-SHA256, AES-256-GCM). Only a worker opens it, in
  memory. The enrollment key pair is derived from the master key (HKDF), so there is no new
  secret to keep, and a master-key rotation moves it too (retired master keys still open photos
  sealed for them).
* **for the subject** (``FGRS1``): what the worker writes over it once the faceprint is stored:
  the photo under the subject's own data key, like their faceprints. Destroying that key at a
  purge makes every copy of the photo (replicas, backups, a store that keeps deleted blobs until
  it compacts) undecryptable, before the object is even deleted.

Both bind the ciphertext to the subject and the object it was written as (associated data), so
a photo moved to another subject's prefix does not open. A photo in neither seal (uploaded by
another producer straight to the bucket) is read as it is and re-sealed for the subject at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .crypto import NONCE_BYTES, _aad
from .errors import UndecryptableError
from .master import MasterKey, MasterKeyring

ENROLLMENT_KEY_FILE = "enrollment.pub"
FOR_WORKERS = b"FGRW1"
FOR_SUBJECT = b"FGRS1"
_PUBLIC_BYTES = 32
_KEY_ID_BYTES = 8


def _hkdf(material: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(material)


def enrollment_private_key(master: MasterKey) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(_hkdf(master.secret, b"facegate.enrollment-key.v1"))


def enrollment_public_key(master: MasterKey) -> bytes:
    """The raw 32-byte X25519 public key the CLI seals reference photos to."""
    return enrollment_private_key(master).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def publish_enrollment_key(vault_dir: Path, public_key: bytes) -> None:
    """Write the public key where the CLI looks for it (atomically; only when it changed)."""
    path = vault_dir / ENROLLMENT_KEY_FILE
    text = base64.b64encode(public_key).decode() + "\n"
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{ENROLLMENT_KEY_FILE}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_enrollment_key(configured: str, vault_dir: Path) -> bytes | None:
    """The workers' enrollment public key: ``privacy.enrollment_public_key``, else the published
    file; None when there is neither (no worker has opened the vault yet)."""
    text = configured.strip()
    if not text:
        path = vault_dir / ENROLLMENT_KEY_FILE
        if not path.exists():
            return None
        text = path.read_text().strip()
    try:
        public = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the enrollment public key is not base64") from None
    if len(public) != _PUBLIC_BYTES:
        raise ValueError(f"the enrollment public key is {_PUBLIC_BYTES} bytes, got {len(public)}")
    return public


def _key_id(public: bytes) -> bytes:
    return hashlib.sha256(b"facegate.enrollment-key-id\0" + public).digest()[:_KEY_ID_BYTES]


def _reference_aad(kind: bytes, subject_id: str, reference: str) -> bytes:
    return _aad("facegate.reference.v1", kind.decode(), subject_id, reference)


def sealed_kind(blob: bytes) -> bytes | None:
    """FOR_WORKERS, FOR_SUBJECT, or None for a photo that is not sealed."""
    for kind in (FOR_WORKERS, FOR_SUBJECT):
        if blob.startswith(kind):
            return kind
    return None


def seal_for_workers(public_key: bytes, subject_id: str, reference: str, photo: bytes) -> bytes:
    """``photo`` sealed to the workers' enrollment key (``reference``: "bucket/key" it goes to)."""
    if len(public_key) != _PUBLIC_BYTES:
        raise ValueError(f"an enrollment public key is {_PUBLIC_BYTES} bytes, got {len(public_key)}")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public_key))
    key = _hkdf(shared, b"facegate.reference-seal.v1", salt=ephemeral_public + public_key)
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, photo, _reference_aad(FOR_WORKERS, subject_id, reference))
    return FOR_WORKERS + _key_id(public_key) + ephemeral_public + nonce + sealed


def open_for_workers(keyring: MasterKeyring, subject_id: str, reference: str, blob: bytes) -> bytes:
    start = len(FOR_WORKERS)
    key_id = blob[start : start + _KEY_ID_BYTES]
    ephemeral_public = blob[start + _KEY_ID_BYTES : start + _KEY_ID_BYTES + _PUBLIC_BYTES]
    rest = blob[start + _KEY_ID_BYTES + _PUBLIC_BYTES :]
    for master in (keyring.current, *keyring.retired):
        public = enrollment_public_key(master)
        if _key_id(public) != key_id:
            continue
        shared = enrollment_private_key(master).exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        key = _hkdf(shared, b"facegate.reference-seal.v1", salt=ephemeral_public + public)
        try:
            return AESGCM(key).decrypt(
                rest[:NONCE_BYTES], rest[NONCE_BYTES:], _reference_aad(FOR_WORKERS, subject_id, reference)
            )
        except (InvalidTag, ValueError):
            break
    raise UndecryptableError(
        f"reference photo {reference} does not open: sealed for another enrollment key, for another "
        "subject or object, or altered"
    )


def seal_for_subject(data_key: bytes, subject_id: str, reference: str, photo: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return (
        FOR_SUBJECT
        + nonce
        + AESGCM(data_key).encrypt(nonce, photo, _reference_aad(FOR_SUBJECT, subject_id, reference))
    )


def open_for_subject(data_key: bytes, subject_id: str, reference: str, blob: bytes) -> bytes:
    rest = blob[len(FOR_SUBJECT) :]
    try:
        return AESGCM(data_key).decrypt(
            rest[:NONCE_BYTES], rest[NONCE_BYTES:], _reference_aad(FOR_SUBJECT, subject_id, reference)
        )
    except (InvalidTag, ValueError):
        what = f"reference photo {reference}"
        raise UndecryptableError(f"{what} does not open under its subject's key") from None
