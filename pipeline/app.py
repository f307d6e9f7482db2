"""The faust app: the only module that wires stages to topics.

    facegate.assets ─> recognize ──> facegate.asset-events (FaceObservations, key asset_id)
                      │         └──> facegate.subject-events (MatchCandidate, key subject_id)
                      └─ FRAME assets ─> facegate.frames (key video_id) ─> recognize-frames (as above)
    facegate.consent + facegate.enrollments ─> admit ──> facegate.subject-events (re-keyed)
    facegate.subject-events ─> join (tables: subjects, subject-assets)
                    ──> facegate.asset-events (SubjectDecision), facegate.gallery, facegate.audit,
                        facegate.purges
    facegate.asset-events ─> assemble (table: assets) ──> facegate.tags
                                                     └──> facegate.subject-events (RevocationApplied)
    facegate.object-events (MinIO S3 events) ─> normalise ──> facegate.assets

Every topic carries raw bytes in the Avro single object encoding; the stages decode them, so a
malformed record is dead-lettered by the stage instead of crashing faust's deserializer.
Tables hold JSON state (boxes, ids, consent) and never embeddings, because a table's changelog
is a Kafka topic.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust

from . import metrics
from .assemble import AssetAssembly, assemble
from .audit import AuditAction, AuditChain, ChainHead
from .consent import policy
from .contract import AssetKind, AssetUploaded, ContractError, Record, decode, utcnow
from .contract.internal import (
    ConsentReview,
    ErasureRequest,
    FaceObservations,
    MatchCandidate,
    RevocationApplied,
    SubjectDecision,
)
from .errors import PermanentError
from .gallery import GalleryIndex, open_gallery
from .gallery.sync import GallerySync
from .inference import TritonFaceClient
from .ingest.notifications import MalformedNotification, Scope, normalise
from .join.ledger import AssetLedger
from .join.service import ConsentJoin, Effects, InvalidConsent
from .join.subject import SubjectRecord
from .lag import LagMonitor
from .objects import ObjectStore, s3_client
from .recognize.stage import RecognizeStage
from .settings import Settings
from .vault import open_vault

log = logging.getLogger(__name__)

_AUDIT_KEY = "\x00audit-chain:{partition}"  # the join's audit chain head, kept in its own table


@dataclass
class Services:
    """Clients the stages share inside one worker process."""

    store: ObjectStore
    analyzer: TritonFaceClient
    gallery: GalleryIndex
    recognize: RecognizeStage
    join: ConsentJoin


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

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=k.partitions)

    assets_topic = topic(k.topic_assets)
    tags_topic = topic(k.topic_tags)
    dlq_topic = topic(k.topic_dlq)
    audit_topic = topic(k.topic_audit)
    asset_events = topic(k.topic_asset_events)
    subject_events = topic(k.topic_subject_events)
    frames_topic = topic(k.topic_frames)
    by_name = {t.get_topic_name(): t for t in (tags_topic, audit_topic, asset_events, subject_events)}
    for extra in (k.topic_purges, k.topic_gallery):
        by_name[extra] = topic(extra)
    # Consent changes and enrollments come from other systems, whose producers may partition by
    # another hash than faust's (librdkafka's default is CRC32, Kafka's Java client murmur2).
    # The admit agent re-keys them onto subject-events, so that everything about one subject is
    # in one partition, in order, whatever produced it.
    external_subject_input = app.topic(
        k.topic_consent, k.topic_enrollments, key_type=bytes, value_type=bytes, partitions=k.partitions
    )

    subjects = app.Table("subjects", default=None, partitions=k.partitions)
    subject_assets = app.Table("subject-assets", default=None, partitions=k.partitions)  # join/ledger.py
    asset_states = app.Table("assets", default=None, partitions=k.partitions)
    services: dict[str, Services] = {}

    # --- plumbing -----------------------------------------------------------------------------

    async def send(topic_name: str, key: str, record: Record, *, wait: bool = False) -> None:
        future = await by_name[topic_name].send(key=key.encode(), value=record.to_bytes())
        if wait:  # delivered before what follows is sent (revocation before its acknowledgement)
            await future

    async def dead_letter(event: faust.EventT, exc: BaseException, stage: str) -> None:
        message = event.message
        origin = _origin(event)
        headers = {
            "error_class": type(exc).__name__,
            "error_message": str(exc)[:2000],
            "stage": stage,
            "source_topic": origin.get("origin_topic", message.topic),
            "source_partition": origin.get("origin_partition", str(message.partition)),
            "source_offset": origin.get("origin_offset", str(message.offset)),
        }
        await dlq_topic.send(
            key=event.key or b"",
            value=event.value if isinstance(event.value, bytes) else b"",
            headers={h: v.encode() for h, v in headers.items()},
        )
        metrics.DLQ_RECORDS.labels(error_class=type(exc).__name__, stage=stage).inc()
        log.warning(
            "dead-lettered: %s: %s",
            type(exc).__name__,
            exc,
            extra={"stage": stage, "asset_id": _text(event.key)},
        )

    async def unexpected(event: faust.EventT, exc: BaseException, stage: str) -> None:
        # A bug, not bad input: keep the record (DLQ) and the traceback (log), and go on.
        log.error("unexpected failure in %s:\n%s", stage, traceback.format_exc(), extra={"stage": stage})
        await dead_letter(event, exc, stage)

    def svc() -> Services:
        """The worker's clients, opened on first use inside the event loop."""
        if "main" not in services:
            services["main"] = open_services()
        return services["main"]

    # --- lifecycle ----------------------------------------------------------------------------

    def open_services() -> Services:
        started = time.monotonic()
        analyzer = TritonFaceClient.from_settings(settings)
        store = ObjectStore(s3_client(settings), settings.recognition.max_object_bytes)
        gallery = open_gallery(settings, replica=worker_name)
        vault = open_vault(settings)
        stage = RecognizeStage(
            store,
            analyzer,
            gallery,
            settings.recognition,
            settings.qdrant.match_threshold,
            video=settings.video,
            batch_size=settings.triton.max_batch,
        )
        join = ConsentJoin(settings, vault, gallery, stage.reference_faces, store.remove)
        GallerySync(settings, gallery, vault, name=worker_name).start()
        LagMonitor(
            k.bootstrap or "",
            k.app_id,
            [
                k.topic_assets,
                k.topic_consent,
                k.topic_enrollments,
                k.topic_subject_events,
                k.topic_asset_events,
                k.topic_frames,
            ],
        ).start()
        # The first line of a worker's own after faust's "Ready": its clients are open.
        log.info("worker %s: services open in %.1f s", worker_name, time.monotonic() - started)
        return Services(store, analyzer, gallery, stage, join)

    @app.task
    async def start_services() -> None:
        svc()  # rebuild the gallery replica and start the lag monitor at boot, not at first event

    # --- recognize ----------------------------------------------------------------------------

    async def recognize_one(event: faust.EventT, *, frames_routed: bool) -> None:
        try:
            asset = AssetUploaded.from_bytes(event.value)
            if asset.kind is AssetKind.FRAME and asset.video_id and not frames_routed:
                # The tracks of frame samples live in the memory of one worker (never on a
                # topic): every frame of a video must reach the worker owning its video id.
                await frames_topic.send(
                    key=asset.video_id.encode(), value=event.value, headers=_forwarded(event)
                )
                return
            observations = await svc().recognize.observe(asset)
        except (ContractError, PermanentError) as exc:
            await dead_letter(event, exc, "recognize")
            metrics.ASSETS_PROCESSED.labels(stage="infer", outcome="dlq").inc()
            return
        except Exception as exc:  # a bug: see unexpected()
            await unexpected(event, exc, "recognize")
            return
        await send(k.topic_asset_events, asset.asset_id, observations)
        for subject_id, faces in sorted(observations.candidates().items()):
            best = max(f.similarity or 0.0 for f in faces)
            candidate = MatchCandidate(
                subject_id, asset.asset_id, asset.etag, [f.face_id for f in faces], best
            )
            await send(k.topic_subject_events, subject_id, candidate)
        metrics.ASSETS_PROCESSED.labels(stage="infer", outcome="ok").inc()

    @app.agent(assets_topic, concurrency=settings.recognition.in_flight, name="recognize")
    async def recognize(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await recognize_one(event, frames_routed=False)

    @app.agent(frames_topic, concurrency=settings.recognition.in_flight, name="recognize-frames")
    async def recognize_frames(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await recognize_one(event, frames_routed=True)

    @app.timer(60.0, name="forget-frame-tracks")
    async def forget_frame_tracks() -> None:
        svc().recognize.frames.expire()  # idle videos' track embeddings die in time, traffic or not

    # --- consent join -------------------------------------------------------------------------

    def audit_chain(partition: int) -> AuditChain:
        head = subjects.get(_AUDIT_KEY.format(partition=partition))
        return AuditChain(f"join-{partition}", head=ChainHead(*head) if head else None)

    def auditor(chain: AuditChain) -> Any:
        async def audit(action: AuditAction, **fields: Any) -> None:
            sealed = chain.append(action, **fields)
            key = sealed.subject_id or sealed.asset_id or ""
            await audit_topic.send(key=key.encode(), value=sealed.to_bytes())
            metrics.AUDIT_RECORDS.labels(action=str(action)).inc()

        return audit

    @app.agent(external_subject_input, name="admit")
    async def admit(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            subject_id = _text(event.key)
            try:
                record = decode(event.value)
                if not subject_id or getattr(record, "subject_id", None) != subject_id:
                    raise ContractError(f"key {subject_id!r} is not the record's subject_id")
            except ContractError as exc:
                if message.topic == k.topic_consent:
                    exc = ContractError(policy.contract_error_reason(exc))
                await dead_letter(event, exc, "admit")
                continue
            await subject_events.send(key=event.key, value=event.value, headers=_forwarded(event))

    @app.agent(subject_events, name="join")
    async def join(stream: faust.StreamT) -> None:
        async for event in stream.events():
            partition = event.message.partition
            subject_id = _text(event.key)
            try:
                record = decode(event.value)
                if getattr(record, "subject_id", None) != subject_id:
                    raise ContractError(f"key {subject_id!r} is not the record's subject_id")
            except ContractError as exc:
                await dead_letter(event, exc, "join")
                continue
            saved = subjects.get(subject_id)
            ledger = AssetLedger(subject_assets, subject_id)
            state = SubjectRecord.from_dict(saved, ledger) if saved else SubjectRecord(subject_id, ledger)
            chain = audit_chain(partition)
            fx = Effects(send=_sender(send), audit=auditor(chain), now=utcnow())
            try:
                await svc().join.handle(state, record, fx)
            except (InvalidConsent, PermanentError) as exc:
                await dead_letter(event, exc, "join")
            except Exception as exc:  # a bug: see unexpected()
                await unexpected(event, exc, "join")
                continue
            subjects[subject_id] = state.to_dict()
            if chain.head is not None:
                subjects[_AUDIT_KEY.format(partition=partition)] = list(chain.head)
            metrics.CONSENT_TABLE_SUBJECTS.set(_subject_count(subjects))

    # --- assemble -----------------------------------------------------------------------------

    @app.agent(asset_events, name="assemble")
    async def assembler(stream: faust.StreamT) -> None:
        async for event in stream.events():
            asset_id = _text(event.key)
            try:
                record = decode(event.value)
                if not isinstance(record, FaceObservations | SubjectDecision):
                    raise ContractError(f"{type(record).__name__} does not belong on asset events")
            except ContractError as exc:
                await dead_letter(event, exc, "assemble")
                continue
            saved = asset_states.get(asset_id)
            state = AssetAssembly.from_dict(saved) if saved else AssetAssembly(asset_id)
            tags = assemble(state, record)
            revocation = isinstance(record, SubjectDecision) and record.purge_id is not None
            if tags is not None:
                await send(k.topic_tags, asset_id, tags, wait=revocation)
                if state.observations is not None and not revocation:
                    lag = (tags.processed_at - state.observations.uploaded_at).total_seconds()
                    metrics.UPLOAD_TO_TAG.labels(kind=tags.kind.value.lower()).observe(max(0.0, lag))
                metrics.ASSETS_PROCESSED.labels(stage="tag", outcome="ok").inc()
            if revocation:
                assert isinstance(record, SubjectDecision) and record.purge_id is not None
                ack = RevocationApplied(record.subject_id, asset_id, record.purge_id)
                await send(k.topic_subject_events, record.subject_id, ack)
            asset_states[asset_id] = state.to_dict()

    # --- object-store events from MinIO (production) ------------------------------------------

    scope = Scope(bucket=settings.s3.bucket, prefix=settings.s3.prefix)

    @app.agent(topic(k.topic_object_events), name="normalise")
    async def normalise_events(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                outcomes = normalise(_json(event.value), scope)
            except (MalformedNotification, ValueError) as exc:
                await dead_letter(event, exc, "notify")
                continue
            for outcome in outcomes:
                if isinstance(outcome, AssetUploaded):
                    await send(k.topic_assets, outcome.asset_id, outcome)
                    metrics.NOTIFICATIONS_RECEIVED.labels(source="minio").inc()

    by_name[k.topic_assets] = assets_topic

    # --- expiry -------------------------------------------------------------------------------

    @app.timer(settings.privacy.expiry_check_interval_s, name="expiry")
    async def expiry() -> None:
        now = utcnow()
        window = timedelta(days=settings.privacy.amber_window_days)
        states = [
            policy.ConsentState.from_dict(v["consent"])
            for key, v in list(subjects.items())
            if not str(key).startswith("\x00") and v and v.get("consent")
        ]
        for state in policy.due_for_expiry(states, now):
            request = ErasureRequest(
                f"expiry:{state.subject_id}:{state.valid_until}",
                state.subject_id,
                policy.PurgeReason.EXPIRED,
                now,
                "facegate-expiry-timer",
            )
            await send(k.topic_subject_events, state.subject_id, request)
        for state in policy.due_for_expiry_warning(states, now, window):
            await send(
                k.topic_subject_events, state.subject_id, ConsentReview(state.subject_id, "amber_window", now)
            )

    return app


def _sender(send: Any) -> Any:
    async def plain(topic_name: str, key: str, record: Record) -> None:
        await send(topic_name, key, record)

    return plain


def _forwarded(event: faust.EventT) -> dict[str, bytes]:
    """Headers for a record re-keyed onto an internal topic: where it first arrived."""
    message = event.message
    origin = {
        "origin_topic": message.topic,
        "origin_partition": str(message.partition),
        "origin_offset": str(message.offset),
    }
    return {h: v.encode() for h, v in origin.items()}


def _origin(event: faust.EventT) -> dict[str, str]:
    """Where a record forwarded by the admit agent first arrived (for dead-letter headers)."""
    headers = event.headers or {}
    items = headers.items() if isinstance(headers, dict) else headers
    return {
        str(name): value.decode() if isinstance(value, bytes) else str(value)
        for name, value in items
        if str(name).startswith("origin_")
    }


def _subject_count(table: Any) -> int:
    return sum(1 for key in list(table.keys()) if not str(key).startswith("\x00"))


def _text(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="replace")
    return "" if key is None else str(key)


def _json(value: Any) -> Any:
    import json

    if not isinstance(value, bytes | str):
        raise MalformedNotification("notification is not JSON text")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise MalformedNotification(f"notification is not JSON: {exc}") from exc


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
