"""Object-store notifications -> AssetUploaded. Pure functions, no I/O.

Two shapes arrive:

* SeaweedFS filer webhook (the embedded stack): ``{"event_type": "create", "key":
  "/buckets/<bucket>/<key>", "message": {"new_entry": {...}}}``. Go's JSON encoding of the
  filer protobuf: byte fields (``extended`` values, ``md5``) are base64. An S3 overwrite is an
  ``update`` with ``old_entry`` and ``new_entry``; multipart parts live under ``.uploads/``.
* MinIO S3 event records (production, sent to Kafka or a webhook by MinIO itself):
  ``{"EventName": "s3:ObjectCreated:Put", "Key": "<bucket>/<key>", "Records": [{"s3":
  {"bucket": {"name": ..}, "object": {"key": <url-encoded>, "size", "eTag", "contentType",
  "userMetadata"}}, "eventTime": ..}]}``.

Each notification yields AssetUploaded records, or ``Ignored`` with a reason (deletes,
directories, keys outside ``settings.s3.prefix``, other buckets, files that are neither
image nor video), or raises MalformedNotification. Nothing else: the notification is untrusted
input, so every field is type- and range-checked (a size of 1e999 or 2**70, ``chunks: [1]``, an
mtime in the year 30,000,000, a key that is not valid Unicode), and every AssetUploaded returned
is known to encode. The bridge and the normaliser stage dead-letter a MalformedNotification
with its reason and go on.

Kind: ``image/*`` IMAGE, ``video/*`` VIDEO (content type first, then the file extension);
FRAME when the key under the prefix is ``frames/<video_id>/<frame_time_ms>.<ext>`` or the
object carries user metadata ``video-id`` and ``frame-time-ms``.
"""

from __future__ import annotations

import base64
import json
import math
import mimetypes
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from ..contract import AssetKind, AssetUploaded, ContractError

SEAWEEDFS = "seaweedfs"
MINIO = "minio"

SEAWEEDFS_BUCKETS_DIR = "/buckets/"
_MULTIPART_DIR = ".uploads/"
_FRAME_KEY = re.compile(r"^frames/(?P<video_id>[^/]+)/(?P<frame_time_ms>\d+)\.[A-Za-z0-9]+$")
_META_PREFIX = "x-amz-meta-"
# MinIO event names under s3:ObjectCreated: that change metadata only, not the object's bytes.
_MINIO_METADATA_EVENTS = {"PutRetention", "PutLegalHold", "PutTagging"}
_MAX_LONG = 2**63 - 1  # Avro long: sizes and frame times
_LATEST_EPOCH_S = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime holds


class MalformedNotification(ValueError):
    """A notification that cannot be understood; it goes to the dead-letter topic."""


