"""The notify bridge: object-store webhook notifications -> AssetUploaded on facegate.assets.

SeaweedFS (the embedded object store) has no S3 bucket notifications; its filer posts JSON
events to a webhook instead. This small aiohttp server receives them (and MinIO's S3-event
webhooks, same normalisation), turns each into an AssetUploaded and produces it, key
asset_id, with an idempotent producer.

Delivery: SeaweedFS 4.48 posts each event once; a non-2xx answer only lands the event in
weed's log as a dead letter (its retry middleware sits behind the poison queue). So the bridge
never refuses an event because Kafka is away: librdkafka keeps it queued and retries without a
deadline (``message.timeout.ms=0``) until the broker takes it, and ``/healthz`` reports 503
meanwhile. Only a full local queue answers 503. A notification that cannot be understood goes
to the DLQ topic with headers error_class, error_message, stage, source; it never stops the
bridge. Repeats of an object version (asset_id, etag) are dropped by a bounded LRU.

Run: ``python -m pipeline.ingest.bridge --host 127.0.0.1 --port 8765`` (``facegate up`` does).
Endpoints: POST /hook, GET /healthz, GET /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import metrics
from ..contract import AssetUploaded
from ..logs import configure_logging
from ..settings import Settings, get_settings
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
        self.fatal: str | None = None
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)

    def start(self) -> None:
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._poller.join(timeout=2.0)
        left = self.producer.flush(timeout_s)
        if left:
            log.error("bridge stopping with %d notifications not yet delivered to Kafka", left)

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

    def publish(self, asset: AssetUploaded) -> None:
        self.producer.produce(
            self.settings.kafka.topic_assets,
            key=asset.asset_id.encode(),
            value=asset.to_bytes(),
            on_delivery=self._delivered,
        )

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
            if isinstance(outcome, Ignored):
                metrics.NOTIFICATIONS_IGNORED.labels(source=source, reason=outcome.reason).inc()
                continue
            if self.recent.seen(outcome):
                metrics.NOTIFICATIONS_DEDUPLICATED.labels(source=source).inc()
                metrics.ASSETS_PROCESSED.labels(stage=STAGE, outcome=metrics.Outcome.SKIPPED.value).inc()
                continue
            try:
                self.publish(outcome)
            except BufferError:
                self.recent.forget(outcome)
                log.error(
                    "local Kafka queue full; refusing notification", extra={"asset_id": outcome.asset_id}
                )
                return web.json_response({"error": "local queue full"}, status=503)
            published += 1
            metrics.ASSETS_PROCESSED.labels(stage=STAGE, outcome=metrics.Outcome.OK.value).inc()
            log.info(
                "asset notified", extra={"asset_id": outcome.asset_id, "stage": STAGE, "kind": outcome.kind}
            )
        return web.json_response({"published": published})

    async def healthz(self, request: web.Request) -> web.Response:
        if self.fatal:
            return web.json_response({"kafka": self.fatal}, status=503)
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
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    bridge = Bridge(settings, Producer(producer_config(settings)))
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
