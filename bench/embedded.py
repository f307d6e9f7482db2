"""The embedded stack for the end-to-end parts: started like `facegate up`, watched, scraped.

``embedded_stack`` brings the stack up in a fresh temporary data dir on free ports (the same
code as ``facegate up``, as the integration fixture does) and takes it down afterwards; a
``before_workers`` callback runs while only the infrastructure is up (to seed the worker's
local Qdrant before the worker opens it). ``TopicTap`` reads topics on a thread and indexes
every message by key with the broker timestamp. ``photos_1024`` caches the test photos resized
to 1024 px on their long side.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from minio import Minio
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from pipeline.settings import Settings, StackSettings, get_settings
from pipeline.stack import WORKERS, Endpoints, down, up
from pipeline.stack import state as stack_state

from .harness import ROOT

PHOTOS = ROOT / "tests" / "data" / "photos"
CACHE = ROOT / ".cache" / "bench-photos"
LONG_SIDE = 1024


@dataclass(frozen=True)
class Photo:
    name: str
    jpeg: bytes


def photos_1024(under: Path = PHOTOS) -> list[Photo]:
    """Every photo under ``under``, as a JPEG 1024 px on its long side (cached in .cache/)."""
    out = []
    for path in sorted(p for p in under.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}):
        name = str(path.relative_to(PHOTOS))
        cached = CACHE / (name.replace("/", "__").rsplit(".", 1)[0] + ".jpg")
        if not cached.exists() or cached.stat().st_mtime < path.stat().st_mtime:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
            scale = LONG_SIDE / max(rgb.size)
            rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.LANCZOS)
            cached.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            rgb.save(buffer, "JPEG", quality=90)
            cached.write_bytes(buffer.getvalue())
        out.append(Photo(name, cached.read_bytes()))
    return out


@dataclass(frozen=True)
class Stack:
    endpoints: Endpoints
    settings: Settings

    def s3(self) -> Minio:
        e = self.endpoints
        return Minio(e.s3_endpoint, access_key=e.access_key, secret_key=e.secret_key, secure=e.s3_secure)

    @property
    def worker_metrics(self) -> str:
        return self.endpoints.metrics[WORKERS[0].name]

    def pids(self) -> dict[str, int]:
        """The pid of every process the stack started, by part name."""
        state = stack_state.load(Path(self.endpoints.data_dir))
        assert state is not None, "the stack's state file is gone"
        return {name: part.process.pid for name, part in state.parts.items() if part.process}

    def triton_version(self) -> str:
        import json

        with urllib.request.urlopen(f"http://{self.endpoints.triton_http}/v2", timeout=5) as reply:
            return str(json.load(reply).get("version", "unknown"))


def _settings(data_dir: Path, workers: bool) -> Settings:
    base = get_settings()
    repository = (
        base.model_repository if base.model_repository.is_absolute() else ROOT / base.model_repository
    )
    return base.model_copy(
        update={"data_dir": data_dir, "model_repository": repository, "stack": StackSettings(workers=workers)}
    )


@contextmanager
def embedded_stack(before_workers: Callable[[Stack], None] | None = None) -> Iterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="facegate-bench-"))
    settings = _settings(data_dir, workers=True)
    try:
        if before_workers is not None:
            infra = _settings(data_dir, workers=False)
            endpoints = up(infra)
            before_workers(Stack(endpoints, endpoints.settings(infra)))
        endpoints = up(settings)
        yield Stack(endpoints, endpoints.settings(settings))
    finally:
        down(settings)
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Seen:
    timestamp_ms: int  # the broker record's CreateTime (set by the producer, same clock as ours)
    value: bytes


@dataclass
class TopicTap:
    """Reads topics from the beginning on a thread; ``seen[topic][key]`` lists what arrived."""

    bootstrap: str
    topics: list[str]
    seen: dict[str, dict[str, list[Seen]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.seen = {t: {} for t in self.topics}
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
            }
        )
        metadata = self._consumer.list_topics(timeout=10).topics
        self._consumer.assign(
            [TopicPartition(t, p, 0) for t in self.topics for p in sorted(metadata[t].partitions)]
        )
        self._thread = threading.Thread(target=self._run, name="bench-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(500, 0.2):
                if message.error():
                    continue
                key = (message.key() or b"").decode()
                seen = Seen(message.timestamp()[1], message.value() or b"")
                with self.lock:
                    self.seen[str(message.topic())].setdefault(key, []).append(seen)

    def get(self, topic: str, key: str) -> list[Seen]:
        with self.lock:
            return list(self.seen[topic].get(key, ()))

    def wait(self, ready: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = ready()
            if found:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


@contextmanager
def tap(stack: Stack, topics: list[str]) -> Iterator[TopicTap]:
    watcher = TopicTap(stack.endpoints.kafka_bootstrap, topics)
    try:
        yield watcher
    finally:
        watcher.close()


class Uploader:
    """Puts objects with the minio SDK from a thread pool; remembers when each upload started."""

    def __init__(self, stack: Stack, threads: int = 8) -> None:
        self.client = stack.s3()
        self.bucket = stack.endpoints.bucket
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="bench-upload")
        self.started: dict[str, float] = {}  # asset_id -> time.time() when its upload began

    def put(self, key: str, data: bytes, bucket: str | None = None) -> str:
        bucket = bucket or self.bucket
        asset_id = f"{bucket}/{key}"
        self.started[asset_id] = time.time()
        self.client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="image/jpeg")
        return asset_id

    def submit(self, key: str, data: bytes) -> Any:
        return self.pool.submit(self.put, key, data)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def scrape_histogram(url: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of a histogram (summed over its labels) from a /metrics page."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def scrape_counter(url: str, name: str, **labels: str) -> float:
    """A counter's value (summed over the samples that carry ``labels``) from a /metrics page."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for sample in family.samples
        if sample.name == f"{name}_total" and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def histogram_quantiles(
    before: dict[float, float], after: dict[float, float], quantiles: tuple[float, ...] = (0.5, 0.99)
) -> dict[str, Any]:
    """Quantiles of what was observed between two scrapes, interpolated inside buckets (as
    Prometheus' histogram_quantile does)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    out: dict[str, Any] = {"count": int(total)}
    for q in quantiles:
        if not total:
            out[f"p{round(q * 100)}_s"] = None
            continue
        rank = q * total
        for i, (bound, count) in enumerate(zip(bounds, counts, strict=True)):
            if count >= rank:
                lower, below = (bounds[i - 1], counts[i - 1]) if i else (0.0, 0.0)
                if bound == float("inf"):  # beyond the top bucket: only a lower bound is known
                    out[f"p{round(q * 100)}_s"] = f">{lower:g}"
                else:
                    value = lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
                    out[f"p{round(q * 100)}_s"] = round(value, 3)
                break
    return out
