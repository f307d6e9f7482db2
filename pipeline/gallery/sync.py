"""Keep this worker's gallery replica in step with the vault.

Qdrant's local mode lets one process open a store, so each worker keeps its own replica. The
consent join writes faceprints to the (shared, encrypted) vault and publishes a GalleryChange —
a subject id and an action, never a faceprint — on the compacted gallery topic. Every worker
reads that topic from the beginning with a consumer group of its own (so it sees every
partition) and applies it: UPSERT reloads the subject's faceprints from the vault, DELETE drops
their points. Replaying the compacted topic at start-up rebuilds a replica from the vault.
With a Qdrant server (``qdrant.url``) the same messages are idempotent no-ops in effect.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError

from ..contract import ContractError
from ..contract.internal import GalleryAction, GalleryChange
from ..settings import Settings
from ..vault import FaceprintVault, UndecryptableError
from .index import QdrantGallery

log = logging.getLogger(__name__)


class GallerySync:
    def __init__(self, settings: Settings, gallery: QdrantGallery, vault: FaceprintVault, name: str) -> None:
        self._settings = settings
        self._gallery = gallery
        self._vault = vault
        self._name = name
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=f"gallery-sync-{name}", daemon=True)
        self.applied = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _consumer(self) -> Consumer:
        k = self._settings.kafka
        consumer = Consumer(
            {
                "bootstrap.servers": k.bootstrap,
                # A group of its own: this replica must see every partition, from the start.
                "group.id": f"{k.app_id}-gallery-{self._name}-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 10000,
                "logger": log,
            }
        )
        consumer.subscribe([k.topic_gallery])
        return consumer

    def _run(self) -> None:
        consumer = self._consumer()
        try:
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
            # The newest model's faceprints only: after a re-embedding the old ones stay in the
            # vault (until the subject is purged) but must not be compared with new embeddings.
            model_version = max(faceprints, key=lambda f: f.created_at).model_version
            pairs = [(f.record_id, f.vector) for f in faceprints if f.model_version == model_version]
            future = asyncio.run_coroutine_threadsafe(
                self._gallery.upsert(change.subject_id, pairs, model_version), self._loop
            )
        try:
            future.result(timeout=60)
            self.applied += 1
        except Exception as exc:  # the replica stays stale until the next change or restart
            log.error("gallery sync: %s of %s failed: %s", change.action, change.subject_id, exc)
