"""Triton: the tritonserver bundled in nvidia-pytriton, or an external server."""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

from ...errors import StackError
from ...settings import Settings
from .. import checks
from ..ports import HOST, PortPicker
from .base import EXTERNAL, PROCESS, Context, Launch, Part, fixed


class TritonPart(Part):
    """tritonserver 2.51 from nvidia-pytriton, python backend, on settings.model_repository."""

    name = "triton"
    external_setting = "triton.grpc_url / triton.http_url"

    def mode(self, settings: Settings) -> str:
        return EXTERNAL if settings.triton.grpc_url or settings.triton.http_url else PROCESS

    def fixed_ports(self, settings: Settings) -> dict[str, int]:
        st = settings.stack
        return fixed(http=st.triton_http_port, grpc=st.triton_grpc_port, metrics=st.triton_metrics_port)

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
