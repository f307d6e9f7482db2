"""``facegate reset``: the explicit clean slate of the embedded stack's data dir."""

from __future__ import annotations

import click

from ..settings import get_settings
from ..stack import down
from ..stack.datadir import owned_entries, reset


@click.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset_command(yes: bool) -> None:
    """Stop the stack and delete everything it keeps: broker records (consent registry, audit log,
    tags), objects, faceprints, gallery, logs. `down` and `up` never delete any of it."""
    settings = get_settings()
    data_dir = settings.data_dir.expanduser().resolve()
    entries = owned_entries(data_dir)
    if not entries:
        click.echo(f"nothing to reset under {data_dir}")
        return
    if not yes:
        click.echo(f"facegate reset deletes, under {data_dir}:", err=True)
        for entry in entries:
            click.echo(f"  {entry.name}", err=True)
        click.echo(
            "every consent record, audit record, tag, object, faceprint and log of this stack "
            "(privacy officers' keys in officers/ and external services set in settings are kept)",
            err=True,
        )
        click.confirm("delete them?", abort=True, err=True)
    for name, was_running in down(settings):
        if was_running:
            click.echo(f"{name:<10} stopped")
    deleted = reset(data_dir)
    click.echo(f"reset {data_dir}: {len(deleted)} entries deleted")


COMMANDS = [reset_command]
