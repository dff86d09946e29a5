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
