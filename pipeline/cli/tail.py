"""``facegate tail``: read a facegate topic, decoded."""

from __future__ import annotations

import click

from .. import topology
from ..kafka.io import Message, end_offsets, read_topic
from ..settings import Settings
from . import render
from .common import bootstrap, connected_settings

# What `tail` can read: the contract's topics that carry facegate records (and the DLQ).
STREAMS = {
    "tags": topology.TAGS,
    "purges": topology.PURGES,
    "dlq": topology.DLQ,
    "audit": topology.AUDIT,
    "assets": topology.ASSETS,
    "consent": topology.CONSENT,
    "enrollments": topology.ENROLLMENTS,
}


def topic_of(settings: Settings, stream: str) -> str:
    return topology.Topology(settings.kafka).name(STREAMS[stream])


def lines_for(stream: str, topic: str, message: Message, as_json: bool) -> list[str]:
    """What ``tail`` prints for one message."""
    if stream == "dlq" and not as_json:
        # A dead letter is the original bytes, which may well not decode: show the headers.
        return render.dlq_text(message)
    record, error = render.try_decode(message.value)
    if as_json:
        return [render.dumps(render.message_json(topic, message, record, error))]
    if record is None:
        where = f"{message.partition}/{message.offset}"
        return [f"undecodable record at {where} key {message.key or '-'}: {error}"]
    return render.record_text(record)


@click.command("tail")
@click.argument("stream", type=click.Choice(sorted(STREAMS)))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per line (topic, partition, offset, key, record).",
)
@click.option(
    "--from-beginning",
    is_flag=True,
    help="With --follow, start at the oldest record instead of the current end.",
)
@click.option(
    "--follow/--no-follow",
    default=False,
    show_default=True,
    help="Keep waiting for new records instead of stopping at the current end.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="With --follow: stop after this long. Without: fail if the end is not reached in this "
    "long (default 60).",
)
@click.option(
    "--key", "keys", multiple=True, help="Only records with this key (repeatable): an asset or subject id."
)
def tail_command(
    stream: str,
    as_json: bool,
    from_beginning: bool,
    follow: bool,
    timeout_s: float | None,
    keys: tuple[str, ...],
) -> None:
    """Print the records of a topic: tags, purges, dlq, audit, assets, consent or enrollments.

    Reads every partition without joining a consumer group (the workers are not disturbed).
    Without --follow it prints the whole topic up to its current end and exits, so it can be
    used in scripts; with --follow it prints new records as they come (all of them first with
    --from-beginning).

    \b
      facegate tail tags                       current and past face tags per asset
      facegate tail dlq --json | jq .headers   why records were dead-lettered
      facegate tail purges --follow            erasure receipts as they happen
      facegate tail tags --key assets/a.jpg    the tags of one asset, oldest first
    """
    settings = connected_settings(kafka=True)
    topic = topic_of(settings, stream)
    start = None if from_beginning or not follow else end_offsets(bootstrap(settings), topic)
    limit = timeout_s if timeout_s is not None or follow else 60.0
    for message in read_topic(bootstrap(settings), topic, start=start, follow=follow, timeout_s=limit):
        if keys and message.key not in keys:
            continue
        for line in lines_for(stream, topic, message, as_json):
            click.echo(line)


COMMANDS = [tail_command]
