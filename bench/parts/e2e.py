"""Part "e2e": the recognition stream end to end on the embedded stack.

Real photos (every one under tests/data/photos, resized to 1024 px) are uploaded with the minio
SDK into the stack's bucket; the SeaweedFS notification, the bridge, recognize (Triton +
Qdrant), the consent join and the assembler follow, and an AssetFaces lands on facegate.tags.
Latency is the client's view: from the moment its upload began to the tag record's broker
timestamp (both on this machine's clock).

- burst: N uploads as fast as 8 threads can put them; images/s = N / (first upload start ->
  last tag). That is the maximum sustained rate.
- closed loop: c clients each upload one photo and wait for its tag before the next; throughput
  and latency against c (the concurrency plot).
- paced: open-loop uploads at 50 % and 90 % of the burst rate, latency p50/p99, beside the
  worker's own facegate_upload_to_tag_seconds histogram (scraped before and after).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pipeline.contract import AssetFaces

from ..embedded import (
    Photo,
    Stack,
    TopicTap,
    Uploader,
    embedded_stack,
    histogram_quantiles,
    photos_1024,
    scrape_histogram,
    tap,
)
from ..harness import Context, percentiles
from ..models import TritonContender

UPLOAD_TO_TAG = "facegate_upload_to_tag_seconds"


class Runner:
    def __init__(self, stack: Stack, watcher: TopicTap, photos: list[Photo]) -> None:
        self.stack = stack
        self.watcher = watcher
        self.photos = photos
        self.tags = stack.settings.kafka.topic_tags
        self.uploader = Uploader(stack)

    def tagged_at(self, asset_id: str) -> float | None:
        seen = self.watcher.get(self.tags, asset_id)
        return seen[0].timestamp_ms / 1000 if seen else None

    def _key(self, phase: str, i: int) -> tuple[str, bytes]:
        photo = self.photos[i % len(self.photos)]
        return f"bench/{phase}/{i:05d}-{photo.name.replace('/', '_')}", photo.jpeg

    def _await_all(self, assets: list[str], timeout: float) -> dict[str, float]:
        pending = set(assets)
        done: dict[str, float] = {}

        def ready() -> bool:
            for asset_id in list(pending):
                at = self.tagged_at(asset_id)
                if at is not None:
                    done[asset_id] = at
                    pending.discard(asset_id)
            return not pending

        self.watcher.wait(ready, timeout, f"tags of {len(pending)} of {len(assets)} assets")
        return done

    def _figures(self, phase: str, assets: list[str], tagged: dict[str, float]) -> dict[str, Any]:
        started = {a: self.uploader.started[a] for a in assets}
        span = max(tagged.values()) - min(started.values())
        latencies = [tagged[a] - started[a] for a in assets]
        faces = sum(len(AssetFaces.from_bytes(self.watcher.get(self.tags, a)[0].value).faces) for a in assets)
        return {
            "phase": phase,
            "assets": len(assets),
            "faces": faces,
            "seconds": round(span, 2),
            "images_per_s": round(len(assets) / span, 3),
            **percentiles(latencies, 50, 90, 99),
            "latencies_s": [round(v, 3) for v in latencies],
        }

    def burst(self, n: int, phase: str = "burst") -> dict[str, Any]:
        futures = [self.uploader.submit(*self._key(phase, i)) for i in range(n)]
        assets = [f.result() for f in futures]
        return self._figures(phase, assets, self._await_all(assets, 120 + 5 * n))

    def closed_loop(self, clients: int, n: int, phase: str) -> dict[str, Any]:
        counter = iter(range(n))
        lock = threading.Lock()
        assets: list[str] = []

        def client() -> None:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                asset_id = self.uploader.put(*self._key(phase, i))
                assets.append(asset_id)
                self._await_all([asset_id], 300)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        tagged = {a: at for a in assets if (at := self.tagged_at(a)) is not None}
        return {"clients": clients} | self._figures(phase, assets, tagged)

    def paced(self, rate: float, n: int, phase: str) -> dict[str, Any]:
        start = time.monotonic()
        futures = []
        for i in range(n):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            futures.append(self.uploader.submit(*self._key(phase, i)))
        assets = [f.result() for f in futures]
        offered = (n - 1) / (
            max(self.uploader.started[a] for a in assets) - min(self.uploader.started[a] for a in assets)
        )
        tagged = self._await_all(assets, 120 + 5 * n)
        return {"target_images_per_s": round(rate, 3), "offered_images_per_s": round(offered, 3)} | (
            self._figures(phase, assets, tagged)
        )


def triton_alone(stack: Stack, photos: list[Photo], concurrency: int = 8) -> dict[str, Any]:
    """The stack's own Triton fed the same photos directly (no S3, Kafka or worker), at once
    after the burst: the limit for the end-to-end rate under the same machine load."""
    grpc = stack.settings.triton.grpc_url
    assert grpc, "the embedded stack reports its tritonserver's gRPC address"
    contender = TritonContender(grpc, concurrency, model=stack.settings.triton.model)
    start = time.perf_counter()
    boxes = contender.round(photos)
    seconds = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "images": len(photos),
        "faces": sum(len(b) for b in boxes),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(photos) / seconds, 3),
    }


def run(ctx: Context) -> dict[str, Any]:
    photos = photos_1024()
    burst_n = ctx.size(24, 200)
    levels = ctx.size((1, 4), (1, 2, 4, 8, 16))
    per_level = ctx.size(8, 32)
    paced_n = ctx.size(16, 100)
    out: dict[str, Any] = {"photos": len(photos), "long_side_px": 1024}
    ctx.say("e2e: starting the embedded stack (facegate up code, temp data dir)")
    with embedded_stack() as stack, tap(stack, [stack.settings.kafka.topic_tags]) as watcher:
        ctx.versions["tritonserver"] = stack.triton_version()
        runner = Runner(stack, watcher, photos)
        with ctx.phase("e2e: warm-up (4 photos, one at a time)"):
            runner.closed_loop(1, 4, "warmup")
        metrics = stack.worker_metrics
        with ctx.phase(f"e2e: burst of {burst_n} uploads (maximum sustained rate)"):
            before = scrape_histogram(metrics, UPLOAD_TO_TAG)
            out["burst"] = runner.burst(burst_n)
            out["burst"]["worker_histogram"] = histogram_quantiles(
                before, scrape_histogram(metrics, UPLOAD_TO_TAG)
            )
        with ctx.phase(f"e2e: the stack's Triton alone, the {len(photos)} photos, 8 in flight"):
            out["triton_alone"] = triton_alone(stack, photos)
        out["closed_loop"] = []
        for clients in levels:
            with ctx.phase(f"e2e: closed loop, {clients} client(s), {per_level} uploads"):
                out["closed_loop"].append(runner.closed_loop(clients, per_level, f"closed-{clients}"))
        maximum = out["burst"]["images_per_s"]
        out["paced"] = []
        for share in (0.5, 0.9):
            with ctx.phase(f"e2e: paced at {share:.0%} of {maximum} images/s, {paced_n} uploads"):
                before = scrape_histogram(metrics, UPLOAD_TO_TAG)
                figures = runner.paced(maximum * share, paced_n, f"paced-{round(share * 100)}")
                figures["share_of_max"] = share
                figures["worker_histogram"] = histogram_quantiles(
                    before, scrape_histogram(metrics, UPLOAD_TO_TAG)
                )
                out["paced"].append(figures)
        runner.uploader.close()
        ctx.say("e2e: stopping the stack")
    return out
