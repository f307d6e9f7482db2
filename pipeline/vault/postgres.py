"""PostgreSQL implementations of the keystore and the blob store: one vault for N workers on N hosts.

Rows hold what the SQLite stores hold: wrapped data keys (per subject, wrapped by the master
key, which never reaches the database) and sealed faceprints. Every statement is idempotent
(insert-if-absent, upsert, conditional update, delete), so a statement whose connection broke
is simply run again on a new one; the stores wait up to ``retry_s`` for the server to come back
before a ``VaultUnavailable`` (transient: the caller retries).

Erasure: a deleted row stays as a dead tuple in the table's file until a vacuum, so ``scrub``
runs ``VACUUM FULL`` on the keys table (a rewrite: the live file holds no deleted key). Below the
table, PostgreSQL's write-ahead log keeps a copy of each wrapped key until its segment is
recycled, and so do WAL archives and base backups: keep those within the erasure deadline, as
for any keystore backup, and retire a master key (``rotate_master_key``) to make every copy it
wrapped undecryptable at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from .errors import VaultUnavailable
from .store import SealedFaceprint, WrappedKey

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS facegate_data_keys (
    subject_id TEXT COLLATE "C" PRIMARY KEY,
    master_key_id TEXT NOT NULL,
    wrapped BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS facegate_faceprints (
    subject_id TEXT COLLATE "C" NOT NULL,
    record_id TEXT COLLATE "C" NOT NULL,
    model_version TEXT NOT NULL,
    ciphertext BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (subject_id, record_id)
);
CREATE INDEX IF NOT EXISTS facegate_faceprints_by_model ON facegate_faceprints (model_version);
"""
_SCHEMA_LOCK = 0x6661636567617465  # "facegate": workers starting together create the tables once
_PAGE = 1000
_SCRUB_LOCK_WAIT = "200ms"  # workers reading keys in the way of the rewrite: retry later


