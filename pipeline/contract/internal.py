"""Records between facegate's own stages (schemas/internal/). Same encoding as the contract.

They carry boxes, pseudonymous subject ids and verdicts — never embeddings: an embedding lives
only in the memory of the stage that computed it (design invariants 1 and 2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from .records import AssetKind, BBox, FaceStatus, PurgeReason, Record, register


class GalleryAction(enum.StrEnum):
    UPSERT = "UPSERT"
    DELETE = "DELETE"


@dataclass(frozen=True)
class ObservedFace:
    face_id: str
    bbox: BBox
    det_score: float
    frame_time_ms: int | None = None
    track_id: str | None = None
    track_end_ms: int | None = None
    candidate: str | None = None
    similarity: float | None = None


@dataclass(frozen=True)
class FaceObservations(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.internal.FaceObservations"
    asset_id: str
    etag: str
    kind: AssetKind
    model_version: str
    uploaded_at: datetime
    faces: list[ObservedFace]
    video_id: str | None = None
    frame_time_ms: int | None = None

    def candidates(self) -> dict[str, list[ObservedFace]]:
        """Faces grouped by the subject the gallery matched them to."""
        grouped: dict[str, list[ObservedFace]] = {}
        for face in self.faces:
            if face.candidate is not None:
                grouped.setdefault(face.candidate, []).append(face)
        return grouped


@dataclass(frozen=True)
class MatchCandidate(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.internal.MatchCandidate"
    subject_id: str
    asset_id: str
    etag: str
    face_ids: list[str]
    similarity: float


@dataclass(frozen=True)
class SubjectDecision(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.internal.SubjectDecision"
    asset_id: str
    etag: str
    subject_id: str
    status: FaceStatus
    reason: str
    scopes: list[str]
    purge_id: str | None = None


@dataclass(frozen=True)
class RevocationApplied(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.internal.RevocationApplied"
    subject_id: str
    asset_id: str
    purge_id: str


@dataclass(frozen=True)
class ErasureRequest(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.internal.ErasureRequest"
    event_id: str
    subject_id: str
    reason: PurgeReason
    requested_at: datetime
    requested_by: str


@dataclass(frozen=True)
class GalleryChange(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.internal.GalleryChange"
    subject_id: str
    action: GalleryAction
    faceprints: int
    changed_at: datetime


@dataclass(frozen=True)
class ConsentReview(Record):
    SCHEMA_NAME: ClassVar[str] = "facegate.internal.ConsentReview"
    subject_id: str
    reason: str
    requested_at: datetime


INTERNAL_RECORDS: tuple[type[Record], ...] = (
    ConsentReview,
    FaceObservations,
    MatchCandidate,
    SubjectDecision,
    RevocationApplied,
    ErasureRequest,
    GalleryChange,
)
register(*INTERNAL_RECORDS)
