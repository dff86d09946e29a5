"""What a run's summary is made of (issue 12): a timed-out attempt says so, a task's time counts
every attempt, and the summary and --json say it in lines that fit the terminal."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cli.render import SummaryRow, event_line, summary_text
from queue_core import AgentTask, TaskEvent, TaskOutcome, TaskState
from queue_core.errors import AgentExitError, AgentReportedError
from queue_core.results import describe, outcome
from queue_core.scheduler import Scheduler


def _noop() -> None:
    """The execute_fn of the tasks here; the scheduler never calls it."""


def test_a_timed_out_attempt_says_after_how_long_and_which_attempt_it_was() -> None:
    """Before: its reason was the agent's exit, "AgentExitError: the agent was killed by signal 15"."""
    sched = Scheduler(2, rng=random.Random(0))
    sched.add(AgentTask("a", "d", ["x"], _noop, id="t", timeout=1.0, retries=2, retry_jitter=0.0), 0.0)
    reasons = []
    now = 0.0
    for _ in range(3):
        [entry] = sched.dispatch(now)
        sched.expire(now + 1.0)
        sched.finish("t", TaskState.FAILED, now + 1.25, "AgentExitError: the agent was killed by signal 15")
        reasons.append(entry.outcome_reason)
        now = entry.retry_at or now + 1.25
    assert reasons == [f"timed out after 1s (attempt {n} of 3)" for n in (1, 2, 3)]
    assert entry.state is TaskState.TIMED_OUT


def test_a_tasks_time_counts_every_attempt() -> None:
    """Before: only the last attempt's (three 1 s attempts gave a task time of 1.1 s)."""
    sched = Scheduler(2, rng=random.Random(0))
    sched.add(AgentTask("a", "d", ["x"], _noop, id="t", retries=2, retry_delay=5.0, retry_jitter=0.0), 0.0)
    for start in (0.0, 7.0, 19.0):  # each attempt runs 2 s; the back-off between them is no task time
        assert [e.id for e in sched.dispatch(start)] == ["t"]
        sched.finish("t", TaskState.FAILED, start + 2.0, "ValueError: no")
    done = outcome(sched.entry("t"))
    assert (done.status, done.attempts, done.duration_s, done.total_s) == (TaskState.FAILED, 3, 2.0, 6.0)


LONG = "implement the parser of the configuration language, with error recovery, messages and tests"
LOGS = "/work/repo/.git/project-manager/logs/20261128-194238-10421-711527"


def _row(task_id: str, agent: str, status: TaskState, total_s: float, reason: str | None = None) -> SummaryRow:
    """A task of an agent command that ran: its log, in LOGS, named after it."""
    return SummaryRow(
        TaskOutcome(task_id, agent, LONG, status, 1, total_s, reason, 0, f"{LOGS}/{task_id}.log", total_s=total_s)
    )


def _rows() -> list[SummaryRow]:
    return [
        _row("parser", "code_developer", TaskState.SUCCEEDED, 2.0),
        _row("broken", "shell", TaskState.FAILED, 0.1, "the agent exited with code 3"),
        _row("slow", "sleeper", TaskState.TIMED_OUT, 3.2, "timed out after 1s (attempt 3 of 3)"),
    ]


@pytest.mark.parametrize("width", [80, 100])
def test_every_line_of_the_summary_fits_the_terminal(width: int) -> None:
    """Before: the log's absolute path inside the outcome too, 165 columns here, wrapping at 120 and 80."""
    text = summary_text(_rows(), 3.3, 5.3, width=width, logs=LOGS)
    lines = text.splitlines()
    assert max(map(len, lines)) <= width, text
    assert lines[0] == f"logs: {LOGS}/"
    assert text.count(LOGS) == 1  # the folder once; each row names its log's file
    assert [line.split()[4] for line in lines[2:5]] == ["parser.log", "broken.log", "slow.log"]
    assert LONG not in text


def test_at_80_columns_the_description_gives_way_then_the_reason_is_cut() -> None:
    assert summary_text(_rows(), 3.3, 5.3, width=80).splitlines() == [
        "id      agent           outcome    time  log         reason",
        "parser  code_developer  succeeded  2.0s  parser.log",
        "broken  shell           failed     0.1s  broken.log  the agent exited with code…",
        "slow    sleeper         timed_out  3.2s  slow.log    timed out after 1s (attemp…",
        "",
        "1/3 succeeded; wall 3.3s, task time 5.3s, speedup 1.61x",
    ]


def test_at_100_columns_the_reasons_are_whole() -> None:
    lines = summary_text(_rows(), 3.3, 5.3, width=100).splitlines()
    assert lines[2].endswith("  broken.log  the agent exited with code 3")
    assert lines[3].endswith("  slow.log    timed out after 1s (attempt 3 of 3)")


def test_a_long_description_is_cut_never_wrapped() -> None:
    [header, row] = summary_text([_row("parser", "dev", TaskState.SUCCEEDED, 2.0)], 2.0, 2.0).splitlines()[:2]
    assert header == "id      agent  outcome    time  log         description"
    start = "parser  dev    succeeded  2.0s  parser.log  "
    assert row == start + LONG[: 100 - len(start) - 1] + "…"


def test_an_event_line_names_the_log_as_the_summary_does_and_says_a_thing_once() -> None:
    """Before: the log's absolute path (the summary's was relative), and "cancelled t2 [dev]: cancelled"."""
    log = os.path.abspath(os.path.join("logs", "run", "t1.log"))
    failed = event_line(TaskEvent("failed", "t1", "dev", 0.0, 1, "the agent exited with code 3", log=log))
    assert failed.endswith(
        f" FAILED    t1 [dev]: the agent exited with code 3 (log: {os.path.join('logs', 'run', 't1.log')})"
    )
    assert event_line(TaskEvent("cancelled", "t2", "dev", 0.0, 0, "cancelled")).endswith(" cancelled t2 [dev]")


def test_an_attempts_error_reads_as_a_short_sentence() -> None:
    """Before: "AgentExitError: the agent was killed by signal 9 (log: /abs/path/t1.log)"."""
    log = Path("/abs/path/t1.log")
    assert describe(AgentExitError(-9, log)) == "the agent was killed by signal 9 (SIGKILL)"
    assert describe(AgentExitError(3, log)) == "the agent exited with code 3"
    assert describe(AgentReportedError("error_max_turns", log)) == "the agent reported an error: error_max_turns"
    assert describe(ValueError("no")) == "ValueError: no"  # not queue_core's: its class says what it is
