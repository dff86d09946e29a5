"""Hostile unit tests of issue 15: what the installed-command tests in
tests/integration/test_attack_i15.py found, at the level of the functions that decide."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TextIO

import pytest

from cli import github, junit, terminal
from cli.config import ConfigError
from cli.events import check_copy
from cli.hooks import HookRunner, Hooks
from cli.render import SummaryRow
from queue_core import AgentTask, TaskQueue
from queue_core.records import TaskOutcome
from queue_core.statedir import is_inside
from queue_core.task import TaskState, ended_error

from ..conftest import git_repo
from ._state import state
from .test_cli import invoke

__all__ = ["state"]  # a fixture


def _targets(state: Path, outside: Path) -> list[Path]:
    """Paths that land in ``state``: typed, through ``..``, through a symlink, to a file to be."""
    (state / "logs" / "run").mkdir(parents=True)
    (state / "claims.json").write_text("{}")
    link = outside / "link.jsonl"
    link.symlink_to(state / "claims.json")
    dir_link = outside / "state-link"
    dir_link.symlink_to(state)
    return [
        state / "claims.json",
        state / "logs" / "run" / "t1.log",
        state / "logs" / "missing" / ".." / "new.xml",
        state,
        link,
        dir_link / "history.json",
    ]


def test_a_path_in_the_state_directory_is_refused_for_events_and_junit(tmp_path: Path) -> None:
    state = tmp_path / "repo" / ".git" / "project-manager"
    outside = tmp_path / "out"
    outside.mkdir()
    for target in _targets(state, outside):
        assert is_inside(target, state), target
        with pytest.raises(ConfigError, match="is inside the state directory"):
            check_copy(str(target), state)
        with pytest.raises(ConfigError, match="is inside the state directory"):
            junit.check_path(target, state)
    assert (state / "claims.json").read_text() == "{}"


def test_a_path_beside_the_state_directory_is_not_in_it(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {})
    state = repo / ".git" / "project-manager"
    for target in (repo / "events.jsonl", repo / ".git" / "project-manager-2.jsonl", tmp_path / "x.xml"):
        assert not is_inside(target, state), target
        check_copy(str(target), state)
        junit.check_path(target, state)
    check_copy("-", state)  # stdout


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (TaskState.SUCCEEDED, None),
        (TaskState.FAILED, "my own words"),
        (TaskState.TIMED_OUT, "my own words"),
        (TaskState.RATE_LIMITED, "my own words"),
        (TaskState.CANCELLED, "not retried: fail-fast after t3 failed"),
        (TaskState.SKIPPED, "not retried: fail-fast after t3 failed"),
    ],
)
def test_a_task_skipped_or_cancelled_is_told_why_not_its_earlier_error(state: TaskState, expected: str | None) -> None:
    """--json, the journal, ``show``, JUnit and the hooks gave a task that fail-fast cancelled
    while it waited to retry the error its first attempt reported, as if that ended it."""
    assert ended_error(state, "not retried: fail-fast after t3 failed", "my own words") == expected
    assert ended_error(state, None, None) is None


# --- what GitHub's runner obeys --------------------------------------------------------------

#: The commands GitHub's runner knows (actions/runner, src/Runner.Worker/ActionCommandManager.cs
#: and its command extensions), compared without regard to case.
RUNNER_COMMANDS = frozenset(
    {
        *("stop-commands", "set-env", "set-output", "save-state", "add-mask", "add-path", "add-matcher"),
        *("remove-matcher", "warning", "error", "notice", "debug", "group", "endgroup", "echo"),
    }
)


def _v2(line: str, known: frozenset[str]) -> tuple[str, str] | None:
    """ActionCommand.TryParseV2: ``::NAME props::data`` after leading white space."""
    text = line.lstrip()
    end = text.find("::", 2)
    if not text.startswith("::") or end < 0:
        return None
    name = text[2:end].split(" ", 1)[0]
    return (name.lower(), text[end + 2 :]) if name.lower() in known else None


def _v1(line: str, known: frozenset[str]) -> tuple[str, str] | None:
    """ActionCommand.TryParse, the older form: ``##[NAME props]data`` anywhere in the line."""
    start = line.find("##[")
    end = line.find("]", start)
    if start < 0 or end < 0:
        return None
    name = line[start + 3 : end].split(" ", 1)[0]
    return (name.lower(), line[end + 1 :]) if name.lower() in known else None


def runner_obeys(text: str) -> list[tuple[str, str]]:
    """Each (command, data) GitHub's runner would act on in ``text``, read as actions/runner reads
    a step's output (OutputManager, ActionCommandManager): lines split at CR, LF or CRLF; a line
    is a command in either form above; after ``stop-commands`` with data T, only T resumes."""
    obeyed: list[tuple[str, str]] = []
    stop: str | None = None
    for line in re.split(r"\r\n|\r|\n", text):
        known = RUNNER_COMMANDS if stop is None else frozenset({stop.lower()})
        found = _v2(line, known) or _v1(line, known)
        if found is None:
            continue
        obeyed.append(found)
        stop = found[1] if found[0] == "stop-commands" else None
    return obeyed


def test_the_model_of_the_runner_knows_both_forms_and_stop_commands() -> None:
    text = "x ##[add-mask]a\n  ::error::b\r::stop-commands::T\n::error::c\nz ##[warning]d\n##[t]\n::ENDGROUP::"
    assert runner_obeys(text) == [
        ("add-mask", "a"),
        ("error", "b"),
        ("stop-commands", "T"),
        ("t", ""),
        ("endgroup", ""),
    ]


