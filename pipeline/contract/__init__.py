"""The event contract: Avro schemas in schemas/, single object encoding, typed records."""

from .avro import REGISTRY, ContractError, Schema, SchemaRegistry, crc64_avro
from .records import (
    AssetFaces,
    AssetKind,
    AssetUploaded,
    AuditRecord,
    BBox,
    ConsentAction,
    ConsentChange,
    Face,
    FaceStatus,
    LegalBasis,
    ObjectRef,
    PurgeReason,
    Record,
    SubjectEnrollment,
    SubjectPurged,
    decode,
    utcnow,
)

__all__ = [
    "REGISTRY", "AssetFaces", "AssetKind", "AssetUploaded", "AuditRecord", "BBox", "ConsentAction",
    "ConsentChange", "ContractError", "Face", "FaceStatus", "LegalBasis", "ObjectRef", "PurgeReason",
    "Record", "Schema", "SchemaRegistry", "SubjectEnrollment", "SubjectPurged", "crc64_avro", "decode",
    "utcnow",
]
