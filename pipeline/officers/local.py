"""Where officers' files live for a deployment, and the first officer of an embedded stack.

    <data_dir>/officers/registry.json     the registry (privacy.officer_registry)
    <data_dir>/officers/keys/<id>.key     officers' private keys (privacy.officer_keys), 0600

In production the registry is a read-only file mounted into the workers and each officer keeps
their own key (with a passphrase) where they work; ``facegate officer add --public-key`` registers
a key generated elsewhere, so the operator who edits the registry never holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..contract import utcnow
from ..settings import Settings
from .keys import (
    OfficerKey,
    OfficerKeyError,
    check_officer_id,
    load_key,
    load_public_key,
    needs_passphrase,
    save_key,
)
from .registry import Officer, OfficerRegistry, Role, load_registry, save_registry

FIRST_OFFICER = "dpo"  # the embedded stack's first officer


def registry_path(settings: Settings) -> Path:
    configured = settings.privacy.officer_registry
    return (configured or settings.data_dir / "officers" / "registry.json").expanduser().resolve()


def key_dir(settings: Settings) -> Path:
    configured = settings.privacy.officer_keys
    return (configured or settings.data_dir / "officers" / "keys").expanduser().resolve()


def key_path(settings: Settings, officer_id: str) -> Path:
    return key_dir(settings) / f"{check_officer_id(officer_id)}.key"


def find_key(settings: Settings, officer_id: str | None = None) -> Path:
    """The key file to sign with: ``officer_id``'s, privacy.officer's, or the only one there is."""
    wanted = officer_id or settings.privacy.officer
    if wanted:
        path = key_path(settings, wanted)
        if not path.is_file():
            raise OfficerKeyError(f"no key for officer {wanted} in {key_dir(settings)}")
        return path
    keys = sorted(key_dir(settings).glob("*.key")) if key_dir(settings).is_dir() else []
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise OfficerKeyError(
            f"no officer key in {key_dir(settings)}: `facegate officer add` creates one "
            "(or set FACEGATE_PRIVACY__OFFICER_KEYS)"
        )
    names = ", ".join(p.stem for p in keys)
    raise OfficerKeyError(
        f"several officer keys ({names}): say which with --officer or FACEGATE_PRIVACY__OFFICER"
    )


def unlock(
    settings: Settings, officer_id: str | None = None, ask: Callable[[str], str] | None = None
) -> OfficerKey:
    """The officer's key, unlocked with privacy.officer_passphrase or by ``ask``-ing for it."""
    path = find_key(settings, officer_id)
    passphrase: bytes | None = None
    if needs_passphrase(path):
        configured = settings.privacy.officer_passphrase
        if configured is not None:
            passphrase = configured.get_secret_value().encode()
        elif ask is not None:
            passphrase = ask(f"passphrase for officer key {path.stem}").encode()
    return load_key(path, passphrase)


def add_officer(
    settings: Settings,
    officer_id: str,
    *,
    name: str,
    role: Role = Role.PRIVACY_OFFICER,
    passphrase: bytes | None = None,
    public_key: bytes | None = None,
) -> tuple[Officer, Path | None]:
    """Register an officer; without ``public_key`` a key pair is made and the private key saved.

    Returns the officer and where its private key was written (None for a registered public key).
    """
    path = registry_path(settings)
    registry = load_registry(path)
    written: Path | None = None
    if public_key is None:
        key = OfficerKey.generate(officer_id)
        public_key = key.public_key
        # Checked before the key is written, so a refused add leaves no orphan key file.
        candidate = _officer(officer_id, name, role, public_key)
        registry = registry.add(candidate)
        written = save_key(key, key_path(settings, officer_id), passphrase)
    else:
        load_public_key(public_key)
        candidate = _officer(officer_id, name, role, public_key)
        registry = registry.add(candidate)
    save_registry(registry, path)
    return candidate, written


def _officer(officer_id: str, name: str, role: Role, public_key: bytes) -> Officer:
    return Officer(check_officer_id(officer_id), name, role, public_key, added_at=utcnow())


def revoke_officer(settings: Settings, officer_id: str, *, compromised: bool = False) -> Officer:
    path = registry_path(settings)
    registry = load_registry(path).revoke(officer_id, compromised=compromised)
    save_registry(registry, path)
    revoked = registry.get(officer_id)
    assert revoked is not None
    return revoked


def officers(settings: Settings) -> OfficerRegistry:
    return load_registry(registry_path(settings))


def ensure_first_officer(settings: Settings) -> Path | None:
    """For the embedded stack: an officer ``dpo`` with an unprotected key when none is registered.

    Only where the registry is the data dir's own (not a configured, production one). Returns the
    key file written, or None when there was an officer already.
    """
    if settings.privacy.officer_registry is not None or officers(settings).officers:
        return None
    _, written = add_officer(settings, FIRST_OFFICER, name="embedded stack privacy officer")
    # No log line here: `facegate up` says so in its own output once the stack is up (a failed
    # `up` takes the officer back, and its error stays one line).
    return written


def first_officer_notice(written: Path) -> str:
    return (
        f"no privacy officer was registered: created officer {FIRST_OFFICER!r} for this embedded stack, "
        f"its key in {written} (mode 0600, no passphrase). In production register your officers with "
        "`facegate officer add` (with a passphrase) and revoke this one."
    )
