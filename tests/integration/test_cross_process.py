"""Queues in separate processes on one repository, through the on-disk claim registry.

Each process is a real Python child running ``_worker.py``; it reports on stdout, one line per
event, and the test reads those lines with a bounded wait. Nothing sleeps to synchronise:
children start together on a line written to their stdin, a task blocks on its stdin until
the test lets it go, and a killed process is reaped before it is looked for.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from queue_core import overlaps, repo_status
from queue_core.claims import Claim
from queue_core.registry import FORMAT, VERSION, Hold, Owner, Registry

from ..conftest import WAIT

WORKER = Path(__file__).with_name("_worker.py")
STATE = ".project-manager"


class Child:
    """A ``_worker.py`` process; its stdout lines are read by a thread into a queue."""

    def __init__(self, tmp: Path, name: str, *args: str | Path):
        self.name = name
        self.stderr_path = tmp / f"{name}.stderr"
        self._stderr: IO[str] = open(self.stderr_path, "w")  # noqa: SIM115 - closed in close()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-W", "error", str(WORKER), *map(str, args)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
            )
        except BaseException:
            self._stderr.close()
            raise
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def _trouble(self, what: str) -> str:
        return f"{self.name} (pid {self.pid}, exit {self.proc.poll()}): {what}; stderr:\n{self.stderr()}"

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def expect(self, prefix: str, timeout: float = WAIT) -> str:
        """The next line, which must start with ``prefix``; returns the rest of it."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(self._trouble(f"no {prefix!r} line within {timeout}s")) from None
        if line is None:
            self.lines.put(None)
            raise AssertionError(self._trouble(f"exited before printing {prefix!r}"))
        assert line.startswith(prefix), self._trouble(f"printed {line!r} while {prefix!r} was expected")
        return line[len(prefix) :].strip()

    def send(self, line: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        """Expect ``done``, then a clean exit."""
        self.expect("done")
        assert self.proc.wait(WAIT) == 0, self._trouble("failed")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        self._reader.join(WAIT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # stdin of a dead child: broken pipe
                    stream.close()
        self._stderr.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    """``spawn(name, mode, *args)`` starts a worker; every child is killed and reaped at the end."""
    children: list[Child] = []

    def start(name: str, *args: str | Path) -> Child:
        child = Child(tmp_path, name, *args)
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            child.close()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


def registry_holds(repo: Path) -> list[dict[str, Any]]:
    """The live holds, read under the registry's lock as every process reads them.

    Read without the lock, claims.json may not show yet what a run keeps locked in a lease.
    """
    with Registry(repo, "test-reader").session() as session:
        return [hold.to_json() for hold in session.holds.values()]


# --- 1. stress: many processes, random overlapping claims -------------------------------------

PROCESSES = 4
TASKS_PER_PROCESS = 60
PATHS = [
    "src/a.py",
    "src/b.py",
    "src/c.py",
    "src/",
    "src/*.py",
    "d/",
    "d/e.txt",
    "d/f/g.txt",
    "docs/readme.md",
    "docs/api.md",
    "tests/t.py",
    "tests/u.py",
]
AGENTS = ["code_developer", "tester", "reviewer", "docs_writer", "architect", "security", "release"]


def stress_spec(proc: int) -> dict[str, Any]:
    rng = random.Random(1000 + proc)  # seeded per process: a failure replays
    tasks = []
    for i in range(TASKS_PER_PROCESS):
        writes = rng.sample(PATHS, rng.choice([0, 1, 1, 1, 2]))
        reads = rng.sample([p for p in PATHS if p not in writes], rng.choice([0, 0, 1, 2]))
        tasks.append(
            {
                "id": f"p{proc}-t{i}",
                "agent": rng.choice(AGENTS),
                "writes": writes,
                "reads": reads,
                "work_s": rng.uniform(0.001, 0.005),
            }
        )
    # One task per process that conflicts with nothing: its own agent and path. All of them
    # must run at once (the test holds each until it saw all), which proves the processes
    # really ran side by side, deterministically.
    tasks.append(
        {
            "id": f"p{proc}-rendezvous",
            "agent": f"agent-of-p{proc}",
            "writes": [f"private/p{proc}.txt"],
            "reads": ["shared/config.toml"],  # read by every rendezvous task: readers share
            "work_s": 0.001,
            "priority": 10,
            "rendezvous": True,
        }
    )
    return {"proc": proc, "max_parallel": 3, "tasks": tasks}


@dataclass(frozen=True)
class Ran:
    proc: int
    task: str
    agent: str
    writes: tuple[Claim, ...]
    reads: tuple[Claim, ...]
    start: int
    end: int


def conflict(a: Ran, b: Ran) -> str | None:
    """Why ``a`` and ``b`` may not run at once, or None."""
    if a.agent == b.agent:
        return f"both run agent {a.agent}"
    for x, x_writes in [*((c, True) for c in a.writes), *((c, False) for c in a.reads)]:
        for y, y_writes in [*((c, True) for c in b.writes), *((c, False) for c in b.reads)]:
            if (x_writes or y_writes) and overlaps(x, y):
                return f"{x} ({'write' if x_writes else 'read'}) overlaps {y} ({'write' if y_writes else 'read'})"
    return None


@pytest.mark.slow
def test_stress_processes_never_run_conflicting_tasks_together(tmp_path: Path, repo: Path, spawn: Any) -> None:
    log = tmp_path / "ran.log"
    specs = [stress_spec(p) for p in range(PROCESSES)]
    children = []
    for spec in specs:
        spec_path = tmp_path / f"spec-{spec['proc']}.json"
        spec_path.write_text(json.dumps(spec))
        children.append(spawn(f"stress-{spec['proc']}", "stress", repo, spec_path, log))
    for child in children:
        child.expect("ready")
    began = time.monotonic()
    for child in children:  # the barrier: every queue exists before any submits
        child.send("go")
    for child in children:
        assert child.expect("rendezvous") == f"{child.name.replace('stress-', 'p')}-rendezvous"
    for child in children:  # every process's rendezvous task was running: let them go
        child.send("go")
    for child in children:
        child.finish()
    elapsed = time.monotonic() - began

    by_id = {t["id"]: (spec["proc"], t) for spec in specs for t in spec["tasks"]}
    ran: list[Ran] = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        proc, task = by_id[entry["task"]]
        assert entry["proc"] == proc
        writes = tuple(Claim.parse(p) for p in task["writes"])
        reads = tuple(Claim.parse(p) for p in task["reads"])
        ran.append(Ran(proc, task["id"], task["agent"], writes, reads, entry["start"], entry["end"]))

    counts = Counter(r.task for r in ran)
    assert sorted(counts) == sorted(by_id), "some task never ran"
    assert [t for t, n in counts.items() if n != 1] == [], "some task ran more than once"

    violations = []
    cross_process_overlaps = 0
    for a, b in itertools.combinations(sorted(ran, key=lambda r: r.start), 2):
        if b.start >= a.end:
            continue  # sorted by start: b began after a ended
        if a.proc != b.proc:
            cross_process_overlaps += 1
        why = conflict(a, b)
        if why is not None:
            violations.append(f"{a.task} [{a.start}, {a.end}] and {b.task} [{b.start}, {b.end}]: {why}")
    assert violations == []
    rendezvous = [r for r in ran if r.task.endswith("-rendezvous")]
    assert max(r.start for r in rendezvous) < min(r.end for r in rendezvous)
    assert registry_holds(repo) == []
    assert repo_status(repo)["runs"] == []
    assert len(list((repo / STATE / "history").glob("*.json"))) == PROCESSES
    print(f"\nstress: {len(ran)} tasks, {PROCESSES} processes, {elapsed:.2f}s, {cross_process_overlaps} overlaps")


# --- 2. SIGKILL while holding claims ----------------------------------------------------------


def test_sigkilled_holder_frees_its_claim_within_a_second(
    repo: Path, spawn: Any, record_property: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = spawn("holder", "hold", repo, "code_developer", "src/shared.py", "held")
    holder.expect("running held")
    assert [h["task"] for h in registry_holds(repo)] == ["held"]
    waiter = spawn("waiter", "wait", repo, "tester", "src/shared.py", "needs-it")
    reason = waiter.expect("queued")
    assert "src/shared.py" in reason
    assert "held in run" in reason

    killed_at = time.monotonic_ns()
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.proc.wait(WAIT) == -signal.SIGKILL  # reaped, as its parent would
    started_at = int(waiter.expect("started"))
    latency = (started_at - killed_at) / 1e9
    record_property("sigkill_to_start_s", latency)
    with capsys.disabled():
        print(f"\nSIGKILL -> start latency: {latency * 1000:.1f} ms")
    assert 0 < latency < 1.0
    waiter.finish()
    assert registry_holds(repo) == []
    assert repo_status(repo)["runs"] == []  # the killed run's record is left, but not shown


def test_sigkilled_holder_frees_its_claim_before_it_is_reaped(repo: Path, spawn: Any) -> None:
    """The killed process's parent has not called wait() yet: it is a zombie, and runs nothing."""
    holder = spawn("holder", "hold", repo, "code_developer", "src/shared.py", "held")
    holder.expect("running held")
    waiter = spawn("waiter", "wait", repo, "tester", "src/shared.py", "needs-it")
    assert "held in run" in waiter.expect("queued")

    killed_at = time.monotonic_ns()
    os.kill(holder.pid, signal.SIGKILL)
    os.waitid(os.P_PID, holder.pid, os.WEXITED | os.WNOWAIT)  # dead, but not reaped
    try:
        started_at = int(waiter.expect("started", timeout=2.0))
    finally:
        holder.proc.wait(WAIT)  # reap it, so a failure here does not hang the waiter
    assert (started_at - killed_at) / 1e9 < 1.0
    waiter.finish()


def test_sigkilled_holder_of_an_agent_type_frees_it(repo: Path, spawn: Any) -> None:
    holder = spawn("holder", "hold", repo, "code_developer", "src/a.py", "held")
    holder.expect("running held")
    waiter = spawn("waiter", "wait", repo, "code_developer", "docs/b.md", "same-agent")
    assert "code_developer busy (held in run" in waiter.expect("queued")
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait(WAIT)
    waiter.expect("started")
    waiter.finish()


# --- 3. a reused pid --------------------------------------------------------------------------


def write_claims(repo: Path, holds: list[Hold]) -> None:
    Registry(repo)  # the state directory, as a queue would make it
    data = {"format": FORMAT, "version": VERSION, "holds": [h.to_json() for h in holds]}
    (repo / STATE / "claims.json").write_text(json.dumps(data))


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a live child that blocks on its stdin (no sleep)."""
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as proc:
        try:
            yield proc.pid
        finally:
            proc.kill()


@pytest.mark.parametrize("whose", ["test process", "sleeping child"])
def test_a_hold_whose_pid_was_reused_is_dropped(repo: Path, spawn: Any, whose: str, live_pid: int) -> None:
    pid = os.getpid() if whose == "test process" else live_pid
    real = Owner(socket.gethostname(), pid, round(psutil.Process(pid).create_time(), 2), "ghost-run")
    hold = Hold(real, "ghost", "code_developer", ("src/x.py",), (), time.time())

    # The owner as recorded really is that process: its claim holds, in another process too.
    write_claims(repo, [hold])
    checker = spawn("control", "try", repo, "tester", "src/x.py", "control")
    assert "ghost in run ghost-run" in checker.expect("conflict")
    assert checker.proc.wait(WAIT) == 0

    # Same host and a live pid, but another start time: the pid was reused, the owner is gone.
    reused = Owner(real.host, pid, real.started - 3600.0, "ghost-run")
    write_claims(repo, [Hold(reused, "ghost", "code_developer", ("src/x.py",), (), time.time())])
    runner = spawn("fresh", "try", repo, "tester", "src/x.py", "fresh")
    runner.expect("ran")
    assert runner.proc.wait(WAIT) == 0
    assert registry_holds(repo) == []


# --- 6. status from another process -----------------------------------------------------------


def test_repo_status_from_another_process(repo: Path, spawn: Any) -> None:
    child = spawn("run", "status", repo)
    run = child.expect("running")

    # A run coalesces record writes (at most every 50 ms; the last change is always written),
    # so wait, bounded, for the record that has both tasks.
    deadline = time.monotonic() + WAIT
    while (status := repo_status(repo))["queued_tasks"] != 1 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert status["running_agents"] == ["code_developer"]
    assert status["running_files"] == ["src/app.py"]
    assert status["queued_tasks"] == 1
    [entry] = status["runs"]
    assert entry["run"] == run
    assert entry["pid"] == child.pid
    [running] = entry["running"]
    assert running["id"] == "edit-app"
    [waiting] = entry["waiting"]
    assert waiting["id"] == "test-app"
    assert waiting["reason_kind"] == "claim"
    assert "src/app.py" in waiting["reason"]
    assert "edit-app" in waiting["reason"]

    child.send("go")
    child.finish()
    status = repo_status(repo)
    assert status == {
        "running_agents": [],
        "running_files": [],
        "queued_tasks": 0,
        "runs": [],
        "stopped_lock_holder": None,
        "skipped": [],
    }
    history = json.loads((repo / STATE / "history" / f"{run}.json").read_text())
    assert history["run"] == run
    assert sorted((t["id"], t["status"]) for t in history["tasks"]) == [
        ("edit-app", "succeeded"),
        ("test-app", "succeeded"),
    ]
    assert not (repo / STATE / "runs" / f"{run}.json").exists()
    assert registry_holds(repo) == []


def test_repo_status_of_a_repository_without_state(repo: Path) -> None:
    assert repo_status(repo) == {
        "running_agents": [],
        "running_files": [],
        "queued_tasks": 0,
        "runs": [],
        "stopped_lock_holder": None,
        "skipped": [],
    }
    assert not (repo / STATE).exists()  # status only reads


# --- fairness between processes ---------------------------------------------------------------


def test_a_task_waiting_in_another_process_goes_before_the_releasing_runs_next_one(repo: Path, spawn: Any) -> None:
    """Before: run A re-took hot.txt the moment it freed it, and B's task ran after all of A's."""
    run_a = spawn("run-a", "hold", repo, "code_developer", "hot.txt", "a", "3")
    run_a.expect("running a ")
    run_b = spawn("run-b", "wait", repo, "tester", "hot.txt", "b")
    assert "hot.txt" in run_b.expect("queued")  # after B's registry step: it is in line
    run_a.send()  # a returns
    second_a = int(run_a.expect("running a-2 "))
    started_b = int(run_b.expect("started"))
    assert started_b < second_a, "A's next task went before B's, which waited through A's release"
    run_b.finish()
    run_a.send()
    run_a.expect("running a-3 ")
    run_a.send()
    run_a.finish()
