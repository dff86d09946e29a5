"""cli/resume.py: what a run keeps of its batch, what a resume takes as succeeded, how the summary
and --json mark it; and ``delegate-multiple --resume`` through typer's CliRunner, in-process, on
plain folders (their state in .project-manager): runs resumed, and every refusal. The installed
command on real git repositories, a run killed with SIGKILL: tests/integration/test_resume_cli.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from cli.config import Batch, TaskSpec
from cli.events import RunEvents
from cli.render import SummaryRow, run_json, summary_text
from cli.resume import BatchSource, Carried, Options, Resumption, _succeeded, journal_batch
from queue_core import AgentTask, TaskOutcome, TaskState
from queue_core.journal import JournalFile, run_started
from queue_core.machine import Limits
from queue_core.statedir import state_dir

from ..conftest import git, git_repo
from .test_cli import invoke

R0, R1, R2 = "20261128-100000-1-aaaaaa", "20261128-110000-2-bbbbbb", "20261128-120000-3-cccccc"
HOSTILE = "-x.y_z"  # a task id that looks like an option


def source(**fields: Any) -> BatchSource:
    return BatchSource("/repo", **fields)


# --- what a run keeps ------------------------------------------------------------------------------


def test_the_flags_given_now_win_over_the_run_s_each_on_its_own() -> None:
    recorded = Options(3, "worktree", Limits(80.0, 90.0))
    assert Options().over(recorded) == recorded
    assert Options(1, None, Limits(None, 50.0)).over(recorded) == Options(1, "worktree", Limits(80.0, 50.0))
    assert Options("auto", "shared").over(Options()) == Options("auto", "shared")


def test_a_source_round_trips_through_its_json() -> None:
    kept = source(
        arguments=("shell: é \u2028 @'a b.md'",),
        base="sub",
        file="t.yaml",
        file_path="/w/t.yaml",
        file_text="tasks: []\n",
        repo_config="agents: {}\n",
        options=Options("auto", "worktree", Limits(None, 85.0)),
    )
    data = json.loads(json.dumps(kept.to_json()))
    again = BatchSource.from_json(data, R1)
    assert again == kept
    assert again.read_by == R1
    assert again.file_source() == f"t.yaml (as run {R1} read it)"
    assert BatchSource.from_json(source().to_json(), R1) == source()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"version": 2}, "a source of version 2"),
        ({"arguments": "shell: x"}, "arguments: expected a list of strings"),
        ({"arguments": [1]}, "arguments: expected a list of strings"),
        ({"file": {"path": "t.yaml", "abspath": "/t.yaml"}}, "file.text: expected a string"),
        ({"file": "t.yaml"}, "file: expected an object"),
        ({"repo_config": ["x"]}, "repo_config: expected a string or null"),
        ({"base": 3}, "base: expected a string or null"),
        ({"repo": None}, "source.repo: expected a string"),
        ({"options": None}, "options: expected an object"),
        ({"options": {"max_parallel": 0}}, "max_parallel: expected a count of 1 or more"),
        ({"options": {"max_parallel": True}}, "max_parallel: expected a count of 1 or more"),
        ({"options": {"isolation": "chroot"}}, "isolation: expected one of shared, worktree"),
        ({"options": {"limit_cpu": 300}}, "the cpu limit must be more than 0%"),
        ({"options": {"limit_memory": "90"}}, "the memory limit must be a percentage"),
    ],
)
def test_a_damaged_source_is_refused_saying_what_is_wrong(change: dict[str, Any], said: str) -> None:
    data = {**source().to_json(), **change}
    with pytest.raises(ValueError, match=re.escape(said)):
        BatchSource.from_json(data, R1)


def test_the_first_line_keeps_the_source_and_what_was_carried(tmp_path: Path) -> None:
    copy = JournalFile.create(tmp_path / "copy.jsonl", private=False)
    carried = Carried(R1, {"a": R0})
    events = RunEvents("R", tmp_path, copy, batch=journal_batch(source(), carried), resumes=R1)
    events.start([AgentTask("dev", "do", ["a"], lambda: None, id="b")])
    events.end([], 0)
    first = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])
    assert first["resumes"] == R1
    assert first["batch"]["source"] == source().to_json()
    assert first["batch"]["carried"] == {"a": R0}
    assert [task["id"] for task in first["batch"]["tasks"]] == ["b"]
    assert (tmp_path / "copy.jsonl").read_text() == (tmp_path / "events.jsonl").read_text()  # the same lines
    assert "carried" not in journal_batch(source(), None)
    assert set(run_started("R", 1.0, 2, [])) == {"event", "run", "time", "version", "pid", "batch"}  # as before


# --- what a resume takes as succeeded ---------------------------------------------------------------


def final(event: str, task: object, run: str = R1, **more: Any) -> dict[str, Any]:
    return {"event": event, "run": run, "time": 1.0, "task": task, "agent": "dev", "attempt": 1, "final": True, **more}


def test_what_succeeded_in_the_run_or_was_carried_into_it_is_carried() -> None:
    first = {"event": "run_started", "run": R1, "batch": {"tasks": [], "carried": {HOSTILE: R0, "bad": "../x", "n": 1}}}
    lines = [
        first,
        {"event": "started", "run": R1, "task": "ok"},
        final("succeeded", "ok"),
        final("failed", "no"),
        final("succeeded", "other", run=R2),  # not a line of this run
        final("succeeded", 7),  # no task id
        {**final("succeeded", "half"), "final": "yes"},
        {"event": "rate_limited", "run": R1, "task": "paused", "final": False},
        final("cancelled", "gone"),
    ]
    assert _succeeded(R1, first, lines) == {HOSTILE: R0, "ok": R1}
    assert _succeeded(R1, {"event": "run_started", "batch": "x"}, [final("succeeded", "ok")]) == {"ok": R1}


def spec(task_id: str, *deps: str) -> TaskSpec:
    return TaskSpec(task_id, "dev", f"do {task_id}", (f"{task_id}.txt",), depends_on=deps)


def test_a_split_leaves_out_the_carried_tasks_and_what_waits_for_them(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / R0
    logs.mkdir(parents=True)
    (logs / f"{HOSTILE}.log").write_text("done\n")
    batch = Batch(None, {}, (spec(HOSTILE), spec("b", HOSTILE, "c"), spec("c"), spec("d", "b")))
    resumption = Resumption(R1, source(), {HOSTILE: R0, "c": R1, "gone": R1}, tmp_path)
    again, carried = resumption.split(batch)
    assert [(t.id, t.depends_on) for t in again.tasks] == [("b", ()), ("d", ("b",))]
    assert carried.runs == {HOSTILE: R0, "c": R1}  # a task the batch no longer has is no matter
    assert carried.order == (HOSTILE, "b", "c", "d")
    odd, c = carried.rows
    assert (odd.outcome.id, odd.outcome.status, odd.resumed_from, odd.outcome.attempts) == (
        HOSTILE,
        TaskState.SUCCEEDED,
        R0,
        0,
    )
    assert odd.outcome.log == str(logs / f"{HOSTILE}.log")
    assert c.outcome.log is None  # its log was pruned: none is named
    ran = [SummaryRow(TaskOutcome(i, "dev", "", TaskState.FAILED, 1, 1.0, total_s=1.0)) for i in ("d", "b")]
    assert [row.outcome.id for row in carried.summary(ran)] == [HOSTILE, "b", "c", "d"]  # the batch's order
    assert carried.line() == (
        f"resuming run {R1}: not running again the 2 of 4 tasks that succeeded in it or in a run it resumed: "
        f"{HOSTILE} and c"
    )
    assert Carried(R1, {"a": R1}, order=("a", "b")).line().endswith("2 tasks that succeeded in it: a")


def test_a_dry_run_s_plan_names_the_run_resumed_and_what_it_would_not_run() -> None:
    carried = Carried(R1, {"a": R0}, order=("a", "b"))
    assert carried.plan("Would start now, together:", json_out=False).splitlines()[0] == carried.line()
    plan = json.loads(carried.plan(json.dumps({"tasks": [], "starts": []}), json_out=True))
    assert plan == {"resumes": R1, "carried": {"a": R0}, "tasks": [], "starts": []}


def test_the_summary_and_json_mark_a_carried_task_and_count_no_time_or_cost_of_it() -> None:
    carried = SummaryRow(
        TaskOutcome("a", "dev", "do a", TaskState.SUCCEEDED, log="/s/logs/r0/a.log"), None, resumed_from=R0
    )
    ran = SummaryRow(TaskOutcome("b", "dev", "do b", TaskState.SUCCEEDED, 1, 2.0, log="/s/logs/r1/b.log", total_s=2.0))
    text = summary_text([carried, ran], 1.0, 2.0, width=120)
    a = next(line for line in text.splitlines() if line.startswith("a "))
    assert f"in run {R0}, not run again" in a
    assert "a.log" not in a  # its log is in another run's folder than the one named above
    assert "2/2 succeeded (1 in an earlier run); wall 1.0s, task time 2.0s" in text
    data = json.loads(run_json("r1", [carried, ran], 1.0, 2.0, estimates={"a": 9.0, "b": 3.0}, resumes=R0))
    assert data["resumes"] == R0
    assert [(t["id"], t["resumed_from"], t["estimate_s"]) for t in data["tasks"]] == [("a", R0, None), ("b", None, 3.0)]
    assert data["tasks"][0]["log"] == "/s/logs/r0/a.log"
    plain = json.loads(run_json("r1", [ran], 1.0, 2.0))
    assert "resumes" not in plain
    assert "resumed_from" not in plain["tasks"][0]  # a run that resumes nothing says nothing of it


# --- the command, in-process ------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


def delegate(repo: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = invoke("delegate-multiple", *args, "--json", "--repo", str(repo))
    return code, json.loads(out) if out else {}, err


def first_line(repo: Path, run: str) -> dict[str, Any]:
    line = (state_dir(repo) / "logs" / run / "events.jsonl").read_text().splitlines()[0]
    data = json.loads(line)
    assert isinstance(data, dict)
    return data


def test_a_failed_run_resumed_runs_what_failed_and_what_waited_for_it(repo: Path, tmp_path: Path) -> None:
    ran, ok = tmp_path / "ran.txt", tmp_path / "ok"
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        "agents: {one: {preset: shell}, two: {preset: shell}}\n"
        "tasks:\n"
        f"  - {{id: a, agent: one, description: 'echo a >> {ran}', files: [a]}}\n"
        f"  - {{id: f, agent: two, description: 'echo f >> {ran}; test -e {ok}', files: [f]}}\n"
        f"  - {{id: c, agent: one, depends_on: [a, f], description: 'echo c >> {ran}', files: [c]}}\n"
    )
    code, first, _ = delegate(repo, "--file", str(batch), "--max-parallel", "1")
    assert code == 1
    assert [t["status"] for t in first["tasks"]] == ["succeeded", "failed", "skipped"]
    ok.touch()
    code, report, err = delegate(repo, "--resume")
    assert code == 0, err
    assert [(t["id"], t["status"], t["resumed_from"]) for t in report["tasks"]] == [
        ("a", "succeeded", first["run_id"]),
        ("f", "succeeded", None),
        ("c", "succeeded", None),
    ]
    assert ran.read_text().split() == ["a", "f", "f", "c"]
    line = first_line(repo, report["run_id"])
    assert line["batch"]["source"]["options"]["max_parallel"] == 1  # the run's flag, kept
    assert [t["depends_on"] for t in line["batch"]["tasks"]] == [[], ["f"]]


def run_once(repo: Path, *tasks: str) -> str:
    code, report, err = delegate(repo, *tasks)
    assert code in (0, 1), err
    run = report["run_id"]
    assert isinstance(run, str)
    return run


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--file", "x.yaml"), "no --file"),
        (("r1", "r2"), "at most one argument, the run to resume"),
        (("../x",), "--resume: run id '../x': expected letters"),
        (("/etc/passwd",), "--resume: run id '/etc/passwd'"),
        (("-",), "--resume: no run '-'"),
        (("nope",), "--resume: no run 'nope'"),
        (("2026",), "'2026' names 2 runs"),
    ],
)
def test_resume_refuses_what_names_no_single_run(repo: Path, args: tuple[str, ...], said: str) -> None:
    for name in ("a", "b"):
        run_once(repo, f"shell: true @{name}")
    code, out, err = invoke("delegate-multiple", "--resume", *args, "--repo", str(repo))
    assert (code, out) == (2, "")
    assert said in err
    assert len(os.listdir(state_dir(repo) / "history")) == 2  # nothing ran


def test_resume_with_no_run_recorded_is_refused(repo: Path) -> None:
    code, out, err = invoke("delegate-multiple", "--resume", "--repo", str(repo))
    assert (code, out) == (2, "")
    assert "no run is recorded in" in err
    assert "nothing to resume" in err


def rewrite(repo: Path, run: str, change: dict[str, Any] | None) -> Path:
    """Rewrite the first line of ``run``'s journal with ``change`` under "batch" (None: drop its source)."""
    path = state_dir(repo) / "logs" / run / "events.jsonl"
    first, *rest = path.read_text().splitlines()
    line = json.loads(first)
    if change is None:
        del line["batch"]["source"]
    else:
        line["batch"].update(change)
    path.write_text("\n".join([json.dumps(line), *rest]) + "\n")
    return path


