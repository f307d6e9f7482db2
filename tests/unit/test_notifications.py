"""Object-store notifications -> AssetUploaded (pipeline.ingest.notifications).

The SeaweedFS payloads are shaped as SeaweedFS 4.48's filer webhook sent them on this machine
(captured from `weed mini` with an S3 PUT by the minio SDK); the MinIO ones follow MinIO's
documented S3 event records.
"""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.contract import AssetKind, AssetUploaded
from pipeline.ingest.notifications import (
    Ignored,
    MalformedNotification,
    RecentVersions,
    Scope,
    from_minio,
    from_seaweedfs,
    normalise,
    source_of,
)

SCOPE = Scope(bucket="assets")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def seaweed_create(key: str = "/buckets/assets/photos/a b.jpg", **extended: str) -> dict[str, Any]:
    name = key.rsplit("/", 1)[1]
    return {
        "event_type": "create",
        "key": key,
        "message": {
            "new_entry": {
                "name": name,
                "chunks": [
                    {
                        "size": 1000,
                        "modified_ts_ns": 1795343187751485273,
                        "e_tag": "OYUz1IER6fZksfZMsQxLYw==",
                        "fid": {"volume_id": 1, "file_key": 1, "cookie": 4139217709},
                    }
                ],
                "attributes": {
                    "file_size": 1000,
                    "mtime": 1795343187,
                    "file_mode": 432,
                    "crtime": 1795343187,
                    "mime": "image/jpeg",
                    "md5": "OYUz1IER6fZksfZMsQxLYw==",
                    "inode": 11383443987646469295,
                },
                "extended": {
                    "Seaweed-X-Amz-ETag": b64("398533d48111e9f664b1f64cb10c4b63"),
                    "Seaweed-X-Amz-Owner": b64("admin"),
                    **{k: b64(v) for k, v in extended.items()},
                },
            },
            "delete_chunks": True,
            "new_parent_path": key.rsplit("/", 1)[0],
            "signatures": [772090995],
        },
    }


def minio_event(
    key: str = "photos/a+b.jpg", name: str = "s3:ObjectCreated:Put", **meta: str
) -> dict[str, Any]:
    return {
        "EventName": name,
        "Key": f"assets/{key}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "awsRegion": "",
                "eventTime": "2026-11-22T10:26:27.751Z",
                "eventName": name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": "assets", "arn": "arn:aws:s3:::assets"},
                    "object": {
                        "key": key,
                        "size": 1000,
                        "eTag": "398533d48111e9f664b1f64cb10c4b63",
                        "contentType": "image/jpeg",
                        "userMetadata": {"content-type": "image/jpeg", **meta},
                        "sequencer": "187A0B1C2D3E4F50",
                    },
                },
            }
        ],
    }


def test_seaweedfs_create_becomes_asset_uploaded() -> None:
    asset = from_seaweedfs(seaweed_create(), SCOPE)
    assert asset == AssetUploaded(
        asset_id="assets/photos/a b.jpg",
        bucket="assets",
        object_key="photos/a b.jpg",
        etag="398533d48111e9f664b1f64cb10c4b63",
        size=1000,
        content_type="image/jpeg",
        kind=AssetKind.IMAGE,
        uploaded_at=datetime(2026, 11, 22, 10, 26, 27, 751000, tzinfo=UTC),
        source="seaweedfs",
    )
    # It survives the wire.
    assert AssetUploaded.from_bytes(asset.to_bytes()) == asset


def test_seaweedfs_overwrite_is_an_update_with_the_new_entry() -> None:
    payload = seaweed_create()
    payload["event_type"] = "update"
    payload["message"]["old_entry"] = copy.deepcopy(payload["message"]["new_entry"])
    payload["message"]["new_entry"]["extended"]["Seaweed-X-Amz-ETag"] = b64("ffff")
    asset = from_seaweedfs(payload, SCOPE)
    assert isinstance(asset, AssetUploaded) and asset.etag == "ffff"


def test_seaweedfs_etag_falls_back_to_md5() -> None:
    payload = seaweed_create()
    del payload["message"]["new_entry"]["extended"]["Seaweed-X-Amz-ETag"]
    asset = from_seaweedfs(payload, SCOPE)
    assert isinstance(asset, AssetUploaded) and asset.etag == "398533d48111e9f664b1f64cb10c4b63"


