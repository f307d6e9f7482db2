"""Typed records of the event contract, one class per .avsc in schemas/.

The classes are written out (so that code reads as the domain) and checked against the .avsc
files at import: a field added to a schema but not here, or the reverse, fails at once.
Producers and consumers use ``to_bytes()`` / ``decode()``; no hand-built dicts cross a topic.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar

from .avro import REGISTRY, ContractError, Schema


class AssetKind(enum.StrEnum):
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    FRAME = "FRAME"


class ConsentAction(enum.StrEnum):
    GRANTED = "GRANTED"
    UPDATED = "UPDATED"
    WITHDRAWN = "WITHDRAWN"


class LegalBasis(enum.StrEnum):
    EXPLICIT_CONSENT = "EXPLICIT_CONSENT"
    PUBLIC_FIGURE = "PUBLIC_FIGURE"
    CONTRACT = "CONTRACT"


class FaceStatus(enum.StrEnum):
    GREEN = "GREEN"
    AMBER = "AMBER"
    RED = "RED"


class PurgeReason(enum.StrEnum):
    WITHDRAWN = "WITHDRAWN"
    EXPIRED = "EXPIRED"
    ERASURE_REQUEST = "ERASURE_REQUEST"


def utcnow() -> datetime:
    # Avro timestamp-millis: keep millisecond precision so a round trip is exact.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _to_avro(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_avro(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_to_avro(v) for v in value]
    return value


def _from_avro(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _from_avro(inner[0], value)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_from_avro(item, v) for v in value]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _from_avro(hints[f.name], value[f.name]) for f in dataclasses.fields(tp)})
    if tp is datetime and isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


R = TypeVar("R", bound="Record")


class Record:
    """Base of the top-level records: knows its schema and its wire form."""

    SCHEMA_NAME: ClassVar[str]

    @classmethod
    def schema(cls) -> Schema:
        return REGISTRY.current(cls.SCHEMA_NAME)

    def to_avro(self) -> dict[str, Any]:
        return typing.cast(dict[str, Any], _to_avro(self))

    def to_bytes(self) -> bytes:
        return self.schema().encode(self.to_avro())

    @classmethod
    def from_avro(cls, datum: dict[str, Any]) -> Self:
        return typing.cast(Self, _from_avro(cls, datum))

    @classmethod
    def from_bytes(cls, message: bytes) -> Self:
        _, datum = REGISTRY.decode(message, cls.schema())
        return cls.from_avro(datum)


@dataclass(frozen=True)
class AssetUploaded(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.AssetUploaded"
    asset_id: str
    bucket: str
    object_key: str
    etag: str
    size: int
    content_type: str
    kind: AssetKind
    uploaded_at: datetime
    video_id: str | None = None
    frame_time_ms: int | None = None
    source: str | None = None


@dataclass(frozen=True)
class ConsentChange(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.ConsentChange"
    event_id: str
    subject_id: str
    action: ConsentAction
    legal_basis: LegalBasis
    scopes: list[str]
    valid_from: datetime
    valid_until: datetime | None
    evidence_uri: str | None
    recorded_at: datetime
    recorded_by: str  # the signing officer's id (checked against the key by the worker)
    justification: str | None = None
    signed_by: str | None = None
    signature: bytes | None = None


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    object_key: str


@dataclass(frozen=True)
class SubjectEnrollment(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.SubjectEnrollment"
    event_id: str
    subject_id: str
    references: list[ObjectRef]
    recorded_at: datetime | None = None
    recorded_by: str | None = None
    signed_by: str | None = None
    signature: bytes | None = None


@dataclass(frozen=True)
class ErasureRequest(Record):
    """A privacy officer's Art. 17 request, on its own external topic (facegate.erasures)."""

    SCHEMA_NAME: ClassVar[str] = "facegate.ErasureRequest"
    event_id: str
    subject_id: str
    requested_at: datetime
    requested_by: str
    evidence_uri: str | None = None
    signed_by: str | None = None
    signature: bytes | None = None


@dataclass(frozen=True)
class BBox:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Face:
    face_id: str
    bbox: BBox
    det_score: float
    status: FaceStatus
    reason: str
    scopes: list[str] = field(default_factory=list)
    frame_time_ms: int | None = None
    track_id: str | None = None
    subject_id: str | None = None
    similarity: float | None = None
    track_end_ms: int | None = None


@dataclass(frozen=True)
class AssetFaces(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.AssetFaces"
    asset_id: str
    kind: AssetKind
    faces: list[Face]
    model_version: str
    processed_at: datetime
    etag: str | None = None
    video_id: str | None = None
    frame_time_ms: int | None = None


@dataclass(frozen=True)
class SubjectPurged(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.SubjectPurged"
    event_id: str
    subject_id: str
    reason: PurgeReason
    asset_ids: list[str]
    faceprints_deleted: int
    key_destroyed: bool
    purged_at: datetime
    signed_by: str | None = None  # the worker key that signed the receipt
    signature: bytes | None = None


@dataclass(frozen=True)
class AuditRecord(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.AuditRecord"
    seq: int
    at: datetime
    action: str
    subject_id: str | None
    asset_id: str | None
    detail: str
    prev_hash: str
    hash: str
    chain: str = "main"  # one hash chain per writer; verification is per chain
    signed_by: str | None = None  # the worker key that signed this link
    signature: bytes | None = None


RECORDS: tuple[type[Record], ...] = (
    AssetUploaded,
    ConsentChange,
    SubjectEnrollment,
    ErasureRequest,
    AssetFaces,
    SubjectPurged,
    AuditRecord,
)
_BY_NAME: dict[str, type[Record]] = {}


def register(*classes: type[Record]) -> None:
    """Make record classes decodable by ``decode`` after checking them against their schema."""
    for cls in classes:
        _check(cls, cls.schema().parsed)
        _BY_NAME[cls.SCHEMA_NAME] = cls


def decode(message: bytes) -> Record:
    """Decode any facegate record by the fingerprint in its header."""
    writer = REGISTRY.writer_of(message)
    cls = _BY_NAME.get(writer.name)
    if cls is None:
        raise ContractError(f"{writer.name} is not a facegate record")
    return cls.from_bytes(message)


def _record_fields(schema: dict[str, Any]) -> dict[str, Any]:
    return {f["name"]: f["type"] for f in schema["fields"]}


def _nested_record(avro_type: Any) -> dict[str, Any] | None:
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "record":
            return avro_type
        if avro_type.get("type") == "array":
            return _nested_record(avro_type["items"])
    if isinstance(avro_type, list):
        for branch in avro_type:
            found = _nested_record(branch)
            if found:
                return found
    return None


def _check(cls: type, schema: dict[str, Any]) -> None:
    """The dataclass and the .avsc name the same fields, recursively."""
    avro_fields = _record_fields(schema)
    py_fields = {f.name for f in dataclasses.fields(cls)}
    if set(avro_fields) != py_fields:
        schema_only = sorted(set(avro_fields) - py_fields)
        class_only = sorted(py_fields - set(avro_fields))
        raise ContractError(
            f"{cls.__name__} does not match {schema['name']}: "
            f"schema-only {schema_only}, class-only {class_only}"
        )
    hints = typing.get_type_hints(cls)
    for name, avro_type in avro_fields.items():
        nested = _nested_record(avro_type)
        if nested is None:
            continue
        tp = hints[name]
        while typing.get_origin(tp) in (list, typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        _check(tp, nested)


register(*RECORDS)
