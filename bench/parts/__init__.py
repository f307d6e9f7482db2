"""The benchmark's parts, in the order a full run takes them; each has ``run(ctx) -> dict``."""

from . import e2e, gallery, models, purge, scaleout, video

PARTS = {
    "models": models,
    "video": video,
    "e2e": e2e,
    "scaleout": scaleout,
    "gallery": gallery,
    "purge": purge,
}
