"""The notify bridge: object-store notifications -> AssetUploaded on facegate.assets.

SeaweedFS (the embedded object store) has no S3 bucket notifications. The bridge follows the
filer's metadata log instead (``filer.py``: ``weed filer.meta.tail`` from a persisted
checkpoint), so an upload made while the bridge was down, or while the broker was losing its
last second to a crash, is published when it is back, and nothing is published twice. It also
takes webhook posts on ``/hook`` (MinIO's S3-event webhooks, or a SeaweedFS filer webhook) with
the same normalisation. Each upload becomes an AssetUploaded, key asset_id, produced with an
idempotent producer.

Delivery: the bridge never refuses an event because Kafka is away: librdkafka keeps it queued
and retries without a deadline (``message.timeout.ms=0``) until the broker takes it, and
``/healthz`` reports 503 meanwhile (also while the filer subscription is down). On ``/hook``
only a full local queue answers 503; the filer log is simply read more slowly. A notification
that cannot be understood goes to the DLQ topic with headers error_class, error_message,
stage, source; it never stops the bridge. Repeats of an object version (asset_id, etag) are
dropped by a bounded LRU, seeded at start with what the assets topic already holds.

Run: ``python -m pipeline.ingest.bridge --host 127.0.0.1 --port 8765 [--filer HOST:PORT.GRPC
--state-dir DIR]`` (``facegate up`` does). Endpoints: POST /hook, GET /healthz, GET /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import metrics
from ..contract import AssetUploaded
from ..logs import configure_logging
from ..settings import Settings, get_settings
from .filer import READ_BACK_S, FilerTail, Watermark, recent_versions
from .notifications import (
    Ignored,
    MalformedNotification,
    RecentVersions,
    Scope,
    normalise,
    parse_notification,
    source_of,
)

log = logging.getLogger("facegate.bridge")

STAGE = metrics.Stage.NOTIFY.value


def producer_config(settings: Settings) -> dict[str, Any]:
    if not settings.kafka.bootstrap:
        raise SystemExit("bridge: FACEGATE_KAFKA__BOOTSTRAP is not set")
    return {
        "bootstrap.servers": settings.kafka.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": 0,  # no deadline: keep retrying until the broker has it
        # Topics are created by the application with their configuration, never implicitly.
        "allow.auto.create.topics": False,
        "client.id": "facegate-bridge",
        "logger": logging.getLogger("facegate.bridge.kafka"),
    }


class Bridge:
    def __init__(self, settings: Settings, producer: Producer, dedup_capacity: int = 10_000) -> None:
        self.settings = settings
        self.scope = Scope(bucket=settings.s3.bucket, prefix=settings.s3.prefix)
        self.producer = producer
        self.recent = RecentVersions(dedup_capacity)
        self._recent_lock = threading.Lock()  # the webhook (event loop) and the filer tail thread
        self.fatal: str | None = None
        self.tail: FilerTail | None = None
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)

    def follow_filer(self, weed: Path, filer: str, state_dir: Path) -> None:
        """Take uploads from the filer's metadata log, from where the last run left off."""
        state_dir.mkdir(parents=True, exist_ok=True)
        watermark = Watermark(state_dir / "checkpoint.json")
        self.tail = FilerTail(weed, filer, f"/buckets/{self.scope.bucket}/", watermark, self.from_filer)

    def start(self) -> None:
        self._poller.start()
        if self.tail is not None:
            threading.Thread(target=self._resume, name="filer-resume", daemon=True).start()

    def _resume(self) -> None:
        """Learn what the assets topic already holds since the checkpoint, then follow the filer."""
        assert self.tail is not None
        checkpoint = self.tail.watermark.checkpoint_ns
        since_ms = None if checkpoint is None else int(checkpoint / 1e6 - READ_BACK_S * 1000)
        config = {"bootstrap.servers": self.settings.kafka.bootstrap, "group.id": "facegate-bridge"}
        while not self._stop.is_set():
            try:
                held = recent_versions(config, self.settings.kafka.topic_assets, since_ms)
                break
            except KafkaException as exc:
                log.warning("bridge: cannot read back %s yet (%s)", self.settings.kafka.topic_assets, exc)
                self._stop.wait(1.0)
        else:
            return
        with self._recent_lock:
            self.recent = RecentVersions(max(self.recent.capacity, 2 * len(held)))
            for asset_id, etag in sorted(held):
                self.recent.remember(asset_id, etag)
        log.info("bridge: %d uploads already on the topic; following the filer", len(held))
        self.tail.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)
            if self.tail is not None:
                self.tail.watermark.save()

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self.tail is not None:
            self.tail.close()
        self._poller.join(timeout=2.0)
        left = self.producer.flush(timeout_s)
        if left:
            log.error("bridge stopping with %d notifications not yet delivered to Kafka", left)
        if self.tail is not None:
            self.tail.watermark.save()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        log.error(
            "notification not delivered to Kafka",
            extra={"topic": msg.topic(), "error_class": err.name(), "stage": STAGE},
        )
        if err.fatal():
            self.fatal = err.str()

    def dead_letter(self, body: bytes, exc: Exception, source: str) -> None:
        error_class = type(exc).__name__
        metrics.DLQ_RECORDS.labels(error_class=error_class, stage=STAGE).inc()
        metrics.ASSETS_PROCESSED.labels(stage=STAGE, outcome=metrics.Outcome.DLQ.value).inc()
        log.warning(
            "malformed notification dead-lettered: %s",
            exc,
            extra={"error_class": error_class, "stage": STAGE},
        )
        headers: dict[str, str | bytes | None] = {
            "error_class": error_class,
            "error_message": str(exc)[:1000],
            "stage": STAGE,
            "source": f"webhook:{source}",
        }
        try:
            self.producer.produce(
                self.settings.kafka.topic_dlq, value=body, headers=headers, on_delivery=self._delivered
            )
        except (BufferError, KafkaException) as produce_error:
            log.error("cannot dead-letter a malformed notification: %s", produce_error)

    def publish(self, asset: AssetUploaded, settle: Any = None) -> None:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            self._delivered(err, msg)
            if err is None and settle is not None:
                settle()

        self.producer.produce(
            self.settings.kafka.topic_assets,
            key=asset.asset_id.encode(),
            value=asset.to_bytes(),
            on_delivery=delivered,
        )

    def _fresh(self, outcome: Ignored | AssetUploaded, source: str) -> AssetUploaded | None:
        """The outcome if it is a new object version to publish; counted either way."""
        if isinstance(outcome, Ignored):
            metrics.NOTIFICATIONS_IGNORED.labels(source=source, reason=outcome.reason).inc()
            return None
        with self._recent_lock:
            seen = self.recent.seen(outcome)
        if seen:
            metrics.NOTIFICATIONS_DEDUPLICATED.labels(source=source).inc()
            metrics.ASSETS_PROCESSED.labels(stage=STAGE, outcome=metrics.Outcome.SKIPPED.value).inc()
            return None
        return outcome

    def _published(self, asset: AssetUploaded) -> None:
        metrics.ASSETS_PROCESSED.labels(stage=STAGE, outcome=metrics.Outcome.OK.value).inc()
        log.info("asset notified", extra={"asset_id": asset.asset_id, "stage": STAGE, "kind": asset.kind})

    def from_filer(self, notification: dict[str, Any], entry: list[Any]) -> None:
        """One event of the filer's metadata log (the tail thread); blocks while the queue is full."""
        assert self.tail is not None
        settle = functools.partial(self.tail.watermark.settle, entry)
        metrics.NOTIFICATIONS_RECEIVED.labels(source="seaweedfs").inc()
        try:
            outcomes = normalise(notification, self.scope)
        except MalformedNotification as exc:
            self.dead_letter(json.dumps(notification).encode(), exc, "seaweedfs")
            settle()
            return
        fresh = [a for a in (self._fresh(o, "seaweedfs") for o in outcomes) if a is not None]
        if not fresh:
            settle()
        for asset in fresh:
            while not self._stop.is_set():
                try:
                    self.publish(asset, settle)
                    break
                except BufferError:
                    time.sleep(0.1)  # the local queue is full: read the log more slowly
            self._published(asset)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        source = "unknown"
        try:
            payload = parse_notification(body)
            source = source_of(payload)
            outcomes = normalise(payload, self.scope)
        except (ValueError, MalformedNotification) as exc:
            metrics.NOTIFICATIONS_RECEIVED.labels(source=source).inc()
            self.dead_letter(body, exc, source)
            # Not a delivery failure: answering 2xx keeps MinIO from redelivering it forever.
            return web.json_response({"dead_lettered": 1})
        metrics.NOTIFICATIONS_RECEIVED.labels(source=source).inc()
        published = 0
        for outcome in outcomes:
            asset = self._fresh(outcome, source)
            if asset is None:
                continue
            try:
                self.publish(asset)
            except BufferError:
                with self._recent_lock:
                    self.recent.forget(asset)
                log.error("local Kafka queue full; refusing notification", extra={"asset_id": asset.asset_id})
                return web.json_response({"error": "local queue full"}, status=503)
            published += 1
            self._published(asset)
        return web.json_response({"published": published})

    async def healthz(self, request: web.Request) -> web.Response:
        if self.fatal:
            return web.json_response({"kafka": self.fatal}, status=503)
        if self.tail is not None and not self.tail.running:
            return web.json_response({"filer": "not subscribed to the filer's metadata log"}, status=503)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                None, lambda: self.producer.list_topics(self.settings.kafka.topic_assets, timeout=0.5)
            )
        except KafkaException as exc:
            return web.json_response({"kafka": str(exc), "queued": len(self.producer)}, status=503)
        return web.json_response({"kafka": "ok", "queued": len(self.producer)})

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/hook", self.hook)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_page)

        async def on_cleanup(_: web.Application) -> None:
            await asyncio.get_running_loop().run_in_executor(None, self.close)

        app.on_cleanup.append(on_cleanup)
        return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.ingest.bridge", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--filer", help="follow this SeaweedFS filer's metadata log (host:port.grpcPort)")
    parser.add_argument("--state-dir", type=Path, help="where the filer checkpoint is kept (with --filer)")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    bridge = Bridge(settings, Producer(producer_config(settings)))
    if args.filer:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None or args.state_dir is None:
            raise SystemExit("bridge: --filer needs the `weed` binary and --state-dir")
        bridge.follow_filer(Path(weed), args.filer, args.state_dir)
    bridge.start()
    log.info(
        "bridge listening", extra={"host": args.host, "port": args.port, "topic": settings.kafka.topic_assets}
    )
    # No access log: the stack's health checks would fill it.
    web.run_app(
        bridge.app(), host=args.host, port=args.port, print=None, handle_signals=True, access_log=None
    )


if __name__ == "__main__":
    main()
