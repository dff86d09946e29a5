"""Reading runs back from the state directory (queue_core.runfiles, queue_core.runviews): history
records, journals and live records, each on hostile files: half-written lines, damaged or
foreign files, FIFOs and symlinks, ids that are paths. Nothing here sleeps."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from queue_core.errors import AmbiguousRunError, InvalidArgumentError, RunNotFoundError
from queue_core.holds import Owner
from queue_core.processes import ProcessId
from queue_core.records import (
    SCHEMA,
    QueueStatus,
    RunHistory,
    RunningTask,
    RunRecord,
    TaskOutcome,
    WaitingTask,
)
from queue_core.reports import AgentReport
from queue_core.runfiles import (
    JournalTail,
    find_run,
    journal_path,
    latest_run,
    list_runs,
    parse_journal,
    read_journal,
    run_summary,
)
from queue_core.runviews import RunList, stamp
from queue_core.task import TaskState

from ..conftest import in_thread
from ._state import dead, owner, state

__all__ = ["dead", "state"]  # fixtures

T0 = 1_790_000_000.0


def line(event: str, **fields: Any) -> bytes:
    return json.dumps({"event": event, "run": "r", "time": T0, **fields}).encode() + b"\n"


def started_line(tasks: list[dict[str, Any]], time_: float = T0) -> bytes:
    data = {"event": "run_started", "run": "r", "time": time_, "version": 1, "pid": 1, "batch": {"tasks": tasks}}
    return json.dumps(data).encode() + b"\n"


def write_journal(state: Path, run: str, *lines: bytes) -> Path:
    path = journal_path(state, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    return path


def write_history(state: Path, history: RunHistory) -> Path:
    path = state / "history" / f"{history.run}.json"
    path.write_text(json.dumps(history.to_json()))
    return path


def outcome(task_id: str, status: TaskState, **kw: Any) -> TaskOutcome:
    return TaskOutcome(task_id, "dev", "", status, **{"attempts": 1, "duration_s": 2.0, "total_s": 2.0, **kw})


# --- the journal ---------------------------------------------------------------------------------


def test_a_half_written_last_line_is_not_read_until_its_newline_comes() -> None:
    whole = line("started", task="t1", agent="dev", attempt=1)
    assert parse_journal(whole + whole[:-10]) == [json.loads(whole)]
    assert parse_journal(whole + whole) == [json.loads(whole)] * 2


def test_damaged_foreign_and_hostile_lines_are_passed_over_unknown_keys_kept() -> None:
    kept = line("started", task="t1", agent="dev", attempt=1, new_key={"x": 1})
    raw = b"".join(
        [
            b"not json\n",
            b"[1, 2]\n",  # not an object
            b'{"no_event": 1}\n',
            b'{"event": 3}\n',  # not a string
            b"\xff\xfe\n",  # not UTF-8
            b"[" * 100_000 + b"\n",  # nested past the recursion limit
            b"\n",
            kept,
        ]
    )
    assert parse_journal(raw) == [json.loads(kept)]


def test_a_missing_journal_a_fifo_and_a_symlink_read_as_empty(tmp_path: Path) -> None:
    assert read_journal(tmp_path / "none.jsonl") == []
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    assert in_thread(lambda: read_journal(fifo)) == []  # never waits for a writer
    real = tmp_path / "real.jsonl"
    real.write_bytes(line("run_ended", exit_code=0))
    (tmp_path / "link.jsonl").symlink_to(real)
    assert read_journal(tmp_path / "link.jsonl") == []  # never followed


def test_a_journal_tail_gives_each_whole_line_once_as_it_grows(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = JournalTail(path)
    assert tail.read() == []  # not there yet
    first, second = line("started", task="a"), line("succeeded", task="a", final=True)
    path.write_bytes(first + second[:7])
    assert tail.read() == [json.loads(first)]
    assert tail.read() == []
    with path.open("ab") as f:
        f.write(second[7:])
    assert tail.read() == [json.loads(second)]
    path.unlink()
    path.write_bytes(first)  # replaced: read again from its start
    assert tail.read() == [json.loads(first)]


# --- history records -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"run": "r"}',  # no times
        '{"run": "r", "started_at": 1, "ended_at": 2, "tasks": [{"id": "t"}]}',  # a task without status
        '{"run": "r", "started_at": 1, "ended_at": 2, "tasks": [{"id": "t", "agent": "a", "status": "exploded"}]}',
        '{"run": "r", "started_at": "x", "ended_at": 2, "tasks": []}',
        "[" * 100_000,
    ],
)
def test_a_damaged_history_record_is_skipped_with_a_warning_and_its_logs_still_show_the_run(
    state: Path, text: str
) -> None:
    (state / "history" / "r.json").write_text(text)
    (state / "logs" / "r").mkdir()
    found = list_runs(state)
    assert [(run.run, run.state) for run in found.runs] == [("r", "unfinished")]
    (warning,) = found.warnings
    assert warning.startswith(f"{state / 'history' / 'r.json'}: not a history record that can be read")


def test_foreign_newer_and_misnamed_history_files_are_skipped_with_a_warning(state: Path) -> None:
    history = state / "history"
    (history / "notes.txt").write_text("mine")
    (history / ".r.json.123.tmp").write_text("{")  # a write under way: passed over quietly
    (history / "new.json").write_text(json.dumps({**RunHistory("new", T0, T0 + 1).to_json(), "version": SCHEMA + 1}))
    write_history(state, RunHistory("other", T0, T0 + 1))
    os.rename(history / "other.json", history / "copied.json")
    os.mkfifo(history / "fifo.json")
    os.symlink("/etc/passwd", history / "link.json")
    found = in_thread(lambda: list_runs(state))
    assert found.runs == ()
    warnings = "\n".join(found.warnings)
    assert "notes.txt: not a run's history record" in warnings
    assert "new.json: a history record of version 2, written by a newer project-manager" in warnings
    assert "copied.json: the history record of run 'other', not of 'copied'" in warnings
    assert "fifo.json: not a regular file" in warnings
    assert "link.json: a symlink" in warnings
    assert ".tmp" not in warnings
    assert len(found.warnings) == 5


def test_a_finished_run_from_its_history_counts_cost_and_wall_time(state: Path) -> None:
    report = AgentReport(None, 0.5, 100, 20)
    tasks = (
        outcome("a", TaskState.SUCCEEDED, report=report),
        outcome("b", TaskState.FAILED, reason="exit 3", report=AgentReport("quota gone", 0.25)),
        outcome("c", TaskState.SKIPPED, attempts=0, duration_s=None, total_s=None, reason="needs b"),
    )
    write_history(state, RunHistory("r", T0, T0 + 61, tasks))
    (run,) = list_runs(state).runs
    assert (run.state, run.started_at, run.ended_at, run.wall_s, run.exit_code) == ("finished", T0, T0 + 61, 61, None)
    assert run.ordered_counts == [("succeeded", 1), ("failed", 1), ("skipped", 1)]
    assert run.cost_usd == 0.75
    assert [(t.id, t.status, t.error) for t in run.tasks] == [
        ("a", "succeeded", None),
        ("b", "failed", "quota gone"),  # the agent's own words first
        ("c", "skipped", "needs b"),
    ]
    assert run.tasks[0].tokens == {"input": 100, "output": 20}
    assert run.to_json(tasks=False) == {
        "run": "r",
        "state": "finished",
        "started_at": T0,
        "ended_at": T0 + 61,
        "wall_s": 61.0,
        "task_count": 3,
        "counts": {"succeeded": 1, "failed": 1, "skipped": 1},
        "cost_usd": 0.75,
    }


def test_a_finished_run_s_journal_adds_its_exit_code_and_what_history_does_not_keep(state: Path) -> None:
    write_history(state, RunHistory("r", T0, T0 + 5, (outcome("a", TaskState.FAILED, reason="boom"),)))
    write_journal(
        state,
        "r",
        started_line([{"id": "a", "agent": "dev", "description": "fix it", "files": ["x"]}]),
        line("failed", task="a", agent="dev", attempt=1, final=True, exit_code=3, duration_s=2.0, total_s=2.0),
        line("run_ended", exit_code=1, counts={"failed": 1}),
    )
    summary, warnings = run_summary(state, "r")
    assert warnings == ()
    assert summary.exit_code == 1
    (task,) = summary.tasks
    assert (task.description, task.exit_code, task.error) == ("fix it", 3, "boom")


# --- runs that did not finish ------------------------------------------------------------------------


def test_a_killed_run_is_told_from_its_journal_its_tasks_unfinished_or_never_started(state: Path) -> None:
    tasks = [{"id": i, "agent": "dev", "description": f"do {i}"} for i in ("a", "b", "c")]
    write_journal(
        state,
        "r",
        started_line(tasks),
        line("started", task="a", agent="dev", attempt=1, description="do a"),
        line("succeeded", task="a", agent="dev", attempt=1, final=True, cost_usd=0.5, tokens={"input": 3, "output": 4}),
        line("started", task="b", agent="dev", attempt=1).replace(str(T0).encode(), str(T0 + 30).encode()),
        b'{"event": "started", "task": "c", "ag',  # cut by the SIGKILL
    )
    (run,) = list_runs(state).runs
    assert (run.state, run.started_at, run.ended_at, run.wall_s) == ("killed", T0, None, 30.0)
    assert [(t.id, t.status, t.attempts) for t in run.tasks] == [
        ("a", "succeeded", 1),
        ("b", "unfinished", 1),
        ("c", "not_started", 0),
    ]
    assert run.tasks[0].tokens == {"input": 3, "output": 4}
    assert run.cost_usd == 0.5


def test_a_journal_that_says_the_run_ended_makes_it_finished_without_a_history(state: Path) -> None:
    write_journal(state, "r", started_line([]), line("run_ended", exit_code=130, counts={}))
    (run,) = list_runs(state).runs
    assert (run.state, run.exit_code) == ("finished", 130)


def test_journal_values_of_the_wrong_type_are_unknown_not_errors(state: Path) -> None:
    write_journal(
        state,
        "r",
        b'{"event": "run_started", "time": "noon", "batch": {"tasks": [1, {"id": 2}, {"id": "a", "agent": []}]}}\n',
        b'{"event": "failed", "task": "a", "final": true, "exit_code": "3", "duration_s": NaN, "cost_usd": true,'
        b' "tokens": {"input": "x"}, "time": Infinity}\n',
    )
    (run,) = list_runs(state).runs
    (task,) = run.tasks
    assert (task.agent, task.status, task.exit_code, task.duration_s, task.cost_usd, task.tokens) == (
        "", "failed", None, None, None, None
    )  # fmt: skip
    assert run.started_at is None
    assert run.wall_s is None


def live_record(state: Path, run_owner: Owner, *, started: float = T0) -> None:
    status = QueueStatus(
        queued_tasks=3,
        max_parallel=2,
        running=(RunningTask("a", "dev", "do a", attempt=2),),
        waiting=(WaitingTask("b", "doc", "do b", reason="docs/ held by a"),),
        counts={"succeeded": 4},
    )
    data = RunRecord(run_owner.run, run_owner, started + 10, "/repo", started, status).to_json()
    (state / "runs" / f"{run_owner.run}.json").write_text(json.dumps(data))


def test_a_live_run_is_running_from_its_record_when_it_has_no_journal(state: Path) -> None:
    live_record(state, Owner.current("r"))
    (run,) = list_runs(state).runs
    assert run.state == "running"
    assert [(t.id, t.status, t.attempts) for t in run.tasks] == [("a", "running", 2), ("b", "queued", 0)]
    assert run.ordered_counts == [("succeeded", 4), ("running", 1), ("queued", 3)]
    assert run.wall_s is not None
    assert run.wall_s > time.time() - T0 - 5


def test_a_dead_record_without_a_history_is_a_killed_run(state: Path, dead: ProcessId) -> None:
    live_record(state, owner("r", dead))
    (run,) = list_runs(state).runs
    assert (run.state, run.wall_s) == ("killed", 10.0)
    assert [(t.id, t.status) for t in run.tasks] == [("a", "unfinished"), ("b", "not_started")]


def test_a_record_without_a_status_or_logs_is_no_run_to_show(state: Path) -> None:
    """``clean`` and ``release`` take a run id too, and run no queue."""
    data = RunRecord("clean-1", Owner.current("clean-1"), T0).to_json()
    (state / "runs" / "clean-1.json").write_text(json.dumps(data))
    (state / "runs" / "damaged.json").write_text("{")
    assert list_runs(state) == RunList()


def test_runs_are_listed_newest_first_whatever_tells_their_start(state: Path) -> None:
    write_history(state, RunHistory("zz-old", T0, T0 + 1))
    write_journal(state, "aa-killed", started_line([], T0 + 100))
    stamped = time.strftime("%Y%m%d-%H%M%S", time.localtime(T0 + 50)) + "-12-abcdef"
    (state / "logs" / stamped).mkdir()
    assert stamp(stamped) == T0 + 50
    assert [run.run for run in list_runs(state).runs] == ["aa-killed", stamped, "zz-old"]
    assert latest_run(state) == "aa-killed"
    assert latest_run(state / "nothing") is None


def test_runs_of_the_same_second_are_ordered_by_their_starts_not_by_their_pids(state: Path) -> None:
    """Before: within one second, ids sorted as text, so pid 999 came after pid 12000 (a resume
    right after its run was taken for the earlier one)."""
    second = time.strftime("%Y%m%d-%H%M%S", time.localtime(T0))
    first, then = f"{second}-999-aaaaaa", f"{second}-12000-bbbbbb"
    write_history(state, RunHistory(first, T0 + 0.1, T0 + 0.5))
    write_history(state, RunHistory(then, T0 + 0.6, T0 + 0.9))
    assert [run.run for run in list_runs(state).runs] == [then, first]
    assert latest_run(state) == then


# --- naming a run ---------------------------------------------------------------------------------


@pytest.fixture
def named(state: Path) -> Path:
    for run in ("20261128-100000-1-aaaaaa", "20261128-110000-2-bbbbbb", "20261129-090000-3-aaaaaa"):
        write_history(state, RunHistory(run, T0, T0 + 1))
    return state


def test_a_run_is_named_by_its_id_or_a_unique_start_or_end_of_it(named: Path) -> None:
    assert find_run(named, "20261128-110000-2-bbbbbb") == "20261128-110000-2-bbbbbb"
    assert find_run(named, "bbbbbb") == "20261128-110000-2-bbbbbb"
    assert find_run(named, "20261129") == "20261129-090000-3-aaaaaa"


def test_a_part_that_several_runs_have_is_ambiguous_and_names_them(named: Path) -> None:
    with pytest.raises(AmbiguousRunError) as caught:
        find_run(named, "aaaaaa")
    assert caught.value.candidates == ("20261129-090000-3-aaaaaa", "20261128-100000-1-aaaaaa")
    assert "'aaaaaa' names 2 runs: 20261129-090000-3-aaaaaa and 20261128-100000-1-aaaaaa" in str(caught.value)


@pytest.mark.parametrize("text", ["../history", "/etc", "a/b", ".hidden", "", "x" * 101, "a\nb"])
def test_a_run_named_by_a_path_is_refused(named: Path, text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        find_run(named, text)
    with pytest.raises(InvalidArgumentError):
        run_summary(named, text)


def test_an_unknown_run_is_not_found(named: Path) -> None:
    with pytest.raises(RunNotFoundError, match="no run 'cccccc'"):
        find_run(named, "cccccc")
    with pytest.raises(RunNotFoundError):
        run_summary(named, "cccccc")


def test_only_the_newest_runs_asked_for_are_read(state: Path) -> None:
    """A run's id tells its start: the runs beyond ``limit`` are not even opened."""
    old, new = (time.strftime("%Y%m%d-%H%M%S", time.localtime(T0 + t)) + "-1-abcdef" for t in (0, 60))
    (state / "history" / f"{old}.json").write_text("{")
    write_history(state, RunHistory(new, T0 + 60, T0 + 61))
    found = list_runs(state, limit=1)
    assert ([run.run for run in found.runs], found.warnings) == ([new], ())
    assert len(list_runs(state).warnings) == 1
