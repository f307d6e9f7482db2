"""``facegate up``, ``facegate down``, ``facegate status``: the embedded stack."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType

import click

from ..officers import first_officer_notice
from ..settings import get_settings
from ..stack import CRASHED, UNHEALTHY, UNREACHABLE, UP, down, status, up


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command("up")
@click.option("--json", "as_json", is_flag=True, help="Print the endpoints as one JSON object.")
@click.option(
    "--show-secrets", is_flag=True, help="With --json: include the S3 secret key (left out by default)."
)
@click.option(
    "--no-workers",
    is_flag=True,
    help="Infrastructure only (FACEGATE_STACK__WORKERS=false): no pipeline workers.",
)
def up_command(as_json: bool, show_secrets: bool, no_workers: bool) -> None:
    """Start the embedded stack (or check the running one); every part healthy on return."""
    # A SIGTERM (a CI timeout, a service manager) unwinds like Ctrl-C: `up` then stops what it
    # had started instead of leaving it half-started.
    signal.signal(signal.SIGTERM, _terminate)
    settings = get_settings()
    if no_workers:
        settings = settings.model_copy(update={"stack": settings.stack.model_copy(update={"workers": False})})
    endpoints = up(settings)
    if endpoints.officer_created:
        click.echo(f"note: {first_officer_notice(Path(endpoints.officer_created))}", err=True)
    if as_json:
        click.echo(json.dumps(endpoints.to_json(show_secrets=show_secrets), sort_keys=True))
        return
    scheme = "https" if endpoints.s3_secure else "http"
    lines = [
        ("data dir", endpoints.data_dir),
        ("kafka", endpoints.kafka_bootstrap),
        ("s3", f"{scheme}://{endpoints.s3_endpoint}  bucket {endpoints.bucket}"),
        ("triton http", endpoints.triton_http or "-"),
        ("triton grpc", endpoints.triton_grpc or "-"),
        ("qdrant", endpoints.qdrant_url or f"in each worker, in memory ({endpoints.qdrant_path})"),
    ]
    lines += [(f"metrics {name}", url) for name, url in sorted(endpoints.metrics.items())]
    for label, value in lines:
        click.echo(f"{label:<16} {value}")
    if not endpoints.triton_model_loaded:
        click.echo(
            f"note: model {endpoints.triton_model} is not in the model repository; run `make models`",
            err=True,
        )


@click.command("down")
def down_command() -> None:
    """Stop every process `facegate up` started (by pid, never by name)."""
    stopped = down(get_settings())
    if not stopped:
        click.echo("nothing to stop")
    for name, was_running in stopped:
        click.echo(f"{name:<10} {'stopped' if was_running else 'was not running'}")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the parts as one JSON object.")
def status_command(as_json: bool) -> None:
    """Each part: up, down, crashed, unhealthy or unreachable. Exit code 1 unless all started parts are up."""
    parts = status(get_settings())
    if as_json:
        click.echo(json.dumps({p.name: p.to_json() for p in parts}, sort_keys=True))
    else:
        for p in parts:
            pid = f"pid {p.pid}" if p.pid else ""
            click.echo(f"{p.name:<10} {p.status:<10} {p.mode:<9} {pid:<11} {p.detail}")
    if any(p.status in (CRASHED, UNHEALTHY, UNREACHABLE) for p in parts) or all(
        p.status != UP for p in parts
    ):
        sys.exit(1)


COMMANDS = [up_command, down_command, status_command]
