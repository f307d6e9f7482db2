"""The registry of privacy officers the workers trust: ids, names, roles and public keys.

It is a JSON file the operator controls (``privacy.officer_registry``; default
``<data_dir>/officers/registry.json``, in production a read-only mounted file), never a topic:
whoever can write to Kafka must not be able to make themselves an officer. A signed registry
travelling through Kafka would only move the problem to the custody of its root key, which is
the same operator, so the file is the root. ``facegate officer add|revoke`` edit it; workers
re-read it when it changes, so a revocation takes effect without a restart.

A revoked officer's key stays in the registry with ``revoked_at``: records it signed before
then still verify (a compacted consent topic replayed later must not lose them), records signed
at or after it do not. ``compromised`` refuses every record of that key, whenever dated, because
a stolen key can backdate.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ..contract import utcnow
from ..errors import ConfigError, TransientError
from .keys import check_officer_id, key_id_of, load_public_key

log = logging.getLogger(__name__)

REGISTRY_FORMAT = "facegate-officers/1"


class Role(enum.StrEnum):
    PRIVACY_OFFICER = "privacy_officer"  # consent changes, enrollments, erasure requests
    ENROLLMENT_OPERATOR = "enrollment_operator"  # enrollments only (consent must exist already)


# What each role may sign, by record schema name.
MAY_SIGN: Mapping[Role, frozenset[str]] = {
    Role.PRIVACY_OFFICER: frozenset(
        {"facegate.ConsentChange", "facegate.SubjectEnrollment", "facegate.ErasureRequest"}
    ),
    Role.ENROLLMENT_OPERATOR: frozenset({"facegate.SubjectEnrollment"}),
}


class RegistryError(ConfigError):
    """The registry file cannot be read or edited as asked."""


class RegistryUnavailable(TransientError):
    """The workers cannot read the registry: consent-plane records wait (neither accepted nor refused)."""


@dataclass(frozen=True)
class Officer:
    officer_id: str
    name: str
    role: Role
    public_key: bytes  # raw Ed25519, 32 bytes
    added_at: datetime
    revoked_at: datetime | None = None
    compromised: bool = False

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may_sign(self, schema_name: str) -> bool:
        return schema_name in MAY_SIGN[self.role]

    def valid_at(self, signed_at: datetime) -> bool:
        """Whether a record this officer signed at ``signed_at`` may take effect."""
        if self.revoked_at is None:
            return True
        return not self.compromised and signed_at < self.revoked_at

    def to_json(self) -> dict[str, Any]:
        return {
            "officer_id": self.officer_id,
            "name": self.name,
            "role": self.role.value,
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "added_at": self.added_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
            "compromised": self.compromised,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Officer:
        try:
            public_key = base64.b64decode(str(data["public_key"]), validate=True)
            load_public_key(public_key)
            officer = cls(
                officer_id=check_officer_id(str(data["officer_id"])),
                name=str(data.get("name") or ""),
                role=Role(data.get("role", Role.PRIVACY_OFFICER.value)),
                public_key=public_key,
                added_at=datetime.fromisoformat(str(data["added_at"])),
                revoked_at=datetime.fromisoformat(data["revoked_at"]) if data.get("revoked_at") else None,
                compromised=bool(data.get("compromised", False)),
            )
        except (KeyError, ValueError, TypeError, binascii.Error) as exc:
            raise RegistryError(f"bad officer entry {data.get('officer_id')!r}: {exc}") from None
        if data.get("key_id") not in (None, officer.key_id):
            raise RegistryError(f"officer {officer.officer_id}: key_id does not match the public key")
        return officer


@dataclass(frozen=True)
class OfficerRegistry:
    officers: tuple[Officer, ...] = ()

    def __post_init__(self) -> None:
        ids = [o.officer_id for o in self.officers]
        keys = [o.key_id for o in self.officers]
        if len(set(ids)) != len(ids) or len(set(keys)) != len(keys):
            raise RegistryError("an officer id or key appears twice in the registry")

    def by_key_id(self, key_id: str) -> Officer | None:
        return next((o for o in self.officers if o.key_id == key_id), None)

    def get(self, officer_id: str) -> Officer | None:
        return next((o for o in self.officers if o.officer_id == officer_id), None)

    def add(self, officer: Officer) -> OfficerRegistry:
        if self.get(officer.officer_id) is not None:
            raise RegistryError(f"officer {officer.officer_id} is registered already (ids are never reused)")
        if self.by_key_id(officer.key_id) is not None:
            raise RegistryError(f"key {officer.key_id} is registered already")
        return OfficerRegistry((*self.officers, officer))

    def revoke(
        self, officer_id: str, *, at: datetime | None = None, compromised: bool = False
    ) -> OfficerRegistry:
        officer = self.get(officer_id)
        if officer is None:
            raise RegistryError(f"no officer {officer_id} in the registry")
        if officer.revoked_at is not None and (officer.compromised or not compromised):
            raise RegistryError(f"officer {officer_id} was revoked at {officer.revoked_at.isoformat()}")
        revoked = replace(officer, revoked_at=officer.revoked_at or at or utcnow(), compromised=compromised)
        return OfficerRegistry(tuple(revoked if o.officer_id == officer_id else o for o in self.officers))

    def to_json(self) -> dict[str, Any]:
        return {"format": REGISTRY_FORMAT, "officers": [o.to_json() for o in self.officers]}

    @classmethod
    def from_json(cls, data: Any) -> OfficerRegistry:
        if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
            raise RegistryError(f"not a facegate officer registry ({REGISTRY_FORMAT})")
        entries: Iterable[Any] = data.get("officers") or []
        return cls(tuple(Officer.from_json(e) for e in entries))


def load_registry(path: Path) -> OfficerRegistry:
    """The registry in ``path``; an absent file is an empty registry."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return OfficerRegistry()
    except OSError as exc:
        raise RegistryError(f"cannot read the officer registry {path}: {exc.strerror}") from None
    try:
        return OfficerRegistry.from_json(json.loads(text))
    except ValueError as exc:
        raise RegistryError(f"{path}: {exc}") from None


def save_registry(registry: OfficerRegistry, path: Path) -> None:
    """Replace the file atomically (mode 0644: public keys, writable by its owner only)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(registry.to_json(), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class RegistryFile:
    """The registry as a worker sees it: re-read whenever the file changes (checked per call).

    Unreadable or malformed is RegistryUnavailable, a transient error: consent-plane records
    wait for the operator to fix the file rather than being accepted, or refused and lost to the
    dead-letter topic. An absent file is an empty registry (every record refused as unknown).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._registry = OfficerRegistry()

    def current(self) -> OfficerRegistry:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._registry = None, OfficerRegistry()
            return self._registry
        except OSError as exc:
            raise RegistryUnavailable(f"officer registry {self.path}: {exc.strerror}") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                registry = load_registry(self.path)
            except RegistryError as exc:
                raise RegistryUnavailable(str(exc)) from None
            log.info("officer registry %s: %d officer(s)", self.path, len(registry.officers))
            self._stamp, self._registry = stamp, registry
        return self._registry
