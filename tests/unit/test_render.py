"""Plain event lines (cli.render makes them, cli.terminal writes them): in order, by a thread of their own,
never blocking a run."""

from __future__ import annotations

import io

from cli.render import SummaryRow, event_line, summary_text, unclaimed_line, unclaimed_text
from cli.terminal import PlainEvents
from queue_core import TaskEvent, TaskOutcome, TaskState
from queue_core.changes import Stray
from queue_core.reports import AgentReport


def test_event_lines_are_written_in_order_and_all_of_them_before_exit() -> None:
    out = io.StringIO()
    with PlainEvents(out) as events:
        for i in range(500):
            events.event(TaskEvent("started", f"t{i}", "shell", 0.0, 1))
        events.note("interrupted: stopping every agent and releasing every claim")
    lines = out.getvalue().splitlines()
    assert [line.split()[2] for line in lines[:-1]] == [f"t{i}" for i in range(500)]
    assert lines[-1] == "interrupted: stopping every agent and releasing every claim"


def test_event_line_says_the_attempt_and_the_error_where_they_help() -> None:
    assert event_line(TaskEvent("started", "parser", "dev", 0.0, 2)).endswith("started   parser [dev] (attempt 2)")
    assert event_line(TaskEvent("failed", "parser", "dev", 0.0, 1, "exit 3")).endswith("FAILED    parser [dev]: exit 3")
    assert event_line(TaskEvent("succeeded", "parser", "dev", 0.0, 1, "ignored")).endswith("finished  parser [dev]")


class _GoneReader(io.StringIO):
    """A pipe whose reader went away, like ``project-manager ... | head -1``."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_went_away_stops_the_lines_not_the_run() -> None:
    with PlainEvents(_GoneReader()) as events:
        events.event(TaskEvent("started", "t", "shell", 0.0, 1))
        events.event(TaskEvent("succeeded", "t", "shell", 0.0, 1))
    # Leaving the block drained the queue and joined the writer: nothing raised, nothing hangs.


def test_changes_outside_the_claims_are_told_in_one_line_with_the_tasks_beside() -> None:
    assert (
        unclaimed_text(Stray(("a.txt", "new\nline.txt"), ())) == "changed outside its claims: a.txt, 'new\\nline.txt'"
    )
    many = Stray(tuple(f"f{i}" for i in range(7)), ("b", "run-2/c"))
    assert unclaimed_text(many) == (
        "changed outside the claims: f0, f1, f2, f3, f4 and 2 more (also running: b, run-2/c; any of them may have)"
    )
    line = unclaimed_line(TaskEvent("succeeded", "t1", "dev", 0.0, 1), Stray(("x",), ()))
    assert line.endswith(" warning   t1 [dev] changed outside its claims: x")


def test_the_summary_marks_a_task_that_changed_outside_its_claims() -> None:
    succeeded, skipped = TaskState.SUCCEEDED, TaskState.SKIPPED
    outcomes = [
        SummaryRow(
            TaskOutcome("t1", "dev", "fix", succeeded, 1, 1.0, exit_code=0, total_s=1.0), Stray(("x",), ("t2",))
        ),
        SummaryRow(TaskOutcome("t2", "doc", "write", succeeded, 1, 1.0, exit_code=0, total_s=1.0)),
        SummaryRow(TaskOutcome("t3", "dev", "skip", skipped, reason="needs t9"), unclaimed=None),
    ]
    assert summary_text(outcomes, 2.0, 2.0).splitlines()[:5] == [
        "id  agent  outcome      time  reason    description",
        "t1  dev    succeeded !  1.0s            fix",
        "t2  doc    succeeded    1.0s            write",
        "t3  dev    skipped            needs t9  skip",
        "! t1 changed outside the claims: x (also running: t2; any of them may have)",
    ]
    assert [(o.to_json()["unclaimed_writes"], o.to_json()["unclaimed_writes_also_running"]) for o in outcomes] == [
        (["x"], ["t2"]),
        ([], []),
        (None, None),
    ]


def test_a_summary_row_is_the_queues_outcome_with_what_only_the_cli_watches() -> None:
    report = AgentReport(cost_usd=0.25, input_tokens=3)
    retried = TaskOutcome("t1", "dev", "fix", TaskState.SUCCEEDED, 2, 1.5, "AgentExitError: 1", 0, "/l/t1.log", report)
    row = SummaryRow(retried, Stray(("x",), ()))
    assert row.reason is None  # it succeeded in the end: its first attempt's error is not its outcome
    assert row.to_json() == {
        "id": "t1",
        "agent": "dev",
        "description": "fix",
        "status": "succeeded",
        "exit_code": 0,
        "attempts": 2,
        "duration_s": 1.5,
        "total_s": None,
        "log": "/l/t1.log",
        "error": None,
        "cost_usd": 0.25,
        "tokens": {"input": 3, "output": 0},
        "unclaimed_writes": ["x"],
        "unclaimed_writes_also_running": [],
        "branch": None,  # in the shared checkout
        "merge": None,
        "changed_files": None,
        "insertions": None,
        "deletions": None,
        "worker": None,  # not on a cluster
    }
    callable_row = SummaryRow(TaskOutcome("t2", "py", "fn", TaskState.FAILED, 1, 0.1, "ValueError: no"))
    assert callable_row.reason == "ValueError: no"
    assert (callable_row.report, callable_row.to_json()["error"]) == (AgentReport(), "ValueError: no")


def test_a_cancelled_task_says_so_once() -> None:
    """Before: "cancelled (cancelled)", the reason repeating the outcome (issue 12)."""
    row = SummaryRow(TaskOutcome("t1", "dev", "fix", TaskState.CANCELLED, 0, reason="cancelled"))
    assert summary_text([row], 1.0, 0.0).splitlines()[:2] == [
        "id  agent  outcome    description",
        "t1  dev    cancelled  fix",
    ]
