"""``facegate up`` / ``down`` / ``status``: start, stop and inspect the embedded stack.

``up`` is idempotent: parts recorded in the state file and still running are kept (and
health-checked), crashed ones are started again on their recorded ports, the rest are started
on free ports. A part starts once the parts it needs are ready, so tritonserver loads its
model while the broker, the bridge and SeaweedFS come up. If anything fails, everything this
``up`` started is stopped again and one line says which part failed and what to do.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StackError
from ..officers import ensure_first_officer, registry_path
from ..settings import Settings
from . import datadir, procs
from . import state as statefile
from .parts import EXTERNAL, INFRASTRUCTURE, LOCAL, PROCESS, Context, Part, QdrantPart, TritonPart, all_parts
from .ports import HOST, PortPicker, is_free
from .reconcile import reconcile
from .state import PartState, StackState

UP, DOWN, CRASHED, UNHEALTHY, UNREACHABLE = "up", "down", "crashed", "unhealthy", "unreachable"
_BIND_ERRORS = ("address already in use", "bind: address", "failed to bind", "address in use")


@dataclass(frozen=True)
class Endpoints:
    """Where the parts of a running stack answer: what ``up --json`` prints."""

    data_dir: str
    kafka_bootstrap: str
    s3_endpoint: str
    s3_secure: bool
    s3_region: str
    bucket: str
    access_key: str
    secret_key: str
    triton_http: str | None
    triton_grpc: str | None
    triton_model: str
    triton_model_loaded: bool
    qdrant_url: str | None
    qdrant_path: str | None
    notify_webhook: str | None
    metrics: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    officer_created: str | None = None  # the key file of the officer this `up` created, if it did

    def to_json(self, *, show_secrets: bool = False) -> dict[str, Any]:
        """The endpoints as JSON; the S3 secret key only with ``show_secrets`` (output is logged,
        pasted into tickets and kept in CI artefacts)."""
        data = dict(self.__dict__)
        # What this `up` did is not where the stack answers: `up --json` stays the same on a rerun.
        del data["officer_created"]
        if not show_secrets:
            del data["secret_key"]
        return data

    def settings(self, base: Settings) -> Settings:
        """``base`` pointed at this stack (what the started workers see)."""
        return base.model_copy(
            update={
                "data_dir": Path(self.data_dir),
                "kafka": base.kafka.model_copy(
                    update={"bootstrap": self.kafka_bootstrap or base.kafka.bootstrap}
                ),
                "s3": base.s3.model_copy(
                    update={"endpoint": self.s3_endpoint or base.s3.endpoint, "secure": self.s3_secure}
                ),
                "triton": base.triton.model_copy(
                    update={
                        "grpc_url": self.triton_grpc or base.triton.grpc_url,
                        "http_url": self.triton_http or base.triton.http_url,
                    }
                ),
            }
        )


@dataclass(frozen=True)
class PartStatus:
    name: str
    mode: str
    status: str  # up, down, crashed, unhealthy, unreachable
    pid: int | None = None
    log: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _absolute(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "data_dir": settings.data_dir.expanduser().resolve(),
            "model_repository": settings.model_repository.expanduser().resolve(),
        }
    )


def endpoints(settings: Settings, state: StackState) -> Endpoints:
    parts = state.parts

    def ep(name: str) -> dict[str, Any]:
        return parts[name].endpoints if name in parts else {}

    s3 = settings.s3
    triton = ep("triton")
    qdrant = ep("qdrant")
    metrics = {name: str(p.endpoints["metrics"]) for name, p in parts.items() if p.endpoints.get("metrics")}
    return Endpoints(
        data_dir=state.data_dir,
        kafka_bootstrap=str(ep("kafka").get("bootstrap", "")),
        s3_endpoint=str(ep("s3").get("endpoint", "")),
        s3_secure=bool(ep("s3").get("secure", False)),
        s3_region=s3.region,
        bucket=s3.bucket,
        access_key=s3.access_key,
        secret_key=s3.secret_key.get_secret_value(),
        triton_http=triton.get("http"),
        triton_grpc=triton.get("grpc"),
        triton_model=settings.triton.model,
        triton_model_loaded=bool(
            triton.get("model_loaded", "triton" in parts and parts["triton"].mode == EXTERNAL)
        ),
        qdrant_url=qdrant.get("url"),
        qdrant_path=qdrant.get("path"),
        notify_webhook=ep("bridge").get("webhook"),
        metrics=metrics,
        logs={name: p.process.log for name, p in parts.items() if p.process},
        pids={name: p.process.pid for name, p in parts.items() if p.process},
    )


@dataclass
class _Starting:
    part: Part
    ports: dict[str, int]
    record: procs.ProcessRecord
    started_here: bool
    allocated: bool  # ports picked by this up (may be retried with others)
    attempts: int = 1


def _check_fixed_ports(parts: list[Part], settings: Settings) -> None:
    for part in parts:
        for port_name, port in part.fixed_ports(settings).items():
            if not is_free(port):
                raise StackError(
                    f"{part.name}: port {port} on {HOST} is already in use ({part.port_setting(port_name)}); "
                    f"stop what uses it, or set {part.port_setting(port_name)}=0 to pick a free port"
                )


def up(settings: Settings) -> Endpoints:
    """Bring every part up (or check it is up); return the endpoints."""
    settings = _absolute(settings)
    data_dir = settings.data_dir
    with statefile.locked(data_dir):
        datadir.open_marker(data_dir)
        # Consent-plane records take effect only when an officer signed them: a fresh embedded
        # stack gets one, so that `facegate consent grant` works at once. It is made before the
        # workers start (they read the registry) and taken back if `up` fails: a failed `up`
        # leaves nothing behind, and its error stays the one line on stderr.
        with _first_officer(settings) as created:
            state = statefile.load(data_dir)
            state = state or StackState(data_dir=str(data_dir), run_id=secrets.token_hex(4))
            ctx = Context(settings, data_dir, state.run_id)
            _Starter(ctx, state).run()
            statefile.save(data_dir, state)
        bootstrap = ctx.endpoints.get("kafka", {}).get("bootstrap")
        if bootstrap:
            reconcile(settings, bootstrap)  # the vault against the consent registry
        made = endpoints(settings, state)
        return replace(made, officer_created=str(created)) if created else made


@contextlib.contextmanager
def _first_officer(settings: Settings) -> Iterator[Path | None]:
    registry = registry_path(settings)
    before = registry.read_bytes() if registry.exists() else None
    created = ensure_first_officer(settings)
    try:
        yield created
    except BaseException:
        if created is not None:
            created.unlink(missing_ok=True)
            if before is None:
                registry.unlink(missing_ok=True)
            else:
                registry.write_bytes(before)
        raise


class _Starter:
    def __init__(self, ctx: Context, state: StackState) -> None:
        self.ctx = ctx
        self.state = state
        self.settings = ctx.settings
        self.timeout_s = self.settings.stack.start_timeout_s
        self.picker = PortPicker()
        self.ready: set[str] = set()
        self.pending: list[Part] = []
        self.starting: dict[str, _Starting] = {}
        self.started_here: list[str] = []
        self.external: dict[str, dict[str, Any]] = {}

    def run(self) -> None:
        try:
            self._classify()
            self._loop()
        except BaseException:
            self._undo()
            raise

    def _classify(self) -> None:
        fresh: list[Part] = []
        wanted = all_parts() if self.settings.stack.workers else INFRASTRUCTURE
        for part in wanted:
            mode = part.mode(self.settings)
            recorded = self.state.parts.get(part.name)
            if mode == PROCESS:
                if recorded and recorded.process and procs.is_running(recorded.process):
                    # Already running: keep it, but wait for it to be ready like a new one.
                    self.starting[part.name] = _Starting(
                        part, recorded.ports, recorded.process, started_here=False, allocated=False
                    )
                else:
                    self.pending.append(part)
                    if not (recorded and recorded.mode == PROCESS and recorded.ports):
                        fresh.append(part)
            else:
                if recorded and recorded.process and procs.is_running(recorded.process):
                    # Replacing its record would orphan the process this stack started.
                    raise StackError(
                        f"{part.name}: settings now point at an external service ({part.external_setting}) "
                        f"but the one this stack started is still running (pid {recorded.process.pid}); "
                        "run `facegate down` first"
                    )
                self.pending.append(part)
        self._restart_dependants()
        # Ports reserved by running parts must not be handed out again.
        for recorded in self.state.parts.values():
            self.picker.taken.update(recorded.ports.values())
        # Everything that can be checked before starting anything: binaries, the model
        # repository, ports set in settings, external services.
        for part in self.pending:
            if part.mode(self.settings) == PROCESS:
                part.preflight(self.settings)
        _check_fixed_ports(fresh, self.settings)
        for part in self.pending:
            if part.mode(self.settings) == EXTERNAL:
                self.external[part.name] = part.check_external(self.ctx)

    def _restart_dependants(self) -> None:
        """Running parts that need a part back from a crash (the broker) are restarted with it."""
        crashed = set()
        for part in self.pending:
            recorded = self.state.parts.get(part.name)
            ran = recorded is not None and recorded.process is not None and recorded.mode == PROCESS
            if part.restarts_dependants and ran and not part.stopped_cleanly(self.ctx):
                crashed.add(part.name)
        stale = [item for item in self.starting.values() if crashed & set(item.part.needs)]
        if not stale:
            return
        timeout = max(item.part.stop_timeout_s(self.settings) for item in stale)
        procs.stop_all([item.record for item in stale], timeout)
        for item in stale:
            del self.starting[item.part.name]
            self.pending.append(item.part)

    def _start(self, part: Part) -> None:
        mode = part.mode(self.settings)
        if mode != PROCESS:
            if mode == EXTERNAL:
                eps = self.external[part.name]
            else:
                assert isinstance(part, QdrantPart)
                eps = part.local(self.ctx)
            self.state.parts[part.name] = PartState(part.name, mode, endpoints=eps)
            self.ctx.endpoints[part.name] = eps
            part.after_ready(self.ctx)
            self.ready.add(part.name)
            return
        recorded = self.state.parts.get(part.name)
        if recorded and recorded.mode == PROCESS and recorded.ports:
            ports, allocated = recorded.ports, False
            for port_name, port in ports.items():
                if not is_free(port):
                    raise StackError(
                        f"{part.name}: its port {port} ({port_name}) is taken by another program since it "
                        "crashed; run `facegate down` then `facegate up` to start on new ports"
                    )
        else:
            ports, allocated = part.allocate(self.settings, self.picker), True
        self._spawn(part, ports, allocated, attempts=1)

    def _spawn(self, part: Part, ports: dict[str, int], allocated: bool, attempts: int) -> None:
        launch = part.launch(self.ctx, ports)
        record = procs.spawn(launch.argv, cwd=launch.cwd, env=launch.env, log=self.ctx.logs(part.name))
        self.state.parts[part.name] = PartState(
            part.name, PROCESS, endpoints=part.endpoints(self.ctx, ports), ports=ports, process=record
        )
        self.started_here.append(part.name)
        # Saved at once: if this `up` itself dies, `down` still finds what it started.
        statefile.save(self.ctx.data_dir, self.state)
        self.starting[part.name] = _Starting(part, ports, record, True, allocated, attempts)

    def _poll(self, name: str, item: _Starting) -> None:
        if not procs.is_running(item.record):
            lines = procs.log_tail(item.record.log)
            text = "\n".join(lines[-15:]).lower()
            if (
                item.started_here
                and item.allocated
                and item.attempts < 3
                and any(e in text for e in _BIND_ERRORS)
            ):
                # Another program took a picked port between picking and binding: new ports.
                del self.starting[name]
                self._spawn(
                    item.part, item.part.allocate(self.settings, self.picker), True, item.attempts + 1
                )
                return
            verb = "exited while starting" if item.started_here else "is no longer running"
            raise StackError(f"{name}: {verb}: {item.part.failure(lines)} (log: {item.record.log})")
        if item.part.ready(self.ctx, item.ports):
            self.ctx.endpoints[name] = item.part.endpoints(self.ctx, item.ports)
            item.part.after_ready(self.ctx)
            self.ready.add(name)
            del self.starting[name]

    def _loop(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        known = {p.name for p in all_parts()}
        for part in self.pending:
            missing = [n for n in part.needs if n not in known]
            if missing:
                raise ConfigError(f"{part.name}: needs unknown part(s) {', '.join(missing)}")
        while self.pending or self.starting:
            for part in list(self.pending):
                if all(n in self.ready for n in part.needs):
                    self.pending.remove(part)
                    self._start(part)
            for name, item in list(self.starting.items()):
                self._poll(name, item)
            if time.monotonic() > deadline:
                slow = sorted(self.starting) or sorted(p.name for p in self.pending)
                logs = ", ".join(str(self.ctx.logs(n)) for n in slow)
                raise StackError(
                    f"{', '.join(slow)}: not ready after {self.timeout_s:.0f} s (see {logs}); raise "
                    "FACEGATE_STACK__START_TIMEOUT_S if the machine is just slow"
                )
            if self.pending or self.starting:
                time.sleep(0.05)

    def _undo(self) -> None:
        records = []
        for name in reversed(self.started_here):
            part = self.state.parts.pop(name, None)
            if part and part.process:
                records.append(part.process)
        procs.stop_all(records, self.settings.stack.stop_timeout_s)
        if self.state.parts and any(p.process for p in self.state.parts.values()):
            statefile.save(self.ctx.data_dir, self.state)
        else:
            statefile.remove(self.ctx.data_dir)
        _remove_shm(self.state.run_id, keep_if_running=self.state)


def _remove_shm(run_id: str, keep_if_running: StackState | None = None) -> None:
    """tritonserver's python backend leaves shared-memory regions behind when killed."""
    if keep_if_running is not None:
        triton = keep_if_running.parts.get("triton")
        if triton and triton.process and procs.is_running(triton.process):
            return
    for path in glob.glob(f"/dev/shm/{TritonPart.shm_prefix(run_id)}*"):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _stop_waves(state: StackState) -> list[list[str]]:
    """Who stops together: workers and producers of events first, the bridge once SeaweedFS
    has stopped posting to it (it flushes to Kafka on exit), the broker last."""
    infrastructure = ("s3", "bridge", "triton", "kafka", "qdrant")
    first = [n for n in state.parts if n not in infrastructure]  # workers, known or not
    waves = [first + [n for n in ("s3", "triton") if n in state.parts]]
    waves += [[n] for n in ("bridge", "kafka", "qdrant") if n in state.parts]
    return [wave for wave in waves if wave]


