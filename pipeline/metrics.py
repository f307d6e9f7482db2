"""Every Prometheus metric facegate exposes, in one registry, served on one page.

Names follow the Prometheus conventions: ``facegate_`` prefix, base units in the name
(``_seconds``), ``_total`` on counters. Labels take values from a small, fixed set (the
``Stage``/``Outcome`` enums below, exception class names, topic names and partition numbers);
an asset id, subject id, object key or person's name is never a label value.

| metric | type | labels | meaning |
|---|---|---|---|
| facegate_assets_processed_total | counter | stage, outcome | assets (image/video/frame) leaving a stage |
| facegate_frames_processed_total | counter | stage, outcome | frames sampled from videos leaving a stage |
| facegate_faces_processed_total | counter | stage, outcome | faces leaving a stage (join: green/amber/red) |
| facegate_upload_to_tag_seconds | histogram | kind | AssetUploaded.uploaded_at to AssetFaces emitted |
| facegate_triton_request_duration_seconds | histogram | outcome | one Triton request, retries included |
| facegate_triton_request_faces | histogram | | faces returned by one Triton request |
| facegate_triton_request_images | histogram | | images sent in one Triton request |
| facegate_qdrant_query_duration_seconds | histogram | operation | one Qdrant call: search, upsert, delete |
| facegate_kafka_consumer_lag_records | gauge | topic, partition | high watermark minus committed offset |
| facegate_dlq_records_total | counter | error_class, stage | records dead-lettered, by exception class |
| facegate_purges_total | counter | reason | subjects purged (withdrawn, expired, erasure) |
| facegate_purge_duration_seconds | histogram | | withdrawal/expiry seen to SubjectPurged emitted |
| facegate_purges_pending | gauge | | withdrawals/expiries seen, purge not complete |
| facegate_purge_step_failures_total | counter | step | purge step failures, each retried (never a DLQ) |
| facegate_purge_references_kept_total | counter | reason | reference photos a purge may not delete |
| facegate_s3_access_denied_total | counter | operation | S3 AccessDenied (permanent for the object) |
| facegate_consent_table_subjects | gauge | | subjects in this worker's consent table |
| facegate_work_in_flight | gauge | stage | assets (subjects, for purge) being worked on |
| facegate_worker_ready | gauge | | 1 once partitions are assigned, tables recovered, streams consuming |
| facegate_notifications_received_total | counter | source | object-store notifications received |
| facegate_notifications_deduplicated_total | counter | source | duplicates of a published notification |
| facegate_notifications_ignored_total | counter | source, reason | notifications naming no new asset |
| facegate_audit_records_total | counter | action | records appended to the audit log |

Plus the client library's ``process_*`` and ``python_*`` collectors.
Triton's own metrics (``nv_inference_*``, ``nv_gpu_*``) come from Triton's metrics port.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

__all__ = [
    "ASSETS_PROCESSED",
    "AUDIT_RECORDS",
    "CONSENT_TABLE_SUBJECTS",
    "CONSUMER_LAG",
    "DLQ_RECORDS",
    "FACES_PROCESSED",
    "FRAMES_PROCESSED",
    "NOTIFICATIONS_DEDUPLICATED",
    "NOTIFICATIONS_IGNORED",
    "NOTIFICATIONS_RECEIVED",
    "PURGES",
    "PURGES_PENDING",
    "PURGE_DURATION",
    "PURGE_REFERENCES_KEPT",
    "PURGE_STEP_FAILURES",
    "QDRANT_QUERY_DURATION",
    "REGISTRY",
    "S3_ACCESS_DENIED",
    "TRITON_REQUEST_DURATION",
    "TRITON_REQUEST_FACES",
    "TRITON_REQUEST_IMAGES",
    "UPLOAD_TO_TAG",
    "WORKER_READY",
    "WORK_IN_FLIGHT",
    "Outcome",
    "Stage",
    "exposed_names",
    "in_flight",
    "serve",
]


class Stage(enum.StrEnum):
    """Where in the flow something was counted (label ``stage``)."""

    NOTIFY = "notify"  # object-store notification -> AssetUploaded
    FETCH = "fetch"  # object read from the store, decoded
    VIDEO = "video"  # video -> sampled frames
    INFER = "infer"  # Triton detection + embedding
    MATCH = "match"  # Qdrant gallery search
    JOIN = "join"  # consent join: GREEN/AMBER/RED
    TAG = "tag"  # AssetFaces emitted
    ENROLL = "enroll"  # reference photos -> faceprints
    CONSENT = "consent"  # consent changes applied to the table
    PURGE = "purge"  # withdrawal/expiry -> erasure


class Outcome(enum.StrEnum):
    """How something left a stage (label ``outcome``); faces at the join use the status."""

    OK = "ok"
    DLQ = "dlq"  # dead-lettered, see facegate_dlq_records_total for the error class
    SKIPPED = "skipped"  # deliberately not processed (e.g. duplicate, unsupported kind)
    RETRY = "retry"  # failed, will be retried
    GREEN = "green"
    AMBER = "amber"
    RED = "red"


# The *_created series double the series count and no dashboard or alert reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

# 50 ms (a small image on a warm GPU) to 10 s (the newsroom target), then the tail.
_UPLOAD_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 60.0)
_REQUEST_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_QDRANT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_PURGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_COUNT_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)

ASSETS_PROCESSED = Counter(
    "facegate_assets_processed",
    "Assets (images, videos, frame uploads) that left a stage, by outcome.",
    ["stage", "outcome"],
    registry=REGISTRY,
)
FRAMES_PROCESSED = Counter(
    "facegate_frames_processed",
    "Video frames sampled from videos that left a stage, by outcome.",
    ["stage", "outcome"],
    registry=REGISTRY,
)
FACES_PROCESSED = Counter(
    "facegate_faces_processed",
    "Faces that left a stage, by outcome (green/amber/red at the consent join).",
    ["stage", "outcome"],
    registry=REGISTRY,
)
UPLOAD_TO_TAG = Histogram(
    "facegate_upload_to_tag_seconds",
    "Seconds from the object upload to the AssetFaces record emitted for it.",
    ["kind"],
    buckets=_UPLOAD_BUCKETS,
    registry=REGISTRY,
)
TRITON_REQUEST_DURATION = Histogram(
    "facegate_triton_request_duration_seconds",
    "Seconds per inference request to Triton, client side, retries included; outcome ok, rejected"
    " (the model refused the input: a bad image) or error (Triton unavailable, protocol mismatch).",
    ["outcome"],
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
TRITON_REQUEST_FACES = Histogram(
    "facegate_triton_request_faces",
    "Faces returned by one Triton request.",
    buckets=_COUNT_BUCKETS,
    registry=REGISTRY,
)
TRITON_REQUEST_IMAGES = Histogram(
    "facegate_triton_request_images",
    "Images sent in one Triton request.",
    buckets=_COUNT_BUCKETS,
    registry=REGISTRY,
)
QDRANT_QUERY_DURATION = Histogram(
    "facegate_qdrant_query_duration_seconds",
    "Seconds per Qdrant call (search, upsert, delete).",
    ["operation"],
    buckets=_QDRANT_BUCKETS,
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "facegate_kafka_consumer_lag_records",
    "Records between the committed offset of the worker's consumer group and the high watermark.",
    ["topic", "partition"],
    registry=REGISTRY,
)
DLQ_RECORDS = Counter(
    "facegate_dlq_records",
    "Records sent to the dead-letter topic, by exception class and stage.",
    ["error_class", "stage"],
    registry=REGISTRY,
)
PURGES = Counter(
    "facegate_purges",
    "Subjects purged (gallery points, vault copies, key), by reason.",
    ["reason"],
    registry=REGISTRY,
)
PURGE_DURATION = Histogram(
    "facegate_purge_duration_seconds",
    "Seconds from a withdrawal or expiry being seen to its SubjectPurged being emitted.",
    buckets=_PURGE_BUCKETS,
    registry=REGISTRY,
)
PURGES_PENDING = Gauge(
    "facegate_purges_pending",
    "Withdrawals or expiries seen whose purge has not completed yet.",
    registry=REGISTRY,
)
PURGE_STEP_FAILURES = Counter(
    "facegate_purge_step_failures",
    "Failures of a purge step (key, references, gallery, revocations, receipt); each is retried until done.",
    ["step"],
    registry=REGISTRY,
)
PURGE_REFERENCES_KEPT = Counter(
    "facegate_purge_references_kept",
    "Reference photos a purge did not delete: outside the subject's prefix, or access denied.",
    ["reason"],
    registry=REGISTRY,
)
S3_ACCESS_DENIED = Counter(
    "facegate_s3_access_denied",
    "Object-store calls refused with AccessDenied (permanent for that object), by operation.",
    ["operation"],
    registry=REGISTRY,
)
CONSENT_TABLE_SUBJECTS = Gauge(
    "facegate_consent_table_subjects",
    "Subjects held in this worker's consent table.",
    registry=REGISTRY,
)
WORKER_READY = Gauge(
    "facegate_worker_ready",
    "1 once the worker has its partitions, has recovered its tables and is consuming; 0 before.",
    registry=REGISTRY,
)
WORK_IN_FLIGHT = Gauge(
    "facegate_work_in_flight",
    "Assets (subjects, for purges) being worked on right now, by stage.",
    ["stage"],
    registry=REGISTRY,
)
NOTIFICATIONS_RECEIVED = Counter(
    "facegate_notifications_received",
    "Object-store notifications received by the bridge, by source (minio, seaweedfs).",
    ["source"],
    registry=REGISTRY,
)
NOTIFICATIONS_DEDUPLICATED = Counter(
    "facegate_notifications_deduplicated",
    "Notifications dropped because the same object version was already published.",
    ["source"],
    registry=REGISTRY,
)
NOTIFICATIONS_IGNORED = Counter(
    "facegate_notifications_ignored",
    "Notifications that name no new asset, by reason (not_create, outside_prefix, directory, ...).",
    ["source", "reason"],
    registry=REGISTRY,
)
AUDIT_RECORDS = Counter(
    "facegate_audit_records",
    "Records appended to the hash-chained audit log, by action.",
    ["action"],
    registry=REGISTRY,
)


@contextmanager
def in_flight(stage: Stage | str) -> Iterator[None]:
    """Count the enclosed work in facegate_work_in_flight{stage} while it runs."""
    gauge = WORK_IN_FLIGHT.labels(stage=str(stage))
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def exposed_names() -> set[str]:
    """Every sample name the registry can expose (``_total``, ``_bucket``, ... included)."""
    names: set[str] = set()
    for metric in REGISTRY.collect():
        names.add(metric.name)
        names.update(sample.name for sample in metric.samples)
        if metric.type == "counter":
            names.add(f"{metric.name}_total")
        elif metric.type == "histogram":
            names.update(f"{metric.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def serve(host: str, port: int) -> int:
    """Serve the registry on http://host:port/metrics in a daemon thread; return the bound port.

    ``port=0`` binds a free port.
    """
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return int(server.server_port)
