"""The faceprint vault: the authoritative, encrypted copy of every subject's reference faceprints.

The gallery (Qdrant) is an index that can be rebuilt from here (``iter_faceprints``). Erasure is
``destroy_subject``: the wrapped data key is deleted first (that alone makes every copy of the
subject's ciphertexts, backups included, undecryptable), then the ciphertexts themselves.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..contract import utcnow
from ..settings import Settings
from . import references
from .crypto import (
    FaceprintPayload,
    new_data_key,
    open_faceprint,
    seal_faceprint,
    unwrap_data_key,
    wrap_data_key,
)
from .errors import MasterKeyError, UndecryptableError, VaultError
from .master import MasterKey, MasterKeyring, load_master_keyring
from .sqlite import SqliteBlobStore, SqliteKeyStore
from .store import BlobStore, KeyStore, SealedFaceprint, WrappedKey

log = logging.getLogger(__name__)

_RECORD_NAMESPACE = uuid.UUID("5b0f6f3e-9d43-4d1e-a6f4-3c1f1f0ad8a1")


def faceprint_id(subject_id: str, reference: str, model_version: str) -> str:
    """The record id of a subject's faceprint from one reference photo under one model.

    Deterministic, so that re-processing an enrollment replaces instead of duplicating, and a UUID,
    so the same id can name the subject's point in Qdrant.
    """
    return str(uuid.uuid5(_RECORD_NAMESPACE, f"{subject_id}\0{reference}\0{model_version}"))


@dataclass(frozen=True, eq=False)
class Faceprint:
    """One decrypted reference faceprint. Lives in memory only; never log the vector."""

    subject_id: str
    record_id: str
    model_version: str
    reference: str  # the reference photo, e.g. "enrollments/S-1/front.jpg" (asset id form)
    vector: NDArray[np.float32] = field(repr=False)
    meta: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class DestructionReceipt:
    """What ``destroy_subject`` destroyed: the proof an erasure request asks for."""

    subject_id: str
    key_destroyed: bool  # a data key existed and is gone
    master_key_id: str | None  # the master key that wrapped it
    faceprints_deleted: int
    record_ids: tuple[str, ...]
    key_scrubbed: bool  # no copy of the wrapped key left in the keystore's files
    destroyed_at: datetime

    def to_detail(self) -> dict[str, Any]:
        """The receipt as an audit detail (no biometric data: ids and counts)."""
        return {
            "key_destroyed": self.key_destroyed,
            "master_key_id": self.master_key_id,
            "faceprints_deleted": self.faceprints_deleted,
            "record_ids": list(self.record_ids),
            "key_scrubbed": self.key_scrubbed,
            "destroyed_at": self.destroyed_at.isoformat(),
        }


@dataclass(frozen=True)
class RotationReport:
    new_master_key_id: str
    rewrapped: int  # data keys moved to the new master key
    already_current: int
    retired_key_ids: tuple[str, ...]  # master keys that wrapped something before; now unused
    old_wraps_scrubbed: bool  # no copy of a key wrapped by a retired master key left on disk

    def to_detail(self) -> dict[str, Any]:
        return {
            "new_master_key_id": self.new_master_key_id,
            "rewrapped": self.rewrapped,
            "already_current": self.already_current,
            "retired_key_ids": list(self.retired_key_ids),
            "old_wraps_scrubbed": self.old_wraps_scrubbed,
        }


def _as_vector(vector: ArrayLike) -> NDArray[np.float32]:
    try:
        array = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise VaultError(f"a faceprint is a vector of numbers: {exc}") from None
    if array.ndim != 1 or array.shape[0] == 0:
        raise VaultError(f"a faceprint is a non-empty 1-D vector, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise VaultError("a faceprint must be finite")
    return array


class FaceprintVault:
    """Envelope-encrypted faceprints.

    One writer per subject at a time (the consent join's partition of that subject); readers,
    and writers of other subjects (other workers sharing a PostgreSQL vault), may run beside it.
    """

    def __init__(self, keys: KeyStore, blobs: BlobStore, keyring: MasterKeyring) -> None:
        self._keys = keys
        self._blobs = blobs
        self._keyring = keyring
        self._scrub_pending = False

    @classmethod
    def open(cls, directory: Path, keyring: MasterKeyring) -> FaceprintVault:
        """The SQLite vault in ``directory``: keys.db (keystore) and faceprints.db (blobs)."""
        return cls(
            SqliteKeyStore(directory / "keys.db"), SqliteBlobStore(directory / "faceprints.db"), keyring
        )

    @property
    def master_key_id(self) -> str:
        return self._keyring.current.key_id

    def close(self) -> None:
        self._keys.close()
        self._blobs.close()

    def __enter__(self) -> FaceprintVault:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- data keys ----------------------------------------------------------------------------

    def _unwrap(self, wrapped: WrappedKey) -> bytes:
        master = self._keyring.find(wrapped.master_key_id)
        if master is None:
            raise UndecryptableError(
                f"the data key of subject {wrapped.subject_id} is wrapped by master key "
                f"{wrapped.master_key_id}, which is not configured: add it to privacy.retired_master_keys"
            )
        return unwrap_data_key(master, wrapped.subject_id, wrapped.wrapped)

    def _data_key(self, subject_id: str, *, create: bool) -> bytes | None:
        wrapped = self._keys.get(subject_id)
        if wrapped is None:
            if not create:
                return None
            # Ciphertexts without a key are leftovers of an interrupted erasure: shredded already,
            # and in the way of the subject's new faceprints.
            self._blobs.delete_subject(subject_id)
            master = self._keyring.current
            fresh = WrappedKey(
                subject_id, master.key_id, wrap_data_key(master, subject_id, new_data_key()), utcnow()
            )
            wrapped = self._keys.put_if_absent(fresh)
        return self._unwrap(wrapped)

    # --- faceprints ---------------------------------------------------------------------------

    def store(
        self,
        subject_id: str,
        vector: ArrayLike,
        *,
        reference: str,
        model_version: str,
        meta: Mapping[str, Any] | None = None,
        record_id: str | None = None,
    ) -> Faceprint:
        """Encrypt and store one reference faceprint (replacing the same record id)."""
        if not subject_id.strip():
            raise VaultError("blank subject_id")
        try:  # before a data key is made for a subject whose faceprint cannot be stored
            json.dumps(dict(meta or {}), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise VaultError(f"faceprint metadata is not plain JSON: {exc}") from exc
        faceprint = Faceprint(
            subject_id=subject_id,
            record_id=record_id or faceprint_id(subject_id, reference, model_version),
            model_version=model_version,
            reference=reference,
            vector=_as_vector(vector),
            meta=dict(meta or {}),
        )
        data_key = self._data_key(subject_id, create=True)
        assert data_key is not None
        ciphertext = seal_faceprint(
            data_key,
            subject_id,
            faceprint.record_id,
            model_version,
            FaceprintPayload(faceprint.vector, reference, faceprint.meta),
        )
        self._blobs.put(
            SealedFaceprint(subject_id, faceprint.record_id, model_version, ciphertext, faceprint.created_at)
        )
        return faceprint

    def _open(self, data_key: bytes, blob: SealedFaceprint) -> Faceprint:
        payload = open_faceprint(
            data_key, blob.subject_id, blob.record_id, blob.model_version, blob.ciphertext
        )
        return Faceprint(
            subject_id=blob.subject_id,
            record_id=blob.record_id,
            model_version=blob.model_version,
            reference=payload.reference,
            vector=payload.vector,
            meta=payload.meta,
            created_at=blob.created_at,
        )

    def faceprints(self, subject_id: str, *, model_version: str | None = None) -> list[Faceprint]:
        """The subject's faceprints, decrypted. Raises UndecryptableError if their key is gone."""
        blobs = [
            b
            for b in self._blobs.for_subject(subject_id)
            if model_version is None or b.model_version == model_version
        ]
        if not blobs:
            return []
        data_key = self._data_key(subject_id, create=False)
        if data_key is None:
            raise UndecryptableError(
                f"subject {subject_id} has no data key (destroyed): faceprints cannot be opened"
            )
        return [self._open(data_key, b) for b in blobs]

    # --- reference photos (references.py) -----------------------------------------------------

    def enrollment_public_key(self) -> bytes:
        """The key ``facegate enroll`` seals reference photos to (derived from the master key)."""
        return references.enrollment_public_key(self._keyring.current)

    def open_reference(self, subject_id: str, reference: str, blob: bytes) -> bytes:
        """A reference photo as stored (sealed for the workers, for the subject, or plain) -> its
        bytes, in memory. UndecryptableError if it does not open (for a subject: key destroyed)."""
        kind = references.sealed_kind(blob)
        if kind == references.FOR_WORKERS:
            return references.open_for_workers(self._keyring, subject_id, reference, blob)
        if kind == references.FOR_SUBJECT:
            data_key = self._data_key(subject_id, create=False)
            if data_key is None:
                raise UndecryptableError(f"reference photo {reference}: the subject's key was destroyed")
            return references.open_for_subject(data_key, subject_id, reference, blob)
        return blob

    def seal_reference(self, subject_id: str, reference: str, photo: bytes) -> bytes:
        """``photo`` sealed under the subject's data key: gone with it at a purge."""
        data_key = self._data_key(subject_id, create=True)
        assert data_key is not None
        return references.seal_for_subject(data_key, subject_id, reference, photo)

    def remove(self, subject_id: str, record_id: str) -> bool:
        """Delete one faceprint (e.g. a reference photo withdrawn); the subject keeps their key."""
        return self._blobs.delete(subject_id, record_id)

    def has_subject(self, subject_id: str) -> bool:
        return self._keys.get(subject_id) is not None

    def list_subjects(self) -> list[str]:
        """Subjects that have a data key (whose faceprints can be opened), sorted."""
        return self._keys.subjects()

    def iter_faceprints(self, *, model_version: str | None = None) -> Iterator[Faceprint]:
        """Every openable faceprint, subject by subject: what ``facegate reindex`` loads into Qdrant.

        Blobs whose subject has no key (left by a crash inside ``destroy_subject``) are skipped:
        they are already shredded; ``sweep_orphans`` removes them.
        """
        subject: str | None = None
        data_key: bytes | None = None
        for blob in self._blobs.iter_blobs(model_version):
            if blob.subject_id != subject:
                subject = blob.subject_id
                data_key = self._data_key(subject, create=False)
                if data_key is None:
                    log.warning("vault: skipping faceprints of subject %s: no data key (destroyed)", subject)
            if data_key is not None:
                yield self._open(data_key, blob)

    def sweep_orphans(self) -> int:
        """Delete ciphertexts whose subject has no key any more; returns how many."""
        keyed = set(self._keys.subjects())
        return sum(len(self._blobs.delete_subject(s)) for s in self._blobs.subjects() if s not in keyed)

    # --- erasure and rotation -----------------------------------------------------------------

    def destroy_subject(self, subject_id: str) -> DestructionReceipt:
        """Crypto-shred a subject: delete their data key, then their ciphertexts. Idempotent."""
        wrapped = self._keys.get(subject_id)
        key_destroyed = self._keys.delete(subject_id)
        if key_destroyed:
            self._scrub_pending = True
        scrubbed = self.scrub_keys()
        record_ids = tuple(self._blobs.delete_subject(subject_id))
        return DestructionReceipt(
            subject_id=subject_id,
            key_destroyed=key_destroyed,
            master_key_id=None if wrapped is None else wrapped.master_key_id,
            faceprints_deleted=len(record_ids),
            record_ids=record_ids,
            key_scrubbed=scrubbed,
            destroyed_at=utcnow(),
        )

    @property
    def scrub_pending(self) -> bool:
        """A destroyed or re-wrapped key may still have a copy in the keystore's files."""
        return self._scrub_pending

    def scrub_keys(self) -> bool:
        """Retry removing leftover copies of destroyed keys (the expiry timer calls this); True: none left."""
        if self._scrub_pending and self._keys.scrub():
            self._scrub_pending = False
        return not self._scrub_pending

    def rotate_master_key(self, new: MasterKey | None = None) -> RotationReport:
        """Re-wrap every data key under ``new`` (default: the keyring's current key).

        The faceprints are not touched. Safe to interrupt and run again: each key is re-wrapped in
        its own transaction, and keys already under the new master key are left alone.
        """
        if new is not None:
            self._keyring = self._keyring.with_current(new)
        target = self._keyring.current
        rewrapped = already = 0
        previous: set[str] = set()
        for wrapped in self._keys.iter_keys():
            if wrapped.master_key_id == target.key_id:
                already += 1
                continue
            data_key = self._unwrap(wrapped)
            moved = WrappedKey(
                wrapped.subject_id,
                target.key_id,
                wrap_data_key(target, wrapped.subject_id, data_key),
                wrapped.created_at,
            )
            if self._keys.rewrap(moved, previous_master_key_id=wrapped.master_key_id):
                rewrapped += 1
                previous.add(wrapped.master_key_id)
        # The old wrapped keys were overwritten in place; make sure the WAL keeps no copy either.
        self._scrub_pending = self._scrub_pending or rewrapped > 0
        scrubbed = self.scrub_keys()
        return RotationReport(target.key_id, rewrapped, already, tuple(sorted(previous)), scrubbed)


def vault_dir(settings: Settings) -> Path:
    return settings.data_dir / "vault"


def open_vault(settings: Settings) -> FaceprintVault:
    """The vault the settings name, with the master keys from ``settings.privacy``.

    ``vault.dsn`` set: the PostgreSQL vault every worker shares; the master key must come from
    the settings, since a key generated here would be this host's alone. Else the SQLite vault
    under ``<data_dir>/vault``. Either way it publishes the workers' enrollment public key under
    ``<data_dir>/vault`` (``enrollment.pub``), where ``facegate enroll`` on this machine finds it
    to seal reference photos.
    """
    directory = vault_dir(settings)
    if settings.vault.dsn is None:
        vault = FaceprintVault.open(directory, load_master_keyring(settings.privacy, directory))
    else:
        if not settings.privacy.master_key.get_secret_value():
            raise MasterKeyError(
                "vault.dsn is set (a vault shared by every worker) but privacy.master_key is not: set "
                "FACEGATE_PRIVACY__MASTER_KEY, the same on every worker"
            )
        keyring = load_master_keyring(settings.privacy, directory)
        from .postgres import PostgresBlobStore, PostgresDatabase, PostgresKeyStore

        db = PostgresDatabase(settings.vault.dsn.get_secret_value(), retry_s=settings.vault.retry_s)
        vault = FaceprintVault(PostgresKeyStore(db), PostgresBlobStore(db), keyring)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    references.publish_enrollment_key(directory, vault.enrollment_public_key())
    return vault
