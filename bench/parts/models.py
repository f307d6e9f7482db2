"""Part "models": bench/models.py (Triton single and split vs bare vs face_recognition; runtimes and
precision; the detector input size sweep), as it is."""

from __future__ import annotations

from typing import Any

from bench import models as faces_bench
from bench.harness import Context


def run(ctx: Context) -> dict[str, Any]:
    rounds = ctx.size(1, 3)
    with ctx.phase(
        f"models: Triton single/split (concurrency 8) vs bare, {rounds} round(s); runtimes; det_size sweep; "
        "face_recognition"
    ):
        return faces_bench.run(rounds=rounds, concurrency=8, peer=True)
