"""The shared embedded stack for integration tests: fixture ``stack`` (session scope).

It starts the stack through the same code as ``facegate up`` (pipeline.stack.up), in a fresh
temporary data dir with every port picked free, so tests run beside other stacks on the
machine; and stops it at the end of the session (``facegate down``'s code: by pid, nothing
left behind). Settings come from the environment as usual (FACEGATE_*): a part whose address
is set there (FACEGATE_KAFKA__BOOTSTRAP, ...) is used instead of started. Triton serves
settings.model_repository (default: the repository's triton_models/); if that model fails to
load, the fixture fails with Triton's error line. A repository without the model still starts
Triton; tests that need the model call ``stack.require_model()``.

What a test gets (``RunningStack``)::

    stack.kafka_bootstrap          "127.0.0.1:PORT"
    stack.s3_endpoint, stack.s3_secure, stack.bucket, stack.access_key, stack.secret_key
    stack.triton_http, stack.triton_grpc, stack.triton_model, stack.triton_model_loaded
    stack.qdrant_path (the memory file system of the workers' galleries) or stack.qdrant_url
    stack.notify_webhook           the bridge's webhook URL (SeaweedFS posts there)
    stack.metrics                  {part: metrics URL}; stack.logs {part: log file}
    stack.data_dir                 the stack's data dir (logs/ under it)
    stack.settings                 a Settings object pointed at all of the above
    stack.s3()                     a minio client
    stack.kafka_config(**extra)    confluent-kafka config (bootstrap; session.timeout.ms 6000)
    stack.require_model()          fail unless Triton has the model loaded

An upload into ``stack.bucket`` produces an AssetUploaded on settings.kafka.topic_assets by
itself (SeaweedFS filer webhook -> bridge); tests never publish it by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from minio import Minio

from pipeline.errors import FacegateError
from pipeline.settings import Settings, StackSettings, get_settings
from pipeline.stack import Endpoints, down, up

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunningStack:
    endpoints: Endpoints
    settings: Settings

    def __getattr__(self, name: str) -> Any:
        # The endpoints' fields read as the stack's own: stack.kafka_bootstrap, stack.bucket, ...
        return getattr(self.endpoints, name)

    def s3(self) -> Minio:
        e = self.endpoints
        return Minio(e.s3_endpoint, access_key=e.access_key, secret_key=e.secret_key, secure=e.s3_secure)

    def kafka_config(self, **extra: Any) -> dict[str, Any]:
        # noida-db refuses session timeouts below 6 s.
        config: dict[str, Any] = {
            "bootstrap.servers": self.endpoints.kafka_bootstrap,
            "session.timeout.ms": 6000,
        }
        config.update(extra)
        return config

    def require_model(self) -> None:
        if not self.endpoints.triton_model_loaded:
            pytest.fail(
                f"Triton has no model {self.endpoints.triton_model!r} in {self.settings.model_repository}: "
                "run `make models`",
                pytrace=False,
            )


def stack_settings(data_dir: Path) -> Settings:
    """The environment's settings with a fresh data dir and every port of the stack free."""
    base = get_settings()
    repository = (
        base.model_repository if base.model_repository.is_absolute() else ROOT / base.model_repository
    )
    # Every port picked free; the environment's timeouts kept (FACEGATE_STACK__START_TIMEOUT_S on
    # a loaded machine).
    stack = StackSettings(
        start_timeout_s=base.stack.start_timeout_s,
        stop_timeout_s=base.stack.stop_timeout_s,
        broker_stop_timeout_s=base.stack.broker_stop_timeout_s,
    )
    return base.model_copy(update={"data_dir": data_dir, "model_repository": repository, "stack": stack})


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    settings = stack_settings(tmp_path_factory.mktemp("stack"))
    try:
        endpoints = up(settings)
    except FacegateError as exc:
        pytest.fail(f"the embedded stack did not start: {exc}", pytrace=False)
    try:
        yield RunningStack(endpoints, endpoints.settings(settings))
    finally:
        down(settings)
