"""Which assets name a subject, and which revocations a purge of theirs still awaits.

One table key per (subject, asset), never a list inside the subject's own entry: naming an asset
or acknowledging its revocation writes one small changelog record whatever the number of assets.
(A list would be rewritten whole on every event: a subject on 10,000 assets would cost the
changelog ~10,000² entries.) The keys are written while the join handles the subject's events,
so faust puts them on the subject's changelog partition, next to the subject's own entry.

Listing a subject's assets scans the table's keys. Only consent changes and purges do that;
every match and every acknowledgement is a single key.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

_NAMED = "named"
_REVOKING = "revoking"


class AssetLedger:
    def __init__(self, table: MutableMapping[str, Any], subject_id: str) -> None:
        self._table = table
        self._subject = subject_id

    def _key(self, kind: str, asset_id: str) -> str:
        return f"{self._subject}\x00{kind}\x00{asset_id}"

    def _scan(self, kind: str) -> Iterator[tuple[str, Any]]:
        prefix = self._key(kind, "")
        for key in list(self._table.keys()):
            if isinstance(key, str) and key.startswith(prefix):
                value = self._table.get(key)
                if value is not None:
                    yield key[len(prefix) :], value

    # --- assets that name the subject -----------------------------------------------------------

    def name(self, asset_id: str, etag: str) -> None:
        self._table[self._key(_NAMED, asset_id)] = etag

    def unname(self, asset_id: str) -> None:
        key = self._key(_NAMED, asset_id)
        if self._table.get(key) is not None:
            del self._table[key]

    def named(self) -> dict[str, str]:
        """asset id -> etag of the version that names the subject, in asset order."""
        return dict(sorted(self._scan(_NAMED)))

    # --- revocations of a purge -----------------------------------------------------------------

    def revoke_named(self, purge_id: str) -> tuple[list[str], int]:
        """Every asset that names the subject now awaits its revocation under ``purge_id``.

        Returns those assets, and how many of them were not awaited already (an asset named
        again while an earlier revocation of it is still unacknowledged is counted once).
        """
        named = sorted(self.named())
        added = 0
        for asset_id in named:
            key = self._key(_REVOKING, asset_id)
            if self._table.get(key) != [purge_id, False]:
                added += 1
            self._table[key] = [purge_id, False]
            del self._table[self._key(_NAMED, asset_id)]
        return named, added

    def acknowledge(self, purge_id: str, asset_id: str) -> bool:
        """Record the revocation as applied; False for an acknowledgement already counted."""
        key = self._key(_REVOKING, asset_id)
        value = self._table.get(key)
        if value is None or value[0] != purge_id or value[1]:
            return False
        self._table[key] = [purge_id, True]
        return True

    def awaiting(self, purge_id: str) -> list[str]:
        """Assets whose revocation under ``purge_id`` is not acknowledged yet (scans: purges only)."""
        return sorted(asset for asset, (pid, done) in self._scan(_REVOKING) if pid == purge_id and not done)

    def revoked(self, purge_id: str) -> list[str]:
        """Every asset the purge revokes, acknowledged or not (the list SubjectPurged proves)."""
        return sorted(asset for asset, (pid, _) in self._scan(_REVOKING) if pid == purge_id)

    def close(self, revoked: list[str]) -> None:
        """The purge is proven: its per-asset bookkeeping goes (``revoked``: as listed by revoked())."""
        for asset_id in revoked:
            del self._table[self._key(_REVOKING, asset_id)]
