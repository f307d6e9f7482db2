"""Part "gallery": the embedded gallery at 100,000 faceprints: restore from the vault, search, recall.

A real SQLite vault in a temporary dir holds 100,000 filler faceprints (random 128-d vectors of a
faceprint's norm, three per pseudonymous filler subject: not faces) and the enrolled people: each
of dlib's five "johns" with three reference photos, faceprints computed by the same face model
code the workers' Triton runs (faces.py, in process). Then, as a worker does at start:

- restore: an EdgeGallery (Qdrant's engine, in memory) restored from the vault in one pass
  (every data key unwrapped, every faceprint decrypted);
- search: each other photo of the johns (not a reference) searched alone and in batches of 4
  (a photo's faces go in one call): latency p50 / p99, and recall = the nearest faceprint within
  the match threshold is the photo's own person.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.gallery.edge import EdgeGallery
from pipeline.gallery.index import EMBEDDING_DIM
from pipeline.gallery.sync import vault_subjects
from pipeline.vault import FaceprintVault, MasterKey, MasterKeyring

from ..harness import Context
from ..models import PHOTOS, _Bare
from .purge import FILLERS_PER_SUBJECT

REFERENCES = 3
THRESHOLD = 0.6


def _fast(vault: FaceprintVault) -> None:
    """Seeding may skip the fsync of each store (see purge.seed_vault); format and content unchanged."""
    for store in (vault._keys, vault._blobs):
        connection = getattr(getattr(store, "_db", None), "_conn", None)
        if connection is not None:
            connection.execute("PRAGMA synchronous = OFF")


def _people() -> dict[str, list[np.ndarray]]:
    bare = _Bare(batch=8)
    people = {}
    for person in sorted(p for p in (PHOTOS / "johns").iterdir() if p.is_dir()):
        found = bare.pipeline.analyze([f.read_bytes() for f in sorted(person.glob("*.jpg"))], det_batch=8)
        people[person.name] = [
            np.asarray(r.embeddings[0], dtype=np.float32) for r in found if len(r.embeddings)
        ]
    return people


def _search(gallery: EdgeGallery, queries: list[tuple[str, np.ndarray]], batch: int) -> dict[str, Any]:
    latencies, hits = [], 0
    for start in range(0, len(queries), batch):
        chunk = queries[start : start + batch]
        began = time.perf_counter()
        found = asyncio.run(gallery.search(np.stack([q for _, q in chunk])))
        latencies.append(time.perf_counter() - began)
        hits += sum(m is not None and m.subject_id == who for (who, _), m in zip(chunk, found, strict=True))
    return {
        "calls": len(latencies),
        "faces_per_call": batch,
        "ms_p50": round(1000 * float(np.percentile(latencies, 50)), 2),
        "ms_p99": round(1000 * float(np.percentile(latencies, 99)), 2),
        "recall": f"{hits}/{len(queries)}",
    }


def run(ctx: Context) -> dict[str, Any]:
    fillers = ctx.size(10_000, 100_000)
    out: dict[str, Any] = {"filler_faceprints": fillers, "filler": "random 128-d vectors, not faces"}
    with ctx.phase("gallery: faceprints of the johns (face model in process)"):
        people = _people()
    queries = [(who, e) for who, prints in people.items() for e in prints[REFERENCES:]]
    with tempfile.TemporaryDirectory(prefix="facegate-bench-gallery-") as tmp:
        vault = FaceprintVault.open(Path(tmp) / "vault", MasterKeyring(MasterKey.generate()))
        _fast(vault)
        with ctx.phase(f"gallery: {fillers} filler faceprints sealed into a vault"):
            rng = np.random.default_rng(20261122)
            vectors = rng.normal(0.0, 0.1, (fillers, EMBEDDING_DIM)).astype(np.float32)
            for i, vector in enumerate(vectors):
                subject = f"filler-{i // FILLERS_PER_SUBJECT:06d}"
                vault.store(subject, vector, reference=f"filler/{i}", model_version="bench-filler-random")
            for who, prints in people.items():
                for i, e in enumerate(prints[:REFERENCES]):
                    vault.store(who, e, reference=f"{who}/{i}", model_version="bench-real")
        gallery = EdgeGallery.open(None, Path(tmp), "bench", THRESHOLD)
        try:
            with ctx.phase("gallery: restore from the vault (as a worker at start)"):
                began = time.perf_counter()
                points = gallery.begin_restore(vault_subjects(vault)).result()
                out["restore"] = {"points": points, "seconds": round(time.perf_counter() - began, 2)}
            out["replica_mib"] = round(
                sum(p.stat().st_size for p in gallery.directory.rglob("*") if p.is_file()) / 2**20, 1
            )
            with ctx.phase(f"gallery: {len(queries)} real faces searched, alone and 4 per call"):
                asyncio.run(gallery.search(np.stack([q for _, q in queries[:4]])))  # warm
                out["search"] = [_search(gallery, queries * 3, 1), _search(gallery, queries * 3, 4)]
        finally:
            gallery.close()
            vault.close()
    ctx.say(f"gallery: {out['restore']} {out['search']}")
    return out
