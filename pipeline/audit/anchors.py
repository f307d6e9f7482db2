"""Audit chain heads and the workers' public keys, kept outside Kafka.

Whoever can write to Kafka can delete a topic, or a tail of it; they cannot reach this store.
Each chain's head (seq, hash) is advanced as its records are acknowledged by the broker, so
``facegate audit verify`` knows how far every chain must reach and which chains exist at all,
and the public key of every worker key that signed links or receipts. A worker resuming a
chain whose head in its table is behind the anchor (it crashed after writing records but before
saving its state) resumes from the anchor instead of writing a second record with the same seq.

Embedded: SQLite under the vault directory (``<data_dir>/vault/audit-anchors.db``, 0600); with
a shared vault database in production the same two tables live there.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from ..contract import utcnow
from .chain import ChainHead

ANCHORS_FILE = "audit-anchors.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_heads (
    chain TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_keys (
    key_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, added_at TEXT NOT NULL
);
"""


class AnchorStore(Protocol):
    def advance(self, chain: str, head: ChainHead) -> None: ...

    def heads(self) -> dict[str, ChainHead]: ...

    def add_key(self, key_id: str, public_key: bytes) -> None: ...

    def keys(self) -> dict[str, bytes]: ...


class SqliteAnchorStore:
    """Thread-safe; several worker processes may share the file (WAL, one writer at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may lose the last commits
        self._db.executescript(_SCHEMA)

    def advance(self, chain: str, head: ChainHead) -> None:
        """Move ``chain``'s anchor to ``head`` unless it is already there or further."""
        with self._lock:
            self._db.execute(
                "INSERT INTO audit_heads (chain, seq, hash, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
                "updated_at = excluded.updated_at WHERE excluded.seq > audit_heads.seq",
                (chain, head.seq, head.hash, utcnow().isoformat()),
            )

    def head(self, chain: str) -> ChainHead | None:
        with self._lock:
            row = self._db.execute("SELECT seq, hash FROM audit_heads WHERE chain = ?", (chain,)).fetchone()
        return None if row is None else ChainHead(int(row[0]), str(row[1]))

    def heads(self) -> dict[str, ChainHead]:
        with self._lock:
            rows = self._db.execute("SELECT chain, seq, hash FROM audit_heads").fetchall()
        return {str(chain): ChainHead(int(seq), str(digest)) for chain, seq, digest in rows}

    def add_key(self, key_id: str, public_key: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO audit_keys (key_id, public_key, added_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key_id) DO NOTHING",
                (key_id, public_key, utcnow().isoformat()),
            )

    def keys(self) -> dict[str, bytes]:
        with self._lock:
            rows = self._db.execute("SELECT key_id, public_key FROM audit_keys").fetchall()
        return {str(key_id): bytes(public) for key_id, public in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def resume_head(saved: ChainHead | None, anchored: ChainHead | None) -> ChainHead | None:
    """Where a chain continues: the further of the worker's saved head and the anchored one."""
    if anchored is None:
        return saved
    if saved is None or anchored.seq > saved.seq:
        return anchored
    return saved
