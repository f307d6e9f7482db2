"""Structured logs: one JSON object per line, with no biometric data and no names in them.

Each line carries ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg`` and, when the call
passes them with ``extra=``, the correlation fields ``asset_id``, ``subject_id`` and ``stage``
plus any other scalar context (``topic``, ``partition``, ``offset``, ``error_class``, ...)::

    log.info("tagged", extra={"asset_id": asset_id, "stage": "tag", "faces": 3})

``PrivacyFilter`` sits on the handler, so it sees every record, facegate's or a library's:
a field named like an embedding, faceprint, vector or name is replaced by ``[redacted]``,
and so is any float array (numpy or a long list of floats) in the fields, the message
arguments or the formatted message. Subject ids are pseudonymous and may be logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CORRELATION_FIELDS",
    "REDACTED",
    "JsonFormatter",
    "PrivacyFilter",
    "configure_logging",
    "dict_config",
]

REDACTED = "[redacted]"
CORRELATION_FIELDS = ("asset_id", "subject_id", "stage")

# Field names that would carry biometric data or a person's name.
_SENSITIVE_KEY = re.compile(r"embed|faceprint|vector|name|descriptor", re.IGNORECASE)
# A printed float array: eight or more decimal numbers in a row (an embedding has 128).
_FLOAT_RUN = re.compile(
    r"[\[(]?\s*-?\d+\.\d+(?:[eE][-+]?\d+)?(?:[\s,]+-?\d+\.\d+(?:[eE][-+]?\d+)?){7,}\s*[\])]?"
)
_MIN_FLOAT_SEQUENCE = 8

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _is_float_array(value: object) -> bool:
    dtype = getattr(value, "dtype", None)
    if dtype is not None and getattr(value, "shape", None) is not None:
        return getattr(dtype, "kind", "") in "fc"
    if isinstance(value, list | tuple) and len(value) >= _MIN_FLOAT_SEQUENCE:
        return sum(isinstance(item, float) for item in value) >= _MIN_FLOAT_SEQUENCE
    return False


def _redact(value: object, key: str | None = None) -> object:
    if key is not None and _SENSITIVE_KEY.search(key):
        return REDACTED
    if _is_float_array(value):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_redact(item) for item in value]
        if hasattr(value, "_fields"):  # a named tuple (a TopicPartition in a Kafka client's log)
            return type(value)(*items)  # type: ignore[arg-type]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, str):
        return _FLOAT_RUN.sub(REDACTED, value)
    return value


class PrivacyFilter(logging.Filter):
    """Redact embeddings, float arrays and name-like fields from a record before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._redact(record)
        except Exception:
            # A log filter that raises crashes whoever logged (faust's table recovery, once):
            # never that; and when in doubt, drop the arguments rather than show them.
            text = _FLOAT_RUN.sub(REDACTED, str(record.msg))
            record.msg, record.args = f"{text} [arguments redacted: not inspectable]", None
        return True

    def _redact(self, record: logging.LogRecord) -> None:
        for key in [k for k in vars(record) if k not in _RECORD_ATTRIBUTES]:
            setattr(record, key, _redact(getattr(record, key), key))
        if isinstance(record.msg, str):
            record.msg = _FLOAT_RUN.sub(REDACTED, record.msg)
        if isinstance(record.args, Mapping):
            record.args = {k: _redact(v, str(k)) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        # Arguments may render an array only once formatted (an object's __str__).
        message = record.getMessage()
        redacted = _FLOAT_RUN.sub(REDACTED, message)
        if redacted != message:
            record.msg, record.args = redacted, None


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, correlation and other extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CORRELATION_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = _jsonable(value)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = _jsonable(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level: str | int = "INFO", stream: Any = None) -> logging.Handler:
    """Send every log record, JSON-formatted and redacted, to ``stream`` (stderr by default).

    Replaces the handler an earlier call installed, so calling it twice does not log twice.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_facegate", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(PrivacyFilter())
    handler._facegate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def dict_config(level: str | int = "INFO") -> dict[str, Any]:
    """The same set-up as a ``logging.config.dictConfig`` dict, for frameworks that take one
    (faust's ``Worker(logging_config=...)``, which would otherwise install its own handlers)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"privacy": {"()": PrivacyFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["privacy"],
            }
        },
        "root": {"level": level.upper() if isinstance(level, str) else level, "handlers": ["json"]},
    }
