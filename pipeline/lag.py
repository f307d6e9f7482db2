"""Consumer lag of a consumer group, per topic and partition, into facegate_kafka_consumer_lag_records.

Lag is the partition's high watermark minus the group's committed offset (or minus the low
watermark while the group has committed nothing there). It is read the way an outside
observer would: a client with the group's id that never subscribes, so it fetches the
group's committed offsets without joining the group or triggering a rebalance.

    monitor = LagMonitor(bootstrap, group_id, topics)
    monitor.start()   # a daemon thread refreshing the gauge every interval_s
    ...
    monitor.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from . import metrics

__all__ = ["LagMonitor"]

log = logging.getLogger(__name__)


class StallWatch:
    """Partitions with records waiting whose committed offset has not moved for ``after_s``.

    Lag alone does not tell a busy worker from a stuck one; lag that stays put does. The log line
    it leads to names the partition, which is where an SRE starts.
    """

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._since: dict[tuple[str, int], tuple[int, float]] = {}  # partition -> (offset, unchanged since)
        self.stalled: set[tuple[str, int]] = set()

    def observe(
        self, now: float, offsets: dict[tuple[str, int], int], lags: dict[tuple[str, int], int]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """Returns (partitions that just stalled, partitions that moved again)."""
        stalled, resumed = [], []
        for tp, offset in offsets.items():
            seen = self._since.get(tp)
            if seen is None or seen[0] != offset or not lags.get(tp):
                self._since[tp] = (offset, now)
                if tp in self.stalled:
                    self.stalled.discard(tp)
                    resumed.append(tp)
            elif now - seen[1] >= self.after_s and tp not in self.stalled:
                self.stalled.add(tp)
                stalled.append(tp)
        return sorted(stalled), sorted(resumed)


class LagMonitor:
    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Iterable[str],
        *,
        interval_s: float = 5.0,
        timeout_s: float = 10.0,
        stall_after_s: float = 60.0,
    ) -> None:
        self.group_id = group_id
        self.topics = tuple(topics)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "enable.auto.commit": False,
                "client.id": f"facegate-lag-{group_id}",
            }
        )
        self._reported: set[tuple[str, str]] = set()
        self._stalls = StallWatch(stall_after_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _partitions(self) -> list[TopicPartition]:
        partitions: list[TopicPartition] = []
        for topic in self.topics:
            meta = self._consumer.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
            if meta is None or meta.error is not None:
                continue  # not created yet: no lag to report
            partitions.extend(TopicPartition(topic, p) for p in sorted(meta.partitions))
        return partitions

    def poll_once(self) -> dict[tuple[str, int], int]:
        """Read every partition's lag, set the gauge, and return {(topic, partition): lag}."""
        with self._lock:
            partitions = self._partitions()
            committed = self._consumer.committed(partitions, timeout=self.timeout_s) if partitions else []
            lags: dict[tuple[str, int], int] = {}
            offsets: dict[tuple[str, int], int] = {}
            for tp in committed:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=self.timeout_s, cached=False
                )
                start = tp.offset if tp.offset >= 0 else low
                lags[(tp.topic, tp.partition)] = max(high - start, 0)
                offsets[(tp.topic, tp.partition)] = start
            reported = {(topic, str(partition)) for topic, partition in lags}
            for labels in self._reported - reported:
                metrics.CONSUMER_LAG.remove(*labels)
            for (topic, partition), lag in lags.items():
                metrics.CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(lag)
            self._reported = reported
            self._report_stalls(offsets, lags)
            return lags

    def _report_stalls(self, offsets: dict[tuple[str, int], int], lags: dict[tuple[str, int], int]) -> None:
        stalled, resumed = self._stalls.observe(time.monotonic(), offsets, lags)
        for topic, partition in stalled:
            log.warning(
                "no progress on %s[%d] for %.0f s: %d record(s) waiting at offset %d",
                topic,
                partition,
                self._stalls.after_s,
                lags[(topic, partition)],
                offsets[(topic, partition)],
                extra={"stage": "lag"},
            )
        for topic, partition in resumed:
            log.info("progress again on %s[%d]", topic, partition, extra={"stage": "lag"})

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except KafkaException as exc:
                # The broker being away is what the lag alert is for; keep the last values.
                log.warning("consumer lag not read: %s", exc, extra={"stage": "lag"})
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"lag-{self.group_id}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + self.interval_s)
            self._thread = None
        with self._lock:
            self._consumer.close()
