"""The embedded stack keeps what it knows across `facegate down`/`up` and a broker kill -9.

One stack of its own (it is stopped, restarted and its broker killed), in its own data dir:
a subject is granted consent and enrolled, photos of them are tagged; after each restart the
consent registry, the audit chain (verified by `facegate audit verify`), the tags and the
matching are what they were, and a new photo of the subject is still named. A faceprint of a
subject the registry does not know, left in the vault, is purged by the reconcile at `up`, with
its audit records and receipt.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningStack, stack_settings  # tests/integration/conftest.py
from flow import (
    PHOTOS,
    Publisher,
    Watcher,
    audit_records,
    enroll_consenting,
    put,
    tags_of,
    wait_purge,
)

from pipeline.contract import FaceStatus
from pipeline.settings import Settings
from pipeline.stack import down, up
from pipeline.stack import state as stack_state
from pipeline.stack.procs import read_stat
from pipeline.stack.reconcile import REQUESTER
from pipeline.vault import open_vault

pytestmark = [pytest.mark.integration, pytest.mark.models, pytest.mark.slow]

OBAMA = PHOTOS / "face_recognition"
SAVE_INTERVAL_S = 1.0  # noida-db saves about once a second (docs/durability.md)


@dataclass
class Restartable:
    """A stack this module may stop, restart and break; ``now`` is its current endpoints."""

    settings: Settings
    now: RunningStack
    subject: str = field(default_factory=lambda: f"S-{uuid.uuid4().hex[:8]}")
    assets: list[str] = field(default_factory=list)

    def up(self) -> RunningStack:
        endpoints = up(self.settings)
        self.now = RunningStack(endpoints, endpoints.settings(self.settings))
        return self.now

    def pids(self) -> dict[str, int]:
        state = stack_state.load(self.settings.data_dir)
        assert state is not None
        return {n: p.process.pid for n, p in state.parts.items() if p.process}

    def facegate(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")}
        env["FACEGATE_DATA_DIR"] = str(self.settings.data_dir)
        env["FACEGATE_MODEL_REPOSITORY"] = str(self.settings.model_repository)
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True, timeout=120
        )

    def watcher(self) -> Watcher:
        k = self.now.settings.kafka
        return Watcher(self.now.kafka_config(), [k.topic_tags, k.topic_audit, k.topic_purges])

    def upload_and_wait(self, topics: Watcher, photo: Path) -> Any:
        key = f"durable/{uuid.uuid4().hex[:6]}-{photo.name}"
        put(self.now, key, photo.read_bytes())
        asset = f"{self.now.bucket}/{key}"
        self.assets.append(asset)
        tags = self.now.settings.kafka.topic_tags
        return topics.until(lambda ms: tags_of(ms, tags, asset), 180, f"tags of {asset}")[-1]


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restartable]:
    settings = stack_settings(tmp_path_factory.mktemp("durable"))
    endpoints = up(settings)
    stack = Restartable(settings, RunningStack(endpoints, endpoints.settings(settings)))
    stack.now.require_model()
    try:
        yield stack
    finally:
        down(settings)


def names(tags: Any, subject: str) -> bool:
    return any(f.subject_id == subject and f.status != FaceStatus.RED for f in tags.faces)


def assert_as_before(stack: Restartable, audit_before: int) -> None:
    """Consent on record, the audit chain whole, old tags kept, a new photo named."""
    shown = stack.facegate("consent", "show", stack.subject, "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["history"] and view["history"][-1]["action"] == "GRANTED", view
    verified = stack.facegate("audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    topics = stack.watcher()
    topics.poll(3)
    assert len(audit_records(topics.messages)) >= audit_before, "audit records lost"
    tags = stack.now.settings.kafka.topic_tags
    for asset in stack.assets:
        assert names(tags_of(topics.messages, tags, asset)[-1], stack.subject), f"{asset} lost its tag"
    assert names(stack.upload_and_wait(topics, OBAMA / "obama3.jpg"), stack.subject), "no longer matched"
    topics.close()


def test_down_up_and_a_broker_kill_keep_consent_audit_tags_and_matching(restartable: Restartable) -> None:
    stack = restartable
    topics = stack.watcher()
    enroll_consenting(
        stack.now,
        topics,
        Publisher(stack.now.kafka_config()),
        stack.subject,
        {"obama2.jpg": (OBAMA / "obama2.jpg").read_bytes()},
    )
    assert names(stack.upload_and_wait(topics, OBAMA / "obama.jpg"), stack.subject)
    audit_before = len(audit_records(topics.messages))
    topics.close()

    # 1. facegate down / up: the broker saves everything on SIGTERM.
    down(stack.settings)
    stack.up()
    assert_as_before(stack, audit_before)

    # 2. A faceprint the registry knows nothing of (what a broker crash right after an
    #    enrollment leaves: the vault kept it, the broker lost the grant) ...
    ghost = f"S-ghost-{uuid.uuid4().hex[:6]}"
    with open_vault(stack.settings) as vault:
        [faceprint] = vault.faceprints(stack.subject)[:1]
        vault.store(ghost, faceprint.vector, reference="ghost.jpg", model_version=faceprint.model_version)

    # 3. ... then a broker kill -9, after its save interval: `up` restarts it, and the bridge
    #    and worker with it; nothing acknowledged before the last save is lost.
    time.sleep(3 * SAVE_INTERVAL_S)
    before = stack.pids()
    os.kill(before["kafka"], signal.SIGKILL)
    while (stat := read_stat(before["kafka"])) is not None and stat.state != "Z":
        time.sleep(0.05)
    stack.up()
    after = stack.pids()
    for part in ("kafka", "bridge", "worker"):
        assert after[part] != before[part], f"{part} was not restarted with the broker"
    assert after["s3"] == before["s3"] and after["triton"] == before["triton"]
    assert_as_before(stack, audit_before)

    # 4. The reconcile at that `up` asked for the ghost's erasure; the join carried it out.
    topics = stack.watcher()
    wait_purge(stack.now, topics, ghost)
    trail = [r for r in audit_records(topics.messages) if r.subject_id == ghost]
    requested = [r for r in trail if r.action == "ERASURE_REQUESTED"]
    assert requested and REQUESTER in json.dumps(requested[0].detail), trail
    assert {"KEY_DESTROYED", "PURGED"} <= {r.action for r in trail}
    with open_vault(stack.settings) as vault:
        assert ghost not in vault.list_subjects()
        assert stack.subject in vault.list_subjects()  # the consenting subject is untouched
    topics.close()
