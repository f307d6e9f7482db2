"""Reference photos at rest: sealed for the workers by the CLI, re-sealed under the subject's data
key by the worker, shredded with that key (pipeline/vault/references.py, join/references.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.join.references import ReferencePhotos, SealedReferenceUnreadable
from pipeline.settings import Settings
from pipeline.vault import FaceprintVault, MasterKey, MasterKeyring, UndecryptableError, open_vault
from pipeline.vault.references import (
    FOR_SUBJECT,
    FOR_WORKERS,
    read_enrollment_key,
    seal_for_workers,
    sealed_kind,
)

PHOTO = (
    Path(__file__).resolve().parents[1] / "data" / "photos" / "face_recognition" / "obama2.jpg"
).read_bytes()
REF = "enrollments/S-1/front.jpg"


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[FaceprintVault]:
    with FaceprintVault.open(tmp_path / "vault", MasterKeyring(MasterKey.generate())) as v:
        yield v


def windows(data: bytes, size: int = 32) -> set[bytes]:
    return {data[i : i + size] for i in range(0, len(data) - size, 97)}


def test_a_photo_sealed_for_the_workers_opens_only_there_and_only_as_itself(
    vault: FaceprintVault, tmp_path: Path
) -> None:
    sealed = seal_for_workers(vault.enrollment_public_key(), "S-1", REF, PHOTO)
    assert sealed_kind(sealed) == FOR_WORKERS
    assert not any(w in sealed for w in windows(PHOTO)), "no run of the photo's bytes in the seal"
    assert vault.open_reference("S-1", REF, sealed) == PHOTO
    for subject, reference in (("S-2", REF), ("S-1", "enrollments/S-1/other.jpg")):
        with pytest.raises(UndecryptableError):
            vault.open_reference(subject, reference, sealed)
    with (
        FaceprintVault.open(tmp_path / "other", MasterKeyring(MasterKey.generate())) as other,
        pytest.raises(UndecryptableError),
    ):
        other.open_reference("S-1", REF, sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(UndecryptableError):
        vault.open_reference("S-1", REF, bytes(tampered))


def test_a_master_key_rotation_still_opens_photos_sealed_for_the_old_key(tmp_path: Path) -> None:
    old = MasterKey.generate()
    with FaceprintVault.open(tmp_path / "v", MasterKeyring(old)) as before:
        old_public = before.enrollment_public_key()
        sealed = seal_for_workers(old_public, "S-1", REF, PHOTO)
    with FaceprintVault.open(tmp_path / "v", MasterKeyring(old).with_current(MasterKey.generate())) as after:
        assert after.enrollment_public_key() != old_public  # the CLI seals to the new key from now on
        assert after.open_reference("S-1", REF, sealed) == PHOTO


def test_resealed_under_the_subject_key_it_is_shredded_with_the_key(vault: FaceprintVault) -> None:
    sealed = vault.seal_reference("S-1", REF, PHOTO)
    assert sealed_kind(sealed) == FOR_SUBJECT and vault.open_reference("S-1", REF, sealed) == PHOTO
    vault.destroy_subject("S-1")
    with pytest.raises(UndecryptableError):
        vault.open_reference("S-1", REF, sealed)


def test_open_vault_publishes_the_key_the_cli_seals_to(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with open_vault(settings) as v:
        published = read_enrollment_key("", tmp_path / "vault")
        assert published == v.enrollment_public_key()
    assert read_enrollment_key("", tmp_path / "nowhere") is None
    with pytest.raises(ValueError):
        read_enrollment_key("not base64!", tmp_path)


class DictStore:
    """The object store as a dict (the S3 calls are covered by the integration tests)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    async def read(self, bucket: str, key: str) -> bytes:
        return self.objects[(bucket, key)]

    async def write(self, bucket: str, key: str, data: bytes) -> None:
        self.objects[(bucket, key)] = data


def test_the_worker_computes_faces_from_the_opened_photo_then_reseals_it(vault: FaceprintVault) -> None:
    store = DictStore()
    store.objects[("enrollments", "S-1/front.jpg")] = seal_for_workers(
        vault.enrollment_public_key(), "S-1", REF, PHOTO
    )
    seen: list[bytes] = []

    async def faces_in(photo: bytes, reference: str) -> tuple[list[np.ndarray], str]:
        seen.append(photo)
        return [np.zeros(128, dtype=np.float32)], "m1"

    photos = ReferencePhotos(store, vault, faces_in)  # type: ignore[arg-type]
    asyncio.run(photos.faces("enrollments", "S-1/front.jpg"))
    assert seen == [PHOTO]
    asyncio.run(photos.seal("S-1", "enrollments", "S-1/front.jpg"))
    resealed = store.objects[("enrollments", "S-1/front.jpg")]
    assert sealed_kind(resealed) == FOR_SUBJECT
    asyncio.run(photos.seal("S-1", "enrollments", "S-1/front.jpg"))  # once: nothing more to do
    assert store.objects[("enrollments", "S-1/front.jpg")] == resealed
    asyncio.run(photos.faces("enrollments", "S-1/front.jpg"))  # a re-embedding reads it again
    assert seen == [PHOTO, PHOTO]
    vault.destroy_subject("S-1")
    with pytest.raises(SealedReferenceUnreadable):
        asyncio.run(photos.faces("enrollments", "S-1/front.jpg"))
