"""The privacy invariants of design.md, each proven on the real embedded stack.

1. no embedding of a face without a legal basis is persisted (Qdrant, object store, topics, logs)
2. no embedding crosses Kafka in plaintext
3. after a withdrawal is processed no AssetFaces names the subject; a SubjectPurged lists every asset
4. after a purge: zero Qdrant points, key destroyed, vault copies undecryptable, audit receipt
5. every consent change, enrollment, match decision and purge is in the verifiable audit log
6. Qdrant holds pseudonymous ids only
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import stack_settings
from embedding_scan import contains, files_containing
from flow import (
    PHOTOS,
    Publisher,
    Watcher,
    audit_records,
    enroll,
    enrollment,
    erase,
    faces_of,
    grant,
    latest_tags,
    put,
    references,
    tags_of,
    wait_audit,
    wait_purge,
    withdraw,
)

from pipeline.audit import by_chain_seq, check_no_biometrics, record_hash, verify
from pipeline.contract import (
    AssetFaces,
    ConsentChange,
    FaceStatus,
    PurgeReason,
    SubjectPurged,
    utcnow,
)
from pipeline.gallery.memory import replica_directories
from pipeline.inference import TritonFaceClient
from pipeline.stack import up
from pipeline.vault import FaceprintVault, UndecryptableError, open_vault
from pipeline.vault.master import load_master_keyring

pytestmark = [pytest.mark.integration, pytest.mark.models]

JOHNS = sorted(p for p in (PHOTOS / "johns").iterdir() if p.is_dir())
OBAMA = PHOTOS / "face_recognition"


@pytest.fixture(scope="module")
def topics(stack):
    stack.require_model()
    k = stack.settings.kafka
    watcher = Watcher(
        stack.kafka_config(), [k.topic_tags, k.topic_dlq, k.topic_purges, k.topic_audit, k.topic_consent]
    )
    yield watcher
    watcher.close()


@pytest.fixture(scope="module")
def publisher(stack):
    return Publisher(stack.kafka_config())


# --- invariant 3: the race --------------------------------------------------------------------


@pytest.mark.slow
def test_withdrawal_race_200_trials(stack, topics, publisher):
    """A withdrawal arrives while photos of the subject are in flight, 200 times over.

    Five different people are enrolled per round (five trials run at once, with faces that
    cannot match each other); photos of each are uploaded and, after a random delay, the
    subject withdraws. In every trial no AssetFaces naming the subject is produced after its
    SubjectPurged, the SubjectPurged lists every asset that named them, and the final compacted
    view of facegate.tags names them nowhere.
    """
    k = stack.settings.kafka
    rng = random.Random(20261122)
    trials = 0
    named_before_purge = 0
    rounds = 200 // len(JOHNS)
    for round_no in range(rounds):
        people = {f"R{round_no}-{p.name}-{uuid.uuid4().hex[:4]}": p for p in JOHNS}
        photos = {s: sorted(p.glob("*.jpg")) for s, p in people.items()}
        for subject, files in photos.items():
            enroll(stack, publisher, subject, references(files[0]))
        for subject in people:
            wait_audit(topics, subject, "ENROLLED")
        uploads: dict[str, list[str]] = {}
        for subject, files in photos.items():
            chosen = rng.sample(files[1:], 3)
            uploads[subject] = []
            for photo in chosen:
                key = f"race/{subject}/{photo.name}"
                put(stack, key, photo.read_bytes())
                uploads[subject].append(f"{stack.bucket}/{key}")
        time.sleep(rng.uniform(0.0, 1.5))  # the withdrawal lands before, among or after the tags
        for subject in rng.sample(list(people), len(people)):
            publisher.send(k.topic_consent, subject, withdraw(subject))
        for subject, assets in uploads.items():
            purge_msg = wait_purge(stack, topics, subject)
            purge = SubjectPurged.from_bytes(purge_msg.value)
            assert purge.reason is PurgeReason.WITHDRAWN
            view = topics.until(
                lambda ms, assets=assets: (lambda v: v if all(a in v for a in assets) else None)(
                    latest_tags(ms, k.topic_tags)
                ),
                60,
                "every upload tagged",
            )
            naming = [
                m for m in topics.on(k.topic_tags) if any(f.subject_id == subject for f in faces_of(m).faces)
            ]
            for m in naming:
                assert m.timestamp_ms <= purge_msg.timestamp_ms, f"{m.key} named {subject} after its purge"
                assert m.key in purge.asset_ids, f"{m.key} named {subject} but is not in the purge receipt"
            named_before_purge += len({m.key for m in naming})
            for asset_id in assets:
                assert all(f.subject_id != subject for f in view[asset_id].faces)
            trials += 1
    print(f"{trials} trials; {named_before_purge} assets were named and then revoked")
    assert trials == rounds * len(JOHNS) == 200
    assert named_before_purge > 0  # the race was real: some photos were named before the withdrawal


# --- invariants 4 and 5: what a purge leaves behind ------------------------------------------


@contextmanager
def worker_stopped(stack) -> Iterator[None]:
    """Stop the worker (its gallery replica, in memory, goes with it), then start it again."""
    from pipeline.stack import state as stack_state
    from pipeline.stack.procs import stop

    part = stack_state.load(Path(stack.data_dir)).parts["worker"]
    assert part.process is not None and stop(part.process, timeout_s=60)
    try:
        yield
    finally:
        up(stack_settings(Path(stack.data_dir)))


def worker_replica(stack) -> Path:
    """The running worker's gallery replica: its directory on the memory file system."""
    replicas = replica_directories(stack.settings.qdrant.memory_dir, Path(stack.data_dir))
    assert len(replicas) == 1, replicas  # a stopped worker's replica is removed (or swept at restart)
    return next(iter(replicas))


