"""Part "scaleout": one worker, then two, on the embedded stack; who takes which partitions, and the
CPU each process spends per photo.

The same photos as the e2e part go up in a burst with one worker, then again after a second
worker (its own process, its own in-memory gallery restored from the shared vault) has joined
the consumer group and taken its share of the partitions. For each phase: images/s, the photos
each worker recognised (facegate_assets_processed_total, scraped before and after), the
partitions of facegate.assets each holds (from its log), and the CPU milliseconds per photo of
every process of the stack (/proc: user + system, children included, so Triton's python-backend
stub, where the model runs, counts under triton). A larger deployment's cost per image is read
off the two-worker column: the workers' CPU per photo stays the same, spread over more hosts.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.stack.parts import settings_env

from ..cpu import cpu_seconds, per_photo_ms
from ..embedded import WORKERS, Stack, embedded_stack, photos_1024, scrape_counter, tap
from ..harness import ROOT, Context
from .e2e import Runner

PROCESSED = "facegate_assets_processed"
_ASSIGNED = re.compile(r"newly assigned partitions (\{.*?\})")
_ASSETS_PARTITION = re.compile(r"TopicPartition\(topic='([^']+)', partition=(\d+)\)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return "\nfacegate_worker_ready 1.0" in reply.read().decode()
    except OSError:
        return False


def assets_partitions(log: Path, topic: str) -> list[int]:
    """The partitions of ``topic`` in the worker's latest assignment (aiokafka's log line)."""
    found = _ASSIGNED.findall(log.read_text(errors="replace")) if log.exists() else []
    for assignment in reversed(found):
        partitions = sorted(int(p) for t, p in _ASSETS_PARTITION.findall(assignment) if t == topic)
        if partitions:
            return partitions
    return []


@contextmanager
def second_worker(stack: Stack, name: str = "worker-2") -> Iterator[tuple[int, str, Path]]:
    """Another worker process in the group: (pid, metrics URL, log)."""
    port = _free_port()
    log = Path(stack.endpoints.data_dir) / "logs" / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")}
    env.update(settings_env(stack.settings))
    env.update({"FACEGATE_METRICS__PORT": str(port), "FACEGATE_METRICS__HOST": "127.0.0.1"})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker", "--name", name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    try:
        yield proc.pid, f"http://127.0.0.1:{port}/metrics", log
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"scaleout: {what} not within {timeout:.0f} s")
        time.sleep(1)


def _phase(
    runner: Runner, n: int, label: str, workers: dict[str, tuple[str, Path]], pids: dict[str, int]
) -> dict[str, Any]:
    topic = runner.stack.settings.kafka.topic_assets
    processed = {w: scrape_counter(url, PROCESSED, stage="infer") for w, (url, _) in workers.items()}
    before = cpu_seconds(pids)
    burst = runner.burst(n, f"scale-{label}")
    after = cpu_seconds(pids)
    photos = {
        w: int(scrape_counter(url, PROCESSED, stage="infer") - processed[w])
        for w, (url, _) in workers.items()
    }
    return {
        "workers": len(workers),
        "images_per_s": burst["images_per_s"],
        "p50_s": burst["p50_s"],
        "p99_s": burst["p99_s"],
        "photos": n,
        "photos_by_worker": photos,
        # a worker's CPU over the photos it recognised itself (the column above divides by all)
        "worker_cpu_ms_per_own_photo": {
            w: round(1000 * (after[w] - before[w]) / max(photos[w], 1), 1) for w in workers
        },
        "partitions_by_worker": {w: assets_partitions(log, topic) for w, (_, log) in workers.items()},
        "cpu_ms_per_photo": per_photo_ms(before, after, n),
        "label": label,
    }


def run(ctx: Context) -> dict[str, Any]:
    photos = photos_1024()
    n = ctx.size(16, 96)
    out: dict[str, Any] = {"photos": len(photos), "burst": n}
    ctx.say("scaleout: starting the embedded stack (one worker)")
    with embedded_stack() as stack, tap(stack, [stack.settings.kafka.topic_tags]) as watcher:
        runner = Runner(stack, watcher, photos)
        part = WORKERS[0]
        first = part.args[part.args.index("--name") + 1]
        workers = {first: (stack.worker_metrics, Path(stack.endpoints.logs[part.name]))}
        with ctx.phase("scaleout: warm-up (4 photos)"):
            runner.closed_loop(1, 4, "scale-warmup")
        with ctx.phase(f"scaleout: burst of {n} with one worker"):
            pids = {first if k == part.name else k: v for k, v in stack.pids().items()}
            out["one"] = _phase(runner, n, "one", workers, pids)
        with second_worker(stack) as (pid, url, log):
            with ctx.phase("scaleout: a second worker joins and takes its partitions"):
                _wait(lambda: _ready(url), 240, "worker-2 ready")
                workers["worker-2"] = (url, log)
                topic = stack.settings.kafka.topic_assets
                _wait(
                    lambda: all(assets_partitions(log, topic) for _, log in workers.values()),
                    120,
                    "both workers holding partitions",
                )
                runner.closed_loop(2, 4, "scale-warmup-2")
            with ctx.phase(f"scaleout: burst of {n} with two workers"):
                pids = {first if k == part.name else k: v for k, v in stack.pids().items()}
                out["two"] = _phase(runner, n, "two", workers, {**pids, "worker-2": pid})
        runner.uploader.close()
        ctx.say("scaleout: stopping the stack")
    return out
