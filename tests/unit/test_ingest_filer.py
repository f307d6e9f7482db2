"""The filer metadata log as the bridge reads it: events, their webhook shape, the checkpoint."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pipeline.contract import AssetKind, AssetUploaded
from pipeline.ingest.filer import Watermark, as_notification, events
from pipeline.ingest.notifications import Scope, normalise

SCOPE = Scope(bucket="assets")


def meta_event(
    name: str, ts_ns: int, *, old: bool = False, parent: str = "/buckets/assets"
) -> dict[str, Any]:
    """A SubscribeMetadataResponse as `weed filer.meta.tail` 4.48 prints it (protojson)."""
    entry = {
        "name": name,
        "isDirectory": False,
        "chunks": [{"fileId": "", "offset": "0", "size": "4", "modifiedTsNs": str(ts_ns - 500)}],
        "attributes": {
            "fileSize": "4",
            "mtime": str(ts_ns // 10**9),
            "mime": "image/jpeg",
            "md5": "V3Vxvk3p3M6FoEG6BBDynw==",
        },
        "extended": {"Seaweed-X-Amz-ETag": "NTc3NTcxYmU0ZGU5ZGNjZTg1YTA0MWJhMDQxMGYyOWY="},
    }
    return {
        "directory": "/buckets/assets",
        "eventNotification": {
            "oldEntry": dict(entry) if old else None,
            "newEntry": entry,
            "deleteChunks": True,
            "newParentPath": parent,
        },
        "tsNs": str(ts_ns),
    }


def test_a_create_becomes_the_asset_the_webhook_would_have_given() -> None:
    notification = as_notification(meta_event("a0.jpg", 1_796_197_217_633_605_465))
    assert notification["event_type"] == "create"
    [asset] = normalise(notification, SCOPE)
    assert isinstance(asset, AssetUploaded)
    assert asset.asset_id == "assets/a0.jpg" and asset.kind is AssetKind.IMAGE
    assert asset.etag == "577571be4de9dcce85a041ba0410f29f" and asset.size == 4
    assert asset.uploaded_at.timestamp() == 1_796_197_217.633  # chunk time, to the millisecond


def test_overwrite_rename_and_delete() -> None:
    assert as_notification(meta_event("a.jpg", 10**18, old=True))["event_type"] == "update"
    renamed = as_notification(meta_event("a.jpg", 10**18, old=True, parent="/buckets/assets/moved"))
    [asset] = normalise(renamed, SCOPE)
    assert isinstance(asset, AssetUploaded) and asset.asset_id == "assets/moved/a.jpg"
    deleted = meta_event("a.jpg", 10**18, old=True)
    deleted["eventNotification"]["newEntry"] = None
    assert [type(o).__name__ for o in normalise(as_notification(deleted), SCOPE)] == ["Ignored"]


def test_the_printed_objects_are_read_one_by_one() -> None:
    printed = "".join(json.dumps(meta_event(f"{i}.jpg", 10**18 + i), indent=2) + "\n" for i in range(3))
    assert [e["tsNs"] for e in events(io.StringIO(printed))] == [str(10**18 + i) for i in range(3)]


def test_the_checkpoint_waits_for_every_older_event_and_for_the_hold_back(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    mark = Watermark(path, hold_back_s=10.0)
    assert mark.checkpoint_ns is None
    first, second, third = (mark.register(ts) for ts in (100, 200, 300))
    mark.settle(second)  # delivered out of order: the watermark waits for the first
    assert mark.watermark_ns is None
    mark.settle(first)
    assert mark.watermark_ns == 200
    mark.save()  # not yet held long enough: the broker may not have saved them
    assert not path.exists()
    mark.save(now=first[1] + 10.0)
    assert json.loads(path.read_text()) == {"filer_ts_ns": 200}
    mark.settle(third)
    replayed = mark.register(150)  # a resubscription replays older events: never backwards
    mark.settle(replayed)
    assert mark.watermark_ns == 300
    assert Watermark(path).checkpoint_ns == 200


def test_an_unreadable_checkpoint_replays_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_text("{broken")
    assert Watermark(path).checkpoint_ns is None
