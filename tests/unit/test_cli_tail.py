"""facegate tail: how records read from a topic are printed, as text and as JSON lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pipeline.cli.render import face_line, purge_text, tags_text
from pipeline.cli.tail import STREAMS, lines_for, topic_of
from pipeline.contract import (
    AssetFaces,
    AssetKind,
    AssetUploaded,
    BBox,
    Face,
    FaceStatus,
    PurgeReason,
    SubjectPurged,
)
from pipeline.kafka.io import Message
from pipeline.settings import Settings

AT = datetime(2026, 11, 22, 10, 30, 5, 123000, tzinfo=UTC)


def _tags() -> AssetFaces:
    return AssetFaces(
        asset_id="assets/wire/a.jpg",
        kind=AssetKind.IMAGE,
        faces=[
            Face(
                "face-1",
                BBox(10.4, 20.6, 100.0, 120.2),
                0.99,
                FaceStatus.GREEN,
                "consent:explicit",
                ["archive", "editorial"],
                subject_id="S-1",
                similarity=0.412,
            ),
            Face("face-2", BBox(300, 40, 80, 90), 0.95, FaceStatus.RED, "unknown_face"),
        ],
        model_version="m1",
        processed_at=AT,
        etag="e1",
    )


def _message(value: bytes, key: str = "k", headers: dict[str, str] | None = None) -> Message:
    return Message(key=key, value=value, headers=headers or {}, partition=2, offset=7, timestamp=AT)


def test_every_stream_names_a_topic_setting() -> None:
    settings = Settings()
    assert topic_of(settings, "tags") == settings.kafka.topic_tags
    assert {topic_of(settings, s) for s in STREAMS} <= {
        getattr(settings.kafka, f) for f in type(settings.kafka).model_fields if f.startswith("topic_")
    }


def test_tags_text_has_the_asset_then_one_line_per_face_with_status_subject_reason_box() -> None:
    lines = tags_text(_tags())
    assert lines[0].startswith("asset assets/wire/a.jpg  IMAGE  2 faces  model m1  at 2026-11-22T10:30:05")
    assert lines[1] == (
        "  face face-1  GREEN  subject S-1 (similarity 0.412)  reason consent:explicit  box 10,21 100x120"
        "  scopes archive,editorial"
    )
    assert lines[2] == "  face face-2  RED    reason unknown_face  box 300,40 80x90"


def test_face_line_of_a_video_track_shows_its_time_span() -> None:
    face = Face(
        "f",
        BBox(1, 2, 3, 4),
        0.9,
        FaceStatus.AMBER,
        "expiring:2026-12-01",
        frame_time_ms=1500,
        track_id="t-3",
        track_end_ms=4000,
    )
    assert face_line(face).endswith("t 1500-4000 ms  track t-3")


def test_tail_tags_prints_text_and_json() -> None:
    message = _message(_tags().to_bytes(), key="assets/wire/a.jpg")
    assert lines_for("tags", "facegate.tags", message, as_json=False) == tags_text(_tags())
    (line,) = lines_for("tags", "facegate.tags", message, as_json=True)
    data = json.loads(line)
    assert data["topic"] == "facegate.tags"
    assert (data["partition"], data["offset"], data["key"]) == (2, 7, "assets/wire/a.jpg")
    assert data["record"]["type"] == "facegate.AssetFaces"
    assert data["record"]["faces"][0]["subject_id"] == "S-1"
    assert data["record"]["faces"][0]["status"] == "GREEN"
    assert data["record"]["processed_at"] == "2026-11-22T10:30:05.123000+00:00"


def test_tail_dlq_shows_the_error_headers_even_when_the_value_does_not_decode() -> None:
    headers = {
        "error_class": "CorruptImage",
        "error_message": "not a JPEG",
        "stage": "recognize",
        "source_topic": "facegate.assets",
        "source_partition": "1",
        "source_offset": "42",
    }
    message = _message(b"\x00garbage", key="assets/bad.jpg", headers=headers)
    (text,) = lines_for("dlq", "facegate.dlq", message, as_json=False)
    assert text == (
        "dlq key assets/bad.jpg  CorruptImage: not a JPEG  "
        "(stage recognize, source facegate.assets/1/42, 8 bytes)"
    )
    (line,) = lines_for("dlq", "facegate.dlq", message, as_json=True)
    data = json.loads(line)
    assert data["headers"] == headers
    assert "record" not in data
    assert data["value_base64"] == "AGdhcmJhZ2U="
    assert data["decode_error"]  # why it did not decode


def test_tail_dlq_json_decodes_a_contract_record_that_was_dead_lettered() -> None:
    asset = AssetUploaded("assets/x.jpg", "assets", "x.jpg", "e", 0, "image/jpeg", AssetKind.IMAGE, AT)
    data = json.loads(lines_for("dlq", "facegate.dlq", _message(asset.to_bytes()), as_json=True)[0])
    assert data["record"]["asset_id"] == "assets/x.jpg"


def test_an_undecodable_record_is_reported_not_fatal() -> None:
    (text,) = lines_for("audit", "facegate.audit", _message(b"{}"), as_json=False)
    assert text.startswith("undecodable record at 2/7 key k: ")


def test_purge_text_lists_every_untagged_asset() -> None:
    purge = SubjectPurged("p-1", "S-1", PurgeReason.WITHDRAWN, ["assets/a.jpg", "assets/b.jpg"], 3, True, AT)
    lines = purge_text(purge)
    assert lines[0].startswith("purge S-1  reason WITHDRAWN  2 asset(s) untagged  3 faceprint(s) deleted")
    assert "key destroyed yes" in lines[0]
    assert lines[1:] == ["  asset assets/a.jpg", "  asset assets/b.jpg"]
