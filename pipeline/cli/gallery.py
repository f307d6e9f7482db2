"""``facegate reindex``: rebuild the gallery (Qdrant) from the vault, its authoritative copy."""

from __future__ import annotations

import uuid
from collections import defaultdict

import click

from ..contract import ObjectRef, SubjectEnrollment, utcnow
from ..contract.internal import GalleryAction, GalleryChange
from ..officers import sign
from ..topology import ENROLLMENTS, GALLERY
from ..vault import open_vault
from .common import connected_settings, producer
from .privacy import officer_key, officer_option


@click.command()
@click.option(
    "--reembed",
    is_flag=True,
    help="After a model change: re-enroll every subject from their reference photos with the "
    "current model (the consent is checked again), instead of reloading stored faceprints. "
    "The re-enrollments are signed by the officer (--officer).",
)
@officer_option
def reindex(reembed: bool, officer: str | None) -> None:
    """Rebuild every worker's gallery from the encrypted vault.

    Publishes one gallery change per subject on the gallery topic; each worker reloads that
    subject's faceprints from the vault into its Qdrant replica (or the shared Qdrant server).
    Faceprints never travel on Kafka: the message names the subject only.
    """
    key = officer_key(officer) if reembed else None
    settings = connected_settings(kafka=True)
    vault = open_vault(settings)
    try:
        references: dict[str, set[str]] = defaultdict(set)
        counts: dict[str, int] = defaultdict(int)
        for faceprint in vault.iter_faceprints():
            references[faceprint.subject_id].add(faceprint.reference)
            counts[faceprint.subject_id] += 1
    finally:
        vault.close()
    out = producer(settings)
    for subject in sorted(counts):
        if key is not None:
            refs = [ObjectRef(*ref.split("/", 1)) for ref in sorted(references[subject])]
            record = sign(SubjectEnrollment(str(uuid.uuid4()), subject, refs, utcnow()), key)
            out.send_record(ENROLLMENTS, subject, record)
        else:
            change = GalleryChange(subject, GalleryAction.UPSERT, counts[subject], utcnow())
            out.send_record(GALLERY, subject, change)
    out.flush()
    what = "re-enrollments" if reembed else "gallery reloads"
    click.echo(f"{len(counts)} subject(s), {sum(counts.values())} faceprint(s): {what} sent")


COMMANDS = [reindex]