def reference_embeddings(stack, *photos: Path) -> list[np.ndarray]:
    async def embed() -> list[np.ndarray]:
        async with TritonFaceClient.from_settings(stack.settings) as client:
            return [(await client.analyze(p.read_bytes())).faces[0].embedding for p in photos]

    return asyncio.run(embed())


def test_purge_leaves_no_faceprint_no_key_no_name_and_a_receipt(stack, topics, publisher, tmp_path):
    k = stack.settings.kafka
    subject = f"S-{uuid.uuid4().hex[:10]}"
    enroll(stack, publisher, subject, references(OBAMA / "obama2.jpg", OBAMA / "obama3.jpg"))
    enrolled = wait_audit(topics, subject, "ENROLLED")
    assert json.loads(enrolled.detail)["stored"] == 2
    key = f"purge/{uuid.uuid4().hex[:6]}/obama.jpg"
    put(stack, key, (OBAMA / "obama.jpg").read_bytes())
    asset_id = f"{stack.bucket}/{key}"
    named = topics.until(
        lambda ms: next((t for t in tags_of(ms, k.topic_tags, asset_id) if t.faces), None), 60, "tags"
    )
    assert named.faces[0].subject_id == subject and named.faces[0].status is FaceStatus.GREEN

    # The scan sees the subject's faceprints where they lawfully are: the worker's replica.
    faceprints = reference_embeddings(stack, OBAMA / "obama2.jpg", OBAMA / "obama3.jpg")
    assert all(files_containing(worker_replica(stack), e) for e in faceprints)

    # A backup of the vault's ciphertexts taken before the erasure.
    vault_dir = Path(stack.data_dir) / "vault"
    backup = tmp_path / "vault-backup"
    backup.mkdir()
    _sqlite_backup(vault_dir / "faceprints.db", backup / "faceprints.db")
    assert _rows(backup / "faceprints.db", subject) == 2

    publisher.send(k.topic_consent, subject, withdraw(subject))
    purge = SubjectPurged.from_bytes(wait_purge(stack, topics, subject).value)
    assert purge.asset_ids == [asset_id]
    assert purge.faceprints_deleted == 2 and purge.key_destroyed
    # The revoked tag was written before the receipt; the watcher reads partitions independently.
    topics.until(
        lambda ms: all(f.subject_id is None for f in latest_tags(ms, k.topic_tags)[asset_id].faces),
        30,
        "the revoked tag",
    )

    # The reference photos went with the faceprints.
    from minio.error import S3Error

    for name in ("obama2.jpg", "obama3.jpg"):
        with pytest.raises(S3Error, match=r"NoSuchKey|does not exist"):
            stack.s3().stat_object(stack.settings.s3.enrollment_bucket, f"{subject}/{name}")

    # The vault: no key, no faceprints; the backup's ciphertexts no longer decrypt.
    vault = open_vault(stack.settings)
    try:
        assert not vault.has_subject(subject)
        assert vault.faceprints(subject) == []
    finally:
        vault.close()
    _sqlite_backup(vault_dir / "keys.db", backup / "keys.db")
    restored = FaceprintVault.open(backup, load_master_keyring(stack.settings.privacy, vault_dir))
    try:
        with pytest.raises(UndecryptableError):
            restored.faceprints(subject)
    finally:
        restored.close()

    # The audit log: every step of the subject's story, a receipt, a chain that verifies.
    receipt = wait_audit(topics, subject, "PURGED")
    assert json.loads(receipt.detail)["purge_id"] == purge.event_id
    topics.poll(1)
    records = audit_records(topics.messages)
    mine = [r.action for r in records if r.subject_id == subject]
    for action in ("CONSENT_CHANGED", "ENROLLED", "MATCH_DECIDED", "KEY_DESTROYED", "PURGED"):
        assert action in mine, (action, mine)
    report = verify(sorted(records, key=by_chain_seq))
    assert report.ok, report.describe()
    for record in records:
        check_no_biometrics(json.loads(record.detail))

    # Tampering is detected: an edited, a removed and an inserted record.
    ordered = sorted(records, key=by_chain_seq)
    index = ordered.index(receipt)
    edited = [*ordered]
    edited[index] = dataclasses.replace(receipt, detail=receipt.detail.replace("WITHDRAWN", "EXPIRED"))
    assert not verify(edited).ok
    removed = [r for r in ordered if r is not ordered[index - 1]]
    assert not verify(removed).ok
    # a forger who re-seals what they insert (the hash matches its own content)
    forged = dataclasses.replace(ordered[index - 1], detail='{"forged":true}')
    forged = dataclasses.replace(forged, hash=record_hash(forged))
    inserted = [*ordered]
    inserted.insert(index, forged)
    assert not verify(inserted).ok
    # an exact redelivery of a record (at-least-once publishing) is not tampering
    assert verify([*ordered, ordered[index]]).ok

    # The gallery: the worker's replica (in memory) holds none of the subject's faceprints; after
    # a restart it is rebuilt from the vault, which has none of them either.
    assert not [e for e in faceprints if files_containing(worker_replica(stack), e)]
    with worker_stopped(stack):
        pass
    assert not [e for e in faceprints if files_containing(worker_replica(stack), e)]


