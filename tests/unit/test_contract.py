"""The event contract: single object encoding, schema/class agreement, evolution."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime

import pytest

from pipeline.contract import (
    REGISTRY,
    AssetFaces,
    AssetKind,
    AssetUploaded,
    BBox,
    ConsentAction,
    ConsentChange,
    ContractError,
    Face,
    FaceStatus,
    LegalBasis,
    ObjectRef,
    PurgeReason,
    Schema,
    SchemaRegistry,
    SubjectEnrollment,
    SubjectPurged,
    crc64_avro,
    decode,
)
from pipeline.contract.avro import SCHEMA_DIR

T0 = datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC)


def samples():
    face = Face(
        face_id="f-1",
        bbox=BBox(10, 20, 30, 40),
        det_score=0.5,
        status=FaceStatus.GREEN,
        reason="consent:explicit",
        scopes=["editorial"],
        subject_id="S-1",
        similarity=0.25,
    )
    return [
        AssetUploaded("assets/a.jpg", "assets", "a.jpg", "etag1", 123, "image/jpeg", AssetKind.IMAGE, T0),
        AssetUploaded(
            "assets/frames/v1/40.jpg",
            "assets",
            "frames/v1/40.jpg",
            "e",
            1,
            "image/jpeg",
            AssetKind.FRAME,
            T0,
            video_id="v1",
            frame_time_ms=40,
            source="seaweedfs",
        ),
        ConsentChange(
            "ev-1",
            "S-1",
            ConsentAction.GRANTED,
            LegalBasis.EXPLICIT_CONSENT,
            ["editorial", "archive"],
            T0,
            None,
            "s3://legal/S-1.pdf",
            T0,
            "dpo@example.org",
        ),
        SubjectEnrollment(
            "ev-2", "S-1", [ObjectRef("assets", "ref/1.jpg"), ObjectRef("assets", "ref/2.jpg")]
        ),
        AssetFaces("assets/a.jpg", AssetKind.IMAGE, [face], "m@1", T0, etag="etag1"),
        SubjectPurged("ev-3", "S-1", PurgeReason.WITHDRAWN, ["assets/a.jpg"], 2, True, T0),
    ]


@pytest.mark.parametrize("record", samples(), ids=lambda r: type(r).__name__)
def test_round_trip(record):
    message = record.to_bytes()
    assert message[:2] == b"\xc3\x01"
    assert message[2:10] == type(record).schema().fingerprint
    assert decode(message) == record
    assert type(record).from_bytes(message) == record


def test_fingerprint_is_crc64_avro_of_canonical_form():
    # Known value from the Avro spec test suite: the schema "int".
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F
    schema = AssetUploaded.schema()
    from fastavro.schema import to_parsing_canonical_form

    canonical = to_parsing_canonical_form(schema.parsed).encode()
    assert schema.fingerprint == struct.pack("<Q", crc64_avro(canonical))


def test_every_avsc_has_a_record_class():
    from pipeline.contract.records import RECORDS

    names = {json.loads(p.read_text())["name"] for p in SCHEMA_DIR.glob("*.avsc")}
    assert names == {cls.SCHEMA_NAME.split(".")[-1] for cls in RECORDS}


@pytest.mark.parametrize(
    "message, error",
    [
        (b"", "missing C3 01"),
        (b"\xc3\x01\x00", "missing C3 01"),
        (b"garbage that is long enough", "missing C3 01"),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown writer schema"),
    ],
)
def test_bad_bytes_are_contract_errors(message, error):
    with pytest.raises(ContractError, match=error):
        decode(message)


def test_truncated_body_is_a_contract_error():
    message = samples()[2].to_bytes()
    with pytest.raises(ContractError, match="corrupt"):
        decode(message[:-5])


def test_old_reader_reads_new_writer():
    """A consumer on today's schema reads records from a producer one version ahead."""
    current = json.loads((SCHEMA_DIR / "AssetUploaded.avsc").read_text())
    newer = json.loads(json.dumps(current))
    newer["fields"].append({"name": "checksum_sha256", "type": ["null", "string"], "default": None})
    newer_schema = Schema.from_json(newer)
    registry = SchemaRegistry().load_dir()
    registry.add(newer_schema, current=False)

    record = samples()[0]
    message = newer_schema.encode({**record.to_avro(), "checksum_sha256": "ab" * 32})
    reader, datum = registry.decode(message, AssetUploaded.schema())
    assert reader is AssetUploaded.schema()
    assert AssetUploaded.from_avro(datum) == record


def test_new_reader_reads_old_writer():
    """A consumer one version ahead reads today's records, filling the new field's default."""
    current = json.loads((SCHEMA_DIR / "AssetFaces.avsc").read_text())
    newer = json.loads(json.dumps(current))
    newer["fields"].append({"name": "review_state", "type": "string", "default": "unreviewed"})
    newer_schema = Schema.from_json(newer)
    record = samples()[4]
    _, datum = REGISTRY.decode(record.to_bytes(), newer_schema)
    assert datum["review_state"] == "unreviewed"
    assert datum["faces"][0]["subject_id"] == "S-1"


def test_writer_refuses_a_record_that_breaks_the_schema():
    bad = AssetUploaded("a", "b", "c", "e", "not-a-number", "t", AssetKind.IMAGE, T0)  # type: ignore[arg-type]
    with pytest.raises((ValueError, TypeError)):
        bad.to_bytes()
