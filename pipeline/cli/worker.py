"""``facegate worker``: one pipeline worker (all stages; scale out by starting more)."""

from __future__ import annotations

import click

from ..settings import forget_secrets_file, get_settings


@click.command()
@click.option("--name", default="worker-1", show_default=True, help="Stable name: keys its gallery replica.")
def worker(name: str) -> None:
    """Run the stream agents: recognize, consent join, assemble, MinIO event normaliser."""
    from ..app import run_worker

    settings = get_settings()
    forget_secrets_file()
    run_worker(settings, name)


COMMANDS = [worker]
