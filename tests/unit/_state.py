"""State directories built by hand for the retention tests: finished, killed and live runs.

Live owners are real child processes in sessions of their own, blocked on their stdin.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from queue_core.holds import Hold, Owner
from queue_core.processes import BOOT_ID, PID_NAMESPACE, ProcessId
from queue_core.registry import FORMAT, VERSION, state_dir

from ..conftest import WAIT

HOST = socket.gethostname()
HOUR = 3600.0


class Child:
    """A live child process in a session of its own (it leads its process group), blocked on stdin."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, start_new_session=True
        )
        self.id = ProcessId.of(self.proc.pid)
        assert self.id.alive()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def end(self) -> None:
        """Let it exit (end of its stdin), and reap it."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(WAIT)

    def kill_unreaped(self) -> None:
        """SIGKILL it and wait until it has died, without reaping it: it stays a zombie."""
        os.kill(self.proc.pid, signal.SIGKILL)
        os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)  # blocks until dead; keeps it


@pytest.fixture
def child() -> Iterator[Child]:
    process = Child()
    try:
        yield process
    finally:
        if process.proc.poll() is None:
            process.proc.kill()
        process.end()


@pytest.fixture
def dead() -> ProcessId:
    """A process that ran, exited and was reaped."""
    process = Child()
    process.end()
    assert not process.id.alive()
    return process.id


def owner(run: str, process: ProcessId, supervisor: ProcessId | None = None) -> Owner:
    return Owner(HOST, process.pid, process.started, run, process.ticks, supervisor, BOOT_ID, PID_NAMESPACE)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """An empty state directory, laid out as the registry makes it (a plain directory: .project-manager)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    directory = state_dir(repo)
    for sub in ("runs", "history", "logs"):
        (directory / sub).mkdir(parents=True, mode=0o700)
    return directory


def age(path: Path, seconds_ago: float, now: float | None = None) -> None:
    at = (now or time.time()) - seconds_ago
    os.utime(path, (at, at), follow_symlinks=False)


def finished(state: Path, run: str, ended_at: float, *, mtime: float | None = None, history: bool = True) -> None:
    """A finished run: its history record (unless ``history`` is False: a killed run) and a log."""
    logs = state / "logs" / run
    logs.mkdir(parents=True, mode=0o700)
    (logs / "t.log").write_text("agent output\n")
    at = ended_at if mtime is None else mtime
    os.utime(logs, (at, at))
    if history:
        path = state / "history" / f"{run}.json"
        record = {"run": run, "started_at": ended_at - 1, "ended_at": ended_at, "tasks": [], "version": VERSION}
        path.write_text(json.dumps(record, separators=(",", ":")))
        os.utime(path, (at, at))


def record(state: Path, run_owner: Owner, *, mtime: float | None = None) -> Path:
    """A run's record in runs/, as the registry writes it."""
    path = state / "runs" / f"{run_owner.run}.json"
    data = {"run": run_owner.run, "owner": run_owner.to_json(), "updated": time.time(), "version": VERSION}
    path.write_text(json.dumps(data))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def holds_file(state: Path, run_owner: Owner, task: str = "t") -> Path:
    path = state / "runs" / f"{run_owner.run}.holds"
    hold = Hold(run_owner, task, "code_developer", ("src/x.py",), (), time.time())
    path.write_text(json.dumps({"holds": [hold.to_json()]}))
    return path


def groups_file(state: Path, run: str, group: ProcessId, task: str = "t") -> Path:
    path = state / "runs" / f"{run}.groups"
    path.write_text(json.dumps({"task": task, "pgid": group.pid, "ticks": group.ticks}) + "\n")
    return path


def write_claims(state: Path, holds: list[Hold]) -> None:
    data = {"format": FORMAT, "version": VERSION, "holds": [h.to_json() for h in holds]}
    (state / "claims.json").write_text(json.dumps(data))


def names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def tree(directory: Path) -> dict[str, tuple[int, int]]:
    """Every entry below ``directory`` (never followed), with its inode and modification time."""
    found = {}
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            path = Path(root, name)
            st = os.lstat(path)
            found[str(path.relative_to(directory))] = (st.st_ino, st.st_mtime_ns)
    return found
