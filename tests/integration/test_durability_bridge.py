"""No upload is missed while the bridge is down: it resumes from its filer checkpoint."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import stack_settings  # tests/integration/conftest.py
from flow import PHOTOS, Watcher, put, tags_of

from pipeline.stack import procs, up
from pipeline.stack import state as stack_state

pytestmark = [pytest.mark.integration, pytest.mark.models, pytest.mark.slow]

OUTAGE_S = 20.0
PHOTO_COUNT = 20


def real_photos(n: int) -> list[Path]:
    """Photos of real people from the fetched registry packages (tests/data/LICENSES.md)."""
    photos = sorted((PHOTOS / "faces").glob("*.jpg")) + sorted((PHOTOS / "johns").rglob("*.jpg"))
    assert len(photos) >= n, "run `make data`"
    return photos[:n]


def test_uploads_while_the_bridge_is_down_are_tagged_once_it_is_back(stack: Any) -> None:
    stack.require_model()
    k = stack.settings.kafka
    topics = Watcher(stack.kafka_config(), [k.topic_assets, k.topic_tags])
    state = stack_state.load(stack.settings.data_dir)
    assert state is not None and state.parts["bridge"].process is not None
    assert procs.stop(state.parts["bridge"].process, 10), "the bridge was not running"

    prefix = f"bridge-down-{uuid.uuid4().hex[:6]}"
    photos = real_photos(PHOTO_COUNT)
    assets = []
    started = time.monotonic()
    for i, photo in enumerate(photos):  # one upload a second, for the whole outage
        time.sleep(max(0.0, started + i * OUTAGE_S / PHOTO_COUNT - time.monotonic()))
        key = f"{prefix}/{i:02d}-{photo.name}"
        put(stack, key, photo.read_bytes())
        assets.append(f"{stack.bucket}/{key}")
    time.sleep(max(0.0, started + OUTAGE_S - time.monotonic()))
    topics.poll(2)
    assert not [m for m in topics.on(k.topic_assets) if m.key in assets], "published while down"

    up(stack_settings(Path(stack.data_dir)))  # restarts the stopped bridge on its port
    topics.until(
        lambda ms: all(tags_of(ms, k.topic_tags, a) for a in assets),
        240,
        f"{PHOTO_COUNT} assets uploaded while the bridge was down tagged",
    )
    topics.poll(3)  # anything published twice would be here by now
    published = Counter(m.key for m in topics.on(k.topic_assets) if m.key in assets)
    assert published == Counter(assets), f"published other than once: {published}"
    tagged = Counter(m.key for m in topics.on(k.topic_tags) if m.key in assets)
    assert tagged == Counter(assets), f"tagged other than once: {tagged}"
    topics.close()
