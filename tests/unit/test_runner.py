"""SubprocessAgent: argv templates without a shell, process groups, logs, stop and timeouts."""

from __future__ import annotations

import os
import select
import signal
import sys
from concurrent.futures import CancelledError
from pathlib import Path

import psutil
import pytest

from queue_core import AgentTask, TaskQueue, TaskTimeoutError
from queue_core.errors import AgentExitError
from queue_core.runner import SubprocessAgent, render_argv

from ..conftest import WAIT

PY = sys.executable


def test_render_argv_substitutes_once_and_expands_files() -> None:
    argv = render_argv(
        ["agent", "--task={task_id}", "-p", "{description}", "{files}", "--all={files}"],
        description="fix {task_id} and {files}",
        task_id="t1",
        files=["a.py", "b c.py"],
    )
    # Placeholders inside the description stay as the user wrote them.
    assert argv == ["agent", "--task=t1", "-p", "fix {task_id} and {files}", "a.py", "b c.py", "--all=a.py b c.py"]


def test_a_hostile_description_reaches_the_agent_as_plain_text(tmp_path: Path) -> None:
    hostile = "$(touch pwned); rm -rf x `touch pwned2` && echo hi > pwned3"
    script = "import sys; open('seen.txt', 'w').write(sys.argv[1])"
    agent = SubprocessAgent.for_task(
        [PY, "-c", script, "{description}"],
        task_id="t1",
        agent="shellish",
        description=hostile,
        files=[],
        cwd=tmp_path,
        log=tmp_path / "t1.log",
    )
    assert agent() == 0
    assert (tmp_path / "seen.txt").read_text() == hostile
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seen.txt", "t1.log"]


def test_environment_and_log(tmp_path: Path) -> None:
    script = "import os; print(*(os.environ[k] for k in ('PM_TASK_ID', 'PM_AGENT', 'PM_FILES', 'PM_RUN_ID')), sep='|')"
    agent = SubprocessAgent.for_task(
        [PY, "-c", script],
        task_id="t7",
        agent="dev",
        description="d",
        files=["a.py", "b.py"],
        cwd=tmp_path,
        log=tmp_path / "logs" / "t7.log",
        run_id="run-1",
    )
    assert agent() == 0
    log = (tmp_path / "logs" / "t7.log").read_text()
    assert log.splitlines()[0].startswith("$ ")
    assert "t7|dev|a.py\nb.py|run-1" in log


def test_a_non_zero_exit_raises_with_the_code_and_log(tmp_path: Path) -> None:
    agent = SubprocessAgent([PY, "-c", "import sys; print('bad'); sys.exit(3)"], tmp_path, tmp_path / "x.log")
    with pytest.raises(AgentExitError, match="exited with code 3") as error:
        agent()
    assert error.value.exit_code == 3
    assert "bad" in error.value.log.read_text()


def test_a_flood_of_output_is_kept_whole(tmp_path: Path) -> None:
    script = "import sys; [sys.stdout.write('x' * 1023 + '\\n') for _ in range(8192)]"
    agent = SubprocessAgent([PY, "-c", script], tmp_path, tmp_path / "flood.log")
    assert agent() == 0
    lines = (tmp_path / "flood.log").read_text().splitlines()
    assert len(lines) == 1 + 8192  # the command line, then every line of output


# A child that starts a grandchild in its group, reports both pids through a FIFO, then waits.
FAMILY = """
import os, signal, subprocess, sys
if sys.argv[2] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
kid = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
with open(sys.argv[1], "w") as fifo:
    fifo.write(f"{os.getpid()} {kid.pid}\\n")
signal.pause()
"""


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "ready.fifo"
    os.mkfifo(path)
    return path


def read_pids(fifo: Path) -> list[int]:
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        data = b""
        while not data.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], WAIT)
            assert ready, "the agent never reported"
            data += os.read(fd, 100)
        return [int(p) for p in data.split()]
    finally:
        os.close(fd)


@pytest.mark.parametrize(("mode", "signal_seen"), [("obey", signal.SIGTERM), ("ignore-term", signal.SIGKILL)])
def test_stop_ends_the_whole_process_group(tmp_path: Path, fifo: Path, mode: str, signal_seen: int) -> None:
    agent = SubprocessAgent([PY, "-c", FAMILY, str(fifo), mode], tmp_path, tmp_path / "f.log", grace_s=0.2)
    with TaskQueue(max_parallel=1) as queue:
        future = queue.submit_task(AgentTask("a", "family", ["f"], agent, id="family"))
        child, grandchild = read_pids(fifo)
        assert queue.cancel("family") is True
        with pytest.raises(CancelledError):
            future.result(timeout=WAIT)
    assert agent.exit_code == -signal_seen
    for pid in (child, grandchild):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_timeout_kills_the_command_and_releases_its_claims(tmp_path: Path, fifo: Path) -> None:
    agent = SubprocessAgent([PY, "-c", FAMILY, str(fifo), "obey"], tmp_path, tmp_path / "t.log", grace_s=0.2)
    with TaskQueue(max_parallel=2) as queue:
        slow = queue.submit_task(AgentTask("a", "slow", ["shared.py"], agent, timeout=0.3, id="slow"))
        read_pids(fifo)
        after = queue.submit_task(AgentTask("b", "after", ["shared.py"], lambda: "ran", id="after"))
        with pytest.raises(TaskTimeoutError):
            slow.result(timeout=WAIT)
        assert after.result(timeout=WAIT) == "ran"  # claims released once the command died
        assert queue.get_status().counts["timed_out"] == 1


def test_stop_before_start_never_starts_the_command(tmp_path: Path) -> None:
    agent = SubprocessAgent([PY, "-c", "open('started', 'w')"], tmp_path, tmp_path / "s.log")
    agent.stop()
    with pytest.raises(AgentExitError, match="killed by signal"):
        agent()
    assert not (tmp_path / "started").exists()


def test_a_retry_after_a_timeout_runs_the_command_again(tmp_path: Path, fifo: Path) -> None:
    """The stop that ended a timed-out attempt is that attempt's: the retry runs in full."""
    script = f"import os, sys\nif os.path.exists('once'): sys.exit(0)\nopen('once', 'w').close()\n{FAMILY}"
    agent = SubprocessAgent([PY, "-c", script, str(fifo), "obey"], tmp_path, tmp_path / "r.log", grace_s=0.2)
    with TaskQueue(max_parallel=1) as queue:
        future = queue.submit_task(
            AgentTask("a", "hangs once", ["f"], agent, id="r", timeout=0.3, retries=1, retry_delay=0.0)
        )
        read_pids(fifo)  # attempt 1 runs; it will time out and be stopped
        assert future.result(timeout=WAIT) == 0  # attempt 2 ran the command, which exited 0
    assert agent.exit_code == 0
    assert (tmp_path / "r.log").read_text().count("$ ") == 2


def test_a_stop_before_the_start_of_one_attempt_does_not_stop_the_next(tmp_path: Path) -> None:
    agent = SubprocessAgent([PY, "-c", "open('started', 'w')"], tmp_path, tmp_path / "s.log")
    agent.stop()
    with pytest.raises(AgentExitError, match="killed by signal"):
        agent()
    assert agent() == 0
    assert (tmp_path / "started").exists()
