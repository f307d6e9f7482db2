"""Part "purge": consent withdrawal -> SubjectPurged, with a gallery of many faceprints.

For each case (a subject named on N assets) and repetition:

1. the subject is enrolled for real: consent GRANTED on facegate.consent, three reference photos
   (of one of dlib's "johns") in the enrollment bucket, a SubjectEnrollment on facegate.enrollments;
   the worker computes the faceprint through Triton and stores it (vault + gallery);
2. up to three other photos of the same person are uploaded through the pipeline and tagged
   with the subject by recognition itself;
3. the rest of the N assets are join state seeded through the internal topics, exactly as the
   recognize stage publishes it: a FaceObservations (one face, candidate = the subject) on
   facegate.asset-events keyed by asset id and a MatchCandidate on facegate.subject-events
   keyed by the subject; the bench waits until every one of the N assets is tagged GREEN;
4. WITHDRAWN goes on facegate.consent; timed until the SubjectPurged for the subject is on
   facegate.purges, and until the last re-emitted AssetFaces (none may name the subject).

The gallery filler is sealed into the vault before the worker starts, which restores its
in-memory gallery from there (the restore is timed from the worker's log): random 128-d vectors
with pseudonymous filler subject ids, three per subject. They only give the index its size
(every gallery search compares them all); they are not faces.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.contract import AssetFaces, AssetKind, AuditRecord, BBox, SubjectPurged, utcnow
from pipeline.contract.internal import FaceObservations, MatchCandidate, ObservedFace
from pipeline.gallery.index import EMBEDDING_DIM
from pipeline.kafka.io import EventProducer
from pipeline.recognize.stage import face_id
from pipeline.vault import open_vault

from ..embedded import PHOTOS, WORKERS, Stack, TopicTap, Uploader, embedded_stack, photos_1024, tap
from ..harness import ROOT, Context, percentiles

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from flow import enrollment, grant, withdraw

REFERENCES = 3  # reference photos per enrollment
REAL_PER_SUBJECT = 3  # photos of the subject that go through recognition for real


FILLERS_PER_SUBJECT = 3  # like an enrolled subject's reference faceprints


def seed_vault(stack: Stack, count: int) -> None:
    """``count`` filler faceprints (random vectors, not faces) sealed in the vault.

    Written before the worker starts: it restores its in-memory gallery from the vault, so the
    restore is timed at this size too (the worker logs it).
    """
    vault = open_vault(stack.settings)
    try:
        # Each store is one fsync'd transaction: 100,000 of those take minutes. Seeding may skip
        # the fsync; the stores' content and format are unchanged.
        for database in (vault._keys, vault._blobs):
            connection = getattr(getattr(database, "_db", None), "_conn", None)
            if connection is not None:
                connection.execute("PRAGMA synchronous = OFF")
        rng = np.random.default_rng(20261122)
        # Norm ~1.1, like a real dlib faceprint, yet ~1.5 away from any real face: never a match.
        vectors = rng.normal(0.0, 0.1, (count, EMBEDDING_DIM)).astype(np.float32)
        for i, vector in enumerate(vectors):
            vault.store(
                f"filler-{i // FILLERS_PER_SUBJECT:06d}",
                vector,
                reference=f"filler/{i}",
                model_version="bench-filler-random",
            )
    finally:
        vault.close()


def restore_seconds(stack: Stack, timeout_s: float = 600) -> float | None:
    """How long the worker took to restore its gallery from the vault, from its log.

    The worker reports ready once it consumes; the restore runs beside that (its searches wait
    for it), so the line may come a little later.
    """
    log = Path(stack.endpoints.logs[WORKERS[0].name])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.findall(
            r"replica restored from the vault: (\d+) points in ([\d.]+) s", log.read_text(errors="replace")
        )
        if found:
            return float(found[-1][1])
        time.sleep(1)
    return None


@dataclass
class Subject:
    subject_id: str
    assets: list[str]
    real: int
    seed_s: float


class Purges:
    def __init__(self, stack: Stack, watcher: TopicTap) -> None:
        self.stack = stack
        self.k = stack.settings.kafka
        self.watcher = watcher
        self.producer = EventProducer(stack.endpoints.kafka_bootstrap, timeout_s=120, client_id="bench")
        self.uploader = Uploader(stack)
        self.people = {d.name: photos_1024(d) for d in sorted((PHOTOS / "johns").iterdir()) if d.is_dir()}
        self.model_version = ""

    def _send(self, topic: str, key: str, value: bytes) -> None:
        self.producer.send(topic, key, value)

    def _last_tags(self, asset_id: str) -> tuple[int, AssetFaces] | None:
        seen = self.watcher.get(self.k.topic_tags, asset_id)
        return (seen[-1].timestamp_ms, AssetFaces.from_bytes(seen[-1].value)) if seen else None

    def _names(self, tags: AssetFaces, subject_id: str) -> bool:
        return any(f.subject_id == subject_id for f in tags.faces)

    def prepare(self, n: int, person: str) -> Subject:
        """A consenting, enrolled subject named on ``n`` assets (real ones first, then seeded)."""
        subject_id = f"bench-{uuid.uuid4().hex[:12]}"
        photos = self.people[person]
        self._send(self.k.topic_consent, subject_id, grant(subject_id).to_bytes())
        bucket = self.stack.settings.s3.enrollment_bucket
        refs = [f"{subject_id}/{p.name.rsplit('/', 1)[-1]}" for p in photos[:REFERENCES]]
        for key, photo in zip(refs, photos, strict=False):
            self.uploader.put(key, photo.jpeg, bucket=bucket)
        self._send(self.k.topic_enrollments, subject_id, enrollment(subject_id, bucket, refs).to_bytes())
        self.producer.flush()

        def enrolled() -> bool:
            seen = self.watcher.get(self.k.topic_audit, subject_id)
            return any(AuditRecord.from_bytes(s.value).action == "ENROLLED" for s in seen)

        self.watcher.wait(enrolled, 120, f"enrollment of {subject_id}")
        real = [
            self.uploader.put(f"bench/purge/{subject_id}/{i}.jpg", photo.jpeg)
            for i, photo in enumerate(photos[REFERENCES : REFERENCES + min(n, REAL_PER_SUBJECT)])
        ]
        self.watcher.wait(lambda: all(self._last_tags(a) for a in real), 120, "tags of the real photos")
        named = []
        for asset_id in real:
            found = self._last_tags(asset_id)
            assert found is not None
            self.model_version = found[1].model_version
            if self._names(found[1], subject_id):
                named.append(asset_id)
        start = time.monotonic()
        seeded = self.seed(subject_id, n - len(named))
        pending = set(seeded)

        def all_named() -> bool:
            for asset_id in list(pending):
                found = self._last_tags(asset_id)
                if found is not None and self._names(found[1], subject_id):
                    pending.discard(asset_id)
            return not pending

        self.watcher.wait(all_named, 120 + 0.2 * n, f"{len(seeded)} seeded assets tagged")
        return Subject(subject_id, named + seeded, len(named), time.monotonic() - start)

    def seed(self, subject_id: str, count: int) -> list[str]:
        """Join state for ``count`` assets, published as the recognize stage publishes it."""
        bucket = self.stack.endpoints.bucket
        assets = []
        for i in range(count):
            asset_id = f"{bucket}/bench/seeded/{subject_id}/{i:05d}.jpg"
            etag = uuid.uuid4().hex
            box = BBox(100.0, 120.0, 160.0, 200.0)
            face = face_id(asset_id, etag, None, box)
            observed = ObservedFace(face, box, 0.99, candidate=subject_id, similarity=0.35)
            observations = FaceObservations(
                asset_id, etag, AssetKind.IMAGE, self.model_version, utcnow(), [observed]
            )
            self._send(self.k.topic_asset_events, asset_id, observations.to_bytes())
            candidate = MatchCandidate(subject_id, asset_id, etag, [face], 0.35)
            self._send(self.k.topic_subject_events, subject_id, candidate.to_bytes())
            assets.append(asset_id)
        self.producer.flush()
        return assets

    def withdraw(self, subject: Subject) -> dict[str, Any]:
        sid = subject.subject_id
        sent = time.time()
        self._send(self.k.topic_consent, sid, withdraw(sid).to_bytes())
        self.producer.flush()
        n = len(subject.assets)
        seen = self.watcher.wait(
            lambda: self.watcher.get(self.k.topic_purges, sid), 120 + 0.1 * n, f"SubjectPurged for {sid}"
        )
        purged = SubjectPurged.from_bytes(seen[0].value)
        last_tag_ms = 0
        for asset_id in subject.assets:
            found = self._last_tags(asset_id)
            assert found is not None and found[0] >= sent * 1000, f"{asset_id} was not re-emitted"
            assert not self._names(found[1], sid), f"{asset_id} still names {sid}"
            last_tag_ms = max(last_tag_ms, found[0])
        assert sorted(purged.asset_ids) == sorted(subject.assets), "SubjectPurged lists other assets"
        return {
            "assets": n,
            "real_assets": subject.real,
            "seeded_assets": n - subject.real,
            "seed_absorbed_s": round(subject.seed_s, 2),
            "purge_s": round(seen[0].timestamp_ms / 1000 - sent, 3),
            "last_tag_s": round(last_tag_ms / 1000 - sent, 3),
            "faceprints_deleted": purged.faceprints_deleted,
            "key_destroyed": purged.key_destroyed,
        }


def run(ctx: Context) -> dict[str, Any]:
    gallery = ctx.size(10_000, 100_000)
    cases = ctx.size({1: 3, 100: 3, 1000: 1}, {1: 20, 100: 10, 10_000: 2})
    out: dict[str, Any] = {"gallery_filler_points": gallery, "filler": "random 128-d vectors, not faces"}

    def seed(stack: Stack) -> None:
        with ctx.phase(f"purge: {gallery} filler faceprints sealed into the vault (before the worker)"):
            seed_vault(stack, gallery)

    ctx.say("purge: starting the embedded stack (infrastructure, then the worker)")
    with embedded_stack(before_workers=seed) as stack:
        k = stack.settings.kafka
        out["gallery_restore_s"] = restore_seconds(stack)
        with tap(stack, [k.topic_tags, k.topic_purges, k.topic_audit]) as watcher:
            purges = Purges(stack, watcher)
            people = sorted(purges.people)
            out["cases"] = []
            turn = 0
            for n, repeats in cases.items():
                runs = []
                with ctx.phase(f"purge: subject named on {n} asset(s), {repeats} withdrawal(s)"):
                    for _ in range(repeats):
                        subject = purges.prepare(n, people[turn % len(people)])
                        turn += 1
                        runs.append(purges.withdraw(subject))
                        ctx.say(
                            f"  {n} asset(s): purge {runs[-1]['purge_s']} s, "
                            f"seed absorbed in {runs[-1]['seed_absorbed_s']} s"
                        )
                out["cases"].append(
                    {
                        "assets": n,
                        "repeats": repeats,
                        "purge": percentiles([r["purge_s"] for r in runs], 50, 99),
                        "last_tag": percentiles([r["last_tag_s"] for r in runs], 50, 99),
                        "runs": runs,
                    }
                )
            purges.uploader.close()
        ctx.say("purge: stopping the stack")
    return out
