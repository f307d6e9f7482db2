"""The metrics module: conventions, the documented table, and the HTTP endpoint."""

from __future__ import annotations

import re
import urllib.request

from pipeline import metrics


def _facegate_families() -> dict[str, str]:
    return {m.name: m.type for m in metrics.REGISTRY.collect() if m.name.startswith("facegate_")}


def test_docstring_table_documents_exactly_the_registered_metrics() -> None:
    assert metrics.__doc__ is not None
    rows = re.findall(r"^\| (facegate_\w+) \| (\w+) \|", metrics.__doc__, flags=re.MULTILINE)
    documented = {name.removesuffix("_total"): kind for name, kind in rows}
    assert documented == _facegate_families()


def test_names_follow_prometheus_conventions() -> None:
    for family in metrics.REGISTRY.collect():
        if not family.name.startswith(("process_", "python_")):
            assert family.name.startswith("facegate_"), family.name
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", family.name), family.name
        if "duration" in family.name or "latency" in family.name:
            assert family.name.endswith("_seconds"), family.name


def test_no_identifier_labels() -> None:
    forbidden = {"asset_id", "subject_id", "object_key", "name", "face_id", "event_id", "key"}
    for collector in list(metrics.REGISTRY._collector_to_names):
        labels = set(getattr(collector, "_labelnames", ()))
        assert not labels & forbidden, (collector, labels)


def test_in_flight_gauge_goes_back_down_after_an_error() -> None:
    def value() -> float | None:
        return metrics.REGISTRY.get_sample_value("facegate_work_in_flight", {"stage": "infer"})

    before = value() or 0.0
    try:
        with metrics.in_flight(metrics.Stage.INFER):
            assert value() == before + 1
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert value() == before


def test_serve_binds_a_free_port_and_exposes_the_registry() -> None:
    port = metrics.serve("127.0.0.1", 0)
    assert port > 0
    metrics.DLQ_RECORDS.labels(error_class="ImageDecodeError", stage=metrics.Stage.FETCH).inc()
    metrics.UPLOAD_TO_TAG.labels(kind="image").observe(0.4)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert 'facegate_dlq_records_total{error_class="ImageDecodeError",stage="fetch"}' in body
    assert 'facegate_upload_to_tag_seconds_bucket{kind="image",le="0.5"}' in body
    assert "process_cpu_seconds_total" in body
    assert "_created" not in body


def test_exposed_names_cover_derived_series() -> None:
    names = metrics.exposed_names()
    assert {
        "facegate_assets_processed_total",
        "facegate_upload_to_tag_seconds_bucket",
        "facegate_upload_to_tag_seconds_count",
        "facegate_kafka_consumer_lag_records",
    } <= names
