"""What every part of the stack is: how it starts, is checked, and what it offers.

A part is started by ``facegate up`` (mode ``process``), used from settings when its address is
set there (``external``), or nothing to start (``local``: Qdrant's engine, inside each worker,
its files on the memory file system the part names).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from ...errors import ConfigError
from ...settings import Settings
from ..ports import PortPicker

PROCESS, EXTERNAL, LOCAL = "process", "external", "local"


@dataclass
class Context:
    """What parts share during one ``up``: settings, the data dir, endpoints of ready parts."""

    settings: Settings
    data_dir: Path
    run_id: str
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)

    def logs(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def workdir(self, name: str) -> Path:
        path = self.data_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def child_env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a started process: facegate's settings as this ``up`` sees them
        (so a settings object made in code reaches the children), with the stack's endpoints.

        Never the secrets (the master keys, the S3 secret key, Qdrant's API key): whatever a
        part starts inherits its environment, and a crash report may print it. The worker, the
        one part that needs them, gets them in a file (``secrets_file``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")}
        env.update(settings_env(self.settings))
        env["FACEGATE_DATA_DIR"] = str(self.data_dir)
        env["FACEGATE_MODEL_REPOSITORY"] = str(self.settings.model_repository.resolve())
        kafka = self.endpoints.get("kafka", {}).get("bootstrap")
        if kafka:
            env["FACEGATE_KAFKA__BOOTSTRAP"] = kafka
        s3 = self.endpoints.get("s3", {}).get("endpoint")
        if s3:
            env["FACEGATE_S3__ENDPOINT"] = s3
        triton = self.endpoints.get("triton", {})
        if triton.get("grpc"):
            env["FACEGATE_TRITON__GRPC_URL"] = triton["grpc"]
        if triton.get("http"):
            env["FACEGATE_TRITON__HTTP_URL"] = triton["http"]
        # The venv's bin first: tritonserver's python stub finds the venv's packages that way.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(overrides or {})
        return env

    def secrets_file(self, name: str, overrides: Mapping[str, str] | None = None) -> Path:
        """The settings' secrets (and ``overrides``) as a dotenv file only its owner may read.

        ``get_settings`` reads it where FACEGATE_SECRETS_FILE names it, and the worker deletes it
        once read: a secret given on ``up``'s command line is on disk only while a worker starts.
        """
        directory = self.data_dir / "run"
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)
        path = directory / f"{name}.env"
        tmp = directory / f".{name}.env.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            for variable, value in sorted((secrets_env(self.settings) | dict(overrides or {})).items()):
                out.write(f"{variable}={_dotenv_quoted(variable, value)}\n")
        os.replace(tmp, path)
        return path


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return json.dumps([_env_value(v) for v in value])
    return str(value)


def _is_secret(value: Any) -> bool:
    if isinstance(value, tuple | list):
        return any(_is_secret(v) for v in value)
    return isinstance(value, SecretStr)


def settings_env(settings: Settings, *, secrets: bool = False) -> dict[str, str]:
    """``Settings`` as FACEGATE_* variables (None fields left out: unset means None); the
    secret ones (``SecretStr``) only with ``secrets``."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for sub in type(value).model_fields:
                inner = getattr(value, sub)
                if inner is not None and (secrets or not _is_secret(inner)):
                    env[f"FACEGATE_{name.upper()}__{sub.upper()}"] = _env_value(inner)
        elif value is not None and (secrets or not _is_secret(value)):
            env[f"FACEGATE_{name.upper()}"] = _env_value(value)
    return env


def secrets_env(settings: Settings) -> dict[str, str]:
    """Only the secret FACEGATE_* variables of ``settings``."""
    public = settings_env(settings)
    return {k: v for k, v in settings_env(settings, secrets=True).items() if k not in public}


def _dotenv_quoted(variable: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{variable}: a secret may not contain a line break")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    cwd: Path
    env: dict[str, str]


class Part:
    """Base of the parts; the defaults describe a part that is always started."""

    name: str = ""
    needs: tuple[str, ...] = ()
    # The settings that make this part external, for messages.
    external_setting: str = ""

    def mode(self, settings: Settings) -> str:
        return PROCESS

    def fixed_ports(self, settings: Settings) -> dict[str, int]:
        """Ports set in settings (non-zero), by port name; they must be free."""
        return {}

    def port_setting(self, port_name: str) -> str:
        return ""

    def allocate(self, settings: Settings, picker: PortPicker) -> dict[str, int]:
        return {}

    # Whether the parts that need this one must be restarted with it after it crashed (their
    # in-memory view of it is ahead of what it came back with).
    restarts_dependants: bool = False

    def stop_timeout_s(self, settings: Settings) -> float:
        """How long ``down`` waits after SIGTERM before SIGKILL."""
        return settings.stack.stop_timeout_s

    def stopped_cleanly(self, ctx: Context) -> bool:
        """After the process is gone: did it stop cleanly? (Only asked of ``restarts_dependants``.)"""
        return False

    def preflight(self, settings: Settings) -> None:
        """Raise StackError if the part cannot start (a missing binary), before anything starts."""

    def launch(self, ctx: Context, ports: dict[str, int]) -> Launch:
        raise NotImplementedError

    def ready(self, ctx: Context, ports: dict[str, int]) -> bool:
        raise NotImplementedError

    def endpoints(self, ctx: Context, ports: dict[str, int]) -> dict[str, Any]:
        return {}

    def after_ready(self, ctx: Context) -> None:
        """Work once the part (started or external) is ready, before dependants start."""

    def check_external(self, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError

    def failure(self, log_lines: list[str]) -> str:
        """The most telling log line after the process died."""
        for line in reversed(log_lines):
            lower = line.lower()
            if "address already in use" in lower or "error" in lower or "fatal" in lower:
                return line.strip()[:300]
        return (log_lines[-1].strip()[:300]) if log_lines else "no output"


def fixed(**ports: int) -> dict[str, int]:
    return {name: port for name, port in ports.items() if port}