@pytest.mark.parametrize("json_text", [False, True])
def test_defused_text_holds_no_command_of_the_older_form(json_text: bool) -> None:
    """An agent's words in a line of ours (an event line, the summary, --json) could hold
    ``##[add-mask]...``, which the runner obeys anywhere in a line."""
    words = "boom ##[add-mask]hunter2 ###[set-output name=x]y ##[##[error]z"
    line = json.dumps({"error": words}) if json_text else f"12:00:00 FAILED    t1 [dev]: {words}"
    defused = github.defuse(line, json_text=json_text)
    assert runner_obeys(defused) == []
    assert runner_obeys(line) != []
    if json_text:
        assert json.loads(defused) == {"error": words}  # the same object to a JSON reader


# --- show of a run whose record cannot be read -------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "symlink", "newer"])
def test_show_of_a_run_whose_only_record_cannot_be_read_says_why(state: Path, tmp_path: Path, damage: str) -> None:
    """A run that left only its history record, damaged: ``history`` warned why and passed over
    it, but ``show RUN`` said "no run 'RUN' in the state directory", as if nothing were there.
    Now it says what is wrong with the record (exit 1 still: there is no run to show)."""
    run = "20261128-235959-1-aaaaaa"
    record = state / "history" / f"{run}.json"
    if damage == "truncated":
        record.write_text('{"run": "20261128-235959-1-aaaaaa", "started_at": 1, "tasks": [')
    elif damage == "symlink":
        (tmp_path / "elsewhere.json").write_text("{}")
        record.symlink_to(tmp_path / "elsewhere.json")
    else:
        record.write_text(json.dumps({"run": run, "started_at": 1, "ended_at": 2, "tasks": [], "version": 99}))
    code, out, err = invoke("show", run, "--repo", str(state.parent))
    assert (code, out) == (1, "")
    assert str(record) in err, err
    expected = {"truncated": "can be read", "symlink": "a symlink", "newer": "written by a newer project-manager"}
    assert expected[damage] in err, err
    assert "Traceback" not in err


# --- --junit onto a symlink ---------------------------------------------------------------------


def test_junit_onto_a_symlink_writes_its_file_and_keeps_the_link(tmp_path: Path) -> None:
    """``--junit report.xml``, a symlink to where CI collects reports: the report replaced the
    link with a file of its own, and the file CI reads kept its old report (exit 0). Now it is
    written through the link, as ``timeline -o`` writes; the link stays."""
    (tmp_path / "ci").mkdir()
    target = tmp_path / "ci" / "report.xml"
    target.write_text("stale")
    link = tmp_path / "report.xml"
    link.symlink_to(target)
    junit.check_path(link, tmp_path / "state")
    rows = [SummaryRow(TaskOutcome("t1", "dev", "do it", TaskState.SUCCEEDED, 1, 1.0, total_s=1.0))]
    assert junit.write(link, "r1", rows, started_at=1_790_000_000.0, wall_s=1.0) is None
    assert link.is_symlink()
    assert target.read_text().startswith("<?xml")
    assert [p.name for p in (tmp_path / "ci").iterdir()] == ["report.xml"]  # no temporary file left


# --- task_end hooks: each task's object made alone -----------------------------------------------


def test_outcomes_of_some_tasks_are_those_alone() -> None:
    """A task_end hook's object was made from every task's outcome, taken under the queue's lock,
    at each end: 1,000 tasks with a hook of ``true`` took 3x the wall time of the same run
    without (describe: 23 ms a call, growing with the batch; the engine waited meanwhile)."""
    with TaskQueue(max_parallel=2) as queue:
        tasks = [AgentTask(agent, f"do {agent}", [f"{agent}.txt"], lambda: None, id=agent) for agent in "abc"]
        queue.submit_tasks(tasks)
        queue.join()
        assert [o.id for o in queue.outcomes(["c", "a", "unknown"])] == ["c", "a"]
        assert [o.id for o in queue.outcomes()] == ["a", "b", "c"]
        assert queue.outcomes([]) == []


def test_a_task_end_hook_describes_the_tasks_that_ended_alone(tmp_path: Path) -> None:
    asked: list[set[str]] = []

    def rows(ids: Collection[str]) -> list[SummaryRow]:
        asked.append(set(ids))
        return [SummaryRow(TaskOutcome(i, "dev", "", TaskState.SUCCEEDED, 1, 1.0)) for i in sorted(ids)]

    runner = HookRunner.of_run(Hooks(task_end=(("true",),)), tmp_path, "r1", {}, rows, {}, lambda _: None)
    assert list(runner._describe({"t2"})) == ["t2"]  # the object a hook reads
    assert asked == [{"t2"}]


# --- a result that cannot be written ------------------------------------------------------------


@pytest.fixture
def stdout_to(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """``stdout_to(fd)``: sys.stdout writes to the descriptor ``fd`` (a copy, closed afterwards)."""
    opened: list[TextIO] = []

    def to(fd: int) -> None:
        stream = open(os.dup(fd), "w")  # noqa: SIM115 - closed by the fixture
        opened.append(stream)
        monkeypatch.setattr(sys, "stdout", stream)

    yield to
    monkeypatch.undo()
    for stream in opened:
        with contextlib.suppress(OSError):
            stream.close()


@pytest.mark.parametrize("write", ["print_result", "write_bytes"])
def test_output_to_a_full_disk_is_exit_1_and_to_a_reader_gone_141(
    stdout_to: Callable[[int], None], capsys: pytest.CaptureFixture[str], write: str
) -> None:
    def call() -> int | None:
        if write == "print_result":
            return terminal.print_result("the result")
        return terminal.write_bytes(b"the log\n")

    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            stdout_to(full.fileno())
            assert call() == 1
        assert "cannot write the output: No space left on device" in capsys.readouterr().err
    read, write_end = os.pipe()
    os.close(read)
    stdout_to(write_end)
    os.close(write_end)
    assert call() == 141
    assert capsys.readouterr().err == ""