def parse_notification(body: bytes | str) -> Any:
    """The JSON of a notification body; MalformedNotification for anything that is not JSON."""
    if not isinstance(body, bytes | str):
        raise MalformedNotification("notification is not JSON text")
    try:
        return json.loads(body)
    except RecursionError:
        raise MalformedNotification("notification JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise MalformedNotification(f"notification is not JSON: {exc}") from None


def _count(value: Any, what: str) -> int:
    """A non-negative whole number that fits an Avro long (JSON gives ints, floats, bools...)."""
    whole_float = isinstance(value, float) and math.isfinite(value) and value.is_integer()
    digits = isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 100
    if whole_float or digits:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedNotification(f"{what} {_shown(value)} is not a whole number")
    if not 0 <= value <= _MAX_LONG:
        raise MalformedNotification(f"{what} {_shown(value)} is out of range (0 to 2**63-1)")
    return value


def _epoch(seconds: float, what: str) -> datetime:
    if not 0 < seconds <= _LATEST_EPOCH_S:
        raise MalformedNotification(f"{what} {_shown(seconds)} is not a time between 1970 and 9999")
    return datetime.fromtimestamp(seconds, UTC)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Ignored:
    """A well-formed notification that names no new asset."""

    reason: str  # not_create, directory, other_bucket, outside_prefix, multipart_part, not_media
    key: str


Outcome = AssetUploaded | Ignored


@dataclass(frozen=True)
class Scope:
    """Which objects are assets: the bucket and the key prefix (settings.s3)."""

    bucket: str
    prefix: str = ""


def _ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _kind_of(object_key: str, content_type: str) -> AssetKind | None:
    for candidate in (content_type, mimetypes.guess_type(object_key)[0] or ""):
        major = candidate.split("/", 1)[0].strip().lower()
        if major == "image":
            return AssetKind.IMAGE
        if major == "video":
            return AssetKind.VIDEO
    return None


def _frame_of(relative_key: str, metadata: Mapping[str, str]) -> tuple[str, int] | None:
    match = _FRAME_KEY.match(relative_key)
    if match:
        return match["video_id"], _count(match["frame_time_ms"], "frame time in the key")
    video_id, frame_time = metadata.get("video-id"), metadata.get("frame-time-ms")
    if video_id and frame_time is not None:
        try:
            frame_time_ms = int(frame_time)
        except ValueError:
            raise MalformedNotification(
                f"user metadata frame-time-ms={_shown(frame_time)} is not an integer number of milliseconds"
            ) from None
        if frame_time_ms < 0:
            raise MalformedNotification(f"user metadata frame-time-ms={frame_time_ms} is negative")
        return video_id, _count(frame_time_ms, "user metadata frame-time-ms")
    return None


def _user_metadata(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``X-Amz-Meta-Video-Id: v`` -> ``{"video-id": "v"}``; other keys are dropped."""
    out = {}
    for key, value in items:
        lower = key.lower()
        if lower.startswith(_META_PREFIX):
            out[lower[len(_META_PREFIX) :]] = value
    return out


def _build(
    scope: Scope,
    *,
    bucket: str,
    object_key: str,
    etag: str,
    size: int,
    content_type: str,
    uploaded_at: datetime,
    metadata: Mapping[str, str],
    source: str,
) -> Outcome:
    if bucket != scope.bucket:
        return Ignored("other_bucket", f"{bucket}/{object_key}")
    if not object_key.startswith(scope.prefix):
        return Ignored("outside_prefix", f"{bucket}/{object_key}")
    if object_key.startswith(_MULTIPART_DIR):
        return Ignored("multipart_part", f"{bucket}/{object_key}")
    kind = _kind_of(object_key, content_type)
    if kind is None:
        return Ignored("not_media", f"{bucket}/{object_key}")
    frame = _frame_of(object_key[len(scope.prefix) :], metadata)
    if frame is not None:
        kind = AssetKind.FRAME
    if not content_type:
        content_type = mimetypes.guess_type(object_key)[0] or "application/octet-stream"
    if not etag:
        raise MalformedNotification(f"no ETag for {bucket}/{object_key}")
    asset = AssetUploaded(
        asset_id=f"{bucket}/{object_key}",
        bucket=bucket,
        object_key=object_key,
        etag=etag,
        size=size,
        content_type=content_type,
        kind=kind,
        uploaded_at=_ms(uploaded_at),
        video_id=frame[0] if frame else None,
        frame_time_ms=frame[1] if frame else None,
        source=source,
    )
    try:  # what the bridge will publish: the key as UTF-8, the record as Avro
        asset.asset_id.encode()
        asset.to_bytes()
    except (ContractError, ValueError, OverflowError, TypeError) as exc:
        raise MalformedNotification(f"{_shown(asset.asset_id)} cannot be published: {exc}") from None
    return asset


def _b64text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedNotification(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
        raise MalformedNotification(f"{what} is not valid base64 text") from None


def _seaweedfs_etag(entry: Mapping[str, Any], attributes: Mapping[str, Any], path: str) -> str:
    extended = entry.get("extended") or {}
    if "Seaweed-X-Amz-ETag" in extended:
        return _b64text(extended["Seaweed-X-Amz-ETag"], f"ETag of {path}").strip('"')
    md5 = attributes.get("md5")
    if md5:
        try:
            return base64.b64decode(md5, validate=True).hex()
        except (ValueError, TypeError):  # binascii.Error, non-ASCII text
            raise MalformedNotification(f"md5 of {path} is not base64") from None
    return ""


def _seaweedfs_time(entry: Mapping[str, Any], attributes: Mapping[str, Any]) -> datetime:
    # Chunk times are in nanoseconds; the entry's mtime only in seconds.
    chunk_ns: list[int] = []
    for chunk in _chunks(entry):
        ns = chunk.get("modified_ts_ns")
        if isinstance(ns, int) and not isinstance(ns, bool) and ns > 0:
            chunk_ns.append(ns)
    if chunk_ns:
        return _epoch(max(chunk_ns) / 1e9, "chunk modified_ts_ns / 1e9")
    mtime = attributes.get("mtime")
    if not isinstance(mtime, int) or isinstance(mtime, bool) or mtime <= 0:
        raise MalformedNotification("entry has neither chunk times nor mtime")
    return _epoch(mtime, "mtime")


def _chunks(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    chunks = entry.get("chunks") or []
    if not isinstance(chunks, list) or not all(isinstance(c, Mapping) for c in chunks):
        raise MalformedNotification(f"chunks {_shown(chunks)} is not a list of objects")
    return chunks


def from_seaweedfs(payload: Mapping[str, Any], scope: Scope) -> Outcome:
    """Normalise one SeaweedFS filer webhook notification."""
    event_type = payload.get("event_type")
    message = payload.get("message")
    if not isinstance(event_type, str) or not isinstance(message, Mapping):
        raise MalformedNotification("not a SeaweedFS filer notification (event_type, message)")
    if event_type not in ("create", "update", "rename"):
        return Ignored("not_create", str(payload.get("key", "")))
    entry = message.get("new_entry")
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise MalformedNotification(f"{event_type} notification without new_entry.name")
    if event_type == "rename" or "key" not in payload:
        parent = message.get("new_parent_path")
        if not isinstance(parent, str):
            raise MalformedNotification("rename notification without new_parent_path")
        path = f"{parent.rstrip('/')}/{entry['name']}"
    else:
        path = payload["key"]
        if not isinstance(path, str):
            raise MalformedNotification("key is not a string")
    if entry.get("is_directory"):
        return Ignored("directory", path)
    if not path.startswith(SEAWEEDFS_BUCKETS_DIR):
        return Ignored("other_bucket", path)
    bucket, _, object_key = path[len(SEAWEEDFS_BUCKETS_DIR) :].partition("/")
    if not bucket or not object_key:
        return Ignored("directory", path)
    attributes = entry.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise MalformedNotification(f"attributes of {path} is not an object")
    extended = entry.get("extended") or {}
    if not isinstance(extended, Mapping):
        raise MalformedNotification(f"extended of {path} is not an object")
    metadata = _user_metadata(
        (key, _b64text(value, f"metadata {key} of {path}"))
        for key, value in extended.items()
        if key.lower().startswith(_META_PREFIX)
    )
    size = attributes.get("file_size")
    if size is None:
        size = sum(_count(c.get("size", 0), f"chunk size of {path}") for c in _chunks(entry))
    return _build(
        scope,
        bucket=bucket,
        object_key=object_key,
        etag=_seaweedfs_etag(entry, attributes, path),
        size=_count(size, f"size of {path}"),
        content_type=str(attributes.get("mime") or ""),
        uploaded_at=_seaweedfs_time(entry, attributes),
        metadata=metadata,
        source=SEAWEEDFS,
    )


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise MalformedNotification("eventTime is missing")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedNotification(f"eventTime {value!r} is not ISO 8601") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def from_minio(payload: Mapping[str, Any], scope: Scope) -> list[Outcome]:
    """Normalise one MinIO S3 event (one or more records)."""
    records = payload.get("Records")
    if not isinstance(records, list) or not records:
        raise MalformedNotification("not an S3 event notification (Records)")
    outcomes: list[Outcome] = []
    for record in records:
        if not isinstance(record, Mapping):
            raise MalformedNotification("an S3 event record is not an object")
        name = str(record.get("eventName", payload.get("EventName", "")))
        s3 = record.get("s3")
        if not isinstance(s3, Mapping):
            raise MalformedNotification(f"S3 event record {name!r} without s3")
        try:
            bucket = str(s3["bucket"]["name"])
            obj = s3["object"]
            if not isinstance(obj, Mapping):
                raise TypeError("s3.object is not an object")
            object_key = unquote_plus(str(obj["key"]))
        except (KeyError, TypeError):
            raise MalformedNotification("S3 event record without s3.bucket.name / s3.object.key") from None
        if not name.startswith("s3:ObjectCreated:"):
            outcomes.append(Ignored("not_create", f"{bucket}/{object_key}"))
            continue
        if name.rpartition(":")[2] in _MINIO_METADATA_EVENTS:
            outcomes.append(Ignored("metadata_only", f"{bucket}/{object_key}"))
            continue
        if object_key.endswith("/"):
            outcomes.append(Ignored("directory", f"{bucket}/{object_key}"))
            continue
        user_metadata = obj.get("userMetadata") or {}
        if not isinstance(user_metadata, Mapping):
            raise MalformedNotification(f"userMetadata of {bucket}/{object_key} is not an object")
        content_type = str(obj.get("contentType") or user_metadata.get("content-type") or "")
        size = _count(obj.get("size", 0), f"size of {bucket}/{object_key}")
        outcomes.append(
            _build(
                scope,
                bucket=bucket,
                object_key=object_key,
                etag=str(obj.get("eTag") or "").strip('"'),
                size=size,
                content_type=content_type,
                uploaded_at=_parse_time(record.get("eventTime")),
                metadata=_user_metadata((str(k), str(v)) for k, v in user_metadata.items()),
                source=MINIO,
            )
        )
    return outcomes


def source_of(payload: Any) -> str:
    """Which notifier sent ``payload`` (seaweedfs or minio); MalformedNotification if neither."""
    if isinstance(payload, Mapping):
        if "event_type" in payload and "message" in payload:
            return SEAWEEDFS
        if "Records" in payload:
            return MINIO
    raise MalformedNotification("neither a SeaweedFS filer notification nor an S3 event")


def normalise(payload: Any, scope: Scope) -> list[Outcome]:
    """Any supported notification -> outcomes, one per object it names."""
    try:
        if source_of(payload) == SEAWEEDFS:
            return [from_seaweedfs(payload, scope)]
        return from_minio(payload, scope)
    except MalformedNotification:
        raise
    except (TypeError, AttributeError, KeyError, ValueError, OverflowError, OSError) as exc:
        # A shape the checks above did not foresee: still bad input, never a crashed stage.
        # The fuzz tests fail on this message, so every case they find gets its own check.
        raise MalformedNotification(f"unexpected notification shape: {type(exc).__name__}: {exc}") from exc


class RecentVersions:
    """A bounded LRU of object versions (asset_id, etag) already published.

    Notifiers deliver at least once (and SeaweedFS sends an ``update`` for a metadata-only
    change); publishing the same version twice would make the pipeline do the work twice.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, asset: AssetUploaded) -> bool:
        """True if this version was seen before; otherwise remember it and return False."""
        version = (asset.asset_id, asset.etag)
        if version in self._seen:
            self._seen.move_to_end(version)
            return True
        self._seen[version] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return False

    def remember(self, asset_id: str, etag: str) -> None:
        """Count a version as published (the bridge seeds itself with what the topic holds)."""
        self._seen[(asset_id, etag)] = None
        self._seen.move_to_end((asset_id, etag))
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def forget(self, asset: AssetUploaded) -> None:
        """Forget a version (its publication failed, so a redelivery must go through)."""
        self._seen.pop((asset.asset_id, asset.etag), None)
