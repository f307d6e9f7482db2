"""The workers' signing key: it signs every audit link and every erasure receipt.

It is derived from the master key (HKDF-SHA256, its own label), so every worker of a deployment
holds the same key without another secret to distribute, and nobody who can only write to Kafka
can forge a link or a receipt. Verifiers need only the public half: ``facegate audit keys``
prints it for publication, and the anchor store keeps every public key a worker has signed with
(a rotated master key gives a new signing key; links signed before still verify).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..vault.master import MasterKey, MasterKeyring

_LABEL = b"facegate.worker-signing-key.v1"


def _key_id(public_key: bytes) -> str:
    # Same form as an officer's key id (pipeline/officers/keys.py): a hash, never an owner.
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class WorkerSigner:
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def from_master(cls, master: MasterKey) -> WorkerSigner:
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL).derive(master.secret)
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return _key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def worker_signers(keyring: MasterKeyring) -> list[WorkerSigner]:
    """The current signer first, then those of retired master keys (their public keys stay known)."""
    return [WorkerSigner.from_master(k) for k in (keyring.current, *keyring.retired)]


def public_keys(raw: dict[str, bytes]) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key, each checked against its id."""
    keys = {}
    for key_id, public in raw.items():
        if _key_id(public) != key_id:
            raise ValueError(f"public key stored under {key_id} has another id")
        keys[key_id] = Ed25519PublicKey.from_public_bytes(public)
    return keys