def test_seaweedfs_rename_names_the_new_path() -> None:
    payload = seaweed_create("/buckets/assets/new.jpg")
    payload["event_type"] = "rename"
    payload["key"] = "/buckets/assets/old.jpg"
    asset = from_seaweedfs(payload, SCOPE)
    assert isinstance(asset, AssetUploaded) and asset.object_key == "new.jpg"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({**seaweed_create(), "event_type": "delete"}, "not_create"),
        (seaweed_create("/buckets/other/a.jpg"), "other_bucket"),
        (seaweed_create("/topics/a.jpg"), "other_bucket"),
        (seaweed_create("/buckets/assets/.uploads/abc/0001_x.part"), "multipart_part"),
        (seaweed_create("/buckets/assets/notes.txt"), "not_media"),
    ],
)
def test_seaweedfs_ignored(payload: dict[str, Any], reason: str) -> None:
    if reason == "not_media":
        payload["message"]["new_entry"]["attributes"]["mime"] = "text/plain"
    outcome = from_seaweedfs(payload, SCOPE)
    assert isinstance(outcome, Ignored) and outcome.reason == reason


def test_seaweedfs_directory_is_ignored() -> None:
    payload = {
        "event_type": "create",
        "key": "/buckets/assets/photos",
        "message": {
            "new_entry": {"name": "photos", "is_directory": True, "attributes": {"mtime": 1795343187}},
            "new_parent_path": "/buckets/assets",
        },
    }
    assert from_seaweedfs(payload, SCOPE) == Ignored("directory", "/buckets/assets/photos")


def test_prefix_limits_the_assets() -> None:
    scope = Scope(bucket="assets", prefix="incoming/")
    inside = from_seaweedfs(seaweed_create("/buckets/assets/incoming/a.jpg"), scope)
    outside = from_seaweedfs(seaweed_create("/buckets/assets/archive/a.jpg"), scope)
    assert isinstance(inside, AssetUploaded) and inside.asset_id == "assets/incoming/a.jpg"
    assert isinstance(outside, Ignored) and outside.reason == "outside_prefix"


def test_frame_from_key_convention_under_the_prefix() -> None:
    scope = Scope(bucket="assets", prefix="incoming/")
    asset = from_seaweedfs(seaweed_create("/buckets/assets/incoming/frames/vid-7/12040.jpg"), scope)
    assert isinstance(asset, AssetUploaded)
    assert (asset.kind, asset.video_id, asset.frame_time_ms) == (AssetKind.FRAME, "vid-7", 12040)
    # The convention is relative to the prefix: elsewhere it is a plain image.
    other = from_seaweedfs(seaweed_create("/buckets/assets/incoming/x/frames/vid-7/12040.jpg"), scope)
    assert isinstance(other, AssetUploaded) and other.kind is AssetKind.IMAGE


def test_frame_from_user_metadata() -> None:
    payload = seaweed_create(**{"X-Amz-Meta-Video-Id": "v1", "X-Amz-Meta-Frame-Time-Ms": "2500"})
    asset = from_seaweedfs(payload, SCOPE)
    assert isinstance(asset, AssetUploaded)
    assert (asset.kind, asset.video_id, asset.frame_time_ms) == (AssetKind.FRAME, "v1", 2500)
    # A video id alone does not make a frame.
    alone = from_seaweedfs(seaweed_create(**{"X-Amz-Meta-Video-Id": "v1"}), SCOPE)
    assert isinstance(alone, AssetUploaded) and alone.kind is AssetKind.IMAGE


def test_bad_frame_time_is_malformed() -> None:
    payload = seaweed_create(**{"X-Amz-Meta-Video-Id": "v1", "X-Amz-Meta-Frame-Time-Ms": "soon"})
    with pytest.raises(MalformedNotification, match="frame-time-ms"):
        from_seaweedfs(payload, SCOPE)


def test_kind_from_extension_when_content_type_is_generic() -> None:
    payload = seaweed_create("/buckets/assets/clip.mp4")
    payload["message"]["new_entry"]["attributes"]["mime"] = "application/octet-stream"
    asset = from_seaweedfs(payload, SCOPE)
    assert isinstance(asset, AssetUploaded) and asset.kind is AssetKind.VIDEO
    assert asset.content_type == "application/octet-stream"


