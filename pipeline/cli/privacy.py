"""The privacy officer's commands: consent, enrollment, erasure, right of access, audit.

They produce events signed with the officer's key (pipeline/officers); the worker verifies the
signature against its officer registry and validates the event again (an unsigned or invalid
event from any producer is dead-lettered and audited there). They write external topics only.
``--wait`` follows the worker's answer on its topic.
"""

from __future__ import annotations

import contextlib
import io
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError

from ..audit import AuditAction
from ..consent import policy
from ..contract import (
    AuditRecord,
    ConsentAction,
    ConsentChange,
    LegalBasis,
    ObjectRef,
    PurgeReason,
    Record,
    SubjectEnrollment,
    SubjectPurged,
    utcnow,
)
from ..contract.ids import subject_id_problem
from ..contract.internal import ErasureRequest
from ..errors import ConfigError, FacegateError, StackError
from ..kafka.io import end_offsets, read_all, read_topic
from ..objects import s3_client
from ..officers import OfficerKey, sign, unlock
from ..settings import Settings, get_settings
from ..topology import Topology
from ..vault import vault_dir
from ..vault.references import read_enrollment_key, seal_for_workers
from . import render
from .common import When, bootstrap, connected_settings, operator, producer
from .history import ConsentView, audit_detail, consent_view, purges_of
from .ingest import media_type

R = TypeVar("R", bound=Record)
_BASES = {b.value.lower(): b for b in LegalBasis}


def check_subject_id(subject_id: str) -> str:
    """Subject ids are pseudonyms used as Kafka keys and object key prefixes (the worker's rule)."""
    value = subject_id.strip()
    problem = subject_id_problem(value)
    if problem:
        raise click.BadParameter(f"{subject_id!r}: {problem}")
    return value


def _subject_arg(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    return check_subject_id(value)


subject_argument = click.argument("subject", callback=_subject_arg)
officer_option = click.option(
    "--officer",
    "officer",
    default=None,
    metavar="ID",
    help="The privacy officer who signs (default: privacy.officer, or the only key in privacy.officer_keys).",
)

wait_timeout = click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    metavar="SECONDS",
    show_default=True,
    help="How long --wait waits, in seconds.",
)


def officer_key(officer: str | None) -> OfficerKey:
    """The signing officer's key, its passphrase asked for when it has one and none is set."""
    return unlock(get_settings(), officer, ask=lambda prompt: click.prompt(prompt, hide_input=True))


def signed(record: R, officer: str | None) -> R:
    """``record`` signed by the officer (who becomes its recorded_by / requested_by)."""
    return sign(record, officer_key(officer))


def publish(settings: Settings, topic: str, key: str, record: Record) -> None:
    """Send one record and wait until the broker has it (StackError otherwise).

    TopologyError if ``record`` may not travel on ``topic`` (pipeline.topology).
    """
    out = producer(settings)
    out.check(topic)
    out.send_record(Topology(settings.kafka).topic(topic), key, record)
    out.flush()


def consent_of(settings: Settings, subject: str) -> ConsentView:
    """The subject's consent as the topics hold it now (history, state, what a face gets)."""
    server = bootstrap(settings)
    messages = read_all(server, settings.kafka.topic_consent)
    purges = [m for m in read_all(server, settings.kafka.topic_purges) if m.key == subject]
    return consent_view(subject, messages, settings.privacy, utcnow(), purges_of(subject, purges))


def _await(
    settings: Settings, topic: str, start: dict[int, int], timeout_s: float, matches: Callable[[Record], bool]
) -> Record | None:
    """The first record after ``start`` on ``topic`` that ``matches``, or None after ``timeout_s``."""
    for message in read_topic(bootstrap(settings), topic, start=start, follow=True, timeout_s=timeout_s):
        record, _ = render.try_decode(message.value)
        if record is not None and matches(record):
            return record
    return None


def remove_references(settings: Settings, subject: str, keys: list[str] | None = None) -> int:
    """Delete reference photos of the subject (``keys``, or all) from the enrollment bucket."""
    client = s3_client(settings)
    bucket = settings.s3.enrollment_bucket
    try:
        if not client.bucket_exists(bucket):
            return 0
        if keys is None:
            objects = client.list_objects(bucket, prefix=f"{subject}/", recursive=True)
            keys = [o.object_name for o in objects if o.object_name]
        for name in keys:
            client.remove_object(bucket, name)
    except (S3Error, HTTPError, OSError) as exc:
        raise StackError(
            f"s3: could not delete the reference photos of {subject} from {bucket} ({exc})"
        ) from None
    return len(keys)


# --- the records the commands (and the console) produce ---------------------------------------


