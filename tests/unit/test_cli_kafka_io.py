"""pipeline.kafka.io against a broker that is not there: one clear StackError, quickly."""

from __future__ import annotations

import socket

import pytest

from pipeline.errors import StackError
from pipeline.kafka.io import EventProducer, end_offsets, read_all


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_producer_check_names_the_unreachable_broker() -> None:
    address = _closed_port()
    with pytest.raises(StackError, match=f"kafka: cannot reach {address}") as info:
        EventProducer(address, timeout_s=1).check("facegate.consent")
    assert "\n" not in str(info.value)


def test_undelivered_records_fail_the_flush() -> None:
    producer = EventProducer(_closed_port(), timeout_s=1)
    producer.send("facegate.consent", "S-1", b"x")
    with pytest.raises(StackError, match=r"not delivered|delivery .* failed"):
        producer.flush()


def test_reader_names_the_unreachable_broker() -> None:
    address = _closed_port()
    with pytest.raises(StackError, match=f"kafka: cannot reach {address}"):
        read_all(address, "facegate.tags", metadata_timeout_s=1)
    with pytest.raises(StackError, match=f"kafka: cannot reach {address}"):
        end_offsets(address, "facegate.tags", timeout_s=1)
