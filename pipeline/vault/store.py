"""The two stores behind the vault, kept apart on purpose.

Wrapped data keys live in a ``KeyStore``, sealed faceprints in a ``BlobStore``. Blobs can be
replicated and backed up like any data: without their key they are noise. The keystore is the
one place erasure has to reach, so it stays small and is never backed up for longer than the
erasure deadline. Either store can move elsewhere (a KMS-backed keystore, an object-store blob
store) by implementing the Protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class WrappedKey:
    subject_id: str
    master_key_id: str  # which master key wrapped it
    wrapped: bytes = field(repr=False)
    created_at: datetime


@dataclass(frozen=True)
class SealedFaceprint:
    subject_id: str
    record_id: str
    model_version: str
    ciphertext: bytes = field(repr=False)
    created_at: datetime


class KeyStore(Protocol):
    def get(self, subject_id: str) -> WrappedKey | None: ...

    def put_if_absent(self, key: WrappedKey) -> WrappedKey:
        """Store ``key`` unless the subject has one; return the key the subject has now."""
        ...

    def rewrap(self, key: WrappedKey, *, previous_master_key_id: str) -> bool:
        """Replace a subject's wrapped key if it is still wrapped by ``previous_master_key_id``."""
        ...

    def delete(self, subject_id: str) -> bool:
        """Delete and overwrite the subject's wrapped key; False if there was none."""
        ...

    def scrub(self) -> bool:
        """Make sure no copy of a deleted key is left in the store's files (True: done)."""
        ...

    def subjects(self) -> list[str]: ...

    def iter_keys(self) -> Iterator[WrappedKey]: ...

    def close(self) -> None: ...


class BlobStore(Protocol):
    def put(self, blob: SealedFaceprint) -> None:
        """Insert or replace the blob with the same (subject_id, record_id)."""
        ...

    def get(self, subject_id: str, record_id: str) -> SealedFaceprint | None: ...

    def for_subject(self, subject_id: str) -> list[SealedFaceprint]: ...

    def delete(self, subject_id: str, record_id: str) -> bool: ...

    def delete_subject(self, subject_id: str) -> list[str]:
        """Delete every blob of the subject; return the deleted record ids."""
        ...

    def subjects(self) -> list[str]: ...

    def iter_blobs(self, model_version: str | None = None) -> Iterator[SealedFaceprint]:
        """Every blob, ordered by subject then record id."""
        ...

    def close(self) -> None: ...