def grant_change(
    subject: str,
    basis: LegalBasis,
    scopes: Iterable[str],
    evidence: str | None,
    valid_from: datetime | None,
    valid_until: datetime | None,
    by: str,
    justification: str | None = None,
) -> ConsentChange:
    """A GRANTED change (check it with ``policy.validate`` before sending; sign it to send it)."""
    now = utcnow()
    return ConsentChange(
        event_id=str(uuid.uuid4()),
        subject_id=subject,
        action=ConsentAction.GRANTED,
        legal_basis=basis,
        scopes=list(policy.normalise_scopes(scopes)),
        valid_from=valid_from or now,
        valid_until=valid_until,
        evidence_uri=(evidence or "").strip() or None,
        recorded_at=now,
        recorded_by=by,
        justification=(justification or "").strip() or None,
    )


def withdrawal_change(state: policy.ConsentState, by: str) -> ConsentChange:
    """A WITHDRAWN change ending ``state`` (basis and scopes taken from it)."""
    return ConsentChange(
        event_id=str(uuid.uuid4()),
        subject_id=state.subject_id,
        action=ConsentAction.WITHDRAWN,
        legal_basis=state.basis,
        scopes=list(state.scopes),
        valid_from=state.valid_from,
        valid_until=state.valid_until,
        evidence_uri=state.evidence_uri,
        recorded_at=utcnow(),
        recorded_by=by,
    )


def erasure_request(subject: str, by: str) -> ErasureRequest:
    return ErasureRequest(str(uuid.uuid4()), subject, PurgeReason.ERASURE_REQUEST, utcnow(), by)


def enrollment(subject: str, refs: list[ObjectRef], by: str) -> SubjectEnrollment:
    return SubjectEnrollment(str(uuid.uuid4()), subject, refs, utcnow(), by)


# --- consent ---------------------------------------------------------------------------------


@click.group("consent")
def consent_group() -> None:
    """Grant, withdraw and inspect a subject's consent (facegate.consent, keyed by subject)."""


@consent_group.command("grant")
@subject_argument
@click.option(
    "--basis",
    required=True,
    type=click.Choice(sorted(_BASES), case_sensitive=False),
    help="The Art. 9 legal basis.",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A use the consent covers (repeat: --scope editorial --scope archive).",
)
@click.option(
    "--evidence",
    default=None,
    help="URI of the signed consent / quitclaim (explicit_consent), or of the record that makes "
    "the subject a public figure (public_figure).",
)
@click.option(
    "--justification",
    default=None,
    help="Why the basis holds, in words (required for public_figure: their public role).",
)
@click.option("--from", "valid_from", type=When(), default=None, help="Valid from this date (default: now).")
@click.option(
    "--until", "valid_until", type=When(), default=None, help="Valid until this date (default: open-ended)."
)
@officer_option
def consent_grant(
    subject: str,
    basis: str,
    scopes: tuple[str, ...],
    evidence: str | None,
    justification: str | None,
    valid_from: datetime | None,
    valid_until: datetime | None,
    officer: str | None,
) -> None:
    """Record that SUBJECT may be named: a GRANTED consent change, signed by the officer.

    Checked here as the worker will check it; an invalid grant is refused and nothing is sent.

    \b
      facegate consent grant S-1042 --basis explicit_consent --scope editorial \\
          --scope archive --evidence s3://quitclaims/S-1042.pdf --until 2027-12-31
      facegate consent grant S-7 --basis public_figure --scope editorial \\
          --evidence https://gov.example/cabinet --justification "minister, in office"
    """
    basis_ = _BASES[basis.lower()]
    change = grant_change(
        subject, basis_, scopes, evidence, valid_from, valid_until, officer or operator(), justification
    )
    reasons = policy.validate(change)
    if reasons:
        raise click.ClickException(f"consent not sent: {'; '.join(reasons)}")
    change = signed(change, officer)
    settings = connected_settings(kafka=True)
    publish(settings, settings.kafka.topic_consent, subject, change)
    click.echo(f"sent: {render.consent_text(change)[0]}")


@consent_group.command("withdraw")
@subject_argument
@click.option("--wait", is_flag=True, help="Wait for the erasure receipt (SubjectPurged) and print it.")
@wait_timeout
@officer_option
def consent_withdraw(subject: str, wait: bool, timeout_s: float, officer: str | None) -> None:
    """Withdraw SUBJECT's consent: the worker purges their faceprints and untags every asset.

    The basis and scopes are taken from the current consent. The subject's reference photos
    are deleted from the enrollment bucket at once. With --wait, prints the erasure receipt
    once the worker has revoked every tag (or follow `facegate tail purges --follow`).
    """
    settings = connected_settings(kafka=True, s3=True)
    view = consent_of(settings, subject)
    state = view.state
    if state is None or not view.active:
        raise click.ClickException(f"{subject} has {no_consent(view)}; nothing to withdraw")
    change = signed(withdrawal_change(state, officer or operator()), officer)
    start = end_offsets(bootstrap(settings), settings.kafka.topic_purges) if wait else {}
    publish(settings, settings.kafka.topic_consent, subject, change)
    click.echo(f"sent: {render.consent_text(change)[0]}")
    removed = remove_references(settings, subject)
    click.echo(f"deleted {removed} reference photo(s) of {subject} from {settings.s3.enrollment_bucket}")
    if wait:
        _print_receipt(settings, subject, start, timeout_s)


