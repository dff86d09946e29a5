"""``hooks:`` of project-manager.yaml: read as argvs with file, line and field errors; run by
HookRunner on a thread of its own as tasks end, then once at the run's end, each with the
``PM_*`` environment and its JSON on stdin; a failing hook is a warning, never the run's."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from cli.config import ConfigError
from cli.config_files import load_repo_config
from cli.hooks import HOOK_TIMEOUT_S, HookRunner, Hooks
from cli.notify import ON_FINISH_TIMEOUT_S, run_command
from queue_core import TaskEvent, TaskState
from tests.conftest import WAIT, eventually

from .test_notify import _gone
from .test_readme import blocks

#: A hook that writes what it got (its argv, the PM_* variables, its stdin, where it ran) to
#: ``<dir>/<first argument>-<PM_TASK_ID or run>.json``; the directory is its second argument.
RECORDER = """\
import json, os, sys
name = f"{sys.argv[1]}-{os.environ.get('PM_TASK_ID', 'run')}.json"
got = {"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith("PM_")},
       "stdin": sys.stdin.read(), "cwd": os.getcwd()}
with open(os.path.join(sys.argv[2], name + ".tmp"), "w") as f:
    json.dump(got, f)
os.replace(os.path.join(sys.argv[2], name + ".tmp"), os.path.join(sys.argv[2], name))
"""


def _hooks(tmp_path: Path, text: str) -> Hooks:
    (tmp_path / "project-manager.yaml").write_text(text)
    return load_repo_config(tmp_path).hooks


# --- loading ---------------------------------------------------------------------------------


def test_hooks_are_lists_of_argvs_per_event(tmp_path: Path) -> None:
    hooks = _hooks(
        tmp_path,
        "hooks:\n  task_end: [[notify-send, 'task {x} ended']]\n  run_end:\n    - [a]\n    - [sh, -c, 'b \"$1\"']\n",
    )
    assert hooks == Hooks(task_end=(("notify-send", "task {x} ended"),), run_end=(("a",), ("sh", "-c", 'b "$1"')))
    assert hooks.timeout_s == HOOK_TIMEOUT_S == ON_FINISH_TIMEOUT_S


def test_no_hooks_null_hooks_and_null_events_are_none(tmp_path: Path) -> None:
    assert not _hooks(tmp_path, "keep_runs: 3\n")
    assert not _hooks(tmp_path, "hooks:\n")
    assert _hooks(tmp_path, "hooks: {task_end: , run_end: [], timeout: 3s}\n") == Hooks(timeout_s=3.0)


def test_a_timeout_is_a_duration(tmp_path: Path) -> None:
    assert _hooks(tmp_path, "hooks: {run_end: [[x]], timeout: 1m30s}\n").timeout_s == 90.0


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "hooks: [[notify-send, done]]\n",
            "1: hooks: expected a mapping of events to commands, {task_end: [[program, args...]], "
            "run_end: [[program, args...]]}, got a list",
        ),
        (
            "hooks:\n  task_ends: [[x]]\n",
            "2: hooks.task_ends: unknown key 'task_ends' (did you mean 'task_end'?); "
            "expected one of: task_end, run_end, timeout",
        ),
        ("hooks:\n  on_end: [[x]]\n", "2: hooks.on_end: unknown key 'on_end' (did you mean 'run_end'?)"),
        (
            "hooks:\n  run_end: notify-send done\n",
            "2: hooks.run_end: expected a list of commands, [[program, args...], ...], got a string 'notify-send done'",
        ),
        (
            "hooks:\n  task_end: [notify-send, done]\n",
            "2: hooks.task_end: expected a list of commands, [[program, args...], ...], got a list of strings "
            "(for one command, write [[notify-send, done]])",
        ),
        (
            "hooks:\n  task_end:\n    - [a]\n    - notify-send done\n",
            "4: hooks.task_end[1]: expected a command as a list, [program, args...] (no shell runs it), "
            "got a string 'notify-send done'",
        ),
        ("hooks:\n  run_end: [[]]\n", "2: hooks.run_end[0]: must not be empty: give [program, args...]"),
        ("hooks:\n  run_end: [[a, {b: c}]]\n", "2: hooks.run_end[0][1]: expected a string, got a mapping"),
        ("hooks:\n  run_end: [[a, null]]\n", "2: hooks.run_end[0][1]: expected a string, got nothing (null)"),
        ("hooks:\n  run_end: [[a]]\n  timeout: soon\n", "3: hooks.timeout: expected a duration like 90s"),
        ("hooks:\n  run_end: [[a]]\n  run_end: [[b]]\n", "3: hooks.run_end: duplicate key 'run_end' (first at line 2)"),
    ],
)
def test_a_bad_hooks_names_the_file_line_and_field(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        _hooks(tmp_path, text)
    assert str(info.value).startswith(f"{tmp_path / 'project-manager.yaml'}:{error}")


def test_the_readme_examples_load_and_work(tmp_path: Path) -> None:
    """The desktop notification and the Slack webhook of the README, as pasted, with a
    notify-send and a curl that record what they were given."""
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (apt-get install jq): the README's Slack example uses it")
    (example,) = [block for block in blocks("yaml") if "hooks:" in block]
    hooks = _hooks(tmp_path, example)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("notify-send", "curl"):
        (bin_dir / tool).write_text(
            f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/{tool}.args\ncat > {tmp_path}/{tool}.in\n'
        )
        (bin_dir / tool).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLACK_WEBHOOK_URL": "https://hooks.example.invalid/T0",
    }
    ((task_end,), (run_end,)) = (hooks.task_end, hooks.run_end)
    assert run_command(task_end, tmp_path, {**env, "PM_STATUS": "succeeded", "PM_TASK_ID": "t1"}, WAIT) is None
    assert not (tmp_path / "notify-send.args").exists()
    assert run_command(task_end, tmp_path, {**env, "PM_STATUS": "failed", "PM_TASK_ID": "t2"}, WAIT) is None
    assert (tmp_path / "notify-send.args").read_text() == "project-manager: t2 failed\n"
    report = {"run_id": "r-1", "tasks": [{"id": "t1", "status": "succeeded"}, {"id": "t2", "status": "failed"}]}
    assert run_command(run_end, tmp_path, env, WAIT, stdin=json.dumps(report).encode()) is None
    assert json.loads((tmp_path / "curl.in").read_text()) == {"text": "project-manager run r-1: 1/2 tasks succeeded"}
    assert (tmp_path / "curl.args").read_text().splitlines()[-1] == "https://hooks.example.invalid/T0"
    assert hooks.timeout_s == 30.0


# --- HookRunner ------------------------------------------------------------------------------


class Warnings(list[str]):
    """The warnings a runner gave, in a list; a test may wait for the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def __call__(self, text: str) -> None:
        with self.changed:
            self.append(text)
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[str]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self) >= count, WAIT), f"{count} warnings never came: {self}"
            return list(self)