def _sqlite_backup(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (WAL included), as a backup job makes it."""
    import sqlite3

    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _rows(db: Path, subject: str) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return sum(
            conn.execute(f"select count(*) from {t} where subject_id = ?", (subject,)).fetchone()[0]
            for t in tables
        )


# --- expiry, invalid consent, refused enrollment ----------------------------------------------


def test_expiry_purges_without_a_manual_step(stack, topics, publisher):
    k = stack.settings.kafka
    subject = f"S-{uuid.uuid4().hex[:10]}"
    first = JOHNS[0] / sorted(os.listdir(JOHNS[0]))[0]
    enroll(stack, publisher, subject, references(first), until=timedelta(seconds=20))
    wait_audit(topics, subject, "ENROLLED")
    photo = sorted(JOHNS[0].glob("*.jpg"))[1]
    key = f"expiry/{uuid.uuid4().hex[:6]}/{photo.name}"
    put(stack, key, photo.read_bytes())
    asset_id = f"{stack.bucket}/{key}"
    tags = topics.until(
        lambda ms: next((t for t in tags_of(ms, k.topic_tags, asset_id) if t.faces), None), 60, "tags"
    )
    face = tags.faces[0]
    # valid, but expiring within the AMBER window
    assert face.status is FaceStatus.AMBER and face.subject_id == subject
    assert face.reason.startswith("expiring:")
    purge = SubjectPurged.from_bytes(wait_purge(stack, topics, subject, timeout=90).value)
    assert purge.reason is PurgeReason.EXPIRED and purge.asset_ids == [asset_id] and purge.key_destroyed
    final = topics.until(
        lambda ms: (lambda f: f if f.subject_id is None else None)(
            latest_tags(ms, k.topic_tags)[asset_id].faces[0]
        ),
        30,
        "the expired tag",
    )
    assert final.reason == "expired"


def _dlq_for(stack, topics, key: str):
    dlq = stack.settings.kafka.topic_dlq
    return topics.until(lambda ms: next((m for m in ms if m.topic == dlq and m.key == key), None), 60, key)


def test_invalid_consent_changes_go_to_the_dlq_with_their_reason(stack, topics, publisher):
    k = stack.settings.kafka
    no_evidence = f"S-{uuid.uuid4().hex[:10]}"
    publisher.send(k.topic_consent, no_evidence, dataclasses.replace(grant(no_evidence), evidence_uri=None))
    backwards = f"S-{uuid.uuid4().hex[:10]}"
    change = grant(backwards, until=timedelta(days=1))
    publisher.send(
        k.topic_consent,
        backwards,
        dataclasses.replace(change, valid_until=change.valid_from - timedelta(days=2)),
    )
    # An unknown legal basis: a producer's schema with a fourth symbol, bytes stamped as ours.
    unknown = f"S-{uuid.uuid4().hex[:10]}"
    publisher.send(k.topic_consent, unknown, _with_unknown_basis(grant(unknown)))

    reasons = {s: _dlq_for(stack, topics, s).headers for s in (no_evidence, backwards, unknown)}
    for subject, headers in reasons.items():
        assert headers["source_topic"] == k.topic_consent, headers
        print(subject, headers["error_class"], headers["error_message"])
    assert "evidence" in reasons[no_evidence]["error_message"]
    assert "valid_until" in reasons[backwards]["error_message"]
    assert (
        "legal_basis" in reasons[unknown]["error_message"]
        or "ConsentChange" in reasons[unknown]["error_message"]
    )
    rejected = [r for r in audit_records(topics.messages) if r.action == "CONSENT_REJECTED"]
    assert {r.subject_id for r in rejected} >= {no_evidence, backwards}


def _with_unknown_basis(change: ConsentChange) -> bytes:
    import io

    import fastavro

    schema = json.loads(json.dumps(ConsentChange.schema().parsed))
    for f in schema["fields"]:
        if f["name"] == "legal_basis":
            f["type"]["symbols"] = [*f["type"]["symbols"], "LEGITIMATE_INTEREST"]
    datum = {**change.to_avro(), "legal_basis": "LEGITIMATE_INTEREST"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), datum)
    return b"\xc3\x01" + ConsentChange.schema().fingerprint + body.getvalue()


def test_enrollment_refused_without_basis_or_with_several_faces(stack, topics, publisher):
    k = stack.settings.kafka
    expired = f"S-{uuid.uuid4().hex[:10]}"
    change = grant(expired, until=timedelta(days=1))
    publisher.send(
        k.topic_consent, expired, dataclasses.replace(change, valid_until=utcnow() - timedelta(hours=1))
    )
    enroll_key = f"{expired}/obama.jpg"
    put(stack, enroll_key, (OBAMA / "obama.jpg").read_bytes(), bucket=stack.settings.s3.enrollment_bucket)
    publisher.send(
        k.topic_enrollments, expired, enrollment(expired, stack.settings.s3.enrollment_bucket, [enroll_key])
    )
    refused = json.loads(wait_audit(topics, expired, "ENROLLMENT_REFUSED").detail)
    assert refused["reason"] == "expired"

    group = f"S-{uuid.uuid4().hex[:10]}"
    enroll(stack, publisher, group, references(PHOTOS / "faces" / "2008_002506.jpg"))
    detail = json.loads(wait_audit(topics, group, "ENROLLMENT_REFUSED").detail)
    assert detail["stored"] == 0 and "3 faces" in detail["refused"][0]["reason"]


# --- invariants 1 and 2: scanning for embeddings ----------------------------------------------


def _all_topic_bytes(stack) -> list[bytes]:
    from confluent_kafka.admin import AdminClient

    names = [
        t for t in AdminClient(stack.kafka_config()).list_topics(timeout=10).topics if not t.startswith("__")
    ]
    watcher = Watcher(stack.kafka_config(), names)
    watcher.poll(5)
    watcher.close()
    return [m.value + m.key.encode() for m in watcher.messages]


def test_no_embedding_of_an_unmatched_face_is_persisted_and_none_crosses_kafka(stack, topics, publisher):
    k = stack.settings.kafka
    subject = f"S-{uuid.uuid4().hex[:10]}"
    enroll(stack, publisher, subject, references(OBAMA / "obama2.jpg"))
    wait_audit(topics, subject, "ENROLLED")
    stranger = OBAMA / "biden.jpg"
    key = f"scan/{uuid.uuid4().hex[:6]}/biden.jpg"
    put(stack, key, stranger.read_bytes())
    topics.until(lambda ms: tags_of(ms, k.topic_tags, f"{stack.bucket}/{key}"), 60, "stranger tagged")

    unmatched, consented = reference_embeddings(stack, stranger, OBAMA / "obama2.jpg")
    data_dir = Path(stack.data_dir)
    started = time.monotonic()
    # Invariant 1: the stranger's embedding is nowhere: Qdrant, vault, logs, object store, topics.
    assert files_containing(data_dir, unmatched) == []
    topic_bytes = _all_topic_bytes(stack)
    assert not [value for value in topic_bytes if contains(value, unmatched)]
    # Invariant 2: the consented subject's faceprint is not on Kafka in plaintext either, nor in
    # any file on disk (the vault holds it encrypted)...
    assert not [value for value in topic_bytes if contains(value, consented)]
    assert files_containing(data_dir, consented) == []
    # ...while the same scan finds it where it lawfully is, the gallery in memory: the scan can see it.
    assert files_containing(worker_replica(stack), consented), "the scan cannot see the gallery"
    print(f"scanned {len(topic_bytes)} records and {data_dir} in {time.monotonic() - started:.1f}s")
    erase(stack, topics, publisher, subject)


def test_gallery_is_rebuilt_from_the_vault(stack, topics, publisher):
    """The gallery is an index held in memory: a restarted worker restores it from the vault
    before its first search, so the first photo after the restart is named; `facegate reindex`
    reloads it again."""
    import subprocess
    import sys

    k = stack.settings.kafka
    subject = f"S-{uuid.uuid4().hex[:10]}"
    enroll(stack, publisher, subject, references(OBAMA / "obama2.jpg"))
    wait_audit(topics, subject, "ENROLLED")

    def named_on_upload(prefix: str) -> AssetFaces:
        key = f"{prefix}/{uuid.uuid4().hex[:6]}/obama.jpg"
        put(stack, key, (OBAMA / "obama.jpg").read_bytes())
        return topics.until(
            lambda ms: next((t for t in tags_of(ms, k.topic_tags, f"{stack.bucket}/{key}") if t.faces), None),
            120,
            f"tags of {key}",
        )

    with worker_stopped(stack):
        assert not replica_directories(stack.settings.qdrant.memory_dir, Path(stack.data_dir))
    tags = named_on_upload("restarted")
    assert tags.faces[0].subject_id == subject and tags.faces[0].status is FaceStatus.GREEN

    env = {**os.environ, "FACEGATE_DATA_DIR": str(stack.data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "reindex"], env=env, capture_output=True, text=True, check=True
    )
    assert "subject(s)" in done.stdout, done.stdout + done.stderr
    tags = named_on_upload("reindexed")
    assert tags.faces[0].subject_id == subject and tags.faces[0].status is FaceStatus.GREEN
    erase(stack, topics, publisher, subject)
