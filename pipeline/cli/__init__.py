"""The ``facegate`` command. Each concern registers its commands from its own module."""

from __future__ import annotations

import sys

import click

from ..errors import FacegateError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """facegate: ingest-time face recognition gated by GDPR Art. 9 consent."""


def _register() -> None:
    # Imported here so that `facegate --help` stays the one place that lists them all.
    from . import access, gallery, ingest, officers, privacy, reset, stack, tail, worker

    for module in (stack, reset, worker, ingest, tail, privacy, officers, access, gallery):
        for command in module.COMMANDS:
            cli.add_command(command)


def main() -> None:
    _register()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except FacegateError as exc:
        # Operator errors: one line naming the part and what to do, no traceback.
        click.echo(f"facegate: {exc}", err=True)
        sys.exit(exc.exit_code)
