"""Start the tritonserver bundled in nvidia-pytriton on a model repository, on free ports.

Used by the model tests and bench/models.py until the embedded stack's own launcher can serve a
single model repository. Recipe (docs: /work/shared/sources.md): a backend directory holding the
python backend's libtriton_python.so, triton_python_backend_utils.py and the 3.11 stub;
LD_LIBRARY_PATH with the wheel's bundled libraries and this interpreter's LIBDIR (otherwise the
stub loads the system libpython and crashes); this venv's bin first on PATH so the stub imports
this venv's packages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tritonclient.http as triton_http
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

MODELS = Path(__file__).resolve().parents[2] / "triton_models"
SPLIT = MODELS / "split"


@dataclass(frozen=True)
class Tritonserver:
    grpc_url: str
    http_url: str
    metrics_url: str
    log: Path
    pid: int


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _pytriton_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def backend_directory(workdir: Path) -> Path:
    """A backend directory with the python backend for this interpreter's version."""
    tritonserver = _pytriton_dir()
    python = workdir / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    sources = {
        "libtriton_python.so": tritonserver / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": tritonserver
        / "backends"
        / "python"
        / "triton_python_backend_utils.py",
        "triton_python_backend_stub": tritonserver
        / "python_backend_stubs"
        / version
        / "triton_python_backend_stub",
    }
    for name, source in sources.items():
        target = python / name
        if not target.exists():
            target.symlink_to(source)
    return python.parent


def model_repository(workdir: Path, *models: Path) -> Path:
    """A repository holding only the given model directories (symlinked)."""
    repo = workdir / "models"
    repo.mkdir(parents=True, exist_ok=True)
    for model in models:
        link = repo / model.name
        if not link.exists():
            link.symlink_to(model.resolve(), target_is_directory=True)
    return repo


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """A config.pbtxt parsed by Triton's own ModelConfig message (unknown fields are errors)."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def split_cpu_repository(workdir: Path) -> list[Path]:
    """The split repository (triton_models/split) made servable by this CPU-only tritonserver.

    The detector and embedder keep their config (names, dims, max_batch_size, dynamic batching)
    but run on the python-backend stand-in (triton_models/cpu_standin) instead of the onnxruntime
    backend, on KIND_CPU; facegate_faces (the BLS model) keeps its files and config, with one
    instance instead of the GPU host's several. Returns the model directories to serve.
    """
    out = workdir / "split-cpu"
    models = []
    for source in sorted(p for p in SPLIT.iterdir() if (p / "config.pbtxt").exists()):
        config = read_config(source / "config.pbtxt")
        target = out / source.name
        version = target / "1"
        version.mkdir(parents=True, exist_ok=True)
        if config.platform == "onnxruntime_onnx":
            config.platform = ""
            config.backend = "python"
            links = {
                "model.py": MODELS / "cpu_standin" / "model.py",
                "model.onnx": source / "1" / "model.onnx",
            }
        else:
            links = {p.name: p for p in (source / "1").iterdir() if p.suffix == ".py"}
        for group in config.instance_group:
            group.kind = model_config_pb2.ModelInstanceGroup.KIND_CPU
            group.count = 1
        (target / "config.pbtxt").write_text(text_format.MessageToString(config))
        for name, link_source in links.items():
            link = version / name
            if not link.exists():
                link.symlink_to(link_source.resolve())
        models.append(target)
    return models


@contextmanager
def tritonserver(
    workdir: Path, *models: Path, ready_timeout_s: float = 120.0, grpc_port: int | None = None
) -> Iterator[Tritonserver]:
    """Run tritonserver serving `models` until the context exits; the server is stopped then."""
    workdir.mkdir(parents=True, exist_ok=True)
    binary = _pytriton_dir() / "bin" / "tritonserver"
    site = Path(sysconfig.get_paths()["purelib"])
    http_port, free_grpc_port, metrics_port = _free_ports(3)
    grpc_port = grpc_port or free_grpc_port
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(site / "nvidia_pytriton.libs"), str(sysconfig.get_config_var("LIBDIR"))]
        + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else [])
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    argv = [
        str(binary),
        f"--model-repository={model_repository(workdir, *models)}",
        f"--backend-directory={backend_directory(workdir)}",
        "--model-control-mode=none",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
        "--allow-sagemaker=false",
        "--allow-vertex-ai=false",
        "--log-verbose=0",
        "--exit-timeout-secs=10",
        # The python backend's shared-memory regions are named by this prefix: a unique one keeps
        # servers that others run on the same machine from colliding with this one.
        f"--backend-config=python,shm-region-prefix-name=facegate_models_{os.getpid()}_{http_port}_",
    ]
    log = workdir / "tritonserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    http_url = f"127.0.0.1:{http_port}"
    try:
        client = triton_http.InferenceServerClient(http_url)
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if client.is_server_ready() and all(client.is_model_ready(m.name) for m in models):
                    break
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"tritonserver not ready in {ready_timeout_s}s:\n{log.read_text()[-4000:]}"
                )
            time.sleep(0.25)
        client.close()
        yield Tritonserver(f"127.0.0.1:{grpc_port}", http_url, f"127.0.0.1:{metrics_port}", log, proc.pid)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and its python backend stubs (they share its new session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # any stub left behind in the session


def which_tritonserver() -> Path | None:
    try:
        binary = _pytriton_dir() / "bin" / "tritonserver"
    except ImportError:
        return None
    return binary if binary.exists() and shutil.which(str(binary)) else None