class PostgresDatabase:
    """One connection (autocommit), serialised by a lock, re-opened when it breaks."""

    def __init__(self, dsn: str, *, retry_s: float = 30.0, connect_timeout_s: int = 5) -> None:
        self._dsn = dsn
        self._retry_s = retry_s
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self.run(self._create_schema)

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=self._connect_timeout_s,
                application_name="facegate",
                # A destroyed key stays destroyed after a server crash, whatever the server's default.
                options="-c synchronous_commit=on",
            )
        return self._conn

    @staticmethod
    def _create_schema(conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(_SCHEMA)

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work`` on the connection; a broken connection is re-opened and ``work`` run again."""
        deadline = time.monotonic() + self._retry_s
        pause = 0.2
        with self._lock:
            while True:
                try:
                    return work(self._connect())
                except psycopg.OperationalError as exc:
                    if not _connection_lost(exc):
                        raise  # a statement's own failure (a lock wait ran out, ...), not the link
                    self._drop()
                    if time.monotonic() + pause > deadline:
                        raise VaultUnavailable(f"the PostgreSQL vault is unreachable: {exc}") from exc
                    log.warning("vault: PostgreSQL connection lost (%s); reconnecting", exc)
                    time.sleep(pause)
                    pause = min(pause * 2, 5.0)

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """The link failed (server gone, restarted, network), as opposed to a statement."""
    return not isinstance(exc, pg_errors.LockNotAvailable | pg_errors.QueryCanceled)


class PostgresKeyStore:
    """Wrapped data keys, one row per subject."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @staticmethod
    def _row(row: tuple[Any, ...]) -> WrappedKey:
        return WrappedKey(row[0], row[1], bytes(row[2]), row[3])

    def get(self, subject_id: str) -> WrappedKey | None:
        row = self._db.run(
            lambda c: c.execute(
                "SELECT subject_id, master_key_id, wrapped, created_at FROM facegate_data_keys "
                "WHERE subject_id = %s",
                (subject_id,),
            ).fetchone()
        )
        return None if row is None else self._row(row)

    def put_if_absent(self, key: WrappedKey) -> WrappedKey:
        self._db.run(
            lambda c: c.execute(
                "INSERT INTO facegate_data_keys VALUES (%s, %s, %s, %s) ON CONFLICT (subject_id) DO NOTHING",
                (key.subject_id, key.master_key_id, key.wrapped, key.created_at),
            )
        )
        stored = self.get(key.subject_id)
        if stored is None:  # destroyed by another worker in between: the caller's key stands
            return self.put_if_absent(key)
        return stored

    def rewrap(self, key: WrappedKey, *, previous_master_key_id: str) -> bool:
        changed = self._db.run(
            lambda c: (
                c.execute(
                    "UPDATE facegate_data_keys SET master_key_id = %s, wrapped = %s "
                    "WHERE subject_id = %s AND master_key_id = %s",
                    (key.master_key_id, key.wrapped, key.subject_id, previous_master_key_id),
                ).rowcount
            )
        )
        return bool(changed == 1)

    def delete(self, subject_id: str) -> bool:
        changed = self._db.run(
            lambda c: (
                c.execute("DELETE FROM facegate_data_keys WHERE subject_id = %s", (subject_id,)).rowcount
            )
        )
        return bool(changed == 1)

    def scrub(self) -> bool:
        def vacuum(c: psycopg.Connection[Any]) -> bool:
            c.execute(f"SET lock_timeout = '{_SCRUB_LOCK_WAIT}'")
            try:
                c.execute("VACUUM FULL facegate_data_keys")
                return True
            except pg_errors.LockNotAvailable:
                return False
            finally:
                c.execute("RESET lock_timeout")

        return self._db.run(vacuum)

    def subjects(self) -> list[str]:
        rows = self._db.run(
            lambda c: c.execute("SELECT subject_id FROM facegate_data_keys ORDER BY subject_id").fetchall()
        )
        return [r[0] for r in rows]

    def iter_keys(self) -> Iterator[WrappedKey]:
        rows = self._db.run(
            lambda c: c.execute(
                "SELECT subject_id, master_key_id, wrapped, created_at FROM facegate_data_keys "
                "ORDER BY subject_id"
            ).fetchall()
        )
        return (self._row(r) for r in rows)

    def close(self) -> None:
        self._db.close()


class PostgresBlobStore:
    """Sealed faceprints, keyed by (subject_id, record_id)."""

    _COLUMNS = "subject_id, record_id, model_version, ciphertext, created_at"

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @staticmethod
    def _row(row: tuple[Any, ...]) -> SealedFaceprint:
        return SealedFaceprint(row[0], row[1], row[2], bytes(row[3]), row[4])

    def put(self, blob: SealedFaceprint) -> None:
        self._db.run(
            lambda c: c.execute(
                f"INSERT INTO facegate_faceprints ({self._COLUMNS}) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (subject_id, record_id) DO UPDATE SET model_version = EXCLUDED.model_version, "
                "ciphertext = EXCLUDED.ciphertext, created_at = EXCLUDED.created_at",
                (blob.subject_id, blob.record_id, blob.model_version, blob.ciphertext, blob.created_at),
            )
        )

    def get(self, subject_id: str, record_id: str) -> SealedFaceprint | None:
        row = self._db.run(
            lambda c: c.execute(
                f"SELECT {self._COLUMNS} FROM facegate_faceprints WHERE subject_id = %s AND record_id = %s",
                (subject_id, record_id),
            ).fetchone()
        )
        return None if row is None else self._row(row)

    def for_subject(self, subject_id: str) -> list[SealedFaceprint]:
        rows = self._db.run(
            lambda c: c.execute(
                f"SELECT {self._COLUMNS} FROM facegate_faceprints WHERE subject_id = %s ORDER BY record_id",
                (subject_id,),
            ).fetchall()
        )
        return [self._row(r) for r in rows]

    def delete(self, subject_id: str, record_id: str) -> bool:
        changed = self._db.run(
            lambda c: (
                c.execute(
                    "DELETE FROM facegate_faceprints WHERE subject_id = %s AND record_id = %s",
                    (subject_id, record_id),
                ).rowcount
            )
        )
        return bool(changed == 1)

    def delete_subject(self, subject_id: str) -> list[str]:
        rows = self._db.run(
            lambda c: c.execute(
                "DELETE FROM facegate_faceprints WHERE subject_id = %s RETURNING record_id", (subject_id,)
            ).fetchall()
        )
        return sorted(r[0] for r in rows)

    def subjects(self) -> list[str]:
        rows = self._db.run(
            lambda c: c.execute(
                "SELECT DISTINCT subject_id FROM facegate_faceprints ORDER BY subject_id"
            ).fetchall()
        )
        return [r[0] for r in rows]

    def iter_blobs(self, model_version: str | None = None) -> Iterator[SealedFaceprint]:
        # Keyset pages in primary key order, so a large vault is never held in memory at once.
        last: tuple[str, str] = ("", "")
        while rows := self._page(last, model_version):
            for row in rows:
                yield self._row(row)
            last = (rows[-1][0], rows[-1][1])

    def _page(self, after: tuple[str, str], model_version: str | None) -> list[tuple[Any, ...]]:
        where = "" if model_version is None else "AND model_version = %s"
        extra: tuple[object, ...] = () if model_version is None else (model_version,)
        return self._db.run(
            lambda c: c.execute(
                f"SELECT {self._COLUMNS} FROM facegate_faceprints "
                f"WHERE (subject_id, record_id) > (%s, %s) {where} "
                f"ORDER BY subject_id, record_id LIMIT {_PAGE}",
                (*after, *extra),
            ).fetchall()
        )

    def close(self) -> None:
        self._db.close()
