"""One frozen settings object, read from the environment.

Every variable is prefixed ``FACEGATE_``; nested sections use ``__``, e.g.
``FACEGATE_KAFKA__BOOTSTRAP=broker:9092`` or ``FACEGATE_S3__SECRET_KEY=...``.
A section whose address is set (kafka.bootstrap, s3.endpoint, triton.grpc_url, qdrant.url)
points facegate at an external service; an unset one is started by ``facegate up``.
Secrets are ``SecretStr`` so that printing or logging the settings never shows them.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap: str | None = None  # None: start the embedded broker
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    topic_assets: str = "facegate.assets"
    topic_consent: str = "facegate.consent"
    topic_enrollments: str = "facegate.enrollments"
    topic_erasures: str = "facegate.erasures"  # officers' signed erasure requests (Art. 17)
    topic_tags: str = "facegate.tags"
    topic_purges: str = "facegate.purges"
    topic_audit: str = "facegate.audit"
    topic_dlq: str = "facegate.dlq"
    # raw S3-event records MinIO publishes (production); the worker normalises them into topic_assets
    topic_object_events: str = "facegate.minio-events"
    # internal topics between facegate's stages (see pipeline/app.py)
    topic_subject_events: str = "facegate.subject-events"  # key subject_id: the consent join's input
    topic_asset_events: str = "facegate.asset-events"  # key asset_id: the assembler's input
    topic_gallery: str = "facegate.gallery"  # compacted, key subject_id: gallery replica sync
    # key video_id: frame samples re-keyed so that one worker sees every frame of a video
    topic_frames: str = "facegate.frames"
    app_id: str = "facegate"  # consumer group of the workers; prefixes faust's changelog topics
    # Static group membership (group.instance.id = app_id-worker name): a worker restarted under
    # its name takes its partitions straight back. A static member does not leave the group when
    # it stops, so turn it off for workers that are scaled away rather than restarted.
    static_membership: bool = True
    # Transport security of every facegate client (workers, bridge, CLI, lag monitor, gallery sync;
    # pipeline/kafka/security.py). Production: SASL_SSL with SCRAM-SHA-512, one user per role
    # (docker-compose.yml). The embedded noida-db speaks neither TLS nor SCRAM.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: Path | None = None  # CA of the brokers' certificates; None: the system's CAs
    ssl_cert_file: Path | None = None  # client certificate (mTLS), PEM
    ssl_key_file: Path | None = None  # its private key, PEM
    ssl_key_password: SecretStr | None = None

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"kafka.security_protocol {self.security_protocol} needs kafka.sasl_username and "
                "kafka.sasl_password (FACEGATE_KAFKA__SASL_USERNAME / FACEGATE_KAFKA__SASL_PASSWORD)"
            )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError("kafka.ssl_cert_file and kafka.ssl_key_file go together (mTLS)")
        return self


class S3Settings(_Section):
    endpoint: str | None = None  # host:port; None: start the embedded SeaweedFS
    secure: bool = False
    region: str = "us-east-1"
    access_key: str = "facegate"
    secret_key: SecretStr = SecretStr("facegate-dev-secret")
    bucket: str = "assets"
    enrollment_bucket: str = "enrollments"  # reference photos of subjects; never an asset
    prefix: str = ""  # only keys under this prefix are assets
    # SeaweedFS master (http://host:port): its volumes are vacuumed after a purge deletes
    # reference photos (a SeaweedFS delete leaves the bytes until then). None: no such step.
    vacuum_url: str | None = None


class TritonSettings(_Section):
    grpc_url: str | None = None  # host:port; None: start the embedded tritonserver
    http_url: str | None = None
    model: str = "facegate_faces"
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=8, ge=0)
    # images per request batch from the client (video frames); the server's dynamic batching and
    # instance count are set in triton_models/facegate_faces/config.pbtxt
    max_batch: int = Field(default=8, ge=1)


class QdrantSettings(_Section):
    url: str | None = None  # None: Qdrant's engine in each worker (qdrant-edge), in memory only
    api_key: SecretStr | None = None
    collection: str = "faceprints"
    match_threshold: float = Field(default=0.6, gt=0)  # dlib ResNet: same person when L2 < 0.6
    # The embedded gallery's files go on this memory file system (tmpfs), never on disk;
    # None: /dev/shm. Docker gives /dev/shm 64 MiB: mount a tmpfs of ~1 KiB per faceprint.
    memory_dir: Path | None = None


class MetricsSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0)  # 0: a free port, reported by `facegate up --json`


class VaultSettings(_Section):
    # postgresql://user:password@host:5432/db: the vault every worker on every host shares
    # (privacy.master_key must then be set, the same on each). None: SQLite under <data_dir>/vault.
    dsn: SecretStr | None = None
    retry_s: float = Field(default=30.0, ge=0)  # how long to wait for the server to come back


class PrivacySettings(_Section):
    master_key: SecretStr = SecretStr("")  # base64 32 bytes; empty: generated into the data dir
    amber_window_days: int = Field(default=30, ge=0)
    expiry_check_interval_s: float = Field(default=60.0, gt=0)
    # Retired master keys (base64), kept only until `rotate_master_key` has re-wrapped every data key.
    retired_master_keys: tuple[SecretStr, ...] = ()
    # The organisation's standard uses of a face tag: a consent covering fewer is AMBER (scope-limited).
    standard_scopes: tuple[str, ...] = ("editorial", "archive")
    # The privacy officers the workers trust (pipeline/officers): a file the operator controls,
    # never a topic. None: <data_dir>/officers/registry.json; in production a read-only mount.
    officer_registry: Path | None = None
    # Where the CLI keeps officers' private keys (mode 0600). None: <data_dir>/officers/keys.
    officer_keys: Path | None = None
    officer: str | None = None  # the officer the CLI signs as; None: the only key in officer_keys
    officer_passphrase: SecretStr | None = None  # unlocks that key; unset: asked for when needed
    # The workers' key (base64, public) the CLI seals reference photos to before uploading them
    # (pipeline/vault/references.py). Empty: <data_dir>/vault/enrollment.pub, written by the vault.
    enrollment_public_key: str = ""


class RecognitionSettings(_Section):
    max_faces: int = Field(default=64, ge=1)
    min_face_px: int = Field(default=20, ge=1)
    max_pixels: int = Field(default=80_000_000, ge=1)  # decompression-bomb limit
    max_object_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    in_flight: int = Field(default=16, ge=1)  # assets in flight per worker


class VideoSettings(_Section):
    sample_fps: float = Field(default=2.0, gt=0)
    scene_cut_threshold: float = Field(default=0.35, gt=0)
    max_duration_s: float = Field(default=4 * 3600.0, gt=0)
    max_bytes: int = Field(default=20 * 1024**3, ge=1)
    # a larger frame is refused before decoding (8K UHD is 33 MP; the face model refuses > 40 MP)
    max_frame_pixels: int = Field(default=40_000_000, ge=1)
    spool_dir: Path | None = None  # where videos are copied to be read; None: the system temp dir
    # a scene cut is sampled unless a frame was sampled less than this long before
    scene_cut_min_gap_s: float = Field(default=0.2, ge=0)
    # face tracks: a face may be missing this long (2 samples at 2/s) and keep its track
    track_max_gap_s: float = Field(default=1.5, ge=0)
    track_match_distance: float = Field(default=0.6, gt=0)  # dlib ResNet: same person when L2 < 0.6
    track_min_iou: float = Field(default=0.3, gt=0, le=1)
    # frame samples: videos whose tracks a worker keeps in memory (least recently used dropped)
    frame_track_videos: int = Field(default=1024, ge=1)
    frame_track_idle_s: float = Field(default=600.0, gt=0)  # ... and forgets one idle this long


class StackSettings(_Section):
    """Ports and limits of the embedded stack (`facegate up`); 0 picks a free port."""

    kafka_port: int = Field(default=0, ge=0, le=65535)
    s3_port: int = Field(default=0, ge=0, le=65535)
    bridge_port: int = Field(default=0, ge=0, le=65535)  # webhook receiver for filer notifications
    triton_http_port: int = Field(default=0, ge=0, le=65535)
    triton_grpc_port: int = Field(default=0, ge=0, le=65535)
    triton_metrics_port: int = Field(default=0, ge=0, le=65535)
    start_timeout_s: float = Field(default=30.0, gt=0)
    stop_timeout_s: float = Field(default=10.0, gt=0)
    # the broker writes all its records to one file when stopped: seconds at hundreds of MiB
    broker_stop_timeout_s: float = Field(default=120.0, gt=0)
    workers: bool = True  # start the pipeline workers too; False: infrastructure only


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEGATE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    data_dir: Path = Path(".facegate")
    model_repository: Path = Path("triton_models")
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    s3: S3Settings = S3Settings()
    triton: TritonSettings = TritonSettings()
    qdrant: QdrantSettings = QdrantSettings()
    metrics: MetricsSettings = MetricsSettings()
    privacy: PrivacySettings = PrivacySettings()
    vault: VaultSettings = VaultSettings()
    recognition: RecognitionSettings = RecognitionSettings()
    video: VideoSettings = VideoSettings()
    stack: StackSettings = StackSettings()


# A dotenv file of secrets (0600) that `facegate up` gives a worker instead of its environment.
SECRETS_FILE_ENV = "FACEGATE_SECRETS_FILE"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment, and from the secrets file when one is named (the
    environment wins where both set a variable)."""
    return Settings(_env_file=os.environ.get(SECRETS_FILE_ENV) or None)  # type: ignore[call-arg]


def forget_secrets_file() -> None:
    """Delete the secrets file once read: its secrets now live in this process's memory only."""
    path = os.environ.get(SECRETS_FILE_ENV)
    if path:
        Path(path).unlink(missing_ok=True)
