"""The benchmark's parts, in the order a full run takes them; each has ``run(ctx) -> dict``."""

from . import e2e, models, purge, video

PARTS = {"models": models, "video": video, "e2e": e2e, "purge": purge}