def test_a_journal_that_cannot_be_resumed_from_is_refused_and_says_why(repo: Path) -> None:
    run = run_once(repo, "shell: false @a")

    def refused() -> str:
        code, out, err = invoke("delegate-multiple", "--resume", run, "--repo", str(repo))
        assert (code, out) == (2, "")
        assert "Traceback" not in err
        return err

    path = rewrite(repo, run, None)
    assert f"run {run}'s journal keeps no batch to resume" in refused()
    rewrite(repo, run, {"source": {"version": 1, "arguments": "x"}})
    assert "its batch cannot be read (arguments: expected a list of strings)" in refused()
    rewrite(repo, run, {"source": {**source(arguments=("nonsense without a colon",)).to_json()}})
    assert "argument 1" in refused()  # the loader judges the texts kept, as it judged them first
    path.write_text('{"event": "started", "run": "x"}\n\x00garbage\n')
    assert "has no first line (run_started) to resume from" in refused()
    path.write_bytes(b"")
    assert "has no first line" in refused()
    path.unlink()
    assert f"run {run} left no journal ({path}), so it cannot be resumed" in refused()
    os.mkfifo(path)
    assert f"the journal of run {run}, {path}: cannot be read" in refused()  # never waited on


def test_a_journal_through_a_symlinked_run_folder_is_never_read(repo: Path, tmp_path: Path) -> None:
    run = run_once(repo, "shell: false @a")
    logs = state_dir(repo) / "logs"
    os.rename(logs / run, tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", logs / run)
    code, _, err = invoke("delegate-multiple", "--resume", run, "--repo", str(repo))
    assert code == 2
    assert "is a symlink, not a run's folder" in err


def test_a_resume_s_dry_run_plans_what_it_would_run_again(repo: Path) -> None:
    run = run_once(repo, "shell: true @a", "shell: false @b")
    code, out, err = invoke("delegate-multiple", "--resume", "--dry-run", "--repo", str(repo))
    assert code == 0, err
    assert out.splitlines()[:3] == [
        f"resuming run {run}: not running again the 1 of 2 tasks that succeeded in it: t1",
        "Would start now, together:",
        "  t2 [shell] false",
    ]
    code, out, _ = invoke("delegate-multiple", "--resume", "--dry-run", "--json", "--repo", str(repo))
    plan = json.loads(out)
    assert (plan["resumes"], plan["carried"], plan["starts"]) == (run, {"t1": run}, ["t2"])
    assert len(os.listdir(state_dir(repo) / "history")) == 1  # a dry run is no run


def test_resume_errors_say_where_as_the_run_read_the_batch(repo: Path, tmp_path: Path) -> None:
    run = run_once(repo, "shell: false @a")
    text = "tasks:\n  - {id: t, agent: shell, description: x, fils: [a]}\n"
    rewrite(repo, run, {"source": source(file="b.yaml", file_path="/b.yaml", file_text=text).to_json()})
    code, _, err = invoke("delegate-multiple", "--resume", "--repo", str(repo))
    assert code == 2
    assert f"b.yaml (as run {run} read it):2: tasks[0].fils" in err


def test_a_resume_is_refused_while_the_named_run_still_runs(monkeypatch: pytest.MonkeyPatch, repo: Path) -> None:
    import cli.resume

    run = run_once(repo, "shell: false @a")

    def alive(state: Path, name: str) -> tuple[Any, tuple[str, ...]]:
        from queue_core.runviews import RunSummary

        return RunSummary(name, "running"), ()

    monkeypatch.setattr(cli.resume, "run_summary", alive)
    code, _, err = invoke("delegate-multiple", "--resume", run, "--repo", str(repo))
    assert code == 2
    assert f"run {run} still runs: it is not over" in err


def test_a_batch_file_edited_or_removed_since_changes_nothing(repo: Path, tmp_path: Path) -> None:
    ran, ok, batch = tmp_path / "ran.txt", tmp_path / "ok", tmp_path / "batch.yaml"
    batch.write_text(f"tasks:\n  - {{id: t, agent: shell, description: 'echo t >> {ran}; test -e {ok}'}}\n")
    assert delegate(repo, "--file", str(batch))[0] == 1
    batch.write_text("tasks: [oops")  # no longer a batch at all
    ok.touch()
    code, report, err = delegate(repo, "--resume")
    assert code == 0, err
    assert f"{batch} changed (or went) since run" in err
    assert "delegate-multiple --file" in err
    batch.unlink()
    assert delegate(repo, "--resume")[0] == 0
    os.mkfifo(batch)  # where the file was: never waited on
    assert delegate(repo, "--resume")[0] == 0
    assert ran.read_text().split() == ["t", "t"]
    assert first_line(repo, report["run_id"])["batch"]["source"]["file"]["path"] == str(batch)


def test_the_latest_run_is_told_by_its_start_among_runs_of_the_same_second(repo: Path) -> None:
    """Run ids tell the second; ``-9-`` sorts after ``-10-``, yet the run of pid 10 started later."""
    earlier, later = "20261128-100000-9-aaaaaa", "20261128-100000-10-bbbbbb"
    for run, at in ((earlier, 0.1), (later, 0.9)):
        folder = state_dir(repo) / "logs" / run
        folder.mkdir(parents=True)
        batch = {"tasks": [], **journal_batch(source(arguments=("shell: true @a",), base=""), None)}
        first = {"event": "run_started", "run": run, "time": 1_795_000_000.0 + at, "version": 1, "batch": batch}
        (folder / "events.jsonl").write_text(json.dumps(first) + "\n")
    code, out, err = invoke("delegate-multiple", "--resume", "--dry-run", "--json", "--repo", str(repo))
    assert code == 0, err
    assert json.loads(out)["resumes"] == later


def test_a_worktree_task_whose_branch_was_not_merged_runs_again_and_its_branch_stays(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"mine.txt": "0\n"})
    ok = tmp_path / "ok"
    task = f"shell: if test -e {ok}; then echo 1 > mine.txt; else echo 1 > other.txt; fi @mine.txt"
    code, first, err = delegate(repo, task, "--isolation", "worktree")
    assert code == 1, err
    (rejected,) = first["tasks"]
    assert (rejected["status"], rejected["merge"]) == ("failed", "rejected")  # outside its claims: not merged
    ok.touch()
    code, report, err = delegate(repo, "--resume")
    assert code == 0, err
    (again,) = report["tasks"]
    assert (again["resumed_from"], again["merge"], again["branch"]) == (None, "merged", f"pm/{report['run_id']}/t1")
    assert git(repo, "branch", "--list", rejected["branch"]).strip()  # the earlier work stays on its branch
    assert (repo / "mine.txt").read_text() == "1\n"


def test_resume_equals_run_names_the_run_and_its_value_is_never_an_option(repo: Path) -> None:
    run = run_once(repo, "shell: false @a")
    code, out, err = invoke("delegate-multiple", f"--resume={run[-6:]}", "--dry-run", "--json", "--repo", str(repo))
    assert code == 0, err
    assert json.loads(out)["resumes"] == run
    for value in ("--file=x.yaml", "--dry-run", "-h"):
        code, out, err = invoke("delegate-multiple", f"--resume={value}", "--repo", str(repo))
        assert (code, out) == (2, ""), value
        assert f"--resume: run id {value!r}" in err or f"--resume: no run {value!r}" in err
    code, _, err = invoke("delegate-multiple", f"--resume={run}", "--resume=x", "--repo", str(repo))
    assert code == 2
    assert "at most one argument" in err
