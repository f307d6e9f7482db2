"""A real Prometheus scraping the embedded stack while real photos go through it.

Prometheus (Debian package ``prometheus``) runs with a temporary config that scrapes every
facegate metrics endpoint of the stack (bridge and workers) as job ``facegate`` and Triton's
metrics port as job ``triton``, every second, and loads the repository's alert rules. Photos
uploaded with the minio SDK must show up in the series SREs watch, every PromQL expression of
the dashboard and the rules must run without error, and every rule must evaluate cleanly.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from minio import Minio

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "infra" / "prometheus" / "rules").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))
PHOTOS = ROOT / "tests" / "data" / "photos"
# Grafana's variables, replaced by what Grafana sends for "All" and a short step.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$instance": ".*"}
# Stack parts whose /metrics is not facegate's own registry.
JOB_OF_PART = {"triton": "triton", "s3": "seaweedfs"}
SCRAPE_INTERVAL_S = 1
WAIT_S = 180


def _expressions() -> list[tuple[str, str]]:
    found = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((f"{path.name}:{rule.get('alert') or rule.get('record')}", rule["expr"]))
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append((f"{path.name}:{panel['title']}:{target['refId']}", expr))
    return found


@dataclass(frozen=True)
class Prometheus:
    url: str
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def value(self, expr: str) -> float:
        """The scalar value of a one-series expression, 0 when it has no series yet."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(
    what: str,
    condition: Callable[[], bool],
    timeout_s: float = WAIT_S,
    log: Path | None = None,
    detail: Callable[[], object] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text().splitlines()[-20:]) if log and log.exists() else ""
            state = f" ({detail()})" if detail else ""
            pytest.fail(f"{what}: not within {timeout_s:.0f} s{state}\n{tail}")
        time.sleep(0.5)


def _scrape_configs(metrics: dict[str, str]) -> list[dict[str, Any]]:
    jobs: dict[str, list[dict[str, Any]]] = {}
    for part, url in sorted(metrics.items()):
        parsed = urllib.parse.urlsplit(url)
        jobs.setdefault(JOB_OF_PART.get(part, "facegate"), []).append(
            {"path": parsed.path or "/metrics", "target": parsed.netloc, "part": part}
        )
    configs = []
    for job, targets in jobs.items():
        (path,) = {t["path"] for t in targets}
        configs.append(
            {
                "job_name": job,
                "metrics_path": path,
                "static_configs": [
                    {"targets": [t["target"]], "labels": {"part": t["part"]}} for t in targets
                ],
            }
        )
    return configs


@pytest.fixture(scope="module")
def prometheus(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed: run `make system-deps` (Debian package prometheus)")
    assert "triton" in stack.metrics, f"the stack exposes no Triton metrics endpoint: {stack.metrics}"
    workdir = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
        },
        "rule_files": [str(path) for path in RULES],
        "scrape_configs": _scrape_configs(stack.metrics),
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = workdir / "prometheus.log"
    for _attempt in range(3):
        port = _free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Prometheus(f"http://127.0.0.1:{port}", log)

        def ready(process: subprocess.Popen[bytes] = process, server: Prometheus = server) -> bool:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        try:
            _wait_for("prometheus ready", ready, timeout_s=30, log=log)
            break
        except AssertionError:
            if "address already in use" not in log.read_text():
                raise
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _targets_up(prometheus: Prometheus) -> bool:
    targets = prometheus.get("/api/v1/targets")["activeTargets"]
    return bool(targets) and all(t["health"] == "up" for t in targets)


@dataclass(frozen=True)
class Pushed:
    images: int
    bad: int
    baseline: dict[str, float]


# What one pass of real photos must move, as (name, PromQL summing it over the whole stack).
EXPECTED_INCREASES = {
    "notifications": "sum(facegate_notifications_received_total)",
    "tagged": "sum(facegate_upload_to_tag_seconds_count)",
    "assets": "sum(facegate_assets_processed_total)",
    "faces": "sum(facegate_faces_processed_total)",
    "triton_requests": "sum(facegate_triton_request_duration_seconds_count)",
    "triton_server": 'sum(nv_inference_request_success{job="triton"})',
    "dlq": "sum(facegate_dlq_records_total)",
}


