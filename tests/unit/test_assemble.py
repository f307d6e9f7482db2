"""Per-asset assembly of observations and consent verdicts (pure logic)."""

from __future__ import annotations

import random

from pipeline.assemble import AssetAssembly, assemble
from pipeline.contract import AssetKind, BBox, FaceStatus, utcnow
from pipeline.contract.internal import FaceObservations, ObservedFace, SubjectDecision

A = "assets/p.jpg"


def observations(etag="e1", candidates=("S1", None, "S2")):
    faces = [
        ObservedFace(f"f{i}", BBox(10 * i, 0, 40, 40), 0.9, candidate=c, similarity=0.5 if c else None)
        for i, c in enumerate(candidates)
    ]
    return FaceObservations(A, etag, AssetKind.IMAGE, "m@1", utcnow(), faces)


def verdict(subject, status=FaceStatus.GREEN, etag="e1", purge_id=None, reason="consent:explicit"):
    return SubjectDecision(A, etag, subject, status, reason, ["editorial"], purge_id)


def test_waits_for_every_candidate_subject():
    state = AssetAssembly(A)
    assert assemble(state, observations()) is None
    assert assemble(state, verdict("S1")) is None
    tags = assemble(state, verdict("S2", FaceStatus.RED, reason="no_consent"))
    assert tags is not None
    by_id = {f.face_id: f for f in tags.faces}
    assert by_id["f0"].subject_id == "S1" and by_id["f0"].status is FaceStatus.GREEN
    assert by_id["f0"].scopes == ["editorial"]
    assert by_id["f1"].subject_id is None and by_id["f1"].reason == "unknown_face"
    # a RED verdict never names the matched subject, nor discloses the similarity
    assert by_id["f2"].subject_id is None and by_id["f2"].similarity is None
    assert by_id["f2"].status is FaceStatus.RED and by_id["f2"].scopes == []


def test_no_candidates_emits_at_once_all_red():
    tags = assemble(AssetAssembly(A), observations(candidates=(None, None)))
    assert tags is not None and [f.status for f in tags.faces] == [FaceStatus.RED] * 2


def test_verdicts_before_observations_are_kept():
    state = AssetAssembly(A)
    assert assemble(state, verdict("S1")) is None
    assert assemble(state, verdict("S2")) is None
    tags = assemble(state, observations())
    assert tags is not None and {f.subject_id for f in tags.faces} == {"S1", "S2", None}


def test_same_state_is_published_once():
    state = AssetAssembly(A)
    assemble(state, observations(candidates=(None,)))
    assert assemble(state, observations(candidates=(None,))) is None  # redelivery


def test_revocation_renames_nobody_in_any_version():
    state = AssetAssembly(A)
    assemble(state, observations(candidates=("S1",)))
    first = assemble(state, verdict("S1"))
    assert first is not None and first.faces[0].subject_id == "S1"
    revoked = assemble(state, verdict("S1", FaceStatus.RED, purge_id="p1", reason="withdrawn"))
    assert revoked is not None and revoked.faces[0].subject_id is None
    assert revoked.faces[0].reason == "withdrawn"
    # a re-upload of the object still matching S1 stays unnamed
    again = assemble(state, observations(etag="e2", candidates=("S1",)))
    assert again is not None and again.faces[0].subject_id is None


def test_stale_verdict_for_replaced_version_is_ignored():
    state = AssetAssembly(A)
    assemble(state, observations(etag="e2", candidates=("S1",)))
    assert assemble(state, verdict("S1", etag="e1")) is None
    tags = assemble(state, verdict("S1", etag="e2"))
    assert tags is not None and tags.etag == "e2"


def test_state_round_trips_through_a_table_value():
    state = AssetAssembly(A)
    assemble(state, observations())
    assemble(state, verdict("S1"))
    restored = AssetAssembly.from_dict(state.to_dict())
    assert restored.to_dict() == state.to_dict()
    assert assemble(restored, verdict("S2")) is not None


def test_any_order_of_messages_gives_the_same_final_faces():
    """Messages from the recognize stage and from the join interleave in any order."""
    messages = [observations(), verdict("S1"), verdict("S2", FaceStatus.AMBER, reason="expiring:2026-12-01")]
    finals = set()
    rng = random.Random(7)
    for _ in range(50):
        rng.shuffle(messages)
        state = AssetAssembly(A)
        last = None
        for m in messages:
            last = assemble(state, m) or last
        assert last is not None
        finals.add(tuple((f.face_id, f.status, f.subject_id) for f in last.faces))
    assert len(finals) == 1
