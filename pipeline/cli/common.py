"""What the producer/consumer commands share: where the stack is, and how to talk to it."""

from __future__ import annotations

import getpass
import os
from datetime import UTC, date, datetime

import click

from ..errors import StackError
from ..kafka.io import EventProducer
from ..settings import Settings, get_settings
from ..stack import resolve_settings
from ..topology import Topology


def connected_settings(*, kafka: bool = True, s3: bool = False) -> Settings:
    """The settings with the Kafka/S3 addresses filled in.

    An address set in the settings (FACEGATE_KAFKA__BOOTSTRAP, FACEGATE_S3__ENDPOINT) wins;
    otherwise the running embedded stack under settings.data_dir provides it.
    """
    base = get_settings()
    if (not kafka or base.kafka.bootstrap) and (not s3 or base.s3.endpoint):
        return base
    running = resolve_settings(base)
    settings = running.model_copy(
        update={
            "kafka": running.kafka.model_copy(
                update={"bootstrap": base.kafka.bootstrap or running.kafka.bootstrap}
            ),
            "s3": running.s3.model_copy(update={"endpoint": base.s3.endpoint or running.s3.endpoint}),
        }
    )
    if (kafka and not settings.kafka.bootstrap) or (s3 and not settings.s3.endpoint):
        where = base.data_dir.expanduser().resolve()
        raise StackError(f"no stack running under {where}; run `facegate up`")
    return settings


def bootstrap(settings: Settings) -> str:
    assert settings.kafka.bootstrap, "connected_settings(kafka=True) fills it"
    return settings.kafka.bootstrap


def producer(settings: Settings) -> EventProducer:
    return EventProducer(bootstrap(settings), topology=Topology(settings.kafka))


def operator() -> str:
    """Who is acting, when --by is not given: the login name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def parse_when(text: str) -> datetime:
    """A date (midnight UTC) or an ISO-8601 date-time (UTC unless it has an offset)."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD) or ISO-8601 date-time") from None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)  # Avro timestamp-millis


class When(click.ParamType):
    name = "DATE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)
