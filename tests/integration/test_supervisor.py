"""The supervisor, with real processes: no claim outlives the agent's control, no agent outlives its claim.

Each agent here (``fake_agents/family.py``) leaves a descendant that tries to outlive it: in
the background, ignoring SIGTERM, in a session of its own, or orphaned by a double fork. A
second task on the same file checks, the moment it starts, that none of the first task's
processes is still alive. Nothing here waits by sleeping: processes report through a FIFO,
and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import psutil
import pytest

from queue_core import AgentTask, SubprocessAgent, SupervisorError, TaskQueue, TaskTimeoutError
from queue_core._guardian import Frames, Proc, frame, read_proc, signal_exactly
from queue_core.runner import AgentExitError
from queue_core.supervisor import PROCESS_NAMES

from ..conftest import WAIT

FAKE_AGENTS = Path(__file__).parent.parent / "fake_agents"
FAMILY = FAKE_AGENTS / "family.py"
COORDINATOR = FAKE_AGENTS / "coordinator.py"
MODES = ["background", "ignore-term", "setsid", "double-fork"]


class Report:
    """The read end of the FIFO a family agent reports its pids to, opened before it starts."""

    def __init__(self, path: Path):
        os.mkfifo(path)
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._pids: tuple[int, int] | None = None

    def pids(self) -> tuple[int, int]:
        """(agent, descendant), once reported; the first caller reads, later ones get the same."""
        with self._lock:
            data = b""
            while self._pids is None:
                ready, _, _ = select.select([self._fd], [], [], WAIT)
                assert ready, "the agent never reported"
                data += os.read(self._fd, 100)
                if data.endswith(b"\n"):
                    agent, child = (int(p) for p in data.split())
                    self._pids = (agent, child)
            return self._pids

    def close(self) -> None:
        os.close(self._fd)


@pytest.fixture
def report(tmp_path: Path) -> Iterator[Report]:
    fifo = Report(tmp_path / "report.fifo")
    yield fifo
    fifo.close()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def family(tmp_path: Path, report: Report, mode: str, action: str, *, grace: float = 0.3) -> SubprocessAgent:
    argv = [sys.executable, str(FAMILY), str(report.path), mode, action]
    return SubprocessAgent(argv, tmp_path, tmp_path / f"{mode}.log", grace_s=grace)


def checker(report: Report, seen: dict[str, list[bool]]) -> AgentTask:
    """Task B on f.py: notes, as it starts, whether the first task's agent and descendant live."""

    def look() -> None:
        seen["alive"] = [alive(pid) for pid in report.pids()]

    return AgentTask("b", "after", ["f.py"], look, id="B")


@pytest.mark.parametrize("mode", MODES)
def test_an_agent_that_exits_leaving_a_child_keeps_its_claim_until_the_child_is_stopped(
    tmp_path: Path, report: Report, mode: str
) -> None:
    """Before: the claim was released when the agent's top process exited; the child wrote on."""
    seen: dict[str, list[bool]] = {}
    agent = family(tmp_path, report, mode, "exit")
    with TaskQueue(2) as queue:
        first = queue.submit_task(AgentTask("a", "family", ["f.py"], agent, id="A"))
        after = queue.submit_task(checker(report, seen))
        assert first.result(timeout=WAIT) == 0  # the agent's own exit code
        after.result(timeout=WAIT)
    assert seen["alive"] == [False, False]
    log = agent.log.read_text()
    assert f"the agent exited; stopping what it left running: {report.pids()[1]}" in log
    if mode == "ignore-term":
        assert "still running 0.3s after SIGTERM, killed" in log


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_stops_every_descendant_before_the_claim_is_released(
    tmp_path: Path, report: Report, mode: str
) -> None:
    """Before: a child that called setsid escaped the process group and survived the timeout."""
    seen: dict[str, list[bool]] = {}
    with TaskQueue(2) as queue:
        first = queue.submit_task(
            AgentTask("a", "family", ["f.py"], family(tmp_path, report, mode, "wait"), id="A", timeout=0.5)
        )
        after = queue.submit_task(checker(report, seen))
        with pytest.raises(TaskTimeoutError):
            first.result(timeout=WAIT)
        after.result(timeout=WAIT)
    assert seen["alive"] == [False, False]


@pytest.mark.parametrize("mode", MODES)
def test_cancel_stops_every_descendant_before_the_claim_is_released(tmp_path: Path, report: Report, mode: str) -> None:
    seen: dict[str, list[bool]] = {}
    with TaskQueue(2) as queue:
        first = queue.submit_task(AgentTask("a", "family", ["f.py"], family(tmp_path, report, mode, "wait"), id="A"))
        after = queue.submit_task(checker(report, seen))
        report.pids()  # both run
        assert queue.cancel("A") is True
        with pytest.raises(CancelledError):
            first.result(timeout=WAIT)
        after.result(timeout=WAIT)
    assert seen["alive"] == [False, False]


