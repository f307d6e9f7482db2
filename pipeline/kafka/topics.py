"""The application's topics, created by the application with the configuration they need.

What each topic is and how it is configured is declared in ``pipeline.topology`` (compacted:
the current state per subject or asset; kept forever: the audit log and the purge receipts,
which prove erasure). Every topic has ``settings.kafka.partitions`` partitions, so that the
consent join sees candidates and consent changes of one subject in the same partition number.
``ensure_topics`` is idempotent: it creates what is missing and checks what exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from ..errors import ConfigError, StackError
from ..settings import Settings
from ..topology import Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """One spec per topic of the topology."""
    k = settings.kafka
    topology = Topology(k)
    return [
        TopicSpec(topology.name(t), k.partitions, k.replication_factor, dict(t.config))
        for t in topology.topics
    ]


def _admin(bootstrap: str) -> AdminClient:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": log}
    return AdminClient(config)


def ensure_topics(settings: Settings, bootstrap: str | None = None, timeout_s: float = 15.0) -> list[str]:
    """Create the missing topics; check partitions and cleanup policy of existing ones.

    Returns the names created. Raises StackError if the cluster cannot be reached and
    ConfigError if an existing topic contradicts the settings.
    """
    bootstrap = bootstrap or settings.kafka.bootstrap
    if not bootstrap:
        raise ConfigError("kafka: no bootstrap address; run `facegate up` or set FACEGATE_KAFKA__BOOTSTRAP")
    admin = _admin(bootstrap)
    specs = topic_specs(settings)
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise StackError(f"kafka: cannot reach {bootstrap} to create topics ({exc})") from None

    missing = [s for s in specs if s.name not in existing]
    created: list[str] = []
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in missing],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                error = exc.args[0]
                if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # created concurrently by another process: checked below
                raise StackError(f"kafka: cannot create topic {name} on {bootstrap}: {error}") from None
    _check_existing(admin, [s for s in specs if s.name not in created], timeout_s)
    return created


def _check_existing(admin: AdminClient, specs: list[TopicSpec], timeout_s: float) -> None:
    if not specs:
        return
    metadata = admin.list_topics(timeout=timeout_s).topics
    for spec in specs:
        partitions = len(metadata[spec.name].partitions) if spec.name in metadata else 0
        if partitions != spec.partitions:
            raise ConfigError(
                f"kafka: topic {spec.name} has {partitions} partitions but settings.kafka.partitions is "
                f"{spec.partitions} (co-partitioning needs them equal); set FACEGATE_KAFKA__PARTITIONS="
                f"{partitions} or recreate the topic"
            )
    wanted = {s.name: s for s in specs if "cleanup.policy" in s.config}
    if not wanted:
        return
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in wanted]
    try:
        described = admin.describe_configs(resources, request_timeout=timeout_s)
        for resource, future in described.items():
            entries = future.result()
            policy = entries.get("cleanup.policy")
            want = wanted[resource.name].config["cleanup.policy"]
            if policy is not None and policy.value is not None and policy.value != want:
                raise ConfigError(
                    f"kafka: topic {resource.name} has cleanup.policy={policy.value}, it needs {want}; "
                    "alter the topic or recreate it"
                )
    except KafkaException as exc:
        # A broker without DescribeConfigs: the topic was still created with the right policy
        # if this code created it; say so rather than fail.
        log.warning("kafka: cannot describe topic configs (%s); cleanup.policy not checked", exc)
