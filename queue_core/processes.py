"""Other processes of this machine, as the registry and status see them.

A pid alone names no process: it is reused. A :class:`ProcessId` adds what tells a process
apart from a later one with the same pid: on Linux its start time in clock ticks since boot
(``/proc/PID/stat``), which does not move when the wall clock is stepped (NTP, a VM restored,
``date -s``); elsewhere psutil's ``create_time``, which does. Both are recorded, so that
versions which know only ``started`` still read what newer ones write.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ._supervisor.proctree import KEEPER_NAME, SUPERVISOR_NAME, group_alive, process_table, read_proc, threads_run_on

__all__ = [
    "BOOT_ID",
    "PID_NAMESPACE",
    "STOPPED_HINT",
    "ProcessId",
    "agent_processes",
    "describe_lock_holder",
    "lock_holder",
    "process_state",
]

#: What a person can do about a stopped process.
STOPPED_HINT = "resume it with fg or kill -CONT, or end it"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


#: This boot of this machine ("" where unknown): a process of another boot no longer runs.
BOOT_ID = _read("/proc/sys/kernel/random/boot_id")
#: This process's PID namespace (0 where unknown): a pid of another namespace (a container that
#: shares the host's name, bwrap, unshare -p) means another process here, or none.
PID_NAMESPACE = _pid_namespace()
_SUPERVISOR_NAMES = frozenset({SUPERVISOR_NAME, KEEPER_NAME})


@dataclass(frozen=True)
class ProcessId:
    """A process, and when it started: ``ticks`` since boot (Linux, 0 elsewhere), psutil's ``started``."""

    pid: int
    started: float
    ticks: int = 0

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        """Process ``pid`` as it is now (``started`` 0.0 and ``ticks`` 0 if it cannot be seen)."""
        proc = read_proc(pid)
        return cls(pid, _create_time(pid) or 0.0, 0 if proc is None else proc.start)

    def alive(self) -> bool:
        """Whether this very process still runs; a zombie does not. One we may not look at does."""
        if self.pid <= 0:
            return False  # not a process: a hand-edited or damaged record
        if self.ticks:
            proc = read_proc(self.pid)
            if proc is not None or Path("/proc/self/stat").exists():
                return proc is not None and proc.start == self.ticks and proc.state != "Z"
        started = _create_time(self.pid)
        return started == -1.0 or (started is not None and started == self.started)

    def group_alive(self) -> bool:
        """Whether the process group this process leads has a live member, the leader or another."""
        return self.pid > 0 and group_alive(self.pid, self.ticks)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "started": self.started, "ticks": self.ticks}

    @classmethod
    def from_json(cls, data: Any) -> ProcessId:
        return cls(int(data["pid"]), float(data["started"]), int(data.get("ticks", 0)))


def _create_time(pid: int) -> float | None:
    """psutil's start time, rounded as every version wrote it; None if gone or a zombie, -1.0 if hidden."""
    if pid <= 0:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE and not threads_run_on(pid):
            return None
        return round(process.create_time(), 2)
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:  # it exists, but we may not look: keep its claims
        return -1.0


def process_state(pid: int) -> str | None:
    """``"stopped"`` (SIGSTOP, Ctrl-Z, a debugger), ``"running"``, or None if ``pid`` is gone."""
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return "running"
    if status == psutil.STATUS_ZOMBIE:
        return "running" if threads_run_on(pid) else None
    return "stopped" if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP) else "running"


def lock_holder(path: str | os.PathLike[str]) -> int | None:
    """The pid holding the flock on ``path``, from ``/proc/locks`` (Linux); None if unknown or free."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 12345 fe:00:2146574 0 EOF"; a blocked waiter's line has "->".
        if len(fields) >= 6 and fields[1] == "FLOCK" and "->" not in fields and fields[5] == wanted:
            return int(fields[4])
    return None


def describe_lock_holder(path: Path, name: str) -> str:
    """``the registry lock held by pid 123 (stopped: resume it ...)`` for the lock ``name`` on ``path``."""
    pid = lock_holder(path)
    if pid is None:
        return f"{name} held by another process"
    stopped = process_state(pid) == "stopped"
    return f"{name} held by pid {pid}" + (f" (stopped: {STOPPED_HINT})" if stopped else "")


def agent_processes(supervisor: int, groups: list[int]) -> list[dict[str, Any]]:
    """The live processes of a run's agents: below its ``supervisor`` (but its own) or in ``groups``."""
    table = process_table()
    found = {p.pid for p in table.values() if p.pgid in groups and p.state != "Z"}
    with contextlib.suppress(psutil.Error):
        found.update(p.pid for p in psutil.Process(supervisor).children(recursive=True))
    processes = []
    for pid in sorted(found):
        with contextlib.suppress(psutil.Error):  # ended meanwhile
            if (name := psutil.Process(pid).name()) not in _SUPERVISOR_NAMES:
                processes.append({"pid": pid, "name": name})
    return processes
