"""The faust app: the only module that wires stages to topics.

What the topics are, and which stage reads each, is declared in ``pipeline.topology``; what a
stage does, in ``pipeline.stages``; how a stage runs on faust (acknowledgement order, error
policy), in ``pipeline.kafka.runner``. This module opens the worker's clients, builds the stages
from them and hands them to the runner.

Every topic carries raw bytes in the Avro single object encoding; the stages decode them, so a
malformed record is dead-lettered by the stage instead of crashing faust's deserializer.
Tables hold JSON state (boxes, ids, consent) and never embeddings, because a table's changelog
is a Kafka topic.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import faust

from . import metrics, topology
from .gallery import GalleryIndex, open_gallery
from .gallery.sync import GallerySync
from .inference import TritonFaceClient
from .ingest.notifications import Scope
from .join.references import ReferencePhotos
from .join.service import ConsentJoin
from .kafka.runner import StageRunner
from .kafka.tables import changelog_table
from .lag import LagMonitor
from .objects import ObjectStore, SeaweedVacuum, s3_client
from .recognize.stage import RecognizeStage
from .settings import Settings
from .stages import Admit, Assemble, Expiry, Join, Normalise, Recognize, RecognizeFrames
from .vault import FaceprintVault, open_vault

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Clients the stages share inside one worker process."""

    store: ObjectStore
    analyzer: TritonFaceClient
    gallery: GalleryIndex
    vault: FaceprintVault
    recognizer: RecognizeStage


def open_services(settings: Settings, worker_name: str) -> Services:
    analyzer = TritonFaceClient.from_settings(settings)  # connects on first use
    store = ObjectStore(s3_client(settings), settings.recognition.max_object_bytes)
    gallery = open_gallery(settings, replica=worker_name)
    recognizer = RecognizeStage(
        store,
        analyzer,
        gallery,
        settings.recognition,
        settings.qdrant.match_threshold,
        video=settings.video,
        batch_size=settings.triton.max_batch,
    )
    return Services(store, analyzer, gallery, open_vault(settings), recognizer)


def build_app(settings: Settings, worker_name: str = "worker-1") -> faust.App:
    k = settings.kafka
    if not k.bootstrap:
        raise ValueError("kafka.bootstrap is not set")
    app = faust.App(
        k.app_id,
        broker=f"kafka://{k.bootstrap}",
        store="memory://",  # tables recover from their changelog topics
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        table_standby_replicas=0,  # the expiry timer scans only the partitions it owns
        broker_session_timeout=10,  # noida-db refuses < 6 s
        # Static membership: a worker restarted under its name takes its partitions straight back
        # instead of waiting for the group to notice the old process is gone (noida-db never does).
        consumer_group_instance_id=f"{k.app_id}-{worker_name}" if k.static_membership else None,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,  # metrics are served by prometheus-client (pipeline/metrics.py)
        # stream_wait_empty stays True: on a rebalance or stop, events being processed finish first.
        # (False would cancel them, and faust acks a cancelled event: it would be lost.)
    )
    plan = topology.Topology(k)
    runner = StageRunner(app, plan)
    subjects = changelog_table(app, topology.SUBJECTS, k.partitions)
    subject_assets = changelog_table(app, topology.SUBJECT_ASSETS, k.partitions)
    asset_states = changelog_table(app, topology.ASSET_STATES, k.partitions)

    started = time.monotonic()
    services = open_services(settings, worker_name)
    opened_in = time.monotonic() - started
    photos = ReferencePhotos(services.store, services.vault, services.recognizer.faces_in_reference)
    join = ConsentJoin(
        settings,
        services.vault,
        services.gallery,
        photos.faces,
        services.store.remove,
        list_objects=services.store.keys,
        compact=SeaweedVacuum(settings.s3.vacuum_url) if settings.s3.vacuum_url else None,
        seal_reference=photos.seal,
    )
    in_flight = settings.recognition.in_flight
    runner.agent(Recognize(services.recognizer, concurrency=in_flight))
    runner.agent(RecognizeFrames(services.recognizer, concurrency=in_flight))
    runner.agent(Admit())
    runner.agent(Join(join, subjects, subject_assets))
    runner.agent(Assemble(asset_states))
    runner.agent(Normalise(Scope(bucket=settings.s3.bucket, prefix=settings.s3.prefix)))
    runner.timer(Expiry(subjects, settings.privacy))

    @app.timer(60.0, name="forget-frame-tracks")
    async def forget_frame_tracks() -> None:
        services.recognizer.frames.expire()  # idle videos' track embeddings die in time, traffic or not

    @app.task
    async def start_replicas() -> None:
        # Two consumers stay outside the stage model, on purpose. The gallery sync must read every
        # partition of the gallery topic, from the start, in every worker: a consumer group of its
        # own per worker, never committed — the opposite of a stage's partitioned, committed
        # input. The lag monitor must not join the workers' group at all (it would trigger
        # rebalances): it only reads the group's committed offsets. Both are threads because
        # they block on librdkafka; neither sends a record.
        GallerySync(settings, services.gallery, services.vault, name=worker_name).start()
        LagMonitor(k.bootstrap or "", k.app_id, plan.consumed()).start()
        log.info("worker %s: services open (in %.1f s), gallery sync started", worker_name, opened_in)

    return app


class _Worker(faust.Worker):
    async def on_startup_finished(self) -> None:
        # Partitions assigned, tables recovered, streams resumed: what `facegate up` waits for
        # (the metrics endpoint answers long before) and what a readiness probe should read.
        await super().on_startup_finished()
        metrics.WORKER_READY.set(1)


def run_worker(settings: Settings, worker_name: str) -> None:
    """Run one worker until SIGTERM: the faust agents plus the metrics endpoint."""
    from .kafka import ensure_topics
    from .logs import configure_logging, dict_config

    configure_logging(settings.log_level)
    ensure_topics(settings)
    port = metrics.serve(settings.metrics.host, settings.metrics.port)
    app = build_app(settings, worker_name)
    # faust replaces the root handlers when it starts: give it ours (JSON lines, redaction filter).
    worker = _Worker(
        app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        logging_config=dict_config(settings.log_level),
    )
    log.info("worker %s: metrics on %s:%d", worker_name, settings.metrics.host, port)
    started = time.monotonic()
    try:
        worker.execute_from_commandline()
    finally:
        log.info("worker %s stopped after %.0fs", worker_name, time.monotonic() - started)
