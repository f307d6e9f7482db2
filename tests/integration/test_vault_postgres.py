"""The PostgreSQL vault against a real server: shared by workers, crypto-shredded, outage-proof.

The server is Debian's PostgreSQL, a fresh cluster started by this module (see postgres_server.py);
each vault here is what a worker on another host would open with the same ``vault.dsn``.
"""

from __future__ import annotations

import base64
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
from postgres_server import PostgresServer, bin_dir
from pydantic import SecretStr

from pipeline.settings import PrivacySettings, Settings, VaultSettings
from pipeline.vault import (
    FaceprintVault,
    MasterKey,
    MasterKeyError,
    MasterKeyring,
    SealedFaceprint,
    UndecryptableError,
    VaultUnavailable,
    open_vault,
)
from pipeline.vault.postgres import PostgresBlobStore, PostgresDatabase, PostgresKeyStore

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bin_dir() is None, reason="PostgreSQL server binaries missing: make system-deps"),
]
MODEL = "dlib_resnet_v1"
rng = np.random.default_rng(5)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    bin = bin_dir()
    assert bin is not None
    pg = PostgresServer(bin).init()
    pg.start()
    try:
        pg.create_database()
        yield pg
    finally:
        try:
            pg.stop("immediate")
        finally:
            pg.remove()


def vault_on(server: PostgresServer, master: MasterKey, retry_s: float = 30.0) -> FaceprintVault:
    db = PostgresDatabase(server.dsn, retry_s=retry_s)
    return FaceprintVault(PostgresKeyStore(db), PostgresBlobStore(db), MasterKeyring(master))


def subject() -> str:
    return f"S-{uuid.uuid4().hex[:10]}"


