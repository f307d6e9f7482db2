"""The faceprint vault: envelope encryption, crypto-shredding, master-key rotation, key loading."""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from pipeline.audit import check_no_biometrics
from pipeline.settings import PrivacySettings, Settings
from pipeline.vault import (
    FaceprintVault,
    MasterKey,
    MasterKeyError,
    MasterKeyring,
    SealedFaceprint,
    SqliteBlobStore,
    SqliteKeyStore,
    UndecryptableError,
    VaultError,
    faceprint_id,
    generate_master_key,
    load_master_keyring,
    open_vault,
)
from pipeline.vault.crypto import unwrap_data_key

MODEL = "dlib_resnet_v1"
RNG = np.random.default_rng(20261122)


def embedding(dim: int = 128) -> np.ndarray:
    v = RNG.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def vault(tmp_path: Path, master: MasterKey) -> Iterator[FaceprintVault]:
    with FaceprintVault.open(tmp_path / "vault", MasterKeyring(master)) as v:
        yield v


def raw_bytes(db: Path) -> bytes:
    """Everything SQLite keeps on disk for a database: the file and its WAL."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


def enroll(vault: FaceprintVault, subject: str, n: int = 3) -> list[np.ndarray]:
    vectors = [embedding() for _ in range(n)]
    for i, v in enumerate(vectors):
        vault.store(
            subject,
            v,
            reference=f"enrollments/{subject}/ref-{i}.jpg",
            model_version=MODEL,
            meta={"det_score": 0.9},
        )
    return vectors


# --- round trip ----------------------------------------------------------------------------


def test_faceprints_round_trip_exactly_with_their_metadata(vault: FaceprintVault) -> None:
    vectors = enroll(vault, "S-1")
    got = {fp.reference: fp for fp in vault.faceprints("S-1")}
    assert len(got) == 3
    for i, v in enumerate(vectors):
        fp = got[f"enrollments/S-1/ref-{i}.jpg"]
        assert fp.vector.dtype == np.float32 and np.array_equal(fp.vector, v)
        assert fp.model_version == MODEL and fp.subject_id == "S-1"
        assert fp.record_id == faceprint_id("S-1", fp.reference, MODEL)
        assert fp.meta == {"det_score": 0.9}
    assert "vector" not in repr(next(iter(got.values())))


def test_record_ids_are_deterministic_uuids_so_a_replay_replaces(vault: FaceprintVault) -> None:
    first = vault.store("S-1", embedding(), reference="r.jpg", model_version=MODEL)
    again = vault.store("S-1", embedding(), reference="r.jpg", model_version=MODEL)
    assert first.record_id == again.record_id
    assert len(first.record_id) == 36  # a UUID: usable as the Qdrant point id
    [stored] = vault.faceprints("S-1")
    assert np.array_equal(stored.vector, again.vector)
    other = vault.store("S-1", embedding(), reference="r.jpg", model_version="other-model")
    assert other.record_id != first.record_id
    assert [fp.record_id for fp in vault.faceprints("S-1", model_version="other-model")] == [other.record_id]


def test_bad_faceprints_are_refused(vault: FaceprintVault) -> None:
    for bad in (np.zeros((2, 64), np.float32), np.zeros(0, np.float32), np.array([0.1, np.nan], np.float32)):
        with pytest.raises(VaultError):
            vault.store("S-1", bad, reference="r.jpg", model_version=MODEL)
    with pytest.raises(VaultError, match="blank subject_id"):
        vault.store("  ", embedding(), reference="r.jpg", model_version=MODEL)
    with pytest.raises(VaultError, match="plain JSON"):
        vault.store("S-1", embedding(), reference="r.jpg", model_version=MODEL, meta={"x": object()})
    with pytest.raises(VaultError, match="vector of numbers"):
        vault.store("S-1", ["a", "b"], reference="r.jpg", model_version=MODEL)
    assert vault.faceprints("S-1") == [] and not vault.has_subject("S-1")


def test_nothing_readable_is_left_in_the_files(vault: FaceprintVault, tmp_path: Path) -> None:
    v = embedding()
    vault.store("S-1", v, reference="enrollments/S-1/passport-photo.jpg", model_version=MODEL)
    blobs = raw_bytes(tmp_path / "vault" / "faceprints.db")
    assert v.tobytes()[:16] not in blobs
    assert b"passport-photo" not in blobs  # the reference photo is encrypted too
    assert b"S-1" in blobs  # the pseudonymous id is the row key


def test_the_vault_files_are_private(vault: FaceprintVault, tmp_path: Path) -> None:
    enroll(vault, "S-1", 1)
    files = sorted((tmp_path / "vault").iterdir())
    assert {f.name for f in files} >= {"keys.db", "keys.db-wal", "faceprints.db", "faceprints.db-wal"}
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
    assert stat.S_IMODE((tmp_path / "vault").stat().st_mode) == 0o700


def test_unknown_subjects_have_nothing(vault: FaceprintVault) -> None:
    assert vault.faceprints("nobody") == []
    assert not vault.has_subject("nobody")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subject=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and "\0" not in s),
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=600),
    reference=st.text(max_size=80),
)
def test_any_vector_and_subject_round_trip(
    vault: FaceprintVault, subject: str, values: list[float], reference: str
) -> None:
    vector = np.array(values, dtype=np.float32)
    stored = vault.store(subject, vector, reference=reference, model_version=MODEL)
    [back] = [fp for fp in vault.faceprints(subject) if fp.record_id == stored.record_id]
    assert back.reference == reference
    assert np.array_equal(back.vector, vector)


# --- what the associated data binds ----------------------------------------------------------


def test_a_ciphertext_opens_only_where_it_was_sealed(vault: FaceprintVault, tmp_path: Path) -> None:
    enroll(vault, "S-1", 1)
    enroll(vault, "S-2", 1)
    blobs = SqliteBlobStore(tmp_path / "vault" / "faceprints.db")
    [original] = blobs.for_subject("S-1")
    tampered = [
        dataclasses.replace(
            original, record_id=faceprint_id("S-1", "elsewhere.jpg", MODEL)
        ),  # another record
        dataclasses.replace(original, subject_id="S-2"),  # another subject (with their own key)
        dataclasses.replace(original, model_version="other-model"),  # claims another model
        dataclasses.replace(
            original, ciphertext=original.ciphertext[:-1] + bytes([original.ciphertext[-1] ^ 1])
        ),
    ]
    for blob in tampered:
        blobs.delete_subject("S-1")
        blobs.delete_subject("S-2")
        blobs.put(blob)
        with pytest.raises(UndecryptableError):
            vault.faceprints(blob.subject_id)
    blobs.close()


def test_a_wrapped_key_opens_only_for_its_subject(
    vault: FaceprintVault, tmp_path: Path, master: MasterKey
) -> None:
    enroll(vault, "S-1", 1)
    keys = SqliteKeyStore(tmp_path / "vault" / "keys.db")
    wrapped = keys.get("S-1")
    assert wrapped is not None
    with pytest.raises(UndecryptableError):
        unwrap_data_key(master, "S-2", wrapped.wrapped)
    with pytest.raises(UndecryptableError):
        unwrap_data_key(MasterKey.generate(), "S-1", wrapped.wrapped)
    keys.close()


# --- crypto-shredding -----------------------------------------------------------------------


def test_destroy_subject_deletes_key_and_ciphertexts_and_returns_a_receipt(vault: FaceprintVault) -> None:
    enroll(vault, "S-1", 3)
    keep = enroll(vault, "S-2", 2)
    record_ids = sorted(fp.record_id for fp in vault.faceprints("S-1"))
    receipt = vault.destroy_subject("S-1")
    assert receipt.key_destroyed and receipt.key_scrubbed
    assert receipt.faceprints_deleted == 3 and sorted(receipt.record_ids) == record_ids
    assert receipt.master_key_id == vault.master_key_id
    assert not vault.has_subject("S-1") and vault.faceprints("S-1") == []
    assert vault.list_subjects() == ["S-2"]
    assert {fp.vector.tobytes() for fp in vault.faceprints("S-2")} == {v.tobytes() for v in keep}
    # The receipt goes into the audit log as it is.
    check_no_biometrics(receipt.to_detail())
    again = vault.destroy_subject("S-1")
    assert (again.key_destroyed, again.faceprints_deleted) == (False, 0)


def test_a_backup_taken_before_destruction_cannot_be_decrypted(
    vault: FaceprintVault, tmp_path: Path, master: MasterKey
) -> None:
    enroll(vault, "S-1", 2)
    live = tmp_path / "vault" / "faceprints.db"
    backup = tmp_path / "backup" / "faceprints.db"
    backup.parent.mkdir()
    for suffix in ("", "-wal"):  # a file-level backup, WAL included
        if Path(f"{live}{suffix}").exists():
            shutil.copy(f"{live}{suffix}", f"{backup}{suffix}")
    vault.destroy_subject("S-1")

    # Restoring the backup next to the live keystore: the key is gone.
    restored = FaceprintVault(
        SqliteKeyStore(tmp_path / "vault" / "keys.db"), SqliteBlobStore(backup), MasterKeyring(master)
    )
    with pytest.raises(UndecryptableError, match="no data key"):
        restored.faceprints("S-1")
    assert list(restored.iter_faceprints()) == []
    # The subject enrols again later and gets a new key: the old ciphertexts still do not open.
    vault.store("S-1", embedding(), reference="new.jpg", model_version=MODEL)
    with pytest.raises(UndecryptableError):
        restored.faceprints("S-1")
    restored.close()


def test_destroyed_keys_are_overwritten_on_disk(vault: FaceprintVault, tmp_path: Path) -> None:
    enroll(vault, "S-1", 1)
    enroll(vault, "S-2", 1)
    keys_db = tmp_path / "vault" / "keys.db"
    inspect = SqliteKeyStore(keys_db)
    wrapped = inspect.get("S-1")
    assert wrapped is not None
    assert wrapped.wrapped in raw_bytes(keys_db)  # the check below would otherwise prove nothing
    vault.destroy_subject("S-1")
    assert wrapped.wrapped not in raw_bytes(keys_db)
    assert wrapped.wrapped[:16] not in raw_bytes(keys_db)
    with sqlite3.connect(keys_db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    inspect.close()


@pytest.mark.timeout(20)  # guards against the worker blocking behind a reader, not a benchmark
def test_a_reader_in_the_way_delays_the_scrub_but_not_the_erasure(
    vault: FaceprintVault, tmp_path: Path
) -> None:
    enroll(vault, "S-1", 1)
    enroll(vault, "S-2", 1)
    keys_db = tmp_path / "vault" / "keys.db"
    reader = sqlite3.connect(keys_db, isolation_level=None)
    reader.execute("BEGIN")
    wrapped = reader.execute("SELECT wrapped FROM data_keys WHERE subject_id = 'S-1'").fetchone()[0]
    receipt = vault.destroy_subject("S-1")
    assert receipt.key_destroyed and not receipt.key_scrubbed and vault.scrub_pending
    assert not vault.has_subject("S-1") and vault.faceprints("S-1") == []
    assert not vault.scrub_keys()  # still in the way
    reader.execute("COMMIT")
    reader.close()
    assert vault.scrub_keys() and not vault.scrub_pending
    assert wrapped not in raw_bytes(keys_db)


def test_orphaned_ciphertexts_are_skipped_and_swept(vault: FaceprintVault, tmp_path: Path) -> None:
    enroll(vault, "S-1", 2)
    enroll(vault, "S-2", 1)
    # A crash between deleting the key and deleting the blobs leaves orphans.
    keys = SqliteKeyStore(tmp_path / "vault" / "keys.db")
    keys.delete("S-1")
    keys.close()
    assert [fp.subject_id for fp in vault.iter_faceprints()] == ["S-2"]
    assert vault.sweep_orphans() == 2
    assert vault.sweep_orphans() == 0


def test_re_enrolling_clears_the_leftovers_of_an_interrupted_erasure(
    vault: FaceprintVault, tmp_path: Path
) -> None:
    enroll(vault, "S-1", 2)
    keys = SqliteKeyStore(tmp_path / "vault" / "keys.db")
    keys.delete("S-1")
    keys.close()
    fresh = vault.store("S-1", embedding(), reference="new.jpg", model_version=MODEL)
    assert [fp.record_id for fp in vault.faceprints("S-1")] == [fresh.record_id]


# --- listing for reindex ---------------------------------------------------------------------


def test_iter_faceprints_walks_every_subject_in_order(vault: FaceprintVault) -> None:
    expected = {}
    for s in ("S-3", "S-1", "S-2"):
        for fp_vector in enroll(vault, s, 2):
            expected[(s, fp_vector.tobytes())] = True
    vault.store("S-1", embedding(), reference="x.jpg", model_version="other-model")
    assert vault.list_subjects() == ["S-1", "S-2", "S-3"]
    seen = list(vault.iter_faceprints(model_version=MODEL))
    assert [fp.subject_id for fp in seen] == ["S-1", "S-1", "S-2", "S-2", "S-3", "S-3"]
    assert {(fp.subject_id, fp.vector.tobytes()) for fp in seen} == set(expected)
    assert len(list(vault.iter_faceprints())) == 7


def test_iter_faceprints_pages_through_a_large_vault(vault: FaceprintVault) -> None:
    for i in range(260):  # more than one page of 256
        vault.store(f"S-{i:04d}", embedding(8), reference="r.jpg", model_version=MODEL)
    assert [fp.subject_id for fp in vault.iter_faceprints()] == [f"S-{i:04d}" for i in range(260)]


def test_two_writers_agree_on_one_data_key(tmp_path: Path, master: MasterKey) -> None:
    a = FaceprintVault.open(tmp_path / "vault", MasterKeyring(master))
    b = FaceprintVault.open(tmp_path / "vault", MasterKeyring(master))
    va = a.store("S-1", embedding(), reference="a.jpg", model_version=MODEL)
    vb = b.store("S-1", embedding(), reference="b.jpg", model_version=MODEL)
    for v in (a, b):
        assert {fp.record_id for fp in v.faceprints("S-1")} == {va.record_id, vb.record_id}
    a.close()
    b.close()


# --- master-key rotation ---------------------------------------------------------------------


def ciphertexts(blobs_db: Path) -> dict[tuple[str, str], bytes]:
    store = SqliteBlobStore(blobs_db)
    try:
        return {(b.subject_id, b.record_id): b.ciphertext for b in store.iter_blobs()}
    finally:
        store.close()


def test_rotation_rewraps_keys_without_touching_ciphertexts(tmp_path: Path, master: MasterKey) -> None:
    old_vault = FaceprintVault.open(tmp_path / "vault", MasterKeyring(master))
    vectors = {s: enroll(old_vault, s, 2) for s in ("S-1", "S-2", "S-3")}
    blobs_db = tmp_path / "vault" / "faceprints.db"
    before = ciphertexts(blobs_db)
    keys = SqliteKeyStore(tmp_path / "vault" / "keys.db")
    old_wrapped = keys.get("S-1")
    keys.close()
    assert old_wrapped is not None

    new = MasterKey.generate()
    report = old_vault.rotate_master_key(new)
    assert (report.new_master_key_id, report.rewrapped, report.already_current) == (new.key_id, 3, 0)
    assert report.retired_key_ids == (master.key_id,) and report.old_wraps_scrubbed
    check_no_biometrics(report.to_detail())
    assert old_vault.rotate_master_key().rewrapped == 0  # idempotent
    old_vault.close()

    assert ciphertexts(blobs_db) == before  # not one faceprint re-encrypted
    assert old_wrapped.wrapped not in raw_bytes(tmp_path / "vault" / "keys.db")

    with FaceprintVault.open(tmp_path / "vault", MasterKeyring(new)) as rotated:
        for s, vs in vectors.items():
            got = sorted(fp.vector.tobytes() for fp in rotated.faceprints(s))
            assert got == sorted(v.tobytes() for v in vs)
    with (
        FaceprintVault.open(tmp_path / "vault", MasterKeyring(master)) as stale,
        pytest.raises(UndecryptableError, match="not configured"),
    ):
        stale.faceprints("S-1")


def test_an_interrupted_rotation_finishes_on_the_next_run(tmp_path: Path, master: MasterKey) -> None:
    with FaceprintVault.open(tmp_path / "vault", MasterKeyring(master)) as v:
        for s in ("S-1", "S-2", "S-3"):
            enroll(v, s, 1)
    new = MasterKey.generate()
    # Settings now name the new key as current and the old one as retired.
    ring = MasterKeyring(new, (master,))
    with FaceprintVault.open(tmp_path / "vault", ring) as v:
        # Both keys open data while the rotation has not run, and new subjects use the new key.
        assert len(v.faceprints("S-1")) == 1
        enroll(v, "S-4", 1)
        report = v.rotate_master_key()
        assert (report.rewrapped, report.already_current) == (3, 1)


# --- master keys from settings ---------------------------------------------------------------


def test_a_missing_master_key_is_generated_with_0600_and_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vault_dir = tmp_path / "data" / "vault"
    with caplog.at_level(logging.WARNING):
        ring = load_master_keyring(PrivacySettings(), vault_dir)
    key_file = vault_dir / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "generated a master key" in caplog.text and str(key_file) in caplog.text
    assert ring.source.startswith("generated")
    assert len(base64.b64decode(key_file.read_text())) == 32
    again = load_master_keyring(PrivacySettings(), vault_dir)
    assert again.current.key_id == ring.current.key_id and again.source.startswith("file")
    assert [p.name for p in vault_dir.iterdir()] == ["master.key"]  # no temp file left behind


def test_an_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the data dir should be")
    with pytest.raises(MasterKeyError, match="cannot generate a master key"):
        load_master_keyring(PrivacySettings(), tmp_path / "data" / "vault")


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_master_keyring(PrivacySettings(), tmp_path)
    os.chmod(tmp_path / "master.key", 0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_keyring(PrivacySettings(), tmp_path)


@pytest.mark.parametrize(
    "text", ["not base64!", base64.b64encode(b"short").decode(), base64.b64encode(bytes(33)).decode()]
)
def test_malformed_master_keys_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(MasterKeyError):
        load_master_keyring(PrivacySettings(master_key=SecretStr(text)), tmp_path)
    with pytest.raises(MasterKeyError):
        load_master_keyring(
            PrivacySettings(
                master_key=SecretStr(generate_master_key()), retired_master_keys=(SecretStr(text),)
            ),
            tmp_path,
        )


def test_master_keys_never_show_in_repr() -> None:
    key = MasterKey.generate()
    assert key.to_base64() not in repr(MasterKeyring(key)) and str(key.secret) not in repr(key)


def test_moving_from_a_generated_key_to_a_managed_one_is_a_rotation(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    dev = Settings(data_dir=data_dir)
    with open_vault(dev) as v:
        enroll(v, "S-1", 2)
        generated_id = v.master_key_id
    managed = Settings(
        data_dir=data_dir, privacy=PrivacySettings(master_key=SecretStr(generate_master_key()))
    )
    with open_vault(managed) as v:
        assert v.master_key_id != generated_id
        assert len(v.faceprints("S-1")) == 2  # the generated key file still unwraps
        assert v.rotate_master_key().retired_key_ids == (generated_id,)
    (data_dir / "vault" / "master.key").unlink()
    with open_vault(managed) as v:
        assert len(v.faceprints("S-1")) == 2


def test_the_same_key_cannot_be_current_and_retired() -> None:
    key = MasterKey.generate()
    with pytest.raises(MasterKeyError):
        MasterKeyring(key, (key,))


def test_sealed_faceprint_repr_hides_the_ciphertext() -> None:
    blob = SealedFaceprint("S-1", "r", MODEL, b"\x01secret-bytes", created_at=datetime.now(UTC))
    assert "secret-bytes" not in repr(blob)