@pytest.mark.parametrize(
    "payload",
    [
        {"event_type": "create"},
        {"event_type": "create", "message": {"new_entry": "x"}},
        {"event_type": "create", "key": 3, "message": {"new_entry": {"name": "a.jpg"}}},
        {"event_type": "create", "key": "/buckets/assets/a.jpg", "message": {"new_entry": {"name": "a.jpg"}}},
    ],
)
def test_seaweedfs_malformed(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedNotification):
        normalise(payload, SCOPE)


def test_minio_put_becomes_asset_uploaded_with_decoded_key() -> None:
    (asset,) = from_minio(minio_event("photos/a+b%C3%A9.jpg"), SCOPE)
    assert isinstance(asset, AssetUploaded)
    assert asset.object_key == "photos/a bé.jpg"
    assert asset.asset_id == "assets/photos/a bé.jpg"
    assert asset.etag == "398533d48111e9f664b1f64cb10c4b63"
    assert asset.uploaded_at == datetime(2026, 11, 22, 10, 26, 27, 751000, tzinfo=UTC)
    assert (asset.kind, asset.source) == (AssetKind.IMAGE, "minio")


def test_minio_frame_from_metadata() -> None:
    event = minio_event("f.jpg", **{"X-Amz-Meta-Video-Id": "v9", "X-Amz-Meta-Frame-Time-Ms": "40"})
    (asset,) = from_minio(event, SCOPE)
    assert isinstance(asset, AssetUploaded)
    assert (asset.kind, asset.video_id, asset.frame_time_ms) == (AssetKind.FRAME, "v9", 40)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("s3:ObjectRemoved:Delete", "not_create"),
        ("s3:ObjectAccessed:Get", "not_create"),
        ("s3:ObjectCreated:PutTagging", "metadata_only"),
    ],
)
def test_minio_ignored_events(name: str, reason: str) -> None:
    (outcome,) = from_minio(minio_event(name=name), SCOPE)
    assert isinstance(outcome, Ignored) and outcome.reason == reason


def test_minio_multipart_and_copy_are_uploads() -> None:
    for name in ("s3:ObjectCreated:CompleteMultipartUpload", "s3:ObjectCreated:Copy"):
        (asset,) = from_minio(minio_event(name=name), SCOPE)
        assert isinstance(asset, AssetUploaded)


def test_minio_several_records() -> None:
    event = minio_event()
    second = copy.deepcopy(event["Records"][0])
    second["s3"]["object"]["key"] = "clip.mov"
    second["s3"]["object"]["contentType"] = "video/quicktime"
    event["Records"].append(second)
    kinds = [o.kind for o in from_minio(event, SCOPE) if isinstance(o, AssetUploaded)]
    assert kinds == [AssetKind.IMAGE, AssetKind.VIDEO]


@pytest.mark.parametrize(
    "payload",
    [
        {"Records": []},
        {"Records": ["x"]},
        {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {}}}]},
    ],
)
def test_minio_malformed(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedNotification):
        normalise(payload, SCOPE)


def test_minio_bad_event_time_is_malformed() -> None:
    event = minio_event()
    event["Records"][0]["eventTime"] = "yesterday"
    with pytest.raises(MalformedNotification, match="eventTime"):
        from_minio(event, SCOPE)


def test_source_detection() -> None:
    assert source_of(seaweed_create()) == "seaweedfs"
    assert source_of(minio_event()) == "minio"
    for other in ([], "x", {"hello": 1}):
        with pytest.raises(MalformedNotification):
            source_of(other)


def test_recent_versions_is_a_bounded_lru() -> None:
    (asset,) = from_minio(minio_event("a.jpg"), SCOPE)
    assert isinstance(asset, AssetUploaded)
    versions = RecentVersions(capacity=2)
    assert not versions.seen(asset)
    assert versions.seen(asset)
    newer = AssetUploaded(**{**asset.__dict__, "etag": "other"})
    assert not versions.seen(newer)  # another version of the same object is new
    third = AssetUploaded(**{**asset.__dict__, "asset_id": "assets/b.jpg"})
    assert versions.seen(asset)  # touch: asset is now the most recent
    assert not versions.seen(third)  # evicts `newer`, the least recent
    assert len(versions) == 2
    assert not versions.seen(newer)
    versions.forget(newer)
    assert not versions.seen(newer)
