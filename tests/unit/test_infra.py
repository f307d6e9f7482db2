"""Prometheus config, alert rules, their promtool unit tests, and the Grafana dashboard.

Needs promtool (Debian package ``prometheus``; ``make system-deps``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline import metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

# Triton's own metrics (server docs, "Metrics"); per-model ones appear once a model has run.
TRITON_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_pending_request_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_gpu_utilization",
        "nv_gpu_memory_total_bytes",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_power_usage",
        "nv_gpu_power_limit",
        "nv_energy_consumption",
        "nv_cpu_utilization",
        "nv_cpu_memory_total_bytes",
        "nv_cpu_memory_used_bytes",
        "nv_pinned_memory_pool_total_bytes",
        "nv_pinned_memory_pool_used_bytes",
    }
)
# Series Prometheus writes for every target itself.
SCRAPE_METRICS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

# Grafana's variables, replaced by what Grafana would send for "All" and a 1-minute step.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}

PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
)
PROMQL_FUNCTIONS_AND_AGGREGATIONS = re.compile(r"\b([a-z_][a-z0-9_]*)\s*\(")


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: run `make system-deps` (Debian package prometheus)")
    return promtool


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def rule_expressions() -> list[tuple[str, str]]:
    found = []
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((f"{path.name}:{rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


def dashboard_expressions() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append((f"{path.name}:{panel['title']}:{target['refId']}", expr))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                query = variable["definition"]
                match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
                assert match, query
                found.append((f"{path.name}:${variable['name']}", match.group(1)))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (a lexical reading that is enough for our rules)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = PROMQL_FUNCTIONS_AND_AGGREGATIONS.sub(" (", text)
    words = set(re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)", text))
    return {w for w in words if w not in PROMQL_KEYWORDS and not re.fullmatch(r"[0-9]+[smhdwy]|inf|nan", w)}


ALL_EXPRESSIONS = rule_expressions() + dashboard_expressions()


def test_prometheus_config_is_valid() -> None:
    out = _run("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "rule files found" in out.stdout


def test_alert_rules_are_valid() -> None:
    _run("check", "rules", *map(str, sorted((PROMETHEUS / "rules").glob("*.yml"))))


def test_alert_rule_unit_tests_pass() -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    _run("test", "rules", *map(str, tests))


def test_every_alert_has_a_unit_test() -> None:
    tested = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested.update(t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts"))
    alerts = {name.split(":", 1)[1] for name, _ in rule_expressions()}
    assert alerts <= tested, alerts - tested


def test_every_expression_parses(tmp_path: Path) -> None:
    # promtool parses each expression of a rule file: wrap every dashboard query in one.
    rules = [
        {"record": f"facegate_check:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(ALL_EXPRESSIONS)
    ]
    path = tmp_path / "expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    _run("check", "rules", str(path))


def test_expressions_use_only_known_metrics() -> None:
    known = metrics.exposed_names() | TRITON_METRICS | SCRAPE_METRICS
    unknown = {where: metric_names(expr) - known for where, expr in ALL_EXPRESSIONS}
    assert {where: names for where, names in unknown.items() if names} == {}


def test_metric_name_reader() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, kind) "
        '(rate(facegate_upload_to_tag_seconds_bucket{kind!~"v"}[5m]))) > 5'
        ' and on (job) up{job="triton"} == 0 or absent(nv_gpu_utilization)'
    )
    assert metric_names(expr) == {"facegate_upload_to_tag_seconds_bucket", "up", "nv_gpu_utilization"}


def test_dashboard_is_provisioned_and_consistent() -> None:
    assert DASHBOARDS
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (prometheus,) = datasource["datasources"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "facegate.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        datasource_var = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
        assert datasource_var["current"]["value"] == prometheus["uid"]
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["targets"], panel["title"]
                assert panel["datasource"]["uid"] == "${datasource}"


def test_dashboard_covers_what_sres_watch() -> None:
    used = set().union(*(metric_names(expr) for _, expr in dashboard_expressions()))
    for needed in (
        "facegate_assets_processed_total",
        "facegate_upload_to_tag_seconds_bucket",
        "facegate_kafka_consumer_lag_records",
        "facegate_dlq_records_total",
        "facegate_purge_duration_seconds_bucket",
        "facegate_purges_pending",
        "nv_inference_request_success",
    ):
        assert needed in used, needed
