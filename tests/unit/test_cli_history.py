"""``history``, ``show`` and ``logs`` through typer's CliRunner, on state directories made by hand:
what they print, their JSON, and their failure paths (damaged files, unknown or ambiguous runs,
task ids that are paths). The installed command on real runs: tests/integration/test_history_cli.py."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.history_text import show_text
from queue_core.processes import ProcessId
from queue_core.records import MergeOutcome, QueueStatus, RunHistory, RunRecord, TaskOutcome
from queue_core.reports import AgentReport
from queue_core.runfiles import run_summary
from queue_core.statedir import state_dir
from queue_core.task import TaskState

from ._state import dead, owner, state
from .test_cli import invoke

__all__ = ["dead", "state"]  # fixtures

T0 = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
OLD, NEW = "20260921-141320-1-aaaaaa", "20260921-151320-2-bbbbbb"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC, so that the times printed are known."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def repo(state: Path) -> Path:
    """A repository (not a git one: its state is in .project-manager) with two finished runs."""
    merge = MergeOutcome(f"pm/{NEW}/build", "merged", 3, 12, 1, "merged")
    tasks = (
        TaskOutcome("build", "dev", "", TaskState.SUCCEEDED, 1, 2.0, report=AgentReport(None, 0.5), total_s=2.0,
                    isolation="worktree", merge=merge),
        TaskOutcome("lint", "dev", "", TaskState.FAILED, 2, 1.0, "exit 3", report=AgentReport("bad\n\x1b[31mred", 0.25),
                    total_s=3.5, isolation="worktree", merge=MergeOutcome(f"pm/{NEW}/lint.2")),
        TaskOutcome("docs", "doc", "", TaskState.SKIPPED, reason="needs lint"),
    )  # fmt: skip
    write(state, RunHistory(OLD, T0, T0 + 5, (TaskOutcome("build", "dev", "", TaskState.SUCCEEDED, 1, 5.0),)))
    write(state, RunHistory(NEW, T0 + 3600, T0 + 3600 + 125, tasks))
    for run, task, text in ((OLD, "build", "old build\n"), (NEW, "build", "one\ntwo\nthree\n"), (NEW, "lint", "x\n")):
        (state / "logs" / run).mkdir(exist_ok=True)
        (state / "logs" / run / f"{task}.log").write_text(text)
    return state.parent


def write(state: Path, history: RunHistory) -> None:
    (state / "history" / f"{history.run}.json").write_text(json.dumps(history.to_json()))


def cli(repo: Path, *args: str) -> tuple[int, str, str]:
    return invoke(*args, "--repo", str(repo), env={"COLUMNS": "100"})


# --- history ---------------------------------------------------------------------------------------


def test_history_lists_the_runs_newest_first(repo: Path) -> None:
    code, out, err = cli(repo, "history")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "run                       started           wall    cost     tasks",
        f"{NEW}  2026-09-21 15:13  2m 05s  $0.7500  1 succeeded, 1 failed, 1 skipped",
        f"{OLD}  2026-09-21 14:13  5.0s    —        1 succeeded",
    ]
    code, out, _ = cli(repo, "history", "--limit", "1")
    assert len(out.splitlines()) == 2


def test_history_json_is_a_list_of_runs(repo: Path) -> None:
    code, out, _ = cli(repo, "history", "--json")
    assert code == 0
    runs = json.loads(out)
    assert [run["run"] for run in runs] == [NEW, OLD]
    assert runs[0] == {
        "run": NEW,
        "state": "finished",
        "started_at": T0 + 3600,
        "ended_at": T0 + 3600 + 125,
        "wall_s": 125.0,
        "task_count": 3,
        "counts": {"succeeded": 1, "failed": 1, "skipped": 1},
        "cost_usd": 0.75,
    }


def test_history_of_a_repository_without_runs(state: Path) -> None:
    assert cli(state.parent, "history") == (0, f"No runs recorded in {state.parent}.\n", "")
    assert cli(state.parent, "history", "--json") == (0, "[]\n", "")
    code, _, err = cli(state.parent, "show")
    assert code == 1
    assert "no run is recorded" in err


def test_a_damaged_history_record_is_a_warning_never_a_traceback(repo: Path, state: Path) -> None:
    (state / "history" / f"{OLD}.json").write_text('{"run": 3')
    (state / "history" / "notes.md").write_text("mine")
    code, out, err = cli(repo, "history")
    assert code == 0
    assert f"{OLD}  2026-09-21 14:13  —       —        unfinished  no tasks" in out  # its logs are left
    assert f"warning: {state / 'history' / OLD}.json: not a history record that can be read" in err
    assert "notes.md: not a run's history record" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [("--limit", "0"), ("--limit", "x")])
def test_a_bad_limit_is_refused(repo: Path, args: tuple[str, ...]) -> None:
    assert cli(repo, "history", *args)[0] == 2


# --- show ------------------------------------------------------------------------------------------


def test_show_gives_the_latest_run_its_header_and_each_task_on_one_line(repo: Path, state: Path) -> None:
    code, out, err = cli(repo, "show")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"run {NEW} (finished): 1 succeeded, 1 failed, 1 skipped",
        "started 2026-09-21 15:13:20, ended 2026-09-21 15:15:25, wall 2m 05s, cost $0.7500",
        f"logs: {state / 'logs' / NEW}{os.sep}",
        "",
        "id     agent  status     time  attempts  cost     merge                   error",
        "build  dev    succeeded  2.0s  1         $0.5000  merged, 3 files +12 -1",
        "lint   dev    failed     3.5s  2         $0.2500  kept                    bad ?[31mred",
        "docs   doc    skipped          0                                          needs lint",
    ]


def test_show_names_a_run_by_a_unique_start_or_end_of_its_id(repo: Path) -> None:
    assert cli(repo, "show", "aaaaaa")[1].startswith(f"run {OLD} (finished)")
    assert cli(repo, "show", "20260921-1413")[1].startswith(f"run {OLD} (finished)")
    assert cli(repo, "show", OLD)[1].startswith(f"run {OLD} (finished)")


def test_show_refuses_a_part_several_runs_have_and_lists_them(repo: Path) -> None:
    code, out, err = cli(repo, "show", "20260921")
    assert (code, out) == (2, "")
    assert f"'20260921' names 2 runs: {NEW} and {OLD}; give more of its id" in err


@pytest.mark.parametrize("run", ["cccccc", "../history", "/etc"])
def test_show_of_an_unknown_run_or_a_path(repo: Path, run: str) -> None:
    code, out, err = cli(repo, "show", run)
    assert out == ""
    if run == "cccccc":
        assert code == 1
        assert "no run 'cccccc'" in err
    else:
        assert code == 2
        assert f"run id {run!r}" in err


def test_show_json_has_each_task_and_its_merge(repo: Path, state: Path) -> None:
    code, out, _ = cli(repo, "show", "--json")
    assert code == 0
    run = json.loads(out)
    assert set(run) == {
        "run", "state", "started_at", "ended_at", "wall_s", "task_count", "counts", "cost_usd", "exit_code", "logs",
        "tasks"
    }  # fmt: skip
    assert run["logs"] == str(state / "logs" / NEW)
    build, lint, docs = run["tasks"]
    assert build["merge"] == {
        "branch": f"pm/{NEW}/build", "result": "merged", "files": 3, "insertions": 12, "deletions": 1,
        "reason": "merged",
    }  # fmt: skip
    assert lint["merge"]["result"] is None
    assert lint["error"] == "bad\n\x1b[31mred"  # as the agent said it: JSON escapes it
    assert docs == {
        "id": "docs", "agent": "doc", "status": "skipped", "description": "", "attempts": 0, "duration_s": None,
        "total_s": None, "exit_code": None, "error": "needs lint", "cost_usd": None, "tokens": None,
        "isolation": None, "merge": None,
    }  # fmt: skip


# --- logs ------------------------------------------------------------------------------------------


def test_logs_prints_the_log_of_the_latest_run_that_has_the_task(repo: Path) -> None:
    assert cli(repo, "logs", "build") == (0, "one\ntwo\nthree\n", "")
    assert cli(repo, "logs", "build", "--tail", "2") == (0, "two\nthree\n", "")
    assert cli(repo, "logs", "build", "--run", "aaaaaa") == (0, "old build\n", "")


def test_logs_run_lists_the_run_s_logs(repo: Path, state: Path) -> None:
    code, out, _ = cli(repo, "logs", "--run", "bbbbbb")
    assert code == 0
    assert out.splitlines() == [
        f"logs: {state / 'logs' / NEW}{os.sep}",
        "",
        "task   size  status",
        "build  14 B  succeeded",
        "lint   2 B   failed",
    ]


@pytest.mark.parametrize("task", ["../x", "/etc/passwd", "..", "a/b", ".hidden", "", "t\n1"])
def test_a_task_id_that_is_a_path_is_refused(repo: Path, task: str) -> None:
    code, out, err = invoke("logs", "--repo", str(repo), "--", task)
    assert (code, out) == (2, "")
    assert f"task id {task!r}" in err


def test_a_task_id_that_starts_with_a_dash_is_a_task_after_a_double_dash(repo: Path) -> None:
    code, _, err = invoke("logs", "--repo", str(repo), "--", "-x")
    assert code == 1
    assert "has a task '-x'" in err


def test_logs_without_a_task_or_a_run_is_bad_input(repo: Path) -> None:
    code, _, err = cli(repo, "logs")
    assert code == 2
    assert "give a TASK whose log to print, or --run RUN" in err
    assert cli(repo, "logs", "build", "--tail", "-1")[0] == 2


def test_logs_of_a_task_no_run_has_or_that_never_started(repo: Path) -> None:
    code, _, err = cli(repo, "logs", "nope")
    assert code == 1
    assert "no run recorded in" in err
    code, _, err = cli(repo, "logs", "docs")
    assert code == 1
    assert f"task 'docs' of run {NEW} has no log: it never started (skipped)" in err
    code, _, err = cli(repo, "logs", "lint", "--run", "aaaaaa")
    assert code == 1
    assert f"run {OLD} has no task 'lint'" in err


def test_a_log_that_is_a_symlink_is_not_read(repo: Path, state: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("secret")
    log = state / "logs" / NEW / "lint.log"
    log.unlink()
    log.symlink_to(tmp_path / "secret")
    code, out, err = cli(repo, "logs", "lint")
    assert (code, out) == (1, "")
    assert "a symlink, not a regular file; not read" in err


def test_on_a_terminal_a_line_is_cut_to_its_width_at_its_end_where_the_error_is(repo: Path) -> None:
    summary, _ = run_summary(state_dir(repo), NEW)
    lines = show_text(summary, None, width=80).splitlines()
    assert max(map(len, lines)) == 80
    assert lines[0] == f"run {NEW} (finished): 1 succeeded, 1 failed, 1 skipped"
    assert lines[5].startswith("lint ")
    assert lines[5].endswith("…")


def test_logs_f_of_a_finished_run_s_task_prints_its_log_and_ends(repo: Path) -> None:
    assert cli(repo, "logs", "build", "-f") == (0, "one\ntwo\nthree\n", "")
    assert cli(repo, "logs", "build", "-f", "--tail", "1") == (0, "three\n", "")
    code, out, err = cli(repo, "logs", "docs", "-f")  # skipped: it never wrote a log
    assert (code, out) == (1, "")
    assert f"task 'docs' of run {NEW} wrote no log: run {NEW} ended before it started" in err


def test_a_journal_s_hostile_task_ids_and_errors_are_shown_on_one_line_and_json_keeps_them(state: Path) -> None:
    hostile = "t\x1b[2J\n1 ü\u202e"
    lines = [
        {"event": "run_started", "run": "r", "time": T0, "batch": {"tasks": [{"id": hostile, "agent": "a\tb"}]}},
        {"event": "failed", "run": "r", "time": T0 + 2, "task": hostile, "final": True, "error": "x\r\ny\x00"},
    ]
    (state / "logs" / "r").mkdir()
    (state / "logs" / "r" / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, err = cli(state.parent, "show", "r")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "t?[2J 1 ü?  a b    failed  0         x y?"
    code, out, _ = cli(state.parent, "show", "r", "--json")
    (task,) = json.loads(out)["tasks"]
    assert (task["id"], task["error"]) == (hostile, "x\r\ny\x00")
    assert cli(state.parent, "logs", "--run", "r")[1].endswith("no task logs in " + f"{state / 'logs' / 'r'}{os.sep}\n")


def test_logs_f_of_a_killed_run_s_task_prints_its_log_and_says_the_run_died(state: Path, dead: ProcessId) -> None:
    data = RunRecord("r", owner("r", dead), T0, "/repo", T0, QueueStatus(0, 1)).to_json()
    (state / "runs" / "r.json").write_text(json.dumps(data))
    (state / "logs" / "r").mkdir()
    (state / "logs" / "r" / "t1.log").write_text("cut short\n")
    code, out, err = cli(state.parent, "logs", "t1", "-f")
    assert (code, out) == (0, "cut short\n")
    assert "warning: run r is no longer alive, and left no history: it was killed; its log ends here" in err
