"""cli/events.py: the journal of a run, its waits sampled as they change, its end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.events import RunEvents
from queue_core import AgentTask, TaskEvent, TaskOutcome, TaskState
from queue_core.journal import JournalFile
from queue_core.records import QueueStatus, WaitingTask


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def status(*waits: tuple[str, str, str, str | None]) -> QueueStatus:
    """A status whose waiting tasks are (id, reason kind, reason, holder)."""
    waiting = tuple(WaitingTask(i, "dev", reason=text, reason_kind=kind, blocked_by=by) for i, kind, text, by in waits)
    return QueueStatus(queued_tasks=len(waiting), max_parallel=2, waiting=waiting)


@pytest.fixture
def run(tmp_path: Path) -> RunEvents:
    events = RunEvents("R", tmp_path, JournalFile.create(tmp_path / "copy.jsonl", private=False))
    events.start([AgentTask("dev", "do", ["a"], lambda: None, id=i) for i in ("t1", "t2", "t3")])
    return events


def waits(path: Path) -> list[tuple[str, int, str]]:
    return [(line["task"], line["attempt"], line["reason"]) for line in lines(path) if line["event"] == "waiting"]


def test_a_wait_is_written_when_it_changes_and_a_countdown_is_no_change(run: RunEvents, tmp_path: Path) -> None:
    journal = tmp_path / "events.jsonl"
    run.sample(
        lambda: status(("t2", "claim", "a overlaps a held by dev (t1)", "t1"), ("t3", "retry", "retry in 2.0s", None))
    )
    run.sample(
        lambda: status(("t2", "claim", "a overlaps a held by dev (t1)", "t1"), ("t3", "retry", "retry in 1.0s", None))
    )
    run.sample(lambda: status(("t2", "agent", "dev busy (t3)", "t3"), ("t3", "retry", "retry in 0.0s", None)))
    assert waits(journal) == [
        ("t2", 0, "a overlaps a held by dev (t1)"),
        ("t3", 0, "retry in 2.0s"),
        ("t2", 0, "dev busy (t3)"),
    ]


def test_a_task_waiting_again_after_it_ran_is_written_again(run: RunEvents, tmp_path: Path) -> None:
    held = ("t2", "claim", "a overlaps a held by dev (t1)", "t1")
    run.sample(lambda: status(held))
    run.event(TaskEvent("started", "t2", "dev", 0.0, 1))
    run.event(TaskEvent("retrying", "t2", "dev", 0.0, 1, "no"))
    run.sample(lambda: status(held))
    assert waits(tmp_path / "events.jsonl") == [("t2", 0, held[2]), ("t2", 1, held[2])]


def test_a_task_that_starts_or_ends_while_the_status_is_read_is_not_written_waiting(
    run: RunEvents, tmp_path: Path
) -> None:
    def started_meanwhile() -> QueueStatus:
        run.event(TaskEvent("started", "t2", "dev", 0.0, 1))
        run.event(TaskEvent("cancelled", "t3", "dev", 0.0, 0, "cancelled"))
        return status(("t2", "agent", "dev busy (t1)", "t1"), ("t3", "agent", "dev busy (t1)", "t1"))

    run.sample(started_meanwhile)
    assert waits(tmp_path / "events.jsonl") == []


def test_the_end_writes_a_final_line_for_a_task_the_queue_never_had_then_the_last_line(
    run: RunEvents, tmp_path: Path
) -> None:
    run.event(TaskEvent("started", "t1", "dev", 0.0, 1))
    run.event(TaskEvent("succeeded", "t1", "dev", 0.0, 1, duration_s=1.0, total_s=1.0, exit_code=0))
    outcomes = [
        TaskOutcome("t1", "dev", "do", TaskState.SUCCEEDED, attempts=1),
        TaskOutcome("t2", "dev", "do", TaskState.CANCELLED, reason="not started"),
    ]
    run.end(outcomes, 130)
    journal = lines(tmp_path / "events.jsonl")
    assert [(line["event"], line.get("task")) for line in journal] == [
        ("run_started", None),
        ("started", "t1"),
        ("succeeded", "t1"),
        ("cancelled", "t2"),
        ("run_ended", None),
    ]
    assert journal[3]["error"] == "not started"
    assert journal[-1]["counts"]["cancelled"] == 1
    assert journal[-1]["exit_code"] == 130
    assert lines(tmp_path / "copy.jsonl") == journal


def test_a_journal_that_cannot_be_created_is_a_warning_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "events.jsonl").write_text("someone else's\n")
    events = RunEvents("R", tmp_path)
    events.start([])
    events.event(TaskEvent("started", "t1", "dev", 0.0, 1))
    events.end([], 0)
    assert "this run has no journal" in capsys.readouterr().err
    assert (tmp_path / "events.jsonl").read_text() == "someone else's\n"
