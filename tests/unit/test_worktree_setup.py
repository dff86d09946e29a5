"""A worktree's setup commands (queue_core.worktree_setup): run in it, logged, failures raised."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from queue_core.errors import InvalidArgumentError, SetupError
from queue_core.worktree_setup import Setup, run_setup

from ..conftest import WAIT, eventually


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    path = tmp_path / "wt"
    path.mkdir()
    return path


def test_commands_run_in_the_worktree_with_the_task_s_environment(worktree: Path, tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    log.write_text("earlier output\n")
    commands = [
        ["sh", "-c", 'echo "installing in $(pwd)"; echo "port $PM_PORT_BASE"'],
        ["sh", "-c", "echo made > made.txt; echo to stderr >&2"],
    ]
    run_setup(worktree, commands, log, {"PM_WORKTREE": str(worktree), "PM_PORT_BASE": "20010"})

    text = log.read_text()
    assert text.startswith("earlier output\n")  # appended to, never truncated
    assert f"installing in {worktree}" in text
    assert "port 20010" in text
    assert "to stderr" in text
    assert "$ sh -c 'echo made > made.txt; echo to stderr >&2'" in text
    assert (worktree / "made.txt").read_text() == "made\n"


def test_a_failing_command_fails_the_setup_with_its_log(worktree: Path, tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    commands = [["sh", "-c", "echo first"], ["sh", "-c", "echo npm ERR! no lockfile; exit 3"], ["touch", "never"]]
    with pytest.raises(SetupError) as caught:
        run_setup(worktree, commands, log, {})
    error = caught.value
    assert error.command == ("sh", "-c", "echo npm ERR! no lockfile; exit 3")
    assert error.exit_code == 3
    assert error.log == log
    assert str(error) == (
        "setup command 'sh -c echo npm ERR! no lockfile; exit 3' exited with code 3; its output is in " + str(log)
    )
    text = log.read_text()
    assert "first\n" in text
    assert "npm ERR! no lockfile" in text
    assert "[project-manager] setup command exited with code 3: the task fails" in text
    assert not (worktree / "never").exists()  # the setup stopped at the first failure


def test_a_missing_program_fails_the_setup(worktree: Path, tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    with pytest.raises(SetupError, match="could not start") as caught:
        run_setup(worktree, [["no-such-program-pm-test", "install"]], log, {})
    assert caught.value.exit_code is None
    assert "could not start" in log.read_text()


def test_a_command_past_its_timeout_is_stopped(worktree: Path, tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    with pytest.raises(SetupError, match=r"timed out after 0\.3s") as caught:
        Setup(worktree, [["sleep", "60"]], log, {}, timeout_s=0.3, grace_s=0.5).run()
    assert caught.value.exit_code is not None
    assert caught.value.exit_code < 0  # killed by a signal
    assert "timed out after 0.3s" in log.read_text()


def test_stop_ends_the_setup_from_another_thread(worktree: Path, tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    setup = Setup(worktree, [["sh", "-c", "echo started > started; exec sleep 60"], ["touch", "never"]], log, {})
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            setup.run()
        except BaseException as exc:  # noqa: BLE001 - checked in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    eventually("the setup command to start", (worktree / "started").exists)
    setup.stop()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert isinstance(box.get("error"), SetupError)
    assert "was stopped" in str(box["error"])
    assert not (worktree / "never").exists()


def test_a_setup_stopped_before_it_runs_runs_nothing(worktree: Path, tmp_path: Path) -> None:
    setup = Setup(worktree, [["touch", "never"]], tmp_path / "t1.log", {})
    setup.stop()
    with pytest.raises(SetupError, match="was not run"):
        setup.run()
    assert not (worktree / "never").exists()


@pytest.mark.parametrize("commands", [["npm ci"], [[]], [["ok", 3]], "npm ci"])
def test_a_command_must_be_an_argv_never_a_shell_string(worktree: Path, tmp_path: Path, commands: object) -> None:
    with pytest.raises(InvalidArgumentError, match="non-empty list of strings"):
        Setup(worktree, commands, tmp_path / "t1.log", {})  # type: ignore[arg-type]


def test_a_log_that_is_a_symlink_is_not_written_through(worktree: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("untouched\n")
    log = tmp_path / "t1.log"
    log.symlink_to(target)
    with pytest.raises(SetupError):
        run_setup(worktree, [["sh", "-c", "echo hi"]], log, {})
    assert target.read_text() == "untouched\n"
