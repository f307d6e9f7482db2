"""Scale-out by partitions: a second worker takes half the load; rebalances lose nothing."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from flow import PHOTOS, Watcher, extra_worker, latest_tags, put

pytestmark = [pytest.mark.integration, pytest.mark.models, pytest.mark.slow]


def _assigned_assets_partitions(log_text: str) -> bool:
    # aiokafka logs "Setting newly assigned partitions {TopicPartition(topic='facegate.assets', ...)}"
    return re.search(r"TopicPartition\(topic='facegate\.assets', partition=\d+\)", log_text) is not None


# Known defect, issue #11 item 2 (open): in some runs a few assets uploaded right after the
# rebalance onto two workers are never tagged while the group's lag reads none, i.e. an offset
# was committed past events nobody processed (faust's rebalance window). The test stays in the
# suite and reports XPASS when a run is clean; it is not a claim that rebalances are lossless.
@pytest.mark.xfail(reason="issue #11: faust rebalance can commit past unprocessed assets", strict=False)
def test_two_workers_split_the_load_and_rebalances_lose_nothing(stack, tmp_path):
    stack.require_model()
    k = stack.settings.kafka
    topics = Watcher(stack.kafka_config(), [k.topic_tags])
    photos = sorted((PHOTOS / "faces").glob("*.jpg")) + sorted((PHOTOS / "face_recognition").glob("*.jpg"))
    prefix = f"scale-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "worker-2.log"

    def upload_all(round_name: str) -> list[str]:
        assets = []
        for photo in photos:
            key = f"{prefix}/{round_name}/{photo.name}"
            put(stack, key, photo.read_bytes())
            assets.append(f"{stack.bucket}/{key}")
        return assets

    def all_tagged(assets: list[str], timeout: float = 180) -> None:
        try:
            topics.until(
                lambda ms: all(a in latest_tags(ms, k.topic_tags) for a in assets),
                timeout,
                f"{len(assets)} assets tagged",
            )
        except AssertionError:
            missing = [a for a in assets if a not in latest_tags(topics.messages, k.topic_tags)]
            trail = Watcher(stack.kafka_config(), [k.topic_assets, k.topic_asset_events, k.topic_dlq])
            trail.poll(5)
            for a in missing:
                print("MISSING", a, [(m.topic, m.partition, m.offset) for m in trail.messages if m.key == a])
            raise

    # A second worker that is scaled away later: dynamic membership, so it leaves the group.
    with extra_worker(stack, "worker-2", log, env={"FACEGATE_KAFKA__STATIC_MEMBERSHIP": "false"}):
        during_join = upload_all("join")  # uploaded while the group rebalances onto two workers
        all_tagged(during_join)
        deadline = time.monotonic() + 60
        while not _assigned_assets_partitions(log.read_text()) and time.monotonic() < deadline:
            time.sleep(1)
        assert _assigned_assets_partitions(log.read_text()), "worker-2 never got partitions"
        with_two = upload_all("two")
        all_tagged(with_two)
        leaving = upload_all("leave")  # in flight while worker-2 stops and the group rebalances
    all_tagged(leaving)
    topics.close()
