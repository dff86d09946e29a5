"""``--notify``'s ``on_finish:`` command: read from project-manager.yaml as an argv, run with the
run's outcome in its environment, bounded in time; its failure is a warning, never the run's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil
import pytest

from cli.config import ConfigError
from cli.config_files import load_repo_config
from cli.notify import Notify, run_command
from queue_core import TaskState
from tests.conftest import WAIT, eventually

#: An on_finish command that writes the environment it was given to ``finish.json``.
RECORD = (sys.executable, "-c", "import json, os; json.dump(dict(os.environ), open('finish.json', 'w'))")


def _config(tmp_path: Path, text: str) -> tuple[str, ...]:
    (tmp_path / "project-manager.yaml").write_text(text)
    return load_repo_config(tmp_path).on_finish


def test_on_finish_is_an_argv(tmp_path: Path) -> None:
    assert _config(tmp_path, "on_finish: [notify-send, 'run ended: {x}']\n") == ("notify-send", "run ended: {x}")
    assert _config(tmp_path, "keep_runs: 3\n") == ()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "agents: {}\non_finish: notify-send done\n",
            "2: on_finish: expected a command as a list, [program, args...] (no shell runs it), "
            "got a string 'notify-send done'",
        ),
        ("on_finish: []\n", "1: on_finish: must not be empty: give [program, args...]"),
        ("on_finish:\n  - sh\n  -\n", "3: on_finish[1]: expected a string, got nothing (null)"),
        ("on_finish: {command: [x]}\n", "1: on_finish: expected a command as a list, [program, args...] (no shell "),
    ],
)
def test_a_bad_on_finish_names_the_file_line_and_field(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, text)
    assert str(info.value).startswith(f"{tmp_path / 'project-manager.yaml'}:{error}")


def test_the_command_learns_how_the_run_ended_from_its_environment(tmp_path: Path) -> None:
    outcomes = [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.TIMED_OUT, TaskState.SKIPPED]
    Notify(RECORD, tmp_path)("r-1", 1, outcomes)
    env = json.loads((tmp_path / "finish.json").read_text())
    assert {k: v for k, v in env.items() if k.startswith("PM_")} == {
        "PM_RUN_ID": "r-1",
        "PM_EXIT_CODE": "1",
        "PM_TOTAL": "4",
        "PM_SUCCEEDED": "1",
        "PM_FAILED": "2",
    }


def test_a_failing_command_is_a_warning_with_its_last_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = (sys.executable, "-c", "import sys; print('noise', file=sys.stderr); sys.exit('no display')")
    Notify(failing, tmp_path)("r-1", 0, [TaskState.SUCCEEDED])
    err = capsys.readouterr().err
    assert err.startswith("project-manager: warning: on_finish (")
    assert err.rstrip().endswith("exited with code 1: no display; the run's exit code stands")


def test_a_command_killed_by_a_signal_is_said_so_as_an_agent_is(tmp_path: Path) -> None:
    """Before: "was killed by signal 9", where an agent's error names the signal (SIGKILL)."""
    assert run_command(("sh", "-c", "kill -9 $$"), tmp_path, {}, 5.0) == "was killed by signal 9 (SIGKILL)"


def test_a_missing_program_is_said_so(tmp_path: Path) -> None:
    problem = run_command(("no-such-program-pm",), tmp_path, {}, 5.0)
    assert problem == "could not start: No such file or directory"


def test_a_command_that_does_not_end_is_killed_with_its_group(tmp_path: Path) -> None:
    hangs = ("sh", "-c", "sleep 60 & echo $! > child; wait")
    assert run_command(hangs, tmp_path, {}, 1.0) == "did not end within 1s and was killed"
    child = int((tmp_path / "child").read_text())
    eventually("its child to be killed", lambda: _gone(child))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_command_reads_its_input_whole(tmp_path: Path) -> None:
    data = b"x" * 300_000 + b"\n"
    copy = (sys.executable, "-c", "import sys; open('got', 'wb').write(sys.stdin.buffer.read())")
    assert run_command(copy, tmp_path, {}, WAIT, stdin=data) is None
    assert (tmp_path / "got").read_bytes() == data


def test_a_command_that_never_reads_a_big_input_neither_blocks_nor_is_blocked(tmp_path: Path) -> None:
    """The input is a file, not a pipe: nothing waits for a reader that never comes."""
    assert run_command(("true",), tmp_path, {}, WAIT, stdin=b"{}" * 1_000_000) is None
    # One that exits before it could have read anything, and one that stops reading halfway.
    assert run_command(("sh", "-c", "head -c 10 >/dev/null"), tmp_path, {}, WAIT, stdin=b"y" * 1_000_000) is None


def test_without_input_a_command_reads_nothing(tmp_path: Path) -> None:
    assert run_command(("sh", "-c", 'test -z "$(cat)"'), tmp_path, {}, WAIT) is None