def down(settings: Settings) -> list[tuple[str, bool]]:
    """Stop every process ``up`` started; return (part, was running) in stop order."""
    settings = _absolute(settings)
    data_dir = settings.data_dir
    if not data_dir.is_dir():
        return []
    with statefile.locked(data_dir):
        state = statefile.load(data_dir)
        if state is None:
            return []
        stopped: list[tuple[str, bool]] = []
        known = {part.name: part for part in all_parts()}
        for wave in _stop_waves(state):
            records = [(n, state.parts[n].process) for n in wave]
            started = [(n, r) for n, r in records if r is not None]
            timeout = max(
                known[n].stop_timeout_s(settings) if n in known else settings.stack.stop_timeout_s
                for n in wave
            )
            results = procs.stop_all([r for _, r in started], timeout)
            stopped += [(n, ok) for (n, _), ok in zip(started, results, strict=True)]
        _remove_shm(state.run_id)
        statefile.remove(data_dir)
        return stopped


def status(settings: Settings) -> list[PartStatus]:
    """Each part: up, down (not started), crashed (started, process gone), unhealthy (running,
    failing its health check) or unreachable (external, not answering)."""
    settings = _absolute(settings)
    state = statefile.load(settings.data_dir) if settings.data_dir.is_dir() else None
    ctx = Context(settings, settings.data_dir, state.run_id if state else "")
    result = []
    for part in all_parts():
        recorded = state.parts.get(part.name) if state else None
        if recorded is None:
            result.append(PartStatus(part.name, part.mode(settings), DOWN))
            continue
        if recorded.mode == LOCAL:
            path = recorded.endpoints.get("path", "")
            ok = Path(path).is_dir()
            detail = f"in each worker, in memory ({path})"
            result.append(PartStatus(part.name, LOCAL, UP if ok else DOWN, detail=detail))
        elif recorded.mode == EXTERNAL:
            detail = ", ".join(f"{k}={v}" for k, v in recorded.endpoints.items() if v is not None)
            try:
                part.check_external(ctx)
            except StackError as exc:
                result.append(PartStatus(part.name, EXTERNAL, UNREACHABLE, detail=str(exc)))
            else:
                result.append(PartStatus(part.name, EXTERNAL, UP, detail=detail))
        else:
            assert recorded.process is not None
            proc = recorded.process
            if not procs.is_running(proc):
                result.append(
                    PartStatus(
                        part.name, PROCESS, CRASHED, proc.pid, proc.log, "process gone; run `facegate up`"
                    )
                )
                continue
            healthy = part.ready(ctx, recorded.ports)
            detail = ", ".join(f"{k}={v}" for k, v in recorded.endpoints.items() if k != "metrics")
            result.append(
                PartStatus(part.name, PROCESS, UP if healthy else UNHEALTHY, proc.pid, proc.log, detail)
            )
    return result


def resolve_settings(settings: Settings) -> Settings:
    """``settings`` pointed at the running embedded stack in settings.data_dir, if there is one.

    For commands run beside ``facegate up`` (producers, consumers, the demo): they find the
    broker, object store and Triton the stack started without copying addresses around.
    """
    absolute = _absolute(settings)
    state = statefile.load(absolute.data_dir) if absolute.data_dir.is_dir() else None
    if state is None:
        return settings
    return endpoints(absolute, state).settings(absolute)
