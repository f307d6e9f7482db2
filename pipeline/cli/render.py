"""Records as operator text or JSON lines: pure functions, no I/O."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from ..contract import (
    AssetFaces,
    AssetUploaded,
    AuditRecord,
    ConsentChange,
    ContractError,
    Face,
    Record,
    SubjectPurged,
    decode,
)
from ..kafka.io import Message


def when(at: datetime | None) -> str:
    return "-" if at is None else at.isoformat(timespec="seconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(data: Any) -> str:
    return json.dumps(data, default=_json_default, sort_keys=True, ensure_ascii=False)


def record_json(record: Record) -> dict[str, Any]:
    return {"type": record.SCHEMA_NAME, **record.to_avro()}


def message_json(
    topic: str, message: Message, record: Record | None, error: str | None = None
) -> dict[str, Any]:
    """One JSON line per message: where it was, its key, and the decoded record (or why not)."""
    out: dict[str, Any] = {
        "topic": topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key,
        "timestamp": message.timestamp,
    }
    if message.headers:
        out["headers"] = dict(message.headers)
    if record is not None:
        out["record"] = record_json(record)
    else:
        out["value_base64"] = base64.b64encode(message.value).decode("ascii")
        if error:
            out["decode_error"] = error
    return out


def try_decode(value: bytes) -> tuple[Record | None, str | None]:
    try:
        return decode(value), None
    except ContractError as exc:
        return None, str(exc)


# --- text ------------------------------------------------------------------------------------


def _box(face: Face) -> str:
    b = face.bbox
    return f"{b.x:.0f},{b.y:.0f} {b.w:.0f}x{b.h:.0f}"


def face_line(face: Face) -> str:
    parts = [f"face {face.face_id}", f"{face.status.value:<5}"]
    if face.subject_id:
        similarity = f" (similarity {face.similarity:.3f})" if face.similarity is not None else ""
        parts.append(f"subject {face.subject_id}{similarity}")
    parts.append(f"reason {face.reason}")
    parts.append(f"box {_box(face)}")
    if face.scopes:
        parts.append(f"scopes {','.join(face.scopes)}")
    if face.frame_time_ms is not None:
        span = f"{face.frame_time_ms}" + (f"-{face.track_end_ms}" if face.track_end_ms is not None else "")
        parts.append(f"t {span} ms")
    if face.track_id:
        parts.append(f"track {face.track_id}")
    return "  ".join(parts)


def tags_text(tags: AssetFaces) -> list[str]:
    kind = tags.kind.value + (f" t={tags.frame_time_ms}ms of {tags.video_id}" if tags.video_id else "")
    count = len(tags.faces)
    head = (
        f"asset {tags.asset_id}  {kind}  {count} face{'s' if count != 1 else ''}  "
        f"model {tags.model_version}  at {when(tags.processed_at)}"
    )
    return [head, *(f"  {face_line(f)}" for f in tags.faces)]


def purge_text(purge: SubjectPurged) -> list[str]:
    head = (
        f"purge {purge.subject_id}  reason {purge.reason.value}  {len(purge.asset_ids)} asset(s) untagged  "
        f"{purge.faceprints_deleted} faceprint(s) deleted  "
        f"key destroyed {'yes' if purge.key_destroyed else 'no'}"
        f"  at {when(purge.purged_at)}  id {purge.event_id}"
    )
    return [head, *(f"  asset {a}" for a in purge.asset_ids)]


def audit_text(record: AuditRecord) -> list[str]:
    about = "  ".join(
        f"{name} {value}"
        for name, value in (("subject", record.subject_id), ("asset", record.asset_id))
        if value
    )
    return [
        f"{record.chain}#{record.seq}  {when(record.at)}  {record.action}  {about}  {record.detail}".rstrip()
    ]


def asset_text(asset: AssetUploaded) -> list[str]:
    frame = f"  frame t={asset.frame_time_ms}ms of {asset.video_id}" if asset.video_id else ""
    return [
        f"{asset.asset_id}  {asset.kind.value}  {asset.content_type}  {asset.size} bytes  etag {asset.etag}"
        f"  at {when(asset.uploaded_at)}{frame}"
    ]


def consent_text(change: ConsentChange) -> list[str]:
    until = when(change.valid_until) if change.valid_until else "open-ended"
    scopes = ",".join(change.scopes) or "-"
    return [
        f"{when(change.recorded_at)}  {change.action.value:<9}  {change.legal_basis.value}  scopes {scopes}  "
        f"valid {when(change.valid_from)} .. {until}  evidence {change.evidence_uri or '-'}  "
        f"by {change.recorded_by}  id {change.event_id}"
    ]


def dlq_text(message: Message) -> list[str]:
    h = message.headers
    source = f"{h.get('source_topic', '?')}/{h.get('source_partition', '?')}/{h.get('source_offset', '?')}"
    return [
        f"dlq key {message.key or '-'}  {h.get('error_class', '?')}: {h.get('error_message', '')}  "
        f"(stage {h.get('stage', '?')}, source {source}, {len(message.value)} bytes)"
    ]


def record_text(record: Record) -> list[str]:
    match record:
        case AssetFaces():
            return tags_text(record)
        case SubjectPurged():
            return purge_text(record)
        case AuditRecord():
            return audit_text(record)
        case AssetUploaded():
            return asset_text(record)
        case ConsentChange():
            return consent_text(record)
    return [f"{record.SCHEMA_NAME}  {dumps(record.to_avro())}"]
