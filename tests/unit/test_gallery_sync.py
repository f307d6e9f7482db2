"""What a worker's replica is restored from: one pass over a real vault, newest model per subject."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from pipeline.gallery.edge import EdgeGallery
from pipeline.gallery.sync import vault_subjects
from pipeline.vault import FaceprintVault, MasterKey, MasterKeyring

rng = np.random.default_rng(11)


def test_the_restore_pass_gives_each_subject_its_newest_models_faceprints(tmp_path: Path) -> None:
    with FaceprintVault.open(tmp_path / "vault", MasterKeyring(MasterKey.generate())) as vault:
        vectors = {}
        for subject in ("S-1", "S-2", "S-3"):
            for ref in ("a", "b"):
                vectors[subject, ref] = rng.normal(0, 0.1, 128).astype(np.float32)
                vault.store(subject, vectors[subject, ref], reference=f"r/{ref}.jpg", model_version="m1")
        re_embedded = vault.store("S-2", vectors["S-2", "a"] + 0.05, reference="r/a.jpg", model_version="m2")
        vault.destroy_subject("S-3")  # purged: not restored

        restored = list(vault_subjects(vault))
        assert [(s, m, len(p)) for s, m, p in restored] == [("S-1", "m1", 2), ("S-2", "m2", 1)]
        assert restored[1][2][0][0] == re_embedded.record_id

        gallery = EdgeGallery.open(None, tmp_path, "unit", 0.6)
        try:
            assert gallery.begin_restore(iter(restored)).result() == 3
            assert asyncio.run(gallery.subjects()) == {"S-1", "S-2"}
            found = asyncio.run(gallery.search(np.stack([vectors["S-1", "b"], vectors["S-3", "a"]])))
            assert found[0] is not None and found[0].subject_id == "S-1"
            assert found[1] is None or found[1].subject_id != "S-3"
        finally:
            gallery.close()