@pytest.fixture(scope="module")
def pushed(stack: Any, prometheus: Prometheus) -> Pushed:
    stack.require_model()
    workers = set(stack.metrics) - set(JOB_OF_PART) - {"bridge"}
    assert workers, f"the stack runs no pipeline worker, only {sorted(stack.metrics)}"
    _wait_for("every scrape target up", lambda: _targets_up(prometheus), timeout_s=60, log=prometheus.log)
    baseline = {name: prometheus.value(expr) for name, expr in EXPECTED_INCREASES.items()}

    photos = [PHOTOS / "faces" / "bald_guys.jpg", PHOTOS / "faces" / "2008_002470.jpg"]
    photos += sorted((PHOTOS / "johns" / "John_Salley").glob("*.jpg"))[:2]
    photos += [PHOTOS / "distractors" / "grace_hopper.jpg"]
    missing = [p for p in photos if not p.is_file()]
    assert not missing, f"test photos missing (run `make data`): {missing}"
    client: Minio = stack.s3()
    prefix = f"observe-{uuid.uuid4().hex[:8]}"
    for photo in photos:
        client.fput_object(stack.bucket, f"{prefix}/{photo.name}", str(photo), content_type="image/jpeg")
    # A truncated JPEG: a real upload that must be dead-lettered and counted, not dropped.
    truncated = (PHOTOS / "faces" / "2008_001009.jpg").read_bytes()[:2000]
    client.put_object(
        stack.bucket,
        f"{prefix}/truncated.jpg",
        io.BytesIO(truncated),
        len(truncated),
        content_type="image/jpeg",
    )
    pushed = Pushed(images=len(photos), bad=1, baseline=baseline)

    def increases() -> dict[str, float]:
        return {name: prometheus.value(expr) - baseline[name] for name, expr in EXPECTED_INCREASES.items()}

    _wait_for(
        "upload->tag observations for every photo",
        lambda: increases()["tagged"] >= pushed.images and increases()["dlq"] >= pushed.bad,
        log=prometheus.log,
        detail=increases,
    )
    return pushed


def test_every_scrape_target_is_up(prometheus: Prometheus) -> None:
    _wait_for("every scrape target up", lambda: _targets_up(prometheus), timeout_s=60, log=prometheus.log)
    jobs = {t["labels"]["job"] for t in prometheus.get("/api/v1/targets")["activeTargets"]}
    assert {"facegate", "triton"} <= jobs


def test_photos_move_the_series_sres_watch(prometheus: Prometheus, pushed: Pushed) -> None:
    # Scrapes lag the pipeline by up to one interval; wait for the slowest counter too.
    def moved() -> dict[str, float]:
        return {
            name: prometheus.value(expr) - pushed.baseline[name] for name, expr in EXPECTED_INCREASES.items()
        }

    _wait_for(
        "every expected series moved",
        lambda: all(v > 0 for v in moved().values()),
        timeout_s=30,
        detail=moved,
    )
    increases = moved()
    assert increases["notifications"] >= pushed.images + pushed.bad
    assert increases["tagged"] >= pushed.images
    assert increases["dlq"] >= pushed.bad
    assert increases["faces"] >= 1
    assert increases["triton_server"] >= 1

    dlq = prometheus.query("sum by (stage, error_class) (facegate_dlq_records_total)")
    assert all(series["metric"].get("error_class") for series in dlq), dlq
    lag = prometheus.query('facegate_kafka_consumer_lag_records{job="facegate"}')
    assert lag, "no consumer lag series"
    assert {"topic", "partition"} <= set(lag[0]["metric"])
    # increase() needs two scrapes of the histogram: on a just-started stack wait for the second.
    p99_expr = "histogram_quantile(0.99, sum by (le) (increase(facegate_upload_to_tag_seconds_bucket[5m])))"
    _wait_for("an upload-to-tag p99", lambda: 0 < prometheus.value(p99_expr) < float("inf"), timeout_s=30)


def test_every_dashboard_and_rule_expression_runs(prometheus: Prometheus, pushed: Pushed) -> None:
    failures = {}
    for where, expr in _expressions():
        try:
            prometheus.get("/api/v1/query", query=expr)
        except (AssertionError, urllib.error.HTTPError) as exc:
            detail = exc.read().decode() if isinstance(exc, urllib.error.HTTPError) else str(exc)
            failures[where] = detail
    assert failures == {}


def test_core_dashboard_panels_have_data(prometheus: Prometheus, pushed: Pushed) -> None:
    expressions = dict(_expressions())
    for panel in (
        "facegate.json:Assets by stage and outcome:A",
        "facegate.json:Upload → tag (images and frames):C",
        "facegate.json:Triton request latency (client side):C",
        "facegate.json:Consumer lag by topic:A",
        "facegate.json:Inferences / s by model:A",
        "facegate.json:Workers up:A",
        "facegate.json:Triton up:A",
    ):
        assert prometheus.query(expressions[panel]), f"no data for {panel}"


def test_every_rule_evaluates_and_nothing_is_down(prometheus: Prometheus, pushed: Pushed) -> None:
    def evaluated() -> bool:
        rules = [r for g in prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]]
        return bool(rules) and all(r.get("lastEvaluation", "").startswith("20") for r in rules)

    _wait_for("every rule evaluated", evaluated, timeout_s=30)
    rules = [r for g in prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} >= {"TritonDown", "FacegateWorkerDown", "FacegateUploadToTagSlow"}
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    firing = {a["labels"]["alertname"] for a in prometheus.get("/api/v1/alerts")["alerts"]}
    assert not firing & {"TritonDown", "FacegateWorkerDown"}


def test_triton_exposes_the_metrics_the_dashboard_reads(prometheus: Prometheus, pushed: Pushed) -> None:
    names = {s["metric"]["__name__"] for s in prometheus.query('count by (__name__) ({job="triton"})')}
    used = {
        word
        for _, expr in _expressions()
        for word in re.findall(r"\bnv_[a-z_]+\b", expr)
        if not word.startswith("nv_gpu_")  # the embedded Triton runs on CPU
    }
    assert used <= names, used - names
