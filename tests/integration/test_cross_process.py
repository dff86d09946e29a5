"""Queues in separate processes on one repository, through the on-disk claim registry.

Each process is a real Python child running ``_worker.py``; it reports on stdout, one line per
event, and the test reads those lines with a bounded wait. Nothing sleeps to synchronise:
children start together on a line written to their stdin, a task blocks on its stdin until
the test lets it go, and a killed process is reaped before it is looked for.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from queue_core import repo_status
from queue_core.registry import FORMAT, VERSION, Hold, Owner, Registry

from ..conftest import EMPTY_STATUS, WAIT
from ._stress import Load, stress_spec

STATE = ".project-manager"


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


@pytest.mark.slow
def test_stress_processes_never_run_conflicting_tasks_together(tmp_path: Path, repo: Path, spawn: Any) -> None:
    load = Load.start(spawn, tmp_path, repo, [stress_spec(p) for p in range(PROCESSES)])
    load.rendezvous()
    elapsed = load.finish(3 * WAIT)  # 240 tasks through one registry: ~5 s alone, 10+ s beside other tests
    ran, cross_process_overlaps = load.check()
    assert registry_holds(repo) == []
    assert repo_status(repo).runs == ()
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
    assert repo_status(repo).runs == ()  # the killed run's record is left, but not shown


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
    while (status := repo_status(repo)).queued_tasks != 1 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert status.running_agents == ["code_developer"]
    assert status.running_files == ["src/app.py"]
    assert status.queued_tasks == 1
    [entry] = status.runs
    assert entry.run == run
    assert entry.pid == child.pid
    [running] = entry.running
    assert running.id == "edit-app"
    [waiting] = entry.waiting
    assert waiting.id == "test-app"
    assert waiting.reason_kind == "claim"
    assert "src/app.py" in waiting.reason
    assert "edit-app" in waiting.reason

    child.send("go")
    child.finish()
    status = repo_status(repo)
    assert status.to_json() == EMPTY_STATUS
    history = json.loads((repo / STATE / "history" / f"{run}.json").read_text())
    assert history["run"] == run
    assert sorted((t["id"], t["status"]) for t in history["tasks"]) == [
        ("edit-app", "succeeded"),
        ("test-app", "succeeded"),
    ]
    assert not (repo / STATE / "runs" / f"{run}.json").exists()
    assert registry_holds(repo) == []


def test_repo_status_of_a_repository_without_state(repo: Path) -> None:
    assert repo_status(repo).to_json() == EMPTY_STATUS
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
