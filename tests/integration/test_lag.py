"""LagMonitor against the stack's real broker: committed offsets vs high watermarks."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline import metrics
from pipeline.lag import LagMonitor

pytestmark = pytest.mark.integration


def _lag_gauge(topic: str, partition: int) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "facegate_kafka_consumer_lag_records", {"topic": topic, "partition": str(partition)}
    )


def test_lag_follows_the_groups_commits(stack: Any) -> None:
    bootstrap = stack.kafka_bootstrap
    topic, group = f"observe-lag-{uuid.uuid4().hex[:8]}", f"observe-group-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=10)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        producer.produce(topic, key=b"k", value=b"%d" % i, partition=i % 2)
    assert producer.flush(10) == 0

    monitor = LagMonitor(bootstrap, group, [topic, f"{topic}-not-created"])
    try:
        # Nothing committed yet: every retained record is lag.
        assert monitor.poll_once() == {(topic, 0): 5, (topic, 1): 5}
        consumer = Consumer(stack.kafka_config(**{"group.id": group, "enable.auto.commit": False}))
        consumer.commit(
            offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 5)], asynchronous=False
        )
        consumer.close()
        assert monitor.poll_once() == {(topic, 0): 2, (topic, 1): 0}
        assert _lag_gauge(topic, 0) == 2
        assert _lag_gauge(topic, 1) == 0
    finally:
        monitor.stop()
