"""The supervisor, with real processes: no claim outlives the agent's control, no agent outlives its claim.

Each agent here (``fake_agents/family.py``) leaves a descendant that tries to outlive it: in
the background, ignoring SIGTERM, in a session of its own, or orphaned by a double fork. A
second task on the same file checks, the moment it starts, that none of the first task's
processes is still alive. Nothing here waits by sleeping: processes report through a FIFO,
and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
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

from queue_core import AgentTask, SubprocessAgent, TaskQueue, TaskTimeoutError
from queue_core._supervisor.proctree import Proc, _process_table_from_ps, read_proc, signal_exactly
from queue_core._supervisor.wire import Frames, frame
from queue_core.errors import AgentExitError, SupervisorError
from queue_core.processes import ProcessId
from queue_core.supervisor import PROCESS_NAMES, shared_supervisor

from ..conftest import WAIT, eventually

FAKE_AGENTS = Path(__file__).parent.parent / "fake_agents"
FAMILY = FAKE_AGENTS / "family.py"
COORDINATOR = FAKE_AGENTS / "coordinator.py"
MODES = ["background", "ignore-term", "setsid", "double-fork", "thread-leader"]


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
    """Whether ``pid`` runs: a zombie does not, unless it is a main thread whose others run on."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE or process.num_threads() > 1
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
def _coordinator(repo: Path, report: Report, mode: str, stamps: Path, *options: str) -> Iterator[subprocess.Popen[str]]:
    """``coordinator.py`` running task A; killed on the way out if it still runs."""
    with subprocess.Popen(
        [sys.executable, str(COORDINATOR), str(repo), str(report.path), mode, str(stamps), *options],
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


@pytest.mark.parametrize(
    ("mode", "victims"),
    [("ignore-term", "run"), ("double-fork", "run"), ("ignore-term", "run and supervisor")],
)
def test_a_killed_runs_claims_are_held_until_its_agents_are_gone(
    tmp_path: Path, report: Report, mode: str, victims: str
) -> None:
    """Before: kill -9 of a run freed its claims at once while its agents went on writing; and
    with its supervisor killed too, they were dropped while the keepers still stopped them."""
    stamps = tmp_path / "stamps"
    with _coordinator(tmp_path, report, mode, stamps) as coordinator:
        agent, child = report.pids()  # A runs and holds f.py
        seen: dict[str, object] = {}

        def after() -> None:
            seen["alive"] = [alive(agent), alive(child)]
            seen["at"] = time.time_ns()

        with TaskQueue(1, repo=tmp_path) as queue:
            future = queue.submit_task(AgentTask("b", "after", ["f.py"], after, id="B"))
            supervisor = _supervisor_of(coordinator.pid)
            coordinator.kill()
            if victims == "run and supervisor":
                supervisor.kill()
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
    assert out.split(" ", 2)[2].startswith("SupervisorError: the supervisor process")
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


def _supervisor_of(coordinator: int) -> psutil.Process:
    return next(p for p in psutil.Process(coordinator).children() if p.name() == "pm-supervisor")


# An agent that, as its first act (sh starts in a millisecond), looks for its own process group
# in its run's groups file, where a line reads {"task":"...","pgid":N,"ticks":T}.
FIRST_LOOK = 'grep -q "\\"pgid\\":$$," .project-manager/runs/*.groups'


def _looker(tmp_path: Path, task_id: str, script: str = FIRST_LOOK) -> SubprocessAgent:
    return SubprocessAgent(["sh", "-c", script], tmp_path, tmp_path / f"{task_id}.log")


def test_an_agent_runs_only_once_its_process_group_is_on_record(tmp_path: Path) -> None:
    """Before: the group was recorded some milliseconds after the agent started; had the run, its
    supervisor and its keepers all been killed then, the agent would have run on with no claim."""
    with TaskQueue(4, repo=tmp_path) as queue:
        futures = [
            queue.submit_task(AgentTask(f"a{i % 4}", "look", [f"f{i}"], _looker(tmp_path, f"t{i}"), id=f"t{i}"))
            for i in range(40)
        ]
        assert [f.result(timeout=WAIT) for f in futures] == [0] * 40


def test_a_retry_records_its_own_process_group_not_the_failed_attempts(tmp_path: Path) -> None:
    """Before: the hold kept the first attempt's (dead) group while the second attempt ran."""
    agent = _looker(tmp_path, "r", f"if [ ! -e once ]; then touch once; exit 1; fi; {FIRST_LOOK}")
    with TaskQueue(1, repo=tmp_path) as queue:
        future = queue.submit_task(AgentTask("a", "fails once", ["f"], agent, id="r", retries=1, retry_delay=0.0))
        assert future.result(timeout=WAIT) == 0


def test_an_agent_whose_run_supervisor_and_keeper_were_all_killed_keeps_its_claim(
    tmp_path: Path, report: Report
) -> None:
    """The hold names the agent's process group: while a process of it lives, the claim holds."""
    with _coordinator(tmp_path, report, "ignore-term", tmp_path / "stamps") as coordinator:
        agent, child = report.pids()  # the child ignores SIGTERM and stays in the agent's group
        keeper = psutil.Process(agent).ppid()
        ran = threading.Event()
        with TaskQueue(1, repo=tmp_path) as queue:
            future = queue.submit_task(AgentTask("b", "after", ["f.py"], ran.set, id="B"))
            for victim in (coordinator.pid, _supervisor_of(coordinator.pid).pid, keeper):
                os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + WAIT  # B says why it waits once it has looked (every second)
            while "so did its supervisor" not in (reason := _reason(queue, "B")):
                assert time.monotonic() < deadline, reason
                select.select([], [], [], 0.05)
            assert not ran.is_set()
            for pid in (agent, child):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            future.result(timeout=WAIT)


def _reason(queue: TaskQueue, task_id: str) -> str:
    return next((t.reason for t in queue.get_status().waiting if t.id == task_id), "")


def test_a_relative_directory_and_log_are_the_callers_not_a_reused_keepers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the second task ran in sub/sub, since its keeper had gone into sub for the first."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    for _ in range(2):
        assert SubprocessAgent(["sh", "-c", "pwd > where"], Path("sub"), Path("sub/log"))() == 0
        assert (tmp_path / "sub" / "where").read_text().strip() == str(tmp_path / "sub")
    assert (tmp_path / "sub" / "log").read_text().count("$ ") == 2


def test_a_keeper_ended_with_sigterm_stops_its_task_and_takes_no_other(tmp_path: Path, report: Report) -> None:
    """Before: it was handed the next task as it exited, and 170 of 300 later tasks failed."""
    with TaskQueue(2) as queue:
        first = queue.submit_task(AgentTask("a", "family", ["f.py"], family(tmp_path, report, "background", "wait")))
        # Queued now, so that each end hands the next task out at once, to whichever keeper is free.
        later = [
            queue.submit_task(AgentTask("b", "t", [f"t{i}"], SubprocessAgent(["true"], tmp_path, tmp_path / "t.log")))
            for i in range(40)
        ]
        agent, _ = report.pids()
        os.kill(psutil.Process(agent).ppid(), signal.SIGTERM)
        with pytest.raises(AgentExitError, match="killed by signal 15"):
            first.result(timeout=WAIT)
        assert [f.result(timeout=WAIT) for f in later] == [0] * 40


def test_an_idle_keeper_ended_with_sigterm_hands_its_next_task_to_another(tmp_path: Path) -> None:
    agents = [SubprocessAgent(["true"], tmp_path, tmp_path / f"{i}.log") for i in range(60)]
    assert agents[0]() == 0
    supervisor = psutil.Process(shared_supervisor().pid)
    for keeper in supervisor.children():
        keeper.terminate()  # idle now; the next tasks may be handed to it as it exits
    with TaskQueue(4) as queue:
        futures = [queue.submit_task(AgentTask(f"x{i % 4}", "t", [f"t{i}"], a)) for i, a in enumerate(agents[1:])]
        assert [f.result(timeout=WAIT) for f in futures] == [0] * 59


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_log_path_that_is_no_regular_file_fails_the_task_at_once(tmp_path: Path, kind: str) -> None:
    """Before: a FIFO planted at the log path blocked the keeper in open(), beyond any timeout;
    a symlink sent the log (the command line, the agent's output) into the file it named."""
    log = tmp_path / "task.log"
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious\n")
    if kind == "fifo":
        os.mkfifo(log)
    else:
        log.symlink_to(target)
    with pytest.raises(OSError, match=r"not a regular file|No such device|Too many levels of symbolic links"):
        SubprocessAgent(["true"], tmp_path, log)()
    assert target.read_text() == "precious\n"
    assert SubprocessAgent(["true"], tmp_path, tmp_path / "ok.log")() == 0


def test_commands_exec_would_refuse_fail_alone_and_the_supervisor_goes_on(tmp_path: Path) -> None:
    """Before: an empty command crashed a keeper; a command over 64 MiB crashed the supervisor."""
    with pytest.raises(ValueError, match="empty command"):
        SubprocessAgent([], tmp_path, tmp_path / "e.log")()
    with pytest.raises(ValueError, match="NUL"):
        SubprocessAgent(["echo", "a\0b"], tmp_path, tmp_path / "n.log")()
    with pytest.raises(OSError, match=r"the command and its environment take [\d,]+ bytes") as error:
        SubprocessAgent(["echo", "x" * (70 << 20)], tmp_path, tmp_path / "big.log")()
    assert error.value.errno == errno.E2BIG
    assert SubprocessAgent(["true"], tmp_path, tmp_path / "ok.log")() == 0


def test_the_process_table_from_ps_leaves_out_the_ps_it_ran() -> None:
    """Before: where there is no /proc, ps counted itself as a process the supervisor had to stop."""
    if shutil.which("ps") is None:
        pytest.skip("needs ps")
    table = _process_table_from_ps()
    assert table[os.getpid()].ppid == os.getppid()
    children = {p.pid for p in table.values() if p.ppid == os.getpid()}
    assert children == {child.pid for child in psutil.Process().children()}  # not the ps it ran


def test_a_process_is_known_by_its_start_ticks_whatever_the_wall_clock_did() -> None:
    """Before: identity was psutil's create_time, which moves when the clock is stepped (psutil
    re-reads the boot time): after a step, every live run looked dead and lost its claims."""
    me = ProcessId.of(os.getpid())
    assert me.ticks > 0
    stepped = ProcessId(me.pid, me.started + 3.0, me.ticks)  # as psutil would say after a 3 s step
    assert stepped.alive()
    assert not ProcessId(me.pid, me.started, me.ticks + 1).alive()  # another process with this pid


def test_a_grace_period_of_centuries_neither_overflows_nor_fails_the_task(tmp_path: Path) -> None:
    """Before: the keeper's select() got the grace as its timeout and died of OverflowError."""
    agent = SubprocessAgent(["sh", "-c", "sleep 60 & exit 0"], tmp_path, tmp_path / "g.log", grace_s=1e10)
    assert agent() == 0  # the sleep obeys SIGTERM: no grace is waited out


def _can_unshare_pids() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return done.returncode == 0


@pytest.mark.skipif(not _can_unshare_pids(), reason="needs unshare and the right to make a PID namespace (root)")
def test_a_run_in_another_pid_namespace_keeps_its_claims(tmp_path: Path, report: Report) -> None:
    """Before: its pids (1, 2...) meant other processes here, or none, and its claims were dropped:
    a run outside started on its file while its agent wrote."""
    argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, str(COORDINATOR)]
    with subprocess.Popen([*argv, str(tmp_path), str(report.path), "background", str(tmp_path / "stamps")]) as inner:
        try:
            report.pids()  # A runs, in its own PID namespace
            ran = threading.Event()
            with TaskQueue(1, repo=tmp_path) as queue:
                future = queue.submit_task(AgentTask("b", "after", ["f.py"], ran.set, id="B"))
                deadline = time.monotonic() + WAIT  # B has read the registry, and waits for A's hold
                while "held by a (A in run" not in (reason := _reason(queue, "B")):
                    assert time.monotonic() < deadline, reason
                    select.select([], [], [], 0.01)
                assert not ran.is_set()
                inner.kill()  # unshare kills the namespace's first process, and the kernel all the rest
                inner.wait(WAIT)
                # Its processes cannot be seen from here: the hold is assumed alive (another host's is too).
                future.cancel()
        finally:
            if inner.poll() is None:
                inner.kill()