def test_a_killed_keeper_leaves_nothing_running_and_the_task_fails(tmp_path: Path, report: Report) -> None:
    """The processes of a task whose keeper is killed go to the supervisor, which stops them."""
    seen: dict[str, list[bool]] = {}
    with TaskQueue(2) as queue:
        first = queue.submit_task(
            AgentTask("a", "family", ["f.py"], family(tmp_path, report, "setsid", "wait"), id="A")
        )
        after = queue.submit_task(checker(report, seen))
        agent, _ = report.pids()
        keeper = psutil.Process(agent).ppid()
        assert psutil.Process(keeper).name() in PROCESS_NAMES
        os.kill(keeper, signal.SIGKILL)
        with pytest.raises(SupervisorError, match="was killed"):
            first.result(timeout=WAIT)
        after.result(timeout=WAIT)
    assert seen["alive"] == [False, False]


def test_a_missing_program_fails_the_task_as_it_did_without_a_supervisor(tmp_path: Path) -> None:
    agent = SubprocessAgent(["no-such-program-for-project-manager"], tmp_path, tmp_path / "m.log")
    with pytest.raises(FileNotFoundError, match="no-such-program-for-project-manager"):
        agent()
    assert agent.exit_code is None
    assert SubprocessAgent(["true"], tmp_path, tmp_path / "t.log")() == 0  # the supervisor goes on


def test_the_agent_gets_the_environment_of_the_moment_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SubprocessAgent(["true"], tmp_path, tmp_path / "t.log")()  # the supervisor runs already
    monkeypatch.setenv("PM_TEST_LATE", "set after the supervisor started")
    script = "import os, sys; sys.exit(0 if os.environ.get('PM_TEST_LATE', '').startswith('set after') else 3)"
    assert SubprocessAgent([sys.executable, "-c", script], tmp_path, tmp_path / "e.log")() == 0


def test_a_failing_agent_reports_its_code_and_signal(tmp_path: Path) -> None:
    with pytest.raises(AgentExitError, match="exited with code 4"):
        SubprocessAgent(["sh", "-c", "exit 4"], tmp_path, tmp_path / "c.log")()
    with pytest.raises(AgentExitError, match="killed by signal 9"):
        SubprocessAgent(["sh", "-c", "kill -9 $$"], tmp_path, tmp_path / "k.log")()


@contextlib.contextmanager
def _coordinator(repo: Path, report: Report, mode: str, stamps: Path) -> Iterator[subprocess.Popen[str]]:
    """``coordinator.py`` running task A; killed on the way out if it still runs."""
    with subprocess.Popen(
        [sys.executable, str(COORDINATOR), str(repo), str(report.path), mode, str(stamps)],
        stdout=subprocess.PIPE,
        text=True,
    ) as coordinator:
        try:
            yield coordinator
        finally:
            if coordinator.poll() is None:
                coordinator.kill()


def _stamps(path: Path) -> list[int]:
    return [int(line.split()[1]) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("mode", ["ignore-term", "double-fork"])
def test_a_killed_coordinators_claims_are_held_until_its_agents_are_gone(
    tmp_path: Path, report: Report, mode: str
) -> None:
    """Before: kill -9 of a run freed its claims at once while its agents went on writing."""
    stamps = tmp_path / "stamps"
    with _coordinator(tmp_path, report, mode, stamps) as coordinator:
        agent, child = report.pids()  # A runs and holds f.py
        seen: dict[str, object] = {}

        def after() -> None:
            seen["alive"] = [alive(agent), alive(child)]
            seen["at"] = time.time_ns()

        with TaskQueue(1, repo=tmp_path) as queue:
            future = queue.submit_task(AgentTask("b", "after", ["f.py"], after, id="B"))
            coordinator.kill()
            coordinator.wait(WAIT)
            future.result(timeout=WAIT)
    assert seen["alive"] == [False, False]
    assert max(_stamps(stamps)) < seen["at"]  # nothing of A wrote after B started


def test_a_killed_supervisor_stops_the_agents_and_fails_the_task_once_they_are_gone(
    tmp_path: Path, report: Report
) -> None:
    with _coordinator(tmp_path, report, "ignore-term", tmp_path / "stamps") as coordinator:
        agent, child = report.pids()
        supervisor = next(p for p in psutil.Process(coordinator.pid).children() if p.name() == "pm-supervisor")
        supervisor.kill()
        out, _ = coordinator.communicate(timeout=WAIT)
        assert coordinator.returncode == 0
    assert out.startswith("outcome: SupervisorError: the supervisor process")
    assert not alive(agent)
    assert not alive(child)


def test_signal_exactly_never_signals_a_process_that_took_a_pid_since(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        proc = read_proc(sleeper.pid)
        assert proc is not None
        impostor = Proc(proc.pid, proc.ppid, proc.pgid, proc.start + 1, proc.state)  # "the process that had the pid"
        signal_exactly(impostor, signal.SIGKILL)
        assert sleeper.poll() is None
        signal_exactly(proc, signal.SIGKILL)
        assert sleeper.wait(WAIT) == -signal.SIGKILL
    finally:
        sleeper.kill()
        sleeper.wait()


def test_frames_split_a_stream_cut_anywhere() -> None:
    data = frame("started", 1, 2) + frame("ended", 1, -15) + frame("x", b"\x00" * 70_000)
    for cut in (1, 3, 4, 7, 30, len(data) - 1):
        frames = Frames()
        assert frames.feed(data[:cut]) + frames.feed(data[cut:]) == [
            ("started", 1, 2),
            ("ended", 1, -15),
            ("x", b"\x00" * 70_000),
        ]
