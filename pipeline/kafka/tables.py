"""faust tables whose changelog writes can be awaited.

faust sends a table's changelog records from a buffer and flushes it before it commits an input
offset, but nothing tells the writer when (or whether) they arrived. The stages apply their
state at the end of an event and wait for exactly those records (``acknowledged``), so that an
event is never acknowledged before its state is durable.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.types import CodecArg
from faust.types.tuples import FutureMessage

from ..topology import Table


class ChangelogTable(faust.Table):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unacknowledged: list[FutureMessage] = []

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> FutureMessage:
        sent = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self._unacknowledged.append(sent)
        return sent

    async def acknowledged(self) -> None:
        """Wait for every changelog record written so far (raises the first delivery error)."""
        sent, self._unacknowledged = self._unacknowledged, []
        if sent:
            await asyncio.gather(*sent)


def changelog_table(app: faust.App, table: Table, partitions: int) -> ChangelogTable:
    """The faust table a topology Table declares (its changelog: ``<app_id>-<name>-changelog``)."""
    created = ChangelogTable(
        app, name=table.name, default=None, beacon=app.tables.beacon, partitions=partitions, help=table.about
    )
    app.tables.add(created)
    return created