def _event(task_id: str, kind: str = "succeeded") -> TaskEvent:
    return TaskEvent(kind, task_id, "shell", 0.0, 1)


def _runner(
    tmp_path: Path, hooks: Hooks, warn: Warnings, objects: dict[str, dict[str, Any]] | None = None
) -> HookRunner:
    """A runner for tasks t1, t2 and t3, each described as {"id", "status", "exit_code", "log"}."""
    objects = objects or {
        tid: {"id": tid, "status": "succeeded", "exit_code": 0, "log": f"/logs/{tid}.log"} for tid in ("t1", "t2", "t3")
    }
    env = {tid: {"PM_TASK_ID": tid, "PM_AGENT": "shell", "PM_RUN_ID": "r-1"} for tid in objects}
    return HookRunner(hooks, tmp_path, "r-1", env, lambda ids: {tid: objects[tid] for tid in ids}, warn)


def _recorder(tmp_path: Path, name: str) -> tuple[str, ...]:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return (sys.executable, str(script), name, str(out))


def _got(tmp_path: Path, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((tmp_path / "out" / f"{name}.json").read_text())
    return result


def _finish(runner: HookRunner, report: str = "{}", code: int = 0) -> None:
    runner.run_end(lambda: report, code, [TaskState.SUCCEEDED], lambda finish: finish() and None)


def test_task_end_hooks_get_the_task_and_run_end_hooks_the_run(tmp_path: Path) -> None:
    hooks = Hooks(task_end=(_recorder(tmp_path, "a"), _recorder(tmp_path, "b")), run_end=(_recorder(tmp_path, "r"),))
    objects = {"t1": {"id": "t1", "status": "failed", "exit_code": 3, "log": "/l/t1.log", "error": "no"}}
    runner = _runner(tmp_path, hooks, warn := Warnings(), objects)
    runner.task_ended(_event("t1", "failed"))
    _finish(runner, '{"run_id": "r-1"}', code=1)
    for name in ("a", "b"):
        got = _got(tmp_path, f"{name}-t1")
        assert got["argv"] == [name, str(tmp_path / "out")]
        assert json.loads(got["stdin"]) == objects["t1"]
        assert got["env"] == {
            "PM_TASK_ID": "t1",
            "PM_AGENT": "shell",
            "PM_RUN_ID": "r-1",
            "PM_STATUS": "failed",
            "PM_EXIT_CODE": "3",
            "PM_LOG": "/l/t1.log",
        }
        assert Path(got["cwd"]) == tmp_path
    run = _got(tmp_path, "r-run")
    assert run["stdin"] == '{"run_id": "r-1"}\n'
    assert run["env"] == {
        "PM_RUN_ID": "r-1",
        "PM_STATUS": "failed",
        "PM_EXIT_CODE": "1",
        "PM_TOTAL": "1",
        "PM_SUCCEEDED": "1",
        "PM_FAILED": "0",
    }
    assert warn == []


def test_a_task_that_never_ran_has_an_empty_exit_code_and_log(tmp_path: Path) -> None:
    objects = {"t1": {"id": "t1", "status": "skipped", "exit_code": None, "log": None}}
    runner = _runner(tmp_path, Hooks(task_end=(_recorder(tmp_path, "a"),)), Warnings(), objects)
    runner.task_ended(_event("t1", "skipped"))
    _finish(runner)
    env = _got(tmp_path, "a-t1")["env"]
    assert (env["PM_STATUS"], env["PM_EXIT_CODE"], env["PM_LOG"]) == ("skipped", "", "")


def test_events_that_end_no_task_run_no_hook(tmp_path: Path) -> None:
    runner = _runner(tmp_path, Hooks(task_end=(_recorder(tmp_path, "a"),)), Warnings())
    for kind in ("started", "retrying", "paused"):
        runner.task_ended(_event("t1", kind))
    _finish(runner)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_slow_hook_never_holds_up_the_caller_and_hooks_run_in_order(tmp_path: Path) -> None:
    """task_ended only queues: it returns while the first hook waits on a FIFO nobody opened yet."""
    os.mkfifo(gate := tmp_path / "gate")
    order = tmp_path / "order"
    waits = ("sh", "-c", f'[ "$PM_TASK_ID" != t1 ] || read x < {gate}; echo "$PM_TASK_ID" >> {order}')
    runner = _runner(tmp_path, Hooks(task_end=(waits,)), warn := Warnings())
    runner.task_ended(_event("t1"))
    writer: list[int] = []

    def hook_waits() -> bool:
        """Whether the hook of t1 has the FIFO open, blocked on it: a writer may open it then."""
        try:
            writer.append(os.open(gate, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: no reader yet
            return False
        return True

    eventually("the hook of t1 to wait on the FIFO", hook_waits)
    runner.task_ended(_event("t2"))  # returns at once, though the hook of t1 is blocked
    runner.task_ended(_event("t3"))
    assert not order.exists()
    os.write(writer[0], b"go\n")
    os.close(writer[0])
    _finish(runner)
    assert order.read_text().split() == ["t1", "t2", "t3"]
    assert warn == []


def test_a_failing_hook_is_a_warning_naming_it_and_the_next_hooks_still_run(tmp_path: Path) -> None:
    fails = (sys.executable, "-c", "import sys; print('noise', file=sys.stderr); sys.exit('no display')")
    missing = ("no-such-program-pm",)
    hooks = Hooks(task_end=(fails, _recorder(tmp_path, "a")), run_end=(missing, _recorder(tmp_path, "r")))
    runner = _runner(tmp_path, hooks, warn := Warnings())
    runner.task_ended(_event("t2"))
    _finish(runner)
    assert warn[0].startswith("hook task_end[0] (")
    assert warn[0].endswith(") for task t2: exited with code 1: no display")
    assert warn[1] == "hook run_end[0] (no-such-program-pm): could not start: No such file or directory"
    assert len(warn) == 2
    assert (tmp_path / "out" / "a-t2.json").exists()
    assert (tmp_path / "out" / "r-run.json").exists()


def test_a_hook_past_its_timeout_is_killed_with_the_child_it_left(tmp_path: Path) -> None:
    hangs = ("sh", "-c", f"sleep 60 & echo $! > {tmp_path / 'child'}; wait")
    runner = _runner(tmp_path, Hooks(task_end=(hangs,), timeout_s=0.5), warn := Warnings())
    runner.task_ended(_event("t1"))
    _finish(runner)
    assert warn == [f"hook task_end[0] ({shlex.join(hangs)}) for task t1: did not end within 0.5s and was killed"]
    eventually("its child to be killed", lambda: _gone(int((tmp_path / "child").read_text())))


def test_stop_kills_the_hook_that_runs_and_drops_those_queued(tmp_path: Path) -> None:
    started = tmp_path / "started"
    hangs = ("sh", "-c", f'echo "$PM_TASK_ID" >> {started}; sleep 60 & echo $! > {tmp_path / "child"}; wait')
    runner = _runner(tmp_path, Hooks(task_end=(hangs,), run_end=(_recorder(tmp_path, "r"),)), warn := Warnings())
    runner.task_ended(_event("t1"))
    runner.task_ended(_event("t2"))
    eventually("the first hook to start", lambda: (tmp_path / "child").exists())
    runner.stop(signal.SIGINT, wait=True)  # returns once the hook is killed, its warning given
    runner.task_ended(_event("t3"))  # after a stop, nothing more is queued
    assert warn == [f"hook task_end[0] ({shlex.join(hangs)}) for task t1: was stopped: interrupted by SIGINT"]
    eventually("its child to be killed", lambda: _gone(int((tmp_path / "child").read_text())))
    _finish(runner)  # nothing left to run: not even run_end
    assert started.read_text().split() == ["t1"]
    assert not (tmp_path / "out" / "r-run.json").exists()
    assert len(warn) == 1


def test_a_signal_while_waiting_for_the_task_end_hooks_stops_them_and_run_end_is_not_run(tmp_path: Path) -> None:
    hangs = ("sh", "-c", f"echo $$ > {tmp_path / 'pid'}; exec sleep 60")
    runner = _runner(tmp_path, Hooks(task_end=(hangs,), run_end=(_recorder(tmp_path, "r"),)), warn := Warnings())
    runner.task_ended(_event("t1"))

    def interrupted(finish: Any) -> int:
        """As Signals.wait_for does when Ctrl-C comes while it waits: ``finish`` runs on."""
        threading.Thread(target=finish, daemon=True).start()
        eventually("the hook to start", lambda: (tmp_path / "pid").exists())
        return signal.SIGTERM

    runner.run_end(lambda: "{}", 0, [], interrupted)
    assert warn.wait_for(1)[0].endswith("for task t1: was stopped: interrupted by SIGTERM")
    eventually("the hook to be killed", lambda: _gone(int((tmp_path / "pid").read_text())))
    assert not (tmp_path / "out" / "r-run.json").exists()


def test_warnings_held_while_the_output_closes_come_out_after(tmp_path: Path) -> None:
    fails = ("false",)
    runner = _runner(tmp_path, Hooks(task_end=(fails,)), during := Warnings())
    runner.warn_to(None)  # the run's output is closing
    runner.task_ended(_event("t1"))
    _finish(runner)
    assert during == []
    runner.warn_to(after := Warnings())
    assert after == ["hook task_end[0] (false) for task t1: exited with code 1"]


def test_the_run_report_is_made_only_when_a_run_end_hook_needs_it(tmp_path: Path) -> None:
    def report() -> str:
        raise AssertionError("made for nothing")

    runner = _runner(tmp_path, Hooks(task_end=(("true",),)), Warnings())
    runner.run_end(report, 0, [], lambda finish: finish() and None)


def test_a_describe_that_fails_is_a_warning_and_the_next_tasks_hooks_still_run(tmp_path: Path) -> None:
    calls: list[int] = []

    def describe(ids: Collection[str]) -> dict[str, dict[str, Any]]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk gone")
        return {tid: {"id": tid, "status": "succeeded", "exit_code": 0, "log": None} for tid in ids}

    hooks = Hooks(task_end=(_recorder(tmp_path, "a"),))
    runner = HookRunner(
        hooks, tmp_path, "r-1", {t: {"PM_TASK_ID": t} for t in ("t1", "t2")}, describe, warn := Warnings()
    )
    runner.task_ended(_event("t1"))
    warn.wait_for(1)
    runner.task_ended(_event("t2"))
    _finish(runner)
    assert re.fullmatch(r"task_end hooks for task t1 not run: .*disk gone.*", warn[0]), warn
    assert (tmp_path / "out" / "a-t2.json").exists()