def no_consent(view: ConsentView) -> str:
    if view.erased is not None:
        return f"no consent (erased at {render.when(view.erased.purged_at)})"
    if view.state is not None and view.state.withdrawn:
        return f"no consent (withdrawn at {render.when(view.state.withdrawn_at)})"
    return "no consent"


def consent_lines(view: ConsentView) -> list[str]:
    lines = [f"consent history of {view.subject_id} (oldest first):"]
    lines += [f"  {render.consent_text(c)[0]}" for c in view.history] or ["  (none)"]
    lines += [f"  rejected {c.event_id}: {'; '.join(r)}" for c, r in view.rejected]
    lines += [f"  skipped record at {s.partition}/{s.offset}: {s.reason}" for s in view.skipped]
    state = view.state
    if state is None or not view.active:
        lines.append(f"current: {no_consent(view)}")
    else:
        until = render.when(state.valid_until) if state.valid_until else "open-ended"
        lines.append(
            f"current: {state.basis.value} scopes {','.join(state.scopes) or '-'} "
            f"valid {render.when(state.valid_from)} .. {until} evidence {state.evidence_uri or '-'}"
        )
    if view.decision is not None:
        d = view.decision
        lines.append(f"a face matched now: {d.status.value} ({d.reason})")
    return lines


@consent_group.command("show")
@subject_argument
@click.option("--json", "as_json", is_flag=True, help="One JSON object: history, state, decision.")
def consent_show(subject: str, as_json: bool) -> None:
    """SUBJECT's consent history, current consent and what a matched face would get now."""
    settings = connected_settings(kafka=True)
    view = consent_of(settings, subject)
    if as_json:
        click.echo(render.dumps(view.to_json()))
        return
    for line in consent_lines(view):
        click.echo(line)


# --- enrollment and erasure ------------------------------------------------------------------


def reference_types(photos: tuple[Path, ...]) -> list[str]:
    """The image type of each reference photo; refuses a photo that is not an image."""
    names = [p.name for p in photos]
    if len(set(names)) != len(names):
        raise click.BadParameter("two photos have the same file name", param_hint="PHOTOS")
    types = []
    for photo in photos:
        with photo.open("rb") as f:
            content_type = media_type(photo, f.read(32)) or ""
        if not content_type.startswith("image/"):
            raise click.BadParameter(f"{photo} is not an image", param_hint="PHOTOS")
        types.append(content_type)
    return types


def enrollment_key(settings: Settings) -> bytes:
    """The workers' public key reference photos are sealed to (pipeline/vault/references.py)."""
    try:
        key = read_enrollment_key(settings.privacy.enrollment_public_key, vault_dir(settings))
    except ValueError as exc:
        raise ConfigError(f"privacy.enrollment_public_key: {exc}") from None
    if key is None:
        raise ConfigError(
            "no enrollment key to seal reference photos to: start a worker (`facegate up`) or set "
            "FACEGATE_PRIVACY__ENROLLMENT_PUBLIC_KEY (what the workers' vault publishes in enrollment.pub)"
        )
    return key


def upload_references(
    client: Minio,
    bucket: str,
    subject: str,
    photos: Sequence[tuple[str, bytes, str]],
    *,
    sealed_for: bytes,
) -> list[ObjectRef]:
    """Put reference photos ``(file name, bytes, image type)`` under SUBJECT/ in the enrollment
    bucket, each sealed to the workers' key ``sealed_for`` (``enrollment_key``): no reference
    photo is ever at rest in plaintext. If one fails, the ones already put are deleted again:
    nothing half-uploaded."""
    refs: list[ObjectRef] = []
    try:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        for name, photo, _ in photos:
            key = f"{subject}/{name}"
            data = seal_for_workers(sealed_for, subject, f"{bucket}/{key}", photo)
            client.put_object(
                bucket, key, io.BytesIO(data), len(data), content_type="application/octet-stream"
            )
            refs.append(ObjectRef(bucket, key))
    except (S3Error, HTTPError, OSError) as exc:
        for ref in refs:
            with contextlib.suppress(S3Error, HTTPError, OSError):
                client.remove_object(bucket, ref.object_key)
        raise StackError(f"s3: could not upload the reference photos to {bucket} ({exc})") from None
    return refs