def test_workers_on_two_hosts_share_one_vault(server: PostgresServer) -> None:
    master = MasterKey.generate()
    one, two = vault_on(server, master), vault_on(server, master)
    try:
        s = subject()
        vectors = [rng.normal(0, 0.1, 128).astype(np.float32) for _ in range(2)]
        # Both enroll the subject at once (a rebalance moved the partition): one data key wins.
        threads = [
            threading.Thread(
                target=v.store, args=(s, vectors[i]), kwargs={"reference": f"r{i}", "model_version": MODEL}
            )
            for i, v in enumerate((one, two))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for v in (one, two):
            found = {f.reference: f.vector for f in v.faceprints(s)}
            assert set(found) == {"r0", "r1"}
            assert np.array_equal(found["r0"], vectors[0]) and np.array_equal(found["r1"], vectors[1])
        assert s in one.list_subjects() and [f.subject_id for f in two.iter_faceprints()].count(s) == 2

        # One destroys the subject; the other can open nothing of them any more.
        receipt = one.destroy_subject(s)
        assert receipt.key_destroyed and receipt.faceprints_deleted == 2 and receipt.key_scrubbed
        assert two.faceprints(s) == [] and not two.has_subject(s)
    finally:
        one.close()
        two.close()


def test_a_destroyed_key_is_gone_from_the_table_file_and_old_rows_stay_shut(server: PostgresServer) -> None:
    master = MasterKey.generate()
    vault = vault_on(server, master)
    try:
        s = subject()
        vault.store(s, rng.normal(0, 0.1, 128), reference="r", model_version=MODEL)
        keys = PostgresKeyStore(PostgresDatabase(server.dsn))
        wrapped = keys.get(s)
        assert wrapped is not None
        backup = PostgresBlobStore(PostgresDatabase(server.dsn)).for_subject(s)  # a copy of the rows
        relation = server.data / _relation_file(server, "facegate_data_keys")
        _checkpoint(server)
        assert wrapped.wrapped in relation.read_bytes()  # the scan can see a live key

        vault.destroy_subject(s)
        _checkpoint(server)
        relation = server.data / _relation_file(server, "facegate_data_keys")  # VACUUM FULL rewrote it
        assert wrapped.wrapped not in relation.read_bytes()
        # The copied ciphertexts, put back, do not open: their key is gone everywhere it could be.
        blobs = PostgresBlobStore(PostgresDatabase(server.dsn))
        for blob in backup:
            blobs.put(blob)
        with pytest.raises(UndecryptableError):
            vault.faceprints(s)
        assert vault.sweep_orphans() == 1
        keys.close()
        blobs.close()
    finally:
        vault.close()


def _relation_file(server: PostgresServer, table: str) -> str:
    with psycopg.connect(server.dsn) as conn:
        row = conn.execute("SELECT pg_relation_filepath(%s)", (table,)).fetchone()
        assert row is not None
        return str(row[0])


def _checkpoint(server: PostgresServer) -> None:
    """Write dirty pages to the table files (the test reads the files, not the server)."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def test_blobs_page_in_key_order_and_rotation_rewraps_every_key(server: PostgresServer) -> None:
    db = PostgresDatabase(server.dsn)
    blobs = PostgresBlobStore(db)
    prefix = f"P-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    written = sorted((f"{prefix}-{i % 7}", f"{i:05d}") for i in range(2300))  # > two pages
    for subject_id, record_id in written:
        blobs.put(SealedFaceprint(subject_id, record_id, MODEL, os.urandom(16), now))
    mine = [(b.subject_id, b.record_id) for b in blobs.iter_blobs(MODEL) if b.subject_id.startswith(prefix)]
    assert mine == written
    for s in {s for s, _ in written}:
        blobs.delete_subject(s)
    db.close()

    old, new = MasterKey.generate(), MasterKey.generate()
    vault = vault_on(server, old)
    try:
        subjects = [subject() for _ in range(3)]
        for s in subjects:
            vault.store(s, rng.normal(0, 0.1, 128), reference="r", model_version=MODEL)
        report = vault.rotate_master_key(new)
        assert report.rewrapped >= 3 and report.old_wraps_scrubbed
        rotated = FaceprintVault(
            PostgresKeyStore(PostgresDatabase(server.dsn)),
            PostgresBlobStore(PostgresDatabase(server.dsn)),
            MasterKeyring(new),  # the old master key is gone: every key must open under the new one
        )
        try:
            assert all(len(rotated.faceprints(s)) == 1 for s in subjects)
        finally:
            rotated.close()
        for s in subjects:
            vault.destroy_subject(s)
    finally:
        vault.close()


def test_an_outage_is_transient_and_the_vault_reconnects(server: PostgresServer) -> None:
    master = MasterKey.generate()
    vault = vault_on(server, master, retry_s=2)
    s = subject()
    try:
        vault.store(s, rng.normal(0, 0.1, 128), reference="r", model_version=MODEL)
        server.stop("immediate")
        try:
            started = time.monotonic()
            with pytest.raises(VaultUnavailable):
                vault.faceprints(s)
            assert time.monotonic() - started < 30
        finally:
            server.start()
        assert len(vault.faceprints(s)) == 1  # the same vault object, a new connection

        # A call made while the server is down waits for it (within vault.retry_s).
        patient = vault_on(server, master, retry_s=60)
        server.stop("immediate")
        restart = threading.Timer(2.0, server.start)
        restart.start()
        try:
            assert len(patient.faceprints(s)) == 1
        finally:
            restart.join()
            patient.close()
        vault.destroy_subject(s)
    finally:
        vault.close()


def test_open_vault_needs_the_shared_master_key_from_the_settings(
    server: PostgresServer, tmp_path: Path
) -> None:
    shared = VaultSettings(dsn=SecretStr(server.dsn))
    with pytest.raises(MasterKeyError, match="same on every worker"):
        open_vault(Settings(data_dir=tmp_path, vault=shared))
    assert not (tmp_path / "vault").exists()  # no host-local key was generated

    key = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(data_dir=tmp_path, vault=shared, privacy=PrivacySettings(master_key=SecretStr(key)))
    vault = open_vault(settings)
    try:
        s = subject()
        vault.store(s, rng.normal(0, 0.1, 128), reference="r", model_version=MODEL)
        assert isinstance(vault._keys, PostgresKeyStore)
        vault.destroy_subject(s)
    finally:
        vault.close()
