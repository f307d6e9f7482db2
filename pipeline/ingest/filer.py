"""SeaweedFS's filer metadata log as the bridge's source of uploads, resumed from a checkpoint.

The filer keeps a log of every metadata change (in its own store, across restarts) and streams
it from any point in time: ``weed filer.meta.tail -timeAgo=D`` prints each change as a JSON
``SubscribeMetadataResponse`` with its ``tsNs``. Reading uploads from there instead of from the
filer's webhook (which posts each event once, and never again if the bridge was down) lets the
bridge resume exactly where it stopped: it persists the ``tsNs`` up to which every upload is in
Kafka, and asks the filer for what came after.

The checkpoint is held back by ``HOLD_BACK_S``: the embedded broker acknowledges a record
before it has saved it (it saves about once a second), so an upload is counted as safe only
once the broker has certainly saved it. After a broker crash the bridge restarts, replays the
last seconds and republishes what the broker lost; what it still holds is recognised by reading
the assets topic back (``recent_versions``), so nothing is published twice.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from ..contract import AssetUploaded, ContractError

log = logging.getLogger("facegate.bridge.filer")

# Longer than the embedded broker can take to save what it acknowledged (its save interval,
# about 1 s, plus a save of a large log, about 1.5 s at 100 MiB; see docs/durability.md).
HOLD_BACK_S = 10.0
# How far before the checkpoint the assets topic is read back to recognise what is there.
READ_BACK_S = 60.0
_INT_FIELDS = {"file_size", "mtime", "crtime", "modified_ts_ns", "size", "offset"}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _webhook_shape(value: Any, key: str = "") -> Any:
    """protojson (camelCase, int64 as text) -> the filer webhook's shape (snake_case, ints)."""
    if isinstance(value, Mapping):
        if key == "extended":  # header names: kept as they are
            return dict(value)
        return {_snake(k): _webhook_shape(v, _snake(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_webhook_shape(v, key) for v in value]
    if key in _INT_FIELDS and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def as_notification(event: Mapping[str, Any]) -> dict[str, Any]:
    """One metadata-log event as the filer webhook would have posted it (see notifications.py)."""
    directory = str(event.get("directory") or "")
    change = event.get("eventNotification") or {}
    old, new = change.get("oldEntry"), change.get("newEntry")
    parent = change.get("newParentPath") or directory
    message = {
        "old_entry": _webhook_shape(old) if old else None,
        "new_entry": _webhook_shape(new) if new else None,
        "new_parent_path": parent,
    }
    if not new:
        return {
            "event_type": "delete",
            "key": f"{directory}/{old.get('name', '') if old else ''}",
            "message": message,
        }
    if not old:
        event_type = "create"
    elif parent != directory or old.get("name") != new.get("name"):
        return {"event_type": "rename", "message": message}  # the key comes from new_parent_path
    else:
        event_type = "update"
    return {
        "event_type": event_type,
        "key": f"{directory.rstrip('/')}/{new.get('name', '')}",
        "message": message,
    }


def events(stream: IO[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects ``weed filer.meta.tail`` prints: indented, each closed by a ``}`` alone
    on a line. ValueError if one cannot be read (the caller resubscribes from its watermark)."""
    lines: list[str] = []
    for line in iter(stream.readline, ""):
        lines.append(line)
        if line.rstrip("\n") == "}":
            value = json.loads("".join(lines))
            lines = []
            if isinstance(value, dict):
                yield value


class Watermark:
    """Up to which filer time every event is in Kafka, and the checkpoint it allows.

    Events are registered in filer order and settled in any order (deliveries to several
    partitions); the watermark is the newest event with every older one settled.
    """

    def __init__(self, path: Path, hold_back_s: float = HOLD_BACK_S) -> None:
        self.path = path
        self.hold_back_s = hold_back_s
        self._lock = threading.Lock()
        self._pending: deque[list[Any]] = deque()  # [ts_ns, settled_at or None]
        self._settled: deque[tuple[int, float]] = deque()  # watermark steps not yet held long enough
        self.checkpoint_ns = self._load()
        self.watermark_ns = self.checkpoint_ns

    def _load(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text())["filer_ts_ns"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Replaying from the start is safe (what the topic holds is recognised): say so, go on.
            log.error(
                "bridge: unreadable checkpoint %s (%s): replaying the filer log from its start",
                self.path,
                exc,
            )
            return None

    def register(self, ts_ns: int) -> list[Any]:
        with self._lock:
            entry = [ts_ns, None]
            self._pending.append(entry)
            return entry

    def settle(self, entry: list[Any]) -> None:
        with self._lock:
            entry[1] = time.monotonic()
            while self._pending and self._pending[0][1] is not None:
                ts_ns, at = self._pending.popleft()
                if self.watermark_ns is None or ts_ns > self.watermark_ns:  # replays go back in time
                    self.watermark_ns = ts_ns
                    self._settled.append((ts_ns, at))

    def save(self, *, now: float | None = None) -> None:
        """Persist the newest watermark settled at least ``hold_back_s`` ago."""
        now = time.monotonic() if now is None else now
        with self._lock:
            safe = None
            while self._settled and now - self._settled[0][1] >= self.hold_back_s:
                safe = self._settled.popleft()[0]
        if safe is None or safe == self.checkpoint_ns:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"filer_ts_ns": safe}) + "\n")
        os.replace(tmp, self.path)
        self.checkpoint_ns = safe


def recent_versions(
    consumer_config: dict[str, Any], topic: str, since_ms: int | None
) -> set[tuple[str, str]]:
    """(asset_id, etag) of the AssetUploaded records on ``topic`` written from ``since_ms`` on
    (None: all of them). KafkaException if the broker does not answer."""
    consumer = Consumer({**consumer_config, "enable.auto.commit": False})
    found: set[tuple[str, str]] = set()
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
        starts = {p: low for p, (low, _) in ends.items()}
        if since_ms is not None:
            wanted = [TopicPartition(topic, p, since_ms) for p in partitions]
            for tp in consumer.offsets_for_times(wanted, timeout=10):
                # -1: nothing written at or after that time in this partition
                starts[tp.partition] = tp.offset if tp.offset >= 0 else ends[tp.partition][1]
        pending = {p for p in partitions if starts[p] < ends[p][1]}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in pending])
        deadline = time.monotonic() + 60
        while pending:
            if time.monotonic() > deadline:
                raise KafkaException(f"reading {topic} back did not reach its end within 60 s")
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            if offset + 1 >= ends[partition][1]:
                pending.discard(partition)
            try:
                asset = AssetUploaded.from_bytes(msg.value() or b"")
            except ContractError:
                continue
            found.add((asset.asset_id, asset.etag))
    finally:
        consumer.close()
    return found


@dataclass
class FilerTail:
    """Runs ``weed filer.meta.tail`` from the checkpoint on, and again whenever it exits."""

    weed: Path
    filer: str  # host:port.grpcPort
    path_prefix: str
    watermark: Watermark
    handle: Callable[[dict[str, Any], list[Any]], None]  # (notification, watermark entry)
    retry_s: float = 1.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self.running = False
        self._thread = threading.Thread(target=self._run, name="filer-tail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _argv(self) -> list[str]:
        since = self.watermark.watermark_ns
        # A second more than needed: events at or before the watermark are skipped below.
        ago = 87600 * 3600.0 if since is None else max(1.0, time.time() - since / 1e9 + 1.0)
        return [
            str(self.weed),
            "filer.meta.tail",
            f"-filer={self.filer}",
            f"-pathPrefix={self.path_prefix}",
            f"-timeAgo={ago:.3f}s",
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            since = self.watermark.watermark_ns
            self._proc = subprocess.Popen(
                self._argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
            )
            self.running = True
            assert self._proc.stdout is not None
            try:
                for event in events(self._proc.stdout):
                    ts_ns = int(event.get("tsNs") or 0)
                    if since is not None and ts_ns <= since:
                        continue
                    self.handle(as_notification(event), self.watermark.register(ts_ns))
                    since = ts_ns
            except (ValueError, TypeError) as exc:
                log.error("bridge: unreadable filer event (%s); resubscribing", exc)
            self.running = False
            self._proc.kill()
            error = (self._proc.stderr.read() if self._proc.stderr else "").strip()
            self._proc.wait()
            if not self._stop.is_set():
                log.warning(
                    "bridge: filer subscription ended (%s); again in %.0f s",
                    error[-300:] or "no reason",
                    self.retry_s,
                )
                self._stop.wait(self.retry_s)

    def close(self) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
        self._thread.join(timeout=5)
