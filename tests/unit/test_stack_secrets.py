"""Secrets of the embedded stack: no started process inherits them but the worker, which reads
them from a file only its owner can read and deletes it; `up --json` leaves them out."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pydantic import SecretStr

from pipeline.settings import (
    SECRETS_FILE_ENV,
    KafkaSettings,
    PrivacySettings,
    S3Settings,
    Settings,
    forget_secrets_file,
    get_settings,
)
from pipeline.stack.manager import Endpoints
from pipeline.stack.parts import BridgePart, Context, WorkerPart
from pipeline.stack.parts.base import secrets_env, settings_env
from pipeline.vault.master import generate_master_key

MASTER = generate_master_key()
RETIRED = generate_master_key()
S3_SECRET = "s3-secret-with-'quote'-and-\\backslash"


def secret_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        kafka=KafkaSettings(bootstrap="127.0.0.1:9"),
        s3=S3Settings(secret_key=SecretStr(S3_SECRET)),
        privacy=PrivacySettings(master_key=SecretStr(MASTER), retired_master_keys=(SecretStr(RETIRED),)),
    )


def test_no_secret_reaches_a_child_environment(tmp_path: Path) -> None:
    ctx = Context(secret_settings(tmp_path), tmp_path, "run1")
    for env in (ctx.child_env(), BridgePart().launch(ctx, {"bridge": 1}).env):
        values = "\n".join(env.values())
        assert MASTER not in values and RETIRED not in values and S3_SECRET not in values
    assert set(secrets_env(ctx.settings)) == {
        "FACEGATE_PRIVACY__MASTER_KEY",
        "FACEGATE_PRIVACY__RETIRED_MASTER_KEYS",
        "FACEGATE_S3__SECRET_KEY",
    }
    assert not set(secrets_env(ctx.settings)) & set(settings_env(ctx.settings))


def test_the_worker_gets_its_secrets_in_a_private_file_and_forgets_it(tmp_path: Path, monkeypatch) -> None:
    ctx = Context(secret_settings(tmp_path), tmp_path, "run1")
    env = WorkerPart("worker", ("worker",)).launch(ctx, {"metrics": 1}).env
    assert MASTER not in "\n".join(env.values())
    path = Path(env[SECRETS_FILE_ENV])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert MASTER in path.read_text()

    # What the worker process does at start: read the settings, then delete the file.
    monkeypatch.setenv(SECRETS_FILE_ENV, str(path))
    for variable in [v for v in os.environ if v.startswith("FACEGATE_") and v != SECRETS_FILE_ENV]:
        monkeypatch.delenv(variable)
    get_settings.cache_clear()
    try:
        settings = get_settings()
        forget_secrets_file()
    finally:
        get_settings.cache_clear()
    assert settings.privacy.master_key.get_secret_value() == MASTER
    assert [k.get_secret_value() for k in settings.privacy.retired_master_keys] == [RETIRED]
    assert settings.s3.secret_key.get_secret_value() == S3_SECRET
    assert not path.exists()


def test_up_json_prints_the_s3_secret_only_when_asked() -> None:
    endpoints = Endpoints(
        data_dir="/d",
        kafka_bootstrap="k",
        s3_endpoint="s",
        s3_secure=False,
        s3_region="r",
        bucket="assets",
        access_key="facegate",
        secret_key=S3_SECRET,
        triton_http=None,
        triton_grpc=None,
        triton_model="m",
        triton_model_loaded=True,
        qdrant_url=None,
        qdrant_path=None,
        notify_webhook=None,
    )
    assert "secret_key" not in endpoints.to_json() and S3_SECRET not in str(endpoints.to_json())
    assert endpoints.to_json(show_secrets=True)["secret_key"] == S3_SECRET
