"""Part "video": bench/video.py in a process of its own, so its memory figures are its own."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.harness import ROOT, Context


def run(ctx: Context) -> dict[str, Any]:
    minutes = ctx.size(1, 10)
    with ctx.phase(f"video: clips, then a {minutes}-minute video (model + tracker, then sampler only)"):
        done = subprocess.run(
            [sys.executable, "-m", "bench.video", "--minutes", str(minutes)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            check=True,
        )
    return {"minutes": minutes} | json.loads(done.stdout)
