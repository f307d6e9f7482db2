"""What a subject id may be: one rule, used by the CLI, the admit and join stages and the purge.

A subject id is a pseudonym that becomes a Kafka key, a table key of the consent join and the
prefix of the subject's reference photos in the enrollment bucket (``<subject_id>/``). So it is
non-blank printable text without whitespace, ``/`` or ``\\`` (a path separator would let one
subject's prefix reach into another's), not ``.`` or ``..`` (which some stores resolve as path
segments), and of bounded length. Control characters are refused, which also keeps every id
apart from the join's own table keys (they start with NUL).
"""

from __future__ import annotations

from .avro import ContractError

MAX_SUBJECT_ID_CHARS = 200


class InvalidSubjectId(ContractError):
    """A subject id the rule refuses; the record carrying it is dead-lettered with the reason."""


def subject_id_problem(subject_id: object) -> str | None:
    """Why ``subject_id`` is not a valid subject id (None: it is)."""
    if not isinstance(subject_id, str):
        return f"a subject id is text, not {type(subject_id).__name__}"
    if not subject_id:
        return "blank subject id"
    if len(subject_id) > MAX_SUBJECT_ID_CHARS:
        return f"subject id of {len(subject_id)} characters (at most {MAX_SUBJECT_ID_CHARS})"
    if subject_id in (".", ".."):
        return f"subject id {subject_id!r} is a path segment"
    for ch in subject_id:
        if ch in "/\\":
            return f"subject id {_shown(subject_id)} contains {ch!r}"
        if ch.isspace() or not ch.isprintable():
            return f"subject id {_shown(subject_id)} contains whitespace or a control character"
    return None


def check_subject_id(subject_id: object) -> str:
    """``subject_id`` if valid, else InvalidSubjectId with the reason."""
    problem = subject_id_problem(subject_id)
    if problem:
        raise InvalidSubjectId(problem)
    assert isinstance(subject_id, str)
    return subject_id


def _shown(subject_id: str) -> str:
    return repr(subject_id if len(subject_id) <= 60 else subject_id[:60] + "...")


def reference_problem(subject_id: str, bucket: str, object_key: str, enrollment_bucket: str) -> str | None:
    """Why an enrollment may not use (and a purge may not delete) this object (None: it may).

    A subject's reference photos are the objects under ``<subject_id>/`` in the enrollment bucket,
    nothing else: a SubjectEnrollment naming any other object (a DAM original in the assets
    bucket, another subject's photo) would otherwise have it read, and deleted by the purge.
    """
    if bucket != enrollment_bucket:
        return f"reference in bucket {bucket!r}, not the enrollment bucket {enrollment_bucket!r}"
    prefix = f"{subject_id}/"
    if not object_key.startswith(prefix) or object_key == prefix:
        return f"reference {object_key!r} is not under the subject's prefix {prefix!r}"
    segments = object_key.split("/")
    if any(segment in ("", ".", "..") for segment in segments) or "\\" in object_key:
        return f"reference {object_key!r} has an empty, '.' or '..' path segment or a backslash"
    if any(not ch.isprintable() for ch in object_key):
        return f"reference {object_key!r} contains a control character"
    return None
