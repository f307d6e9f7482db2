"""Avro single object encoding (Avro spec 1.11, "Single object encoding").

A message is ``C3 01`` + the writer schema's CRC-64-AVRO fingerprint (8 bytes, little endian)
+ the Avro binary body. A consumer that knows the writer schema by its fingerprint can decode it
with no registry; schema evolution is plain Avro resolution against the reader's schema.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

_EMPTY64 = 0xC15D213AA4D7A795


def _fp_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


_FP_TABLE = _fp_table()


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint the Avro spec calls CRC-64-AVRO."""
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


class ContractError(ValueError):
    """Bytes that are not a record of the facegate contract."""


@dataclass(frozen=True)
class Schema:
    name: str  # full name, e.g. facegate.AssetUploaded
    parsed: dict[str, Any]
    fingerprint: bytes  # 8 bytes, little endian, as in the message header

    @classmethod
    def from_json(cls, schema: Mapping[str, Any]) -> Schema:
        parsed = fastavro.parse_schema(dict(schema), _write_hint=False)
        if not isinstance(parsed, dict):
            raise ContractError("a contract schema must be an Avro record")
        canonical = to_parsing_canonical_form(parsed)
        fp = struct.pack("<Q", crc64_avro(canonical.encode("utf-8")))
        return cls(name=parsed["name"], parsed=parsed, fingerprint=fp)

    def encode(self, datum: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(self.fingerprint)
        fastavro.schemaless_writer(buf, self.parsed, dict(datum), strict=True)
        return buf.getvalue()


class SchemaRegistry:
    """Known writer schemas by fingerprint: the .avsc files of schemas/ and any older versions."""

    def __init__(self) -> None:
        self._by_fp: dict[bytes, Schema] = {}
        self._current: dict[str, Schema] = {}

    def add(self, schema: Schema, *, current: bool = True) -> None:
        self._by_fp[schema.fingerprint] = schema
        if current:
            self._current[schema.name] = schema

    def load_dir(self, directory: Path = SCHEMA_DIR) -> SchemaRegistry:
        # internal/: records between facegate's own stages (same encoding, not part of the contract)
        for path in sorted([*directory.glob("*.avsc"), *directory.glob("internal/*.avsc")]):
            self.add(Schema.from_json(json.loads(path.read_text())))
        history = directory / "history"
        if history.is_dir():
            for path in sorted(history.glob("*.avsc")):
                self.add(Schema.from_json(json.loads(path.read_text())), current=False)
        return self

    def current(self, name: str) -> Schema:
        return self._current[name]

    def writer_of(self, message: bytes) -> Schema:
        if len(message) < HEADER_LEN or message[:2] != MAGIC:
            raise ContractError("not Avro single-object encoded (missing C3 01 header)")
        fp = bytes(message[2:HEADER_LEN])
        try:
            return self._by_fp[fp]
        except KeyError:
            raise ContractError(f"unknown writer schema fingerprint {fp.hex()}") from None

    def decode(self, message: bytes, reader: Schema | None = None) -> tuple[Schema, dict[str, Any]]:
        """Decode with the writer's schema, resolved against ``reader`` (default: current version)."""
        writer = self.writer_of(message)
        reader = reader or self._current.get(writer.name, writer)
        try:
            datum = fastavro.schemaless_reader(io.BytesIO(message[HEADER_LEN:]), writer.parsed, reader.parsed)
        except Exception as exc:  # fastavro raises many types for a bad body
            raise ContractError(f"corrupt {writer.name} body: {exc}") from exc
        if not isinstance(datum, dict):
            raise ContractError(f"{writer.name} body is not a record")
        return reader, datum


REGISTRY = SchemaRegistry().load_dir()
