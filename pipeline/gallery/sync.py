"""Keep this worker's gallery replica in step with the vault.

Each worker holds its own in-memory replica (``edge.py``). The consent join writes faceprints to
the (shared, encrypted) vault and publishes a GalleryChange — a subject id and an action, never
a faceprint — on the compacted gallery topic. Every worker follows that topic on every partition
and applies it: UPSERT reloads the subject's faceprints from the vault, DELETE drops their
points.

At start the replica is empty. Before the worker's first search, the sync queues its restore:
note the topic's end offsets, then load the replica from the vault in one pass; then it follows
the topic from the noted offsets. Every change
before those offsets was in the vault before the pass read it (the join writes the vault before
it publishes); a change after them is applied after the pass, perhaps a second time (both
actions are idempotent). With a Qdrant server (``qdrant.url``, not a replica) nothing is
restored and the changes are no-ops in effect.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

from ..contract import ContractError
from ..contract.internal import GalleryAction, GalleryChange
from ..settings import Settings
from ..vault import Faceprint, FaceprintVault, UndecryptableError
from .edge import EdgeGallery, SubjectFaceprints
from .index import GalleryIndex

log = logging.getLogger(__name__)


def latest_model(faceprints: list[Faceprint]) -> SubjectFaceprints:
    """One subject's faceprints of its newest model only.

    After a re-embedding the old ones stay in the vault (until the subject is purged) but must
    not be compared with new embeddings.
    """
    model_version = max(faceprints, key=lambda f: f.created_at).model_version
    pairs = [(f.record_id, f.vector) for f in faceprints if f.model_version == model_version]
    return faceprints[0].subject_id, model_version, pairs


def vault_subjects(vault: FaceprintVault) -> Iterator[SubjectFaceprints]:
    """Every subject's current faceprints, in one pass over the vault."""
    for _, group in itertools.groupby(vault.iter_faceprints(), key=lambda f: f.subject_id):
        yield latest_model(list(group))


class GallerySync:
    def __init__(self, settings: Settings, gallery: GalleryIndex, vault: FaceprintVault, name: str) -> None:
        self._settings = settings
        self._gallery = gallery
        self._vault = vault
        self._name = name
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=f"gallery-sync-{name}", daemon=True)
        self._consumer = self._new_consumer()
        self._start: list[TopicPartition] = []
        self._restoring: Future[int] | None = None
        self.restored = threading.Event()  # set once the replica holds what the vault held
        self.applied = 0

    def start(self) -> None:
        """Queue the restore (before any search this worker makes), then follow the topic."""
        self._loop = asyncio.get_running_loop()
        if isinstance(self._gallery, EdgeGallery):
            self._restoring = self._gallery.begin_restore(self._snapshot())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _new_consumer(self) -> Consumer:
        k = self._settings.kafka
        return Consumer(
            {
                "bootstrap.servers": k.bootstrap,
                # Partitions are assigned by hand, offsets never committed: the group id only
                # names this replica's reader.
                "group.id": f"{k.app_id}-gallery-{self._name}",
                "enable.auto.commit": False,
                "logger": log,
            }
        )

    def _end_offsets(self, consumer: Consumer) -> list[TopicPartition]:
        topic = self._settings.kafka.topic_gallery
        while not self._stop.is_set():
            try:
                metadata = consumer.list_topics(topic, timeout=10).topics[topic]
                if metadata.error is None and metadata.partitions:
                    ends = []
                    for partition in sorted(metadata.partitions):
                        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                        ends.append(TopicPartition(topic, partition, high))
                    return ends
            except Exception as exc:  # the broker not up yet: try again
                log.warning("gallery sync: cannot read %s's offsets yet: %s", topic, exc)
            time.sleep(1)
        return [TopicPartition(topic, 0, OFFSET_END)]

    def _snapshot(self) -> Iterator[SubjectFaceprints]:
        """The topic's end offsets, noted first; then every subject's faceprints from the vault."""
        self._start = self._end_offsets(self._consumer)
        yield from vault_subjects(self._vault)

    def _restored(self) -> None:
        """Wait for the restore; a failed one (vault unreachable) is tried again."""
        while self._restoring is not None and not self._stop.is_set():
            try:
                self._restoring.result()
                self._restoring = None
            except Exception as exc:
                log.error("gallery sync: restoring the replica from the vault failed: %s", exc)
                time.sleep(5)
                assert isinstance(self._gallery, EdgeGallery)
                self._restoring = self._gallery.begin_restore(self._snapshot())
        if not self._start:
            self._start = self._end_offsets(self._consumer)
        self.restored.set()

    def _run(self) -> None:
        consumer = self._consumer
        try:
            self._restored()
            consumer.assign(self._start)
            while not self._stop.is_set():
                message = consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("gallery sync: %s", error)
                    continue
                value = message.value()
                if value is None:
                    continue
                try:
                    change = GalleryChange.from_bytes(value)
                except ContractError as exc:
                    log.error("gallery sync: undecodable change at offset %s: %s", message.offset(), exc)
                    continue
                self._apply(change)
        finally:
            consumer.close()

    def _apply(self, change: GalleryChange) -> None:
        assert self._loop is not None
        future: Any
        if change.action == GalleryAction.DELETE:
            future = asyncio.run_coroutine_threadsafe(
                self._gallery.delete_subject(change.subject_id), self._loop
            )
        else:
            try:
                faceprints = self._vault.faceprints(change.subject_id)
            except UndecryptableError:
                # The subject was purged after this change was written: nothing to load.
                return
            if not faceprints:
                return
            subject_id, model_version, pairs = latest_model(faceprints)
            future = asyncio.run_coroutine_threadsafe(
                self._gallery.upsert(subject_id, pairs, model_version), self._loop
            )
        try:
            future.result(timeout=60)
            self.applied += 1
        except Exception as exc:  # the replica stays stale until the next change or restart
            log.error("gallery sync: %s of %s failed: %s", change.action, change.subject_id, exc)
