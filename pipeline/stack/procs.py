"""Processes the stack starts: spawn each in its own session, recognise it later, stop its session.

A process is identified by its pid *and* its start time (field 22 of /proc/<pid>/stat, clock
ticks since boot), so a recycled pid is never mistaken for ours. Every part runs as the leader
of a new session (``setsid``); whatever it spawns (tritonserver's python stubs) stays in that
session and is stopped with it. Nothing here ever looks a process up by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..contract import utcnow

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str  # R, S, D, Z, ...
    ppid: int
    pgrp: int
    session: int
    start_ticks: int


@dataclass(frozen=True)
class ProcessRecord:
    """What the state file keeps about one started process."""

    pid: int
    start_ticks: int
    argv: list[str]
    cwd: str
    log: str
    started_at: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            argv=[str(a) for a in data["argv"]],
            cwd=str(data["cwd"]),
            log=str(data["log"]),
            started_at=str(data["started_at"]),
            extra=dict(data.get("extra", {})),
        )


def read_stat(pid: int) -> ProcStat | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    rest = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(
        pid=pid,
        state=rest[0],
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        session=int(rest[3]),
        start_ticks=int(rest[19]),
    )


def _reap(pid: int) -> None:
    # A child of this very process (the test fixture starts the stack in-process) stays a
    # zombie until waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_running(record: ProcessRecord) -> bool:
    """True while the recorded process itself (same pid, same start time) is alive."""
    stat = read_stat(record.pid)
    if stat is None or stat.start_ticks != record.start_ticks:
        return False
    if stat.state in ("Z", "X"):
        _reap(record.pid)
        return False
    return True


def session_members(record: ProcessRecord) -> list[ProcStat]:
    """Live processes of the session the recorded process leads (itself included).

    If the pid now belongs to another process, the session we started is gone (Linux does
    not recycle a pid still in use as a session id), so there is nothing of ours to find.
    """
    leader = read_stat(record.pid)
    if leader is not None and leader.start_ticks != record.start_ticks:
        return []
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name))
        if (
            stat is not None
            and stat.session == record.pid
            and stat.start_ticks >= record.start_ticks
            and stat.state not in ("Z", "X")
        ):
            members.append(stat)
    return members


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    extra: Mapping[str, Any] | None = None,
) -> ProcessRecord:
    """Start ``argv`` as the leader of a new session, stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"--- {utcnow().isoformat()} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    stat = read_stat(proc.pid)
    # The child cannot have exited and been reaped yet: only we can reap it.
    start_ticks = stat.start_ticks if stat is not None else 0
    return ProcessRecord(
        pid=proc.pid,
        start_ticks=start_ticks,
        argv=list(argv),
        cwd=str(cwd),
        log=str(log),
        started_at=utcnow().isoformat(),
        extra=dict(extra or {}),
    )


def _signal_members(record: ProcessRecord, sig: signal.Signals) -> int:
    sent = 0
    for member in session_members(record):
        # Re-check right before signalling: the member may have exited meanwhile.
        now = read_stat(member.pid)
        if now is None or now.start_ticks != member.start_ticks or now.session != record.pid:
            continue
        try:
            os.kill(member.pid, sig)
            sent += 1
        except ProcessLookupError:
            pass
    return sent


def stop(record: ProcessRecord, timeout_s: float) -> bool:
    """SIGTERM the session, SIGKILL what is left after ``timeout_s``. True if it was running."""
    return stop_all([record], timeout_s)[0]


def stop_all(records: Sequence[ProcessRecord], timeout_s: float) -> list[bool]:
    """Stop several sessions at once (SIGTERM all, wait, SIGKILL the rest); was each running?"""
    was_running = [is_running(r) for r in records]
    signalled = [r for r in records if _signal_members(r, signal.SIGTERM)]
    deadline = time.monotonic() + timeout_s
    while signalled and time.monotonic() < deadline:
        for r in signalled:
            _reap(r.pid)
        signalled = [r for r in signalled if session_members(r)]
        if signalled:
            time.sleep(0.05)
    for r in signalled:
        _signal_members(r, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while signalled and time.monotonic() < deadline:
        for r in signalled:
            _reap(r.pid)
        signalled = [r for r in signalled if session_members(r)]
        if signalled:
            time.sleep(0.05)
    for r in records:
        _reap(r.pid)
    return was_running


def log_tail(log: str | Path, lines: int = 40) -> list[str]:
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
