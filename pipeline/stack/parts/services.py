"""facegate's own processes (the notify bridge, the workers) and where the embedded gallery lives."""

from __future__ import annotations

import sys
from typing import Any

from ...errors import StackError
from ...gallery.memory import DEFAULT_BASE, MEMORY_FILE_SYSTEMS, file_system_of
from ...settings import SECRETS_FILE_ENV, Settings
from .. import checks
from ..ports import HOST, PortPicker
from .base import EXTERNAL, LOCAL, PROCESS, Context, Launch, Part, fixed
from .seaweedfs import worker_identity


class BridgePart(Part):
    """The notify bridge: SeaweedFS's filer metadata log -> AssetUploaded on facegate.assets."""

    name = "bridge"
    needs = ("kafka", "s3")
    external_setting = "s3.endpoint (FACEGATE_S3__ENDPOINT); the external store notifies Kafka itself"

    def mode(self, settings: Settings) -> str:
        # With an external object store (MinIO), MinIO itself publishes the notifications.
        return EXTERNAL if settings.s3.endpoint else PROCESS

    def fixed_ports(self, settings: Settings) -> dict[str, int]:
        return fixed(bridge=settings.stack.bridge_port)

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
        filer = ctx.endpoints.get("s3", {}).get("filer_grpc")
        if filer:
            argv += ["--filer", filer, "--state-dir", str(ctx.workdir("bridge"))]
        return Launch(argv, ctx.workdir("bridge"), ctx.child_env())

    def ready(self, ctx: Context, ports: dict[str, int]) -> bool:
        return checks.http_status(f"http://{HOST}:{ports['bridge']}/healthz") == 200

    def endpoints(self, ctx: Context, ports: dict[str, int]) -> dict[str, Any]:
        base = f"http://{HOST}:{ports['bridge']}"
        return {"webhook": f"{base}/hook", "metrics": f"{base}/metrics"}

    def check_external(self, ctx: Context) -> dict[str, Any]:
        return {"notifications": "configured on the external object store (MinIO bucket notifications)"}


class QdrantPart(Part):
    """Qdrant: a server from settings, or its engine inside each worker (memory only).

    Embedded, nothing is started: each worker keeps its replica on the memory file system
    ``qdrant.memory_dir``, checked here so that ``facegate up`` refuses a disk before it starts.
    """

    name = "qdrant"
    external_setting = "qdrant.url (FACEGATE_QDRANT__URL)"

    def mode(self, settings: Settings) -> str:
        return EXTERNAL if settings.qdrant.url else LOCAL

    def local(self, ctx: Context) -> dict[str, Any]:
        base = ctx.settings.qdrant.memory_dir or DEFAULT_BASE
        kind = file_system_of(base)
        if kind not in MEMORY_FILE_SYSTEMS:
            raise StackError(
                f"qdrant: the embedded gallery keeps faceprints in memory only, and {base} is on a "
                f"{kind or 'unknown'} file system: set FACEGATE_QDRANT__MEMORY_DIR to a tmpfs mount, "
                "or FACEGATE_QDRANT__URL to a Qdrant server"
            )
        return {"path": str(base), "engine": "qdrant-edge in each worker, in memory"}

    def check_external(self, ctx: Context) -> dict[str, Any]:
        q = ctx.settings.qdrant
        url = q.url or ""
        key = q.api_key.get_secret_value() if q.api_key else None
        info = checks.qdrant_ready(url, key)
        if info is None:
            raise StackError(
                f"qdrant: no Qdrant server answers at {url} (qdrant.url); start it, fix the address or "
                "the api key, or unset FACEGATE_QDRANT__URL to use the embedded gallery"
            )
        return {"url": url, "version": info.get("version")}


class WorkerPart(Part):
    """A pipeline worker: ``python -m pipeline <args>``, healthy once its /metrics says it is ready
    (facegate_worker_ready 1: partitions assigned, tables recovered, consuming).

    It gets the stack's endpoints in its environment and FACEGATE_METRICS__PORT, and the secrets
    in the file FACEGATE_SECRETS_FILE names.
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
        env = {"FACEGATE_METRICS__PORT": str(ports["metrics"]), "FACEGATE_METRICS__HOST": HOST}
        secrets: dict[str, str] = {}
        master = ctx.endpoints.get("s3", {}).get("master")
        if master:  # the embedded SeaweedFS: the workers' own identity, and its vacuum
            access_key, secrets["FACEGATE_S3__SECRET_KEY"] = worker_identity(ctx.settings)
            env |= {"FACEGATE_S3__ACCESS_KEY": access_key, "FACEGATE_S3__VACUUM_URL": master}
        # The master key and the S3 secret: in a 0600 file for this worker alone.
        env[SECRETS_FILE_ENV] = str(ctx.secrets_file(self.name, secrets))
        return Launch(
            [sys.executable, "-m", "pipeline", *self.args], ctx.workdir(self.name), ctx.child_env(env)
        )

    def ready(self, ctx: Context, ports: dict[str, int]) -> bool:
        page = checks.http_text(f"http://{HOST}:{ports['metrics']}/metrics")
        return page is not None and "\nfacegate_worker_ready 1.0" in page

    def endpoints(self, ctx: Context, ports: dict[str, int]) -> dict[str, Any]:
        return {"metrics": f"http://{HOST}:{ports['metrics']}/metrics"}
