"""Bad notifications at the ingest boundary: every case ends as AssetUploaded records that encode,
or as a MalformedNotification with a reason (the bridge answers 2xx and dead-letters it), never
another exception, a 500 or a crash. Fuzzed with hypothesis from real notification shapes."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_notifications import SCOPE, minio_event, seaweed_create

from pipeline.contract import AssetUploaded
from pipeline.ingest.bridge import Bridge
from pipeline.ingest.notifications import MalformedNotification, normalise, parse_notification
from pipeline.settings import KafkaSettings, Settings

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "/", "..", "\ud800", "1e999", "-1", "9" * 40]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*prefix, i))
    return found


@st.composite
def mutated_notifications(draw: st.DrawFn) -> Any:
    """A real notification with one to three fields replaced by arbitrary JSON (or removed)."""
    payload = copy.deepcopy(draw(st.sampled_from([seaweed_create(), minio_event()])))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(payload)))
        if not where:
            payload = draw(JSON_VALUES)
            continue
        parent = payload
        for step in where[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            parent.pop(where[-1], None)
        else:
            parent[where[-1]] = draw(JSON_VALUES)
    return payload


def outcome_of(payload: Any) -> str:
    """'ok' or the MalformedNotification's reason; any other exception fails the test."""
    try:
        outcomes = normalise(payload, SCOPE)
    except MalformedNotification as exc:
        assert not str(exc).startswith("unexpected"), f"no explicit check for this shape: {exc}"
        return str(exc)
    for outcome in outcomes:
        if isinstance(outcome, AssetUploaded):
            assert AssetUploaded.from_bytes(outcome.to_bytes()) == outcome
            outcome.asset_id.encode()
    return "ok"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_notifications())
def test_any_mutation_of_a_notification_is_an_asset_or_a_reason(payload: Any) -> None:
    outcome_of(payload)


def _seaweed(**changes: Any) -> dict[str, Any]:
    payload = seaweed_create()
    entry = payload["message"]["new_entry"]
    for where, value in changes.items():
        target, _, name = where.rpartition("__")
        (entry["attributes"] if target == "attributes" else entry)[name] = value
    return payload


def _minio_size(size: Any) -> dict[str, Any]:
    payload = minio_event()
    payload["Records"][0]["s3"]["object"]["size"] = size
    return payload


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_minio_size(float("inf")), "is not a whole number"),  # "size": 1e999
        (_minio_size(2**70), "out of range"),
        (_minio_size(-1), "out of range"),
        (_minio_size("12abc"), "is not a whole number"),
        (_seaweed(attributes__file_size=float("inf")), "is not a whole number"),
        (_seaweed(attributes__file_size=2**70), "out of range"),
        (_seaweed(chunks=[1], attributes__file_size=None), "not a list of objects"),
        (_seaweed(chunks=[1]), "not a list of objects"),
        (_seaweed(chunks="abc"), "not a list of objects"),
        (_seaweed(chunks=[], attributes__mtime=10**18), "not a time between 1970 and 9999"),
        (_seaweed(chunks=[{"size": 1, "modified_ts_ns": 10**30}]), "not a time between 1970 and 9999"),
        (_seaweed(chunks=[], attributes__mtime=1e18), "neither chunk times nor mtime"),
        (seaweed_create("/buckets/assets/frames/v1/99999999999999999999999.jpg"), "out of range"),
        (seaweed_create("/buckets/assets/photos/\ud800.jpg"), "cannot be published"),
    ],
)
def test_the_reported_cases_get_a_reason(payload: Any, reason: str) -> None:
    assert reason in outcome_of(payload)


def test_json_that_is_not_json_or_nested_too_deeply_is_malformed() -> None:
    for body in (b"{", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, 7):
        with pytest.raises(MalformedNotification):
            parse_notification(body)  # type: ignore[arg-type]
    assert parse_notification(b'{"size": 1e999}') == {"size": float("inf")}


# --- the bridge: 2xx and a DLQ record, never a 500 -------------------------------------------


class RecordingProducer:
    """Stands in for confluent-kafka's Producer: the bridge's logic is what is tested here."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, dict[str, Any]]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append((topic, kwargs))

    def poll(self, timeout: float) -> int:
        return 0


class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self) -> bytes:
        return self.data


BRIDGE_SETTINGS = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:9"))


def post(bridge: Bridge, body: bytes) -> tuple[int, dict[str, Any]]:
    response = asyncio.run(bridge.hook(Body(body)))  # type: ignore[arg-type]
    assert response.body is not None
    return response.status, json.loads(bytes(response.body))  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_notifications())
def test_the_bridge_answers_2xx_and_dead_letters_every_bad_notification(payload: Any) -> None:
    producer = RecordingProducer()
    bridge = Bridge(BRIDGE_SETTINGS, producer)  # type: ignore[arg-type]
    body = json.dumps(payload, allow_nan=True).encode("utf-8", errors="surrogatepass")
    status, answer = post(bridge, body)
    assert status == 200, answer
    topics = [topic for topic, _ in producer.produced]
    if answer.get("dead_lettered"):
        ((topic, record),) = producer.produced
        assert topic == BRIDGE_SETTINGS.kafka.topic_dlq and record["value"] == body
        assert record["headers"]["error_class"] == "MalformedNotification"
        assert record["headers"]["error_message"]
    else:
        assert topics.count(BRIDGE_SETTINGS.kafka.topic_assets) == answer["published"]
