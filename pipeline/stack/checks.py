"""Reachability and readiness probes for the parts of the stack, started or external.

Each probe is quick (bounded by its timeout) so that the start loop can poll many parts.
Probes that fail for a reason an operator must fix (a wrong credential) raise StackError with
one line naming the part and what to do; "not ready yet" is a False.
"""

from __future__ import annotations

import logging
import socket
import urllib.error
import urllib.request
from typing import Any

import urllib3
from minio import Minio
from minio.error import S3Error

from ..errors import StackError

# librdkafka logs every failed connection attempt; a probe reports failure itself.
_KAFKA_PROBE_LOG = logging.getLogger("facegate.stack.kafka_probe")
_KAFKA_PROBE_LOG.addHandler(logging.NullHandler())
_KAFKA_PROBE_LOG.propagate = False

_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken"}


def tcp_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def split_hostport(address: str, default_port: int) -> tuple[str, int]:
    address = address.split("://", 1)[-1].split("/", 1)[0]
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    return host.strip("[]"), int(port)


def http_status(url: str, timeout_s: float = 1.0, headers: dict[str, str] | None = None) -> int | None:
    """The HTTP status of a GET, or None if nothing answered."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def http_text(url: str, timeout_s: float = 1.0) -> str | None:
    """The body of a GET answered 200, or None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read().decode("utf-8", errors="replace") if response.status == 200 else None
    except (OSError, ValueError):
        return None


def kafka_topics(bootstrap: str, timeout_s: float) -> set[str]:
    """Topic names from the cluster's metadata; raises KafkaException if unreachable."""
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
        "logger": _KAFKA_PROBE_LOG,
    }
    admin = AdminClient(config)
    metadata = admin.list_topics(timeout=timeout_s)
    return set(metadata.topics)


def kafka_ready(bootstrap: str, timeout_s: float = 0.5) -> bool:
    from confluent_kafka import KafkaException

    try:
        kafka_topics(bootstrap, timeout_s)
    except KafkaException:
        return False
    return True


def s3_client(endpoint: str, access_key: str, secret_key: str, *, secure: bool, region: str) -> Minio:
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=2.0, read=10.0),
        retries=urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
    )
    return Minio(
        endpoint,
        access_key=access_key,
        secret_key=secret_key,
        secure=secure,
        region=region,
        http_client=http,
    )


def ensure_bucket(client: Minio, bucket: str, region: str, *, access_key: str, part: str, hint: str) -> bool:
    """Create ``bucket`` if missing. True if it was created. Bad credentials raise StackError."""
    try:
        if client.bucket_exists(bucket):
            return False
        client.make_bucket(bucket, location=region)
        return True
    except S3Error as exc:
        if exc.code in _BAD_CREDENTIALS:
            raise StackError(
                f"{part}: the object store rejected access key {access_key!r} "
                f"({exc.code}); set s3.access_key / s3.secret_key (FACEGATE_S3__ACCESS_KEY, "
                f"FACEGATE_S3__SECRET_KEY) to a valid identity{hint}"
            ) from None
        raise StackError(f"{part}: bucket {bucket!r}: {exc.code}: {exc.message}") from None


def s3_ready(client: Minio, bucket: str) -> bool:
    """True once the S3 API answers (any S3 answer, even an error, means it is serving)."""
    try:
        client.bucket_exists(bucket)
    except S3Error:
        return True
    except Exception:  # urllib3 connection errors of every kind: not serving yet
        return False
    return True


def qdrant_ready(url: str, api_key: str | None, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """Qdrant server's version info, or None if it does not answer as Qdrant."""
    import json

    headers = {"api-key": api_key} if api_key else {}
    request = urllib.request.Request(url.rstrip("/") + "/", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and "version" in body else None
