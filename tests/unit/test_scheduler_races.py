"""Scheduler: what a start taken back (``unstart``) leaves behind."""

from __future__ import annotations

import random

from queue_core.scheduler import Scheduler
from queue_core.task import AgentTask


def _noop() -> None:
    """The execute_fn of every task here; the scheduler never calls it."""


def test_a_task_restarted_after_unstart_times_out_counting_from_the_restart() -> None:
    """The deadline of a start that was taken back is gone: the restart sets its own."""
    sched = Scheduler(2, rng=random.Random(0))
    sched.add(AgentTask("a", "timed", ["a.txt"], _noop, id="T", timeout=10.0), 0.0)
    assert [e.id for e in sched.dispatch(0.0)] == ["T"]
    sched.unstart("T")  # its registry write failed: it never ran
    assert [e.id for e in sched.dispatch(8.0)] == ["T"]
    assert sched.entry("T").deadline == 18.0
    assert sched.next_wakeup() == 18.0
    assert sched.expire(11.0) == []  # the failed start's deadline (10.0) is not live
    assert [e.id for e in sched.expire(18.0)] == ["T"]


def test_a_start_taken_back_frees_its_agent_for_a_better_task_that_came_meanwhile() -> None:
    """While T's start was being written, U of the same agent came, ranked above it, and found
    the agent busy. Taking T's start back must let U start, though T is not its agent's best."""
    sched = Scheduler(2, rng=random.Random(0))
    sched.add(AgentTask("a", "first", ["t.txt"], _noop, id="T"), 0.0)
    assert [e.id for e in sched.dispatch(0.0)] == ["T"]
    sched.add(AgentTask("a", "urgent", ["u.txt"], _noop, priority=1, id="U"), 0.0)
    assert sched.dispatch(0.0) == []  # agent a is busy with T
    sched.unstart("T")
    assert [e.id for e in sched.dispatch(0.0)] == ["U"]