def test_a_stopped_idle_keeper_holds_up_no_task(tmp_path: Path) -> None:
    """Before: a spawn given to an idle keeper that was stopped blocked the supervisor in write():
    every task of the run stalled, and then the registry lock stayed held."""
    assert SubprocessAgent(["true"], tmp_path, tmp_path / "warm.log")() == 0  # a keeper idles now
    idle = [p for p in psutil.Process(shared_supervisor().pid).children() if p.name() == "pm-keeper"]
    for keeper in idle:
        keeper.suspend()
    # A SIGSTOP is delivered a moment later: until then the keeper still looks idle and ready, and
    # the task handed to it would wait for it (the case this test is about is a keeper that IS stopped).
    eventually("the keepers are stopped", lambda: all(k.status() == psutil.STATUS_STOPPED for k in idle))
    try:
        env = {"PM_TEST_BIG1": "x" * 100_000, "PM_TEST_BIG2": "y" * 100_000}  # more than a pipe holds
        with TaskQueue(2) as queue:
            future = queue.submit_task(
                AgentTask("a", "big", ["f"], SubprocessAgent(["true"], tmp_path, tmp_path / "b.log", env))
            )
            assert future.result(timeout=WAIT) == 0
    finally:
        for keeper in idle:
            keeper.resume()
