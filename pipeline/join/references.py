"""The worker's side of reference photos (pipeline/vault/references.py has the seals).

``faces`` reads a reference photo from the enrollment bucket, opens it in memory (sealed for the
workers by ``facegate enroll``, sealed for the subject after an earlier enrollment, or plain from
another producer) and computes its faces. ``seal`` writes the photo back sealed under the
subject's data key once its faceprint is stored, so that the purge's key destruction shreds the
photo wherever a copy of it is.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import numpy as np

from ..errors import PermanentError
from ..objects import ObjectStore
from ..recognize.retry import until_done
from ..vault import FaceprintVault, UndecryptableError
from ..vault.references import FOR_SUBJECT, sealed_kind

FacesIn = Callable[[bytes, str], Awaitable[tuple[list[np.ndarray], str]]]


class SealedReferenceUnreadable(PermanentError):
    """A sealed reference photo that does not open here (another key, subject or object)."""


class ReferencePhotos:
    def __init__(self, store: ObjectStore, vault: FaceprintVault, faces_in: FacesIn) -> None:
        self.store = store
        self.vault = vault
        self.faces_in = faces_in

    async def _open(self, bucket: str, key: str) -> tuple[bytes, bytes]:
        """(the object as stored, the photo)."""
        blob = await until_done(functools.partial(self.store.read, bucket, key), stage="fetch")
        subject = key.split("/", 1)[0]  # reference_problem() made sure it is the subject's prefix
        try:
            photo = await asyncio.to_thread(self.vault.open_reference, subject, f"{bucket}/{key}", blob)
        except UndecryptableError as exc:
            raise SealedReferenceUnreadable(str(exc)) from exc
        return blob, photo

    async def faces(self, bucket: str, key: str) -> tuple[list[np.ndarray], str]:
        _, photo = await self._open(bucket, key)
        return await self.faces_in(photo, f"{bucket}/{key}")

    async def seal(self, subject_id: str, bucket: str, key: str) -> None:
        """Re-write the photo sealed under the subject's key (once: already so, nothing to do)."""
        blob, photo = await self._open(bucket, key)
        if sealed_kind(blob) == FOR_SUBJECT:
            return
        sealed = await asyncio.to_thread(self.vault.seal_reference, subject_id, f"{bucket}/{key}", photo)
        await until_done(functools.partial(self.store.write, bucket, key, sealed), stage="enroll")
