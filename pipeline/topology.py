"""Every topic and table of facegate, declared once.

A topic's declaration says what its key is, which record types may travel on it, how it is
configured (compaction, retention), whether other systems write or read it (external: the
event contract) or only facegate's workers do (internal), and which stage consumes it.
Everything that touches a topic reads it from here: topic creation (``pipeline.kafka.topics``),
the stages' agents and their ``send`` (``pipeline.stages``), the lag monitor, and the CLI's
producers. A record type not declared for a topic is refused when sent (a bug in facegate) and
dead-lettered when read (another system's producer is wrong).

    facegate.assets ─> recognize ──> facegate.asset-events (FaceObservations, key asset_id)
                      │         └──> facegate.subject-events (MatchCandidate, key subject_id)
                      └─ FRAME assets ─> facegate.frames (key video_id) ─> recognize-frames (as above)
    facegate.consent + facegate.enrollments ─> admit ──> facegate.subject-events (re-keyed)
    facegate.subject-events ─> join (tables: subjects, subject-assets)
                    ──> facegate.asset-events (SubjectDecision), facegate.gallery, facegate.audit,
                        facegate.purges
    facegate.asset-events ─> assemble (table: assets) ──> facegate.tags
                                                     └──> facegate.subject-events (RevocationApplied)
    facegate.minio-events (MinIO S3 events) ─> normalise ──> facegate.assets
    the expiry timer (reads the subjects table) ──> facegate.subject-events (ErasureRequest, ConsentReview)
    facegate.gallery ─> every worker's gallery replica (a consumer group of its own per worker)

Every topic has ``settings.kafka.partitions`` partitions: the consent join relies on one
subject's records being in the same partition number on every topic it reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .contract import (
    AssetFaces,
    AssetUploaded,
    AuditRecord,
    ConsentChange,
    ContractError,
    Record,
    SubjectEnrollment,
    SubjectPurged,
)
from .contract import ErasureRequest as OfficerErasure
from .contract.internal import (
    ConsentReview,
    ErasureRequest,
    FaceObservations,
    GalleryChange,
    MatchCandidate,
    RevocationApplied,
    SubjectDecision,
)
from .settings import KafkaSettings

COMPACT: Mapping[str, str] = MappingProxyType({"cleanup.policy": "compact"})
KEEP_FOREVER: Mapping[str, str] = MappingProxyType({"cleanup.policy": "delete", "retention.ms": "-1"})
DELETE: Mapping[str, str] = MappingProxyType({})  # the broker's default retention


class TopologyError(Exception):
    """A record sent to a topic that does not carry its type, or an undeclared topic: a bug."""


class RecordNotAllowed(ContractError):
    """A record read from a topic that does not carry its type: dead-lettered at the boundary."""


@dataclass(frozen=True, eq=False)  # each declaration is one topic: compared by identity
class Topic:
    """One topic. ``records`` empty means the values are not facegate records (raw bytes)."""

    setting: str  # the KafkaSettings field that names it
    key: str  # what the key is
    records: tuple[type[Record], ...]
    config: Mapping[str, str] = field(default_factory=lambda: DELETE)
    external: bool = False  # part of the event contract: other systems write or read it
    consumer: str | None = None  # the stage reading it (None: read by other systems only)
    about: str = ""

    def allows(self, record: Record) -> bool:
        return not self.records or isinstance(record, self.records)


@dataclass(frozen=True)
class Table:
    """A faust table (its changelog topic is created by faust, compacted, ``<app_id>-<name>-changelog``)."""

    name: str
    key: str
    owner: str  # the only stage that writes it
    about: str = ""


ASSETS = Topic(
    "topic_assets",
    "asset_id",
    (AssetUploaded,),
    external=True,
    consumer="recognize",
    about="an object landed in the assets bucket (bridge or MinIO normalisation)",
)
CONSENT = Topic(
    "topic_consent",
    "subject_id",
    (ConsentChange,),
    COMPACT,
    external=True,
    consumer="admit",
    about="consent changes from the privacy officers' systems; the current one per subject",
)
ENROLLMENTS = Topic(
    "topic_enrollments",
    "subject_id",
    (SubjectEnrollment,),
    external=True,
    consumer="admit",
    about="reference photos of a subject to enroll",
)
ERASURES = Topic(
    "topic_erasures",
    "subject_id",
    (OfficerErasure,),
    KEEP_FOREVER,
    external=True,
    about="privacy officers' signed erasure requests (Art. 17), kept with the receipts that answer them",
)
TAGS = Topic(
    "topic_tags",
    "asset_id",
    (AssetFaces,),
    COMPACT,
    external=True,
    about="the current faces of each asset (what DAM systems read)",
)
PURGES = Topic(
    "topic_purges",
    "subject_id",
    (SubjectPurged,),
    KEEP_FOREVER,
    external=True,
    about="erasure receipts",
)
AUDIT = Topic(
    "topic_audit",
    "subject_id or asset_id",
    (AuditRecord,),
    KEEP_FOREVER,
    external=True,
    about="the hash-chained audit log",
)
DLQ = Topic(
    "topic_dlq",
    "the source record's key",
    (),
    external=True,
    about="records no stage could process: the original bytes, the error in the headers",
)
OBJECT_EVENTS = Topic(
    "topic_object_events",
    "object key (as MinIO sets it)",
    (),
    external=True,
    consumer="normalise",
    about="raw S3 event JSON from MinIO's Kafka notification target (production)",
)
SUBJECT_EVENTS = Topic(
    "topic_subject_events",
    "subject_id",
    (
        ConsentChange,
        SubjectEnrollment,
        MatchCandidate,
        ErasureRequest,
        RevocationApplied,
        ConsentReview,
    ),
    consumer="join",
    about="everything about one subject, in order: the consent join's input",
)
ASSET_EVENTS = Topic(
    "topic_asset_events",
    "asset_id",
    (FaceObservations, SubjectDecision),
    consumer="assemble",
    about="what recognition saw and what the join decided, per asset: the assembler's input",
)
GALLERY = Topic(
    "topic_gallery",
    "subject_id",
    (GalleryChange,),
    COMPACT,
    consumer="gallery-sync",
    about="which subjects' faceprints each worker's gallery replica must (re)load or drop",
)
FRAMES = Topic(
    "topic_frames",
    "video_id",
    (AssetUploaded,),
    consumer="recognize-frames",
    about="frame samples re-keyed by video, so that one worker links a video's tracks",
)

TOPICS: tuple[Topic, ...] = (
    ASSETS,
    CONSENT,
    ENROLLMENTS,
    ERASURES,
    TAGS,
    PURGES,
    AUDIT,
    DLQ,
    OBJECT_EVENTS,
    SUBJECT_EVENTS,
    ASSET_EVENTS,
    GALLERY,
    FRAMES,
)

SUBJECTS = Table("subjects", "subject_id (and one audit chain head per partition)", "join")
SUBJECT_ASSETS = Table("subject-assets", "subject_id, asset_id", "join", "see pipeline/join/ledger.py")
ASSET_STATES = Table("assets", "asset_id", "assemble", "observations and verdicts until tagged")
TABLES: tuple[Table, ...] = (SUBJECTS, SUBJECT_ASSETS, ASSET_STATES)


@dataclass(frozen=True)
class Topology:
    """The declarations, with the topic names the settings give them."""

    kafka: KafkaSettings
    topics: tuple[Topic, ...] = TOPICS
    _by_name: dict[str, Topic] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Topic] = {}
        for topic in self.topics:
            name = self.name(topic)
            if name in by_name:
                raise TopologyError(f"{topic.setting} and {by_name[name].setting} are both named {name}")
            by_name[name] = topic
        object.__setattr__(self, "_by_name", by_name)

    def name(self, topic: Topic) -> str:
        return str(getattr(self.kafka, topic.setting))

    def names(self, topics: Iterable[Topic] | None = None) -> list[str]:
        return [self.name(t) for t in (self.topics if topics is None else topics)]

    def topic(self, name: str) -> Topic:
        try:
            return self._by_name[name]
        except KeyError:
            raise TopologyError(f"{name} is not a facegate topic") from None

    def consumed_by(self, stage: str) -> tuple[Topic, ...]:
        return tuple(t for t in self.topics if t.consumer == stage)

    def consumed(self) -> list[str]:
        """Topics the workers' consumer group reads (the lag monitor's list)."""
        return [self.name(t) for t in self.topics if t.consumer and t.consumer != GALLERY.consumer]

    def check_send(self, topic: Topic, record: Record) -> str:
        """The topic's name; TopologyError if ``record`` may not travel on it."""
        if topic not in self.topics:
            raise TopologyError(f"{topic.setting} is not declared in the topology")
        if not topic.allows(record):
            raise TopologyError(f"{type(record).__name__} may not be sent to {self.name(topic)}")
        return self.name(topic)

    def check_received(self, name: str, record: Record) -> None:
        """RecordNotAllowed if ``record`` was read from a topic that does not carry its type."""
        if not self.topic(name).allows(record):
            raise RecordNotAllowed(f"{type(record).__name__} does not belong on {name}")
