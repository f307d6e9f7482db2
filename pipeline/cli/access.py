"""``facegate subject export`` (right of access, Art. 15) and ``facegate audit verify``."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import click
from minio.error import S3Error
from urllib3.exceptions import HTTPError

from ..audit import VerifyReport, by_chain_seq, verify
from ..contract import AuditRecord, Face, SubjectPurged, utcnow
from ..errors import StackError
from ..kafka.io import read_all
from ..objects import s3_client
from ..settings import Settings
from ..vault import vault_dir
from ..vault.sqlite import SqliteBlobStore, SqliteKeyStore
from . import render
from .common import bootstrap, connected_settings
from .history import (
    ConsentView,
    Skipped,
    audit_of,
    consent_view,
    current_tags,
    decoded,
    faces_of,
    purges_of,
    verify_json,
)
from .privacy import consent_lines, subject_argument


def vault_holdings(settings: Settings, subject: str) -> dict[str, Any] | None:
    """How many sealed faceprints the vault holds for ``subject`` and whether their key exists.

    Counted from the stores' rows: nothing is decrypted. None when there is no vault here.
    """
    directory = vault_dir(settings)
    keys_db, blobs_db = directory / "keys.db", directory / "faceprints.db"
    if not (keys_db.is_file() and blobs_db.is_file()):
        return None
    keys, blobs = SqliteKeyStore(keys_db), SqliteBlobStore(blobs_db)
    try:
        return {
            "faceprints": len(blobs.for_subject(subject)),
            "key_held": keys.get(subject) is not None,
            "vault": str(directory),
        }
    finally:
        keys.close()
        blobs.close()


def _references(settings: Settings, subject: str) -> list[dict[str, Any]]:
    client = s3_client(settings)
    bucket = settings.s3.enrollment_bucket
    try:
        if not client.bucket_exists(bucket):
            return []
        objects = client.list_objects(bucket, prefix=f"{subject}/", recursive=True)
        return [{"bucket": bucket, "object_key": o.object_name, "size": o.size} for o in objects]
    except (S3Error, HTTPError, OSError) as exc:
        raise StackError(f"s3: cannot list {bucket} ({exc})") from None


@dataclass
class SubjectExport:
    subject_id: str
    consent: ConsentView
    assets: dict[str, list[Face]]  # asset id -> the faces its current tags name as the subject
    references: list[dict[str, Any]]
    purges: list[SubjectPurged]
    audit: list[AuditRecord]
    faceprints: dict[str, Any] | None
    exported_at: datetime = field(default_factory=utcnow)

    def to_json(self) -> dict[str, Any]:
        return {
            "subject_id": self.subject_id,
            "exported_at": self.exported_at,
            "consent": self.consent.to_json(),
            "assets": {a: [asdict(f) for f in faces] for a, faces in self.assets.items()},
            "reference_photos": self.references,
            "purges": [render.record_json(p) for p in self.purges],
            "audit": [render.record_json(r) for r in self.audit],
            "faceprints": self.faceprints,
        }

    def lines(self) -> list[str]:
        subject = self.subject_id
        lines = [f"subject {subject}: what facegate holds (exported {render.when(self.exported_at)})", ""]
        lines += consent_lines(self.consent)
        lines += ["", f"assets whose current tags name {subject}: {len(self.assets)}"]
        for asset, faces in self.assets.items():
            lines.append(f"  {asset}")
            lines += [f"    {render.face_line(f)}" for f in faces]
        lines += ["", f"reference photos in the enrollment bucket: {len(self.references)}"]
        lines += [f"  {r['bucket']}/{r['object_key']}  {r['size']} bytes" for r in self.references]
        lines += ["", _faceprint_line(self.faceprints)]
        lines += ["", f"erasure receipts: {len(self.purges)}"]
        lines += [f"  {line}" for p in self.purges for line in render.purge_text(p)]
        lines += ["", f"audit entries: {len(self.audit)}"]
        lines += [f"  {line}" for r in self.audit for line in render.audit_text(r)]
        return lines


def _faceprint_line(holdings: dict[str, Any] | None) -> str:
    if holdings is None:
        return "faceprints: no vault under this data dir (it lives in the worker's data dir)"
    key = "held" if holdings["key_held"] else "none (destroyed, or never made)"
    return (
        f"faceprints: {holdings['faceprints']} held encrypted in the vault ({holdings['vault']}), "
        f"data key {key}; "
        "faceprints are not exported (biometric vectors; no topic ever carries one)"
    )


def export(settings: Settings, subject: str) -> SubjectExport:
    """Everything facegate holds about ``subject`` that can be shown (no faceprint is shown)."""
    server = bootstrap(settings)
    k = settings.kafka
    purges = purges_of(subject, read_all(server, k.topic_purges))
    return SubjectExport(
        subject_id=subject,
        consent=consent_view(subject, read_all(server, k.topic_consent), settings.privacy, utcnow(), purges),
        assets=faces_of(subject, current_tags(read_all(server, k.topic_tags))),
        references=_references(settings, subject),
        purges=purges,
        audit=audit_of(subject, decoded(read_all(server, k.topic_audit), AuditRecord)[0]),
        faceprints=vault_holdings(settings, subject),
    )


@click.group("subject")
def subject_group() -> None:
    """A data subject's rights: what facegate holds about them."""


@subject_group.command("export")
@subject_argument
@click.option("--json", "as_json", is_flag=True, help="One JSON object (for the subject access response).")
def subject_export(subject: str, as_json: bool) -> None:
    """Right of access: everything held about SUBJECT.

    Consent history and current state, the assets whose current tags name SUBJECT (with the
    face boxes and statuses), reference photos, erasure receipts and audit entries. Faceprints
    are only counted: they stay encrypted in the vault and no topic ever carries one.
    """
    settings = connected_settings(kafka=True, s3=True)
    data = export(settings, subject)
    if as_json:
        click.echo(render.dumps(data.to_json()))
        return
    for line in data.lines():
        click.echo(line)


def verify_audit(settings: Settings) -> tuple[VerifyReport, list[Skipped]]:
    """Every chain of the audit log checked, and the records on it that do not decode."""
    records, undecodable = decoded(read_all(bootstrap(settings), settings.kafka.topic_audit), AuditRecord)
    return verify(sorted(records, key=by_chain_seq)), undecodable


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit log (facegate.audit)."""


@audit_group.command("verify")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: chains, problems.")
def audit_verify(as_json: bool) -> None:
    """Check every hash chain of the audit log: altered, removed, inserted or reordered records.

    Exit code 1 if any problem is found (including a record that does not decode).
    """
    settings = connected_settings(kafka=True)
    report, undecodable = verify_audit(settings)
    if as_json:
        click.echo(render.dumps(verify_json(report, undecodable)))
    else:
        for s in undecodable:
            click.echo(f"record at {s.partition}/{s.offset} is not an AuditRecord: {s.reason}")
        click.echo(f"{report.records} audit record(s) read from {settings.kafka.topic_audit}")
        click.echo(report.describe())
    if undecodable or not report.ok:
        sys.exit(1)


COMMANDS: list[Any] = [subject_group, audit_group]
