"""SQLite implementations of the keystore and the blob store, one database file each.

WAL lets readers (``facegate reindex``, the CLI) run beside the one writer process. The keystore
sets ``secure_delete`` so a deleted key's bytes are overwritten with zeros in the database file,
and after a deletion a TRUNCATE checkpoint empties the WAL, which would otherwise keep the old
page (with the key) until the next checkpoint. Below the file system (SSD wear levelling,
snapshots) no file-level measure reaches: that is what the master key wrap is for.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .store import SealedFaceprint, WrappedKey

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BUSY_WAIT_MS = 30_000  # another process writing (a second vault writer, the CLI)
_SCRUB_WAIT_MS = 200  # readers in the way of emptying the WAL: retry later rather than wait


def _to_ms(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


class _Database:
    """One connection, serialised by a lock (faust may call from executor threads)."""

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the same mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=_BUSY_WAIT_MS / 1000
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # a destroyed key stays destroyed after a crash
        self._conn.execute("PRAGMA secure_delete=ON")
        with self._lock:
            self._conn.executescript(schema)

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, params)

    def write(self, sql: str, params: tuple[object, ...] = ()) -> int:
        """One statement in its own immediate transaction; returns the changed row count."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                changed = self._conn.execute(sql, params).rowcount
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return changed

    def checkpoint_truncate(self) -> bool:
        """Copy the WAL into the database and empty it; False if a reader's snapshot holds it.

        TRUNCATE waits for readers through the busy handler: keep that wait short so an erasure
        never stalls the worker behind a long ``facegate reindex``; the caller retries later.
        """
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {_SCRUB_WAIT_MS}")
            try:
                busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_WAIT_MS}")
            return bool(busy == 0)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SqliteKeyStore:
    """Wrapped data keys, one row per subject."""

    def __init__(self, path: Path) -> None:
        self._db = _Database(
            path,
            """
            CREATE TABLE IF NOT EXISTS data_keys (
                subject_id TEXT PRIMARY KEY,
                master_key_id TEXT NOT NULL,
                wrapped BLOB NOT NULL,
                created_ms INTEGER NOT NULL
            ) WITHOUT ROWID;
            """,
        )

    @property
    def path(self) -> Path:
        return self._db.path

    @staticmethod
    def _row(row: tuple[str, str, bytes, int]) -> WrappedKey:
        return WrappedKey(row[0], row[1], bytes(row[2]), _from_ms(row[3]))

    def get(self, subject_id: str) -> WrappedKey | None:
        row = self._db.execute(
            "SELECT subject_id, master_key_id, wrapped, created_ms FROM data_keys WHERE subject_id = ?",
            (subject_id,),
        ).fetchone()
        return None if row is None else self._row(row)

    def put_if_absent(self, key: WrappedKey) -> WrappedKey:
        self._db.write(
            "INSERT OR IGNORE INTO data_keys VALUES (?, ?, ?, ?)",
            (key.subject_id, key.master_key_id, key.wrapped, _to_ms(key.created_at)),
        )
        stored = self.get(key.subject_id)
        assert stored is not None  # just written, and this is the only writer
        return stored

    def rewrap(self, key: WrappedKey, *, previous_master_key_id: str) -> bool:
        return (
            self._db.write(
                "UPDATE data_keys SET master_key_id = ?, wrapped = ? "
                "WHERE subject_id = ? AND master_key_id = ?",
                (key.master_key_id, key.wrapped, key.subject_id, previous_master_key_id),
            )
            == 1
        )

    def delete(self, subject_id: str) -> bool:
        return self._db.write("DELETE FROM data_keys WHERE subject_id = ?", (subject_id,)) == 1

    def scrub(self) -> bool:
        return self._db.checkpoint_truncate()

    def subjects(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT subject_id FROM data_keys ORDER BY subject_id")]

    def iter_keys(self) -> Iterator[WrappedKey]:
        rows = self._db.execute(
            "SELECT subject_id, master_key_id, wrapped, created_ms FROM data_keys ORDER BY subject_id"
        ).fetchall()
        return (self._row(r) for r in rows)

    def close(self) -> None:
        self._db.close()


class SqliteBlobStore:
    """Sealed faceprints, keyed by (subject_id, record_id)."""

    def __init__(self, path: Path) -> None:
        self._db = _Database(
            path,
            """
            CREATE TABLE IF NOT EXISTS faceprints (
                subject_id TEXT NOT NULL,
                record_id TEXT NOT NULL,
                model_version TEXT NOT NULL,
                ciphertext BLOB NOT NULL,
                created_ms INTEGER NOT NULL,
                PRIMARY KEY (subject_id, record_id)
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS faceprints_by_model ON faceprints (model_version);
            """,
        )

    @property
    def path(self) -> Path:
        return self._db.path

    _COLUMNS = "subject_id, record_id, model_version, ciphertext, created_ms"

    @staticmethod
    def _row(row: tuple[str, str, str, bytes, int]) -> SealedFaceprint:
        return SealedFaceprint(row[0], row[1], row[2], bytes(row[3]), _from_ms(row[4]))

    def put(self, blob: SealedFaceprint) -> None:
        self._db.write(
            "INSERT OR REPLACE INTO faceprints VALUES (?, ?, ?, ?, ?)",
            (blob.subject_id, blob.record_id, blob.model_version, blob.ciphertext, _to_ms(blob.created_at)),
        )

    def get(self, subject_id: str, record_id: str) -> SealedFaceprint | None:
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM faceprints WHERE subject_id = ? AND record_id = ?",
            (subject_id, record_id),
        ).fetchone()
        return None if row is None else self._row(row)

    def for_subject(self, subject_id: str) -> list[SealedFaceprint]:
        rows = self._db.execute(
            f"SELECT {self._COLUMNS} FROM faceprints WHERE subject_id = ? ORDER BY record_id", (subject_id,)
        ).fetchall()
        return [self._row(r) for r in rows]

    def delete(self, subject_id: str, record_id: str) -> bool:
        return (
            self._db.write(
                "DELETE FROM faceprints WHERE subject_id = ? AND record_id = ?", (subject_id, record_id)
            )
            == 1
        )

    def delete_subject(self, subject_id: str) -> list[str]:
        ids = [b.record_id for b in self.for_subject(subject_id)]
        self._db.write("DELETE FROM faceprints WHERE subject_id = ?", (subject_id,))
        return ids

    def subjects(self) -> list[str]:
        return [
            r[0] for r in self._db.execute("SELECT DISTINCT subject_id FROM faceprints ORDER BY subject_id")
        ]

    def iter_blobs(self, model_version: str | None = None) -> Iterator[SealedFaceprint]:
        # Page through by primary key so a large vault is never held in memory at once.
        last: tuple[str, str] = ("", "")
        where = "" if model_version is None else "AND model_version = ?"
        extra: tuple[object, ...] = () if model_version is None else (model_version,)
        while True:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM faceprints WHERE (subject_id, record_id) > (?, ?) {where} "
                "ORDER BY subject_id, record_id LIMIT 256",
                (*last, *extra),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield self._row(row)
            last = (rows[-1][0], rows[-1][1])

    def close(self) -> None:
        self._db.close()
