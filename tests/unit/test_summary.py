"""What a run's summary is made of (issue 12): a timed-out attempt says so, a task's time counts
every attempt, and the summary and --json say it in lines that fit the terminal."""

from __future__ import annotations

import random

from queue_core import AgentTask, TaskState
from queue_core.results import outcome
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

