"""The subject id rule and the reference scope: one rule for the CLI, the stages and the purge."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.contract.ids import (
    MAX_SUBJECT_ID_CHARS,
    InvalidSubjectId,
    check_subject_id,
    reference_problem,
    subject_id_problem,
)


@pytest.mark.parametrize("subject", ["S-1042", "R0-john-abcd", "subj_0001", "7f3c2a90", "Zoë-1", "a" * 200])
def test_pseudonyms_are_subject_ids(subject: str) -> None:
    assert subject_id_problem(subject) is None and check_subject_id(subject) == subject


@pytest.mark.parametrize(
    "subject",
    [
        "",
        " ",
        "a/b",
        "a\\b",
        "two words",
        "tab\there",
        "nul\x00",
        "\x00audit-chain:0",
        ".",
        "..",
        "a" * 201,
        7,
    ],
)
def test_everything_else_is_refused_with_a_reason(subject: object) -> None:
    assert subject_id_problem(subject)
    with pytest.raises(InvalidSubjectId):
        check_subject_id(subject)


@given(st.text(max_size=250))
def test_a_valid_id_is_one_printable_path_segment_of_bounded_length(subject: str) -> None:
    if subject_id_problem(subject) is None:
        assert 0 < len(subject) <= MAX_SUBJECT_ID_CHARS and subject not in (".", "..")
        assert "/" not in subject and "\\" not in subject and subject.isprintable()
        assert not any(ch.isspace() for ch in subject) and not subject.startswith("\x00")


def test_references_are_the_subjects_prefix_of_the_enrollment_bucket_only() -> None:
    assert reference_problem("S-1", "enrollments", "S-1/front.jpg", "enrollments") is None
    assert reference_problem("S-1", "enrollments", "S-1/2026/front.jpg", "enrollments") is None
    for bucket, key in [
        ("assets", "S-1/front.jpg"),
        ("enrollments", "S-2/front.jpg"),
        ("enrollments", "S-10/front.jpg"),
        ("enrollments", "S-1/"),
        ("enrollments", "S-1/../S-2/front.jpg"),
        ("enrollments", "S-1/./front.jpg"),
        ("enrollments", "S-1//front.jpg"),
        ("enrollments", "S-1/a\\..\\b.jpg"),
        ("enrollments", "S-1/\x00.jpg"),
        ("enrollments", "front.jpg"),
    ]:
        assert reference_problem("S-1", bucket, key, "enrollments"), (bucket, key)
