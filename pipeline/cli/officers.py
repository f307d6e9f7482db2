"""``facegate officer add|keygen|list|revoke``: who may sign consent changes, enrollments, erasures.

The registry is a file the operator controls (privacy.officer_registry); the workers re-read it
when it changes. An officer's private key stays with the officer (privacy.officer_keys, 0600,
protected by a passphrase unless --no-passphrase): ``keygen`` makes one where the officer works
and prints its public key, ``add --public-key`` registers it where the registry is.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import click

from ..officers import OfficerKey, Role, add_officer, key_path, officers, revoke_officer, save_key
from ..settings import Settings, get_settings
from . import render

_ROLES = [r.value for r in Role]


def _passphrase(settings: Settings, wanted: bool) -> bytes | None:
    if not wanted:
        return None
    configured = settings.privacy.officer_passphrase
    if configured is not None:
        return configured.get_secret_value().encode()
    text = click.prompt("passphrase for the new key", hide_input=True, confirmation_prompt=True)
    if not text:
        raise click.BadParameter("an empty passphrase protects nothing; use --no-passphrase to mean it")
    return str(text).encode()


def _public_key(text: str) -> bytes:
    """A public key as ``officer keygen`` prints it (base64 of 32 bytes; never send the key file)."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise click.BadParameter(f"{text!r} is not base64", param_hint="--public-key") from None


passphrase_option = click.option(
    "--passphrase/--no-passphrase",
    "protect",
    default=True,
    show_default=True,
    help="Protect the private key with a passphrase (asked for, or privacy.officer_passphrase).",
)


@click.group("officer")
def officer_group() -> None:
    """Privacy officers: the keys whose signatures make consent, enrollment and erasure take effect."""


@officer_group.command("add")
@click.argument("officer_id")
@click.option("--name", required=True, help="The officer's name, as staff (shown in `officer list`).")
@click.option("--role", type=click.Choice(_ROLES), default=Role.PRIVACY_OFFICER.value, show_default=True)
@click.option(
    "--public-key", "public_key", default=None, help="Register this key (base64, from `officer keygen`)."
)
@passphrase_option
def officer_add(officer_id: str, name: str, role: str, public_key: str | None, protect: bool) -> None:
    """Register OFFICER_ID; without --public-key, also make their key pair here."""
    settings = get_settings()
    raw = _public_key(public_key) if public_key else None
    passphrase = None if raw is not None else _passphrase(settings, protect)
    officer, written = add_officer(
        settings, officer_id, name=name, role=Role(role), passphrase=passphrase, public_key=raw
    )
    click.echo(f"registered officer {officer.officer_id} ({officer.role}) key {officer.key_id}")
    if written is not None:
        protection = "passphrase" if passphrase else "NO passphrase: the file mode is its only protection"
        click.echo(f"private key: {written} (mode 0600, {protection})")


@officer_group.command("keygen")
@click.argument("officer_id")
@passphrase_option
def officer_keygen(officer_id: str, protect: bool) -> None:
    """Make OFFICER_ID's key pair here, without registering it; prints the public key to register."""
    settings = get_settings()
    key = OfficerKey.generate(officer_id)
    path = save_key(key, key_path(settings, officer_id), _passphrase(settings, protect))
    click.echo(f"private key: {path} (mode 0600)")
    click.echo(f"public key {key.key_id}: {base64.b64encode(key.public_key).decode()}")
    click.echo(f"register it: facegate officer add {officer_id} --name NAME --public-key <that base64>")


@officer_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per officer.")
def officer_list(as_json: bool) -> None:
    """Every officer in the registry, revoked ones included (their past signatures still count)."""
    settings = get_settings()
    registry = officers(settings)
    rows: list[dict[str, Any]] = []
    for o in registry.officers:
        rows.append({**o.to_json(), "key_here": key_path(settings, o.officer_id).is_file()})
    if as_json:
        click.echo(render.dumps({"officers": rows}))
        return
    if not rows:
        click.echo("no officers registered: `facegate officer add ID --name NAME`")
    for o, row in zip(registry.officers, rows, strict=True):
        state = "active"
        if o.revoked_at is not None:
            state = f"{'COMPROMISED' if o.compromised else 'revoked'} {render.when(o.revoked_at)}"
        here = "  (key here)" if row["key_here"] else ""
        click.echo(f"{o.officer_id:<16} {o.role.value:<20} {o.key_id}  {state:<28} {o.name}{here}")


@officer_group.command("revoke")
@click.argument("officer_id")
@click.option(
    "--compromised",
    is_flag=True,
    help="The key may be in other hands: refuse everything it signed, whenever dated "
    "(default: only what it signs from now on).",
)
def officer_revoke(officer_id: str, compromised: bool) -> None:
    """Stop OFFICER_ID's signatures from taking effect (the workers see it at once)."""
    officer = revoke_officer(get_settings(), officer_id, compromised=compromised)
    assert officer.revoked_at is not None
    what = "every record it ever signed is refused" if compromised else "records it signed before stay valid"
    click.echo(f"revoked officer {officer_id} at {render.when(officer.revoked_at)}: {what}")


COMMANDS: list[Any] = [officer_group]
