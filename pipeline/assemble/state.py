"""The state of one asset between recognition and its tag, as a pure value.

The recognize stage tells what it saw (``FaceObservations``: boxes and gallery candidates);
the consent join, partitioned by subject, sends a verdict per candidate subject
(``SubjectDecision``) — or, after a withdrawal, a revocation (a RED verdict carrying the purge
id). An asset's AssetFaces is emitted once every candidate subject of its latest version has a
verdict, and again whenever a verdict changes it. A revocation applies to every version of the
asset: no later message from the join can re-name the subject, because the join processes its
subject's events in order and decides RED after the withdrawal.

The state is a JSON-able dict so it can live in a faust Table (its changelog is a Kafka topic:
it holds boxes and pseudonymous ids, never embeddings).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..contract import AssetFaces, BBox, Face, FaceStatus, utcnow
from ..contract.internal import FaceObservations, SubjectDecision

ANY_VERSION = "*"
UNKNOWN_FACE = "unknown_face"


@dataclass
class Verdict:
    etag: str  # ANY_VERSION for a revocation
    status: FaceStatus
    reason: str
    scopes: list[str]


@dataclass
class AssetAssembly:
    asset_id: str
    observations: FaceObservations | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    emitted_digest: str | None = None  # what was last published, to publish a state once

    # --- transitions -------------------------------------------------------------------------

    def observe(self, observations: FaceObservations) -> None:
        if self.observations is not None and self.observations.etag != observations.etag:
            # A new version of the object: verdicts on the old version no longer apply,
            # revocations do.
            self.verdicts = {s: v for s, v in self.verdicts.items() if v.etag == ANY_VERSION}
        self.observations = observations

    def decide(self, decision: SubjectDecision) -> None:
        if decision.purge_id is not None:
            self.verdicts[decision.subject_id] = Verdict(ANY_VERSION, FaceStatus.RED, decision.reason, [])
            return
        if self.observations is not None and decision.etag != self.observations.etag:
            return  # a verdict on a version that has been replaced
        self.verdicts[decision.subject_id] = Verdict(
            decision.etag, decision.status, decision.reason, list(decision.scopes)
        )

    # --- output ------------------------------------------------------------------------------

    def pending_subjects(self) -> set[str]:
        if self.observations is None:
            return set()
        return set(self.observations.candidates()) - set(self.verdicts)

    def ready(self) -> bool:
        return self.observations is not None and not self.pending_subjects()

    def faces(self) -> list[Face]:
        assert self.observations is not None
        faces = []
        for seen in self.observations.faces:
            verdict = self.verdicts.get(seen.candidate) if seen.candidate else None
            named = verdict is not None and verdict.status is not FaceStatus.RED
            faces.append(
                Face(
                    face_id=seen.face_id,
                    bbox=BBox(seen.bbox.x, seen.bbox.y, seen.bbox.w, seen.bbox.h),
                    det_score=seen.det_score,
                    # RED never names: a match without a legal basis is not disclosed.
                    status=verdict.status if verdict else FaceStatus.RED,
                    reason=verdict.reason if verdict else UNKNOWN_FACE,
                    scopes=list(verdict.scopes) if verdict and named else [],
                    frame_time_ms=seen.frame_time_ms,
                    track_id=seen.track_id,
                    subject_id=seen.candidate if named else None,
                    similarity=seen.similarity if named else None,
                    track_end_ms=seen.track_end_ms,
                )
            )
        return faces

    def emit(self, now: datetime | None = None) -> AssetFaces | None:
        """The AssetFaces to publish now, or None (not ready, or unchanged since last time)."""
        if not self.ready():
            return None
        assert self.observations is not None
        obs = self.observations
        faces = self.faces()
        digest = _digest(obs, faces)
        if digest == self.emitted_digest:
            return None
        self.emitted_digest = digest
        return AssetFaces(
            asset_id=self.asset_id,
            kind=obs.kind,
            faces=faces,
            model_version=obs.model_version,
            processed_at=now or utcnow(),
            etag=obs.etag,
            video_id=obs.video_id,
            frame_time_ms=obs.frame_time_ms,
        )

    # --- table value -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "observations": self.observations.to_bytes().hex() if self.observations else None,
            "verdicts": {
                s: {"etag": v.etag, "status": v.status.value, "reason": v.reason, "scopes": v.scopes}
                for s, v in self.verdicts.items()
            },
            "emitted_digest": self.emitted_digest,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AssetAssembly:
        obs = data.get("observations")
        return cls(
            asset_id=data["asset_id"],
            observations=FaceObservations.from_bytes(bytes.fromhex(obs)) if obs else None,
            verdicts={
                s: Verdict(v["etag"], FaceStatus(v["status"]), v["reason"], list(v["scopes"]))
                for s, v in data.get("verdicts", {}).items()
            },
            emitted_digest=data.get("emitted_digest"),
        )


def _digest(obs: FaceObservations, faces: list[Face]) -> str:
    payload = {
        "etag": obs.etag,
        "model": obs.model_version,
        "faces": [_face_key(f) for f in faces],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _face_key(face: Face) -> list[Any]:
    return [face.face_id, face.status.value, face.subject_id, face.reason, sorted(face.scopes)]


def assemble(state: AssetAssembly, message: FaceObservations | SubjectDecision) -> AssetFaces | None:
    """Apply one message to the asset's state; return the AssetFaces to publish, if any."""
    if isinstance(message, FaceObservations):
        state.observe(message)
    else:
        state.decide(message)
    return state.emit()
