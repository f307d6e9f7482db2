"""The declared topology: every topic once, with its records, configuration and consumer."""

from __future__ import annotations

import pytest

from pipeline import topology
from pipeline.contract import AssetFaces, PurgeReason, utcnow
from pipeline.contract.internal import (
    ErasureRequest,
    GalleryAction,
    GalleryChange,
    MatchCandidate,
    RevocationApplied,
)
from pipeline.kafka import topic_specs
from pipeline.settings import KafkaSettings, Settings
from pipeline.topology import RecordNotAllowed, Topology, TopologyError

CANDIDATE = MatchCandidate("S-1", "assets/a.jpg", "etag", ["face-1"], 0.9)


def test_every_topic_setting_is_declared_once() -> None:
    settings_fields = {f for f in KafkaSettings.model_fields if f.startswith("topic_")}
    declared = [t.setting for t in topology.TOPICS]
    assert sorted(declared) == sorted(settings_fields)


def test_names_come_from_the_settings_and_must_differ() -> None:
    plan = Topology(KafkaSettings(topic_tags="dam.faces"))
    assert plan.name(topology.TAGS) == "dam.faces"
    assert plan.topic("dam.faces") is topology.TAGS
    with pytest.raises(TopologyError, match="both named"):
        Topology(KafkaSettings(topic_tags="facegate.assets"))
    with pytest.raises(TopologyError, match="not a facegate topic"):
        plan.topic("someone.elses")


def test_topic_creation_reads_the_declarations() -> None:
    specs = {s.name: s for s in topic_specs(Settings())}
    assert len(specs) == len(topology.TOPICS)
    assert specs["facegate.consent"].config == {"cleanup.policy": "compact"}
    assert specs["facegate.audit"].config == {"cleanup.policy": "delete", "retention.ms": "-1"}
    assert specs["facegate.assets"].config == {}
    assert {s.partitions for s in specs.values()} == {Settings().kafka.partitions}


def test_a_record_not_declared_for_a_topic_is_refused_at_send() -> None:
    plan = Topology(KafkaSettings())
    assert plan.check_send(topology.SUBJECT_EVENTS, CANDIDATE) == "facegate.subject-events"
    with pytest.raises(TopologyError, match=r"MatchCandidate may not be sent to facegate\.tags"):
        plan.check_send(topology.TAGS, CANDIDATE)
    undeclared = topology.Topic("topic_tags", "asset_id", (AssetFaces,))
    with pytest.raises(TopologyError, match="not declared"):
        plan.check_send(undeclared, CANDIDATE)


def test_a_record_not_declared_for_a_topic_is_refused_when_read() -> None:
    plan = Topology(KafkaSettings())
    plan.check_received("facegate.subject-events", RevocationApplied("S-1", "a", "purge-1"))
    with pytest.raises(RecordNotAllowed):  # a ContractError: dead-lettered
        plan.check_received("facegate.assets", CANDIDATE)
    erasure = ErasureRequest("e-1", "S-1", PurgeReason.ERASURE_REQUEST, utcnow(), "dpo")
    with pytest.raises(RecordNotAllowed):  # internal records only on internal topics
        plan.check_received("facegate.consent", erasure)


def test_the_dead_letter_topic_takes_any_record() -> None:
    assert topology.DLQ.allows(CANDIDATE)
    assert topology.DLQ.allows(GalleryChange("S-1", GalleryAction.UPSERT, 1, utcnow()))


def test_each_stage_reads_what_it_declares() -> None:
    plan = Topology(KafkaSettings())
    assert plan.consumed_by("admit") == (topology.CONSENT, topology.ENROLLMENTS)
    assert plan.consumed_by("join") == (topology.SUBJECT_EVENTS,)
    assert "facegate.gallery" not in plan.consumed()  # read by every worker's own group, not the workers'
    assert set(plan.consumed()) == {
        "facegate.assets",
        "facegate.consent",
        "facegate.enrollments",
        "facegate.minio-events",
        "facegate.subject-events",
        "facegate.asset-events",
        "facegate.frames",
    }


def test_internal_topics_are_not_part_of_the_contract() -> None:
    external = {t.setting for t in topology.TOPICS if t.external}
    internal = {t.setting for t in topology.TOPICS if not t.external}
    assert internal == {"topic_subject_events", "topic_asset_events", "topic_gallery", "topic_frames"}
    assert {"topic_consent", "topic_tags", "topic_audit", "topic_purges"} <= external