def is_enrollment_answer(subject: str, event_id: str) -> Callable[[Record], bool]:
    answers = {AuditAction.ENROLLED.value, AuditAction.ENROLLMENT_REFUSED.value}

    def matches(record: Record) -> bool:
        return (
            isinstance(record, AuditRecord)
            and record.subject_id == subject
            and record.action in answers
            and audit_detail(record).get("event_id") == event_id
        )

    return matches


@click.command("enroll")
@subject_argument
@click.argument(
    "photos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--wait", is_flag=True, help="Wait for the worker's ENROLLED / ENROLLMENT_REFUSED audit record."
)
@wait_timeout
@officer_option
def enroll_command(
    subject: str, photos: tuple[Path, ...], wait: bool, timeout_s: float, officer: str | None
) -> None:
    """Enroll SUBJECT from reference PHOTOS (one face each): faceprints for matching.

    The photos go to the enrollment bucket under SUBJECT/ and a SubjectEnrollment is sent.
    Faceprints are computed and kept only while SUBJECT has a valid consent: without one
    nothing is uploaded (grant it first with `facegate consent grant`), and the worker checks
    again. With --wait, photos of a refused enrollment are deleted again.
    """
    types = reference_types(photos)  # before connecting: a wrong argument is no stack problem
    key = officer_key(officer)
    settings = connected_settings(kafka=True, s3=True)
    decision = consent_of(settings, subject).decision
    if decision is None or not decision.may_name:
        reason = decision.reason if decision else "no consent"
        raise click.ClickException(
            f"{subject} has no valid consent now ({reason}); nothing uploaded. "
            "Grant it first: facegate consent grant"
        )
    photo_files = [(p.name, p.read_bytes(), t) for p, t in zip(photos, types, strict=True)]
    refs = upload_references(
        s3_client(settings),
        settings.s3.enrollment_bucket,
        subject,
        photo_files,
        sealed_for=enrollment_key(settings),
    )
    request = sign(enrollment(subject, refs, key.officer_id), key)
    topic = settings.kafka.topic_audit
    start = end_offsets(bootstrap(settings), topic) if wait else {}
    publish(settings, settings.kafka.topic_enrollments, subject, request)
    click.echo(f"sent enrollment {request.event_id} for {subject}: {len(refs)} reference photo(s)")
    if not wait:
        return
    answer = _await(settings, topic, start, timeout_s, is_enrollment_answer(subject, request.event_id))
    if not isinstance(answer, AuditRecord):
        raise FacegateError(
            f"no answer from a worker within {timeout_s:.0f} s; is `facegate worker` running?"
        )
    click.echo(render.audit_text(answer)[0])
    if answer.action != AuditAction.ENROLLED.value:
        removed = remove_references(settings, subject, [r.object_key for r in refs])
        click.echo(f"deleted the {removed} reference photo(s) of the refused enrollment")
        sys.exit(1)


@click.command("erase")
@subject_argument
@click.option("--wait", is_flag=True, help="Wait for the erasure receipt (SubjectPurged) and print it.")
@wait_timeout
@officer_option
def erase_command(subject: str, wait: bool, timeout_s: float, officer: str | None) -> None:
    """Erase SUBJECT (right to erasure, Art. 17): faceprints, key and every tag naming them.

    Sends an erasure request to the consent join; it also ends any consent. The subject's
    reference photos are deleted from the enrollment bucket at once.
    """
    settings = connected_settings(kafka=True, s3=True)
    request = erasure_request(subject, officer or operator())
    start = end_offsets(bootstrap(settings), settings.kafka.topic_purges) if wait else {}
    publish(settings, settings.kafka.topic_subject_events, subject, request)
    click.echo(f"sent erasure request {request.event_id} for {subject}")
    removed = remove_references(settings, subject)
    click.echo(f"deleted {removed} reference photo(s) of {subject} from {settings.s3.enrollment_bucket}")
    if wait:
        _print_receipt(settings, subject, start, timeout_s)


def _print_receipt(settings: Settings, subject: str, start: dict[int, int], timeout_s: float) -> None:
    """Wait for the subject's SubjectPurged after the offsets in ``start``, and print it."""
    receipt = _await(
        settings,
        settings.kafka.topic_purges,
        start,
        timeout_s,
        lambda r: isinstance(r, SubjectPurged) and r.subject_id == subject,
    )
    if not isinstance(receipt, SubjectPurged):
        raise FacegateError(f"no erasure receipt within {timeout_s:.0f} s; is `facegate worker` running?")
    for line in render.purge_text(receipt):
        click.echo(line)


COMMANDS: list[Any] = [consent_group, enroll_command, erase_command]
