"""Shared test helpers: bounded waits, gated tasks, and a recorder that checks the rules live."""

from __future__ import annotations

import itertools
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from queue_core import AgentTask, TaskQueue
from queue_core.claims import Claim, overlaps

# Tests that run on GitHub Actions must not give its GITHUB_ACTIONS to every command they start,
# which would then print groups (cli/github.py) into outputs the tests read, and append to the
# real job summary; the tests of that output set it themselves.
# COLUMNS and LINES likewise: pytest-xdist's workers set them (80x24), and Rich takes them over
# the terminal's own size, so a command on a 200-column pseudo-terminal would draw 80 wide.
for _name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "COLUMNS", "LINES"):
    os.environ.pop(_name, None)

#: Upper bound of every wait in the tests: generous, so a slow CI box never flakes, yet a hang
#: fails in seconds rather than at pytest-timeout.
WAIT = 10.0
#: What repo_status says of a repository where nothing runs, as JSON (`status --json`).
EMPTY_STATUS = {
    "running_agents": [],
    "running_files": [],
    "queued_tasks": 0,
    "runs": [],
    "stopped_lock_holder": None,
    "skipped": [],
}


def git(cwd: Path, *args: str) -> str:
    """``git ARGS`` in ``cwd`` as a test user (no global configuration needed); its output. Raises on failure."""
    argv = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True, timeout=WAIT).stdout


def git_repo(path: Path, files: Mapping[str, str]) -> Path:
    """``path`` made a git repository whose first commit holds ``files`` (relative path -> text)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "-q", "--allow-empty", "-m", "first")
    return path


def interrupt_when_ready(proc: subprocess.Popen[str], reader: int, what: str) -> tuple[str, int]:
    """Once a pid comes on the pipe ``reader`` (bounded wait), Ctrl-C ``proc``; its stdout, and that pid.

    ``proc`` is killed if it does not end within WAIT, and ``reader`` closed either way.
    """
    try:
        ready, _, _ = select.select([reader], [], [], WAIT)
        assert ready, f"{what} never started"
        pid = int(os.read(reader, 64).split()[0])
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=WAIT)
    finally:
        os.close(reader)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out, pid


def wait_for(event: threading.Event, what: str) -> None:
    assert event.wait(WAIT), f"timed out waiting for {what}"


def eventually(what: str, check: Callable[[], bool]) -> None:
    """Poll ``check`` every 10 ms until it holds; fail after WAIT. Only for what gives no event:
    a file another process writes, a heartbeat."""
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.01)


def in_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a thread joined with a bound: a call stuck on a FIFO fails instead of hanging."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "the call did not return: it waited on something in the state directory"
    if "error" in box:
        raise box["error"]
    return box["result"]


@dataclass
class Gate:
    """A task body that reports when it starts and runs until the test releases it."""

    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    result: Any = None

    def __call__(self) -> Any:
        self.started.set()
        assert self.release.wait(WAIT), "gate never released"
        return self.result

    def open(self) -> Gate:
        self.release.set()
        return self


@dataclass
class Span:
    task_id: str
    agent: str
    writes: tuple[Claim, ...]
    reads: tuple[Claim, ...]
    start: int
    end: int | None = None


class Recorder:
    """Wraps task bodies; on every start checks no running task shares its agent or claims.

    Time is a global sequence number taken under the recorder's lock, so "A ended before
    B started" is exact, with no clock involved. Violations are collected, not raised inside
    worker threads, and checked by the test with :meth:`assert_safe`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards everything below
        self._tick = itertools.count()
        self.running: dict[str, Span] = {}
        self.spans: list[Span] = []
        self.violations: list[str] = []
        self.max_running = 0

    def wrap(
        self, task_id: str, agent: str, writes: tuple[Claim, ...], reads: tuple[Claim, ...], body: Callable[[], Any]
    ) -> Callable[[], Any]:
        def run() -> Any:
            self._enter(Span(task_id, agent, writes, reads, -1))
            try:
                return body()
            finally:
                self._exit(task_id)

        return run

    def task(
        self, agent: str, description: str, files: list[str], body: Callable[[], Any] | None = None, **kw: Any
    ) -> AgentTask:
        """An AgentTask whose body is recorded (default body: return the description)."""
        task = AgentTask(agent, description, files, lambda: None, **kw)
        task.execute_fn = self.wrap(task.id, agent, task.write_claims, task.read_claims, body or (lambda: description))
        return task

    def _enter(self, span: Span) -> None:
        with self._lock:
            span.start = next(self._tick)
            for other in self.running.values():
                if other.agent == span.agent:
                    self.violations.append(f"{span.task_id} and {other.task_id} both run agent {span.agent}")
                for mine, theirs, both_read in _claim_pairs(span, other):
                    if not both_read and overlaps(mine, theirs):
                        self.violations.append(f"{span.task_id} {mine} overlaps {other.task_id} {theirs}")
            self.running[span.task_id] = span
            self.spans.append(span)
            self.max_running = max(self.max_running, len(self.running))

    def _exit(self, task_id: str) -> None:
        with self._lock:
            self.running.pop(task_id).end = next(self._tick)

    def span(self, task_id: str) -> Span:
        with self._lock:
            return next(s for s in self.spans if s.task_id == task_id)

    def overlapped(self, a: str, b: str) -> bool:
        sa, sb = self.span(a), self.span(b)
        assert sa.end is not None
        assert sb.end is not None
        return sa.start < sb.end and sb.start < sa.end

    def assert_safe(self) -> None:
        assert self.violations == []


def _claim_pairs(a: Span, b: Span) -> Iterator[tuple[Claim, Claim, bool]]:
    for mine, my_read in [*((c, False) for c in a.writes), *((c, True) for c in a.reads)]:
        for theirs, their_read in [*((c, False) for c in b.writes), *((c, True) for c in b.reads)]:
            yield mine, theirs, my_read and their_read


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def queue() -> Iterator[TaskQueue]:
    q = TaskQueue(max_parallel=4)
    yield q
    q.shutdown(wait=True, cancel_pending=True)
