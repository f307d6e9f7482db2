"""Structured JSON logs and the filter that keeps embeddings and names out of them."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import numpy as np
import pytest

from pipeline.logs import REDACTED, configure_logging, dict_config


@pytest.fixture
def log_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("DEBUG", stream=stream)
    try:
        yield logging.getLogger("facegate.test"), stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _entries(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_correlation_fields(log_lines) -> None:
    log, stream = log_lines
    log.info("tagged %d faces", 3, extra={"asset_id": "assets/a.jpg", "stage": "tag", "partition": 2})
    log.warning("no consent", extra={"subject_id": "s-42"})
    first, second = _entries(stream)
    assert first["level"] == "INFO"
    assert first["logger"] == "facegate.test"
    assert first["msg"] == "tagged 3 faces"
    assert first["asset_id"] == "assets/a.jpg"
    assert first["stage"] == "tag"
    assert first["partition"] == 2
    assert str(first["ts"]).endswith("+00:00")
    assert second["subject_id"] == "s-42"
    assert "asset_id" not in second


def test_exception_is_one_line_of_json(log_lines) -> None:
    log, stream = log_lines
    try:
        raise ValueError("bad image")
    except ValueError:
        log.exception("decode failed", extra={"asset_id": "assets/x.png"})
    (entry,) = _entries(stream)
    assert "ValueError: bad image" in str(entry["exc"])
    assert len(stream.getvalue().splitlines()) == 1


@pytest.mark.parametrize(
    "field", ["embedding", "faceprint", "vector", "names", "subject_name", "display_name", "query_vector"]
)
def test_sensitive_fields_are_redacted(log_lines, field: str) -> None:
    log, stream = log_lines
    log.info("x", extra={field: "Ada Lovelace", "detail": {"name": "Ada Lovelace"}, "stage": "enroll"})
    (entry,) = _entries(stream)
    assert entry[field] == REDACTED
    assert entry["detail"] == {"name": REDACTED}
    assert "Ada" not in stream.getvalue()


def test_float_arrays_are_redacted_in_fields_args_and_message(log_lines) -> None:
    log, stream = log_lines
    embedding = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    log.info("faces", extra={"detail": {"faceprint": embedding.tolist(), "faces": 2}, "probe": embedding})
    log.info("probe %s", embedding)
    log.info("probe %r", embedding.tolist())
    log.info("inline " + ", ".join(f"{v:.4f}" for v in embedding[:16]))
    text = stream.getvalue()
    first, *rest = _entries(stream)
    assert first["detail"] == {"faceprint": REDACTED, "faces": 2}
    assert first["probe"] == REDACTED
    assert all(REDACTED in str(entry["msg"]) for entry in rest)
    for value in embedding[:4]:
        assert f"{value:.4f}" not in text


def test_small_numbers_and_ids_are_kept(log_lines) -> None:
    log, stream = log_lines
    log.info("batch took %.3f s", 0.125, extra={"bbox": [10, 20, 30, 40], "similarity": 0.42, "offset": 17})
    (entry,) = _entries(stream)
    assert entry["msg"] == "batch took 0.125 s"
    assert entry["bbox"] == [10, 20, 30, 40]
    assert entry["similarity"] == 0.42


def test_library_loggers_are_filtered_too(log_lines) -> None:
    _log, stream = log_lines
    logging.getLogger("aiokafka.consumer").info("payload %s", [0.5] * 64)
    (entry,) = _entries(stream)
    assert entry["msg"] == f"payload {REDACTED}"


def test_configuring_twice_logs_once() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging("INFO", stream=stream)
    handler = configure_logging("INFO", stream=stream)
    try:
        logging.getLogger("facegate.test").info("once")
        logging.getLogger("facegate.test").debug("not at INFO")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert [entry["msg"] for entry in _entries(stream)] == ["once"]


def test_dict_config_gives_the_same_json_and_redaction(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        logging.config.dictConfig(dict_config("INFO"))
        logging.getLogger("faust.worker").info("probe", extra={"vector": [0.25] * 128, "stage": "infer"})
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["vector"] == REDACTED
    assert entry["stage"] == "infer"
    assert entry["logger"] == "faust.worker"


def test_named_tuple_arguments_are_logged_not_crashed_on(log_lines) -> None:
    # aiokafka and faust log TopicPartition named tuples; the filter once raised on them, inside
    # faust's table recovery, and crashed the worker.
    from aiokafka import TopicPartition

    _, stream = log_lines
    log = logging.getLogger("aiokafka.consumer.consumer")
    log.warning("Seeking to committed of partition %s %s", TopicPartition("facegate.assets", 3), None)
    (line,) = _entries(stream)
    assert (
        line["msg"]
        == "Seeking to committed of partition TopicPartition(topic='facegate.assets', partition=3) None"
    )


def test_an_argument_the_filter_cannot_inspect_is_dropped_not_raised(log_lines) -> None:
    class Odd(tuple):  # type: ignore[type-arg]
        _fields = ("a",)  # looks like a named tuple, but its constructor refuses the items

        def __new__(cls, *args: object) -> Odd:
            if len(args) != 0:
                raise TypeError("no")
            return super().__new__(cls, (0.5,))

    log, stream = log_lines
    log.warning("odd %s", Odd())
    (line,) = _entries(stream)
    assert line["msg"] == "odd %s [arguments redacted: not inspectable]"
