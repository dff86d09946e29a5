"""Rate limits: an attempt that hits one pauses its agent type, then runs again, its retries unspent.

The scheduler is stepped with ``now`` passed in; the queue is driven with a hand-moved clock.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import CancelledError
from typing import Any

import pytest

from queue_core import RateLimitedError, TaskEvent, TaskQueue
from queue_core.errors import InvalidTaskError
from queue_core.task import AgentTask, TaskState
from tests.conftest import WAIT

from .test_scheduler import ids, make, reason_of, task

LIMITED = TaskState.RATE_LIMITED


def test_a_rate_limited_attempt_waits_for_its_agent_without_spending_a_retry() -> None:
    sched = make()
    sched.add_batch([task("a", "claude", ["x.py"]), task("b", "claude", ["y.py"]), task("c", "codex", ["x.py"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["a"]
    assert ids(sched.finish("a", LIMITED, 1.0, "429")) == ["a"]
    entry = sched.entry("a")
    assert entry.state is TaskState.QUEUED
    assert entry.task.retries == 0
    # The claim on x.py is free: codex takes it; claude's tasks wait for the back-off, told why.
    assert ids(sched.dispatch(1.0)) == ["c"]
    assert (
        reason_of(sched, "a").describe(6.0)
        == "claude rate-limited, resumes in 25s; x.py overlaps x.py held by codex (c)"
    )
    assert reason_of(sched, "b").kind == "rate_limit"
    assert sched.next_wakeup() == 31.0
    assert ids(sched.dispatch(30.9)) == []
    sched.finish("c", TaskState.SUCCEEDED, 31.0)
    assert ids(sched.dispatch(31.0)) == ["a"]  # the best-ranked task of the agent goes first
    assert sched.entry("a").attempts == 2
    sched.finish("a", TaskState.SUCCEEDED, 40.0)
    assert sched.entry("a").state is TaskState.SUCCEEDED


def test_the_back_off_doubles_to_its_cap_and_a_clean_attempt_resets_it() -> None:
    sched = make()
    sched.add(task("a", "claude", rate_limit_backoff=30.0, rate_limit_max_wait=1e9), 0.0)
    now, pauses = 0.0, []
    for _ in range(7):
        assert ids(sched.dispatch(now)) == ["a"]
        sched.finish("a", LIMITED, now, "429")
        resume = sched.next_wakeup()
        assert resume is not None
        pauses.append(resume - now)
        now = resume
    assert pauses == [30, 60, 120, 240, 480, 900, 900]
    sched.add(task("b", "claude"), now)
    assert ids(sched.dispatch(now)) == ["a"]
    sched.finish("a", TaskState.SUCCEEDED, now + 1)
    assert ids(sched.dispatch(now + 1)) == ["b"]
    sched.finish("b", LIMITED, now + 2, "429")
    assert sched.next_wakeup() == now + 2 + 30  # back to the first step


def test_a_reset_the_agent_named_is_honoured() -> None:
    sched = make()
    sched.add(task("a", "gemini"), 0.0)
    sched.dispatch(0.0)
    sched.finish("a", LIMITED, 5.0, "quota", retry_after=41.0)
    assert sched.next_wakeup() == 46.0
    assert reason_of(sched, "a").until == 46.0


def test_a_reset_that_proves_wrong_again_and_again_backs_off_anyway() -> None:
    """An agent that says "try again in 0s" each time must not be started in a tight loop."""
    sched = make()
    sched.add(task("a", "codex", rate_limit_backoff=30.0), 0.0)
    now, pauses = 0.0, []
    for _ in range(3):
        sched.dispatch(now)
        sched.finish("a", LIMITED, now, "429", retry_after=0.0)
        resume = sched.next_wakeup()
        assert resume is not None
        pauses.append(resume - now)
        now = resume
    assert pauses == [0, 60, 120]


@pytest.mark.parametrize("nonsense", [float("nan"), -5.0, float("inf")])
def test_a_reset_that_is_no_time_is_not_honoured(nonsense: float) -> None:
    sched = make()
    sched.add(task("a", "claude", rate_limit_backoff=30.0), 0.0)
    sched.dispatch(0.0)
    sched.finish("a", LIMITED, 0.0, "429", retry_after=nonsense)
    assert sched.next_wakeup() == 30.0


def test_an_agent_idle_since_its_last_pause_starts_a_new_run_of_limits() -> None:
    """Before: a task cancelled while paused left its agent's run of limits behind; a task of the
    agent submitted hours later gave up at its first limit, "rate-limited for 2h 46m"."""
    sched = make()
    sched.add(task("a", "claude", rate_limit_backoff=30.0, rate_limit_max_wait=100.0), 0.0)
    sched.dispatch(0.0)
    sched.finish("a", LIMITED, 0.0, "429")
    sched.cancel("a", 1.0)
    sched.add(task("b", "claude", rate_limit_backoff=30.0, rate_limit_max_wait=100.0), 10_000.0)
    assert ids(sched.dispatch(10_000.0)) == ["b"]
    assert sched.finish("b", LIMITED, 10_001.0, "429")[0].state is TaskState.QUEUED
    assert sched.next_wakeup() == 10_031.0  # the first step of the back-off again


def test_past_the_max_wait_the_task_fails_as_rate_limited_and_its_dependents_are_skipped() -> None:
    sched = make()
    a = task("a", "claude", rate_limit_backoff=30.0, rate_limit_max_wait=100.0)
    sched.add_batch([a, task("d", "codex", depends_on=["a"])], 0.0)
    sched.dispatch(0.0)
    sched.finish("a", LIMITED, 0.0, "429")  # resumes at 30
    sched.dispatch(30.0)
    sched.finish("a", LIMITED, 30.0, "429")  # resumes at 90: 90 s in a row, within 100
    sched.dispatch(90.0)
    changed = sched.finish("a", LIMITED, 90.0, "429")  # would resume at 210: over 100
    assert {e.id: e.state for e in changed} == {"a": LIMITED, "d": TaskState.SKIPPED}
    assert sched.entry("a").outcome_reason == (
        "rate-limited for 1m 30s; waiting longer would pass rate_limit_max_wait (1m 40s): 429"
    )
    assert sched.outcomes["rate_limited"] == 1
    assert sched.unfinished == 0


def test_a_reset_beyond_the_max_wait_fails_at_once_and_does_not_hold_the_agent() -> None:
    sched = make()
    sched.add_batch([task("a", "claude", rate_limit_max_wait=60.0), task("b", "claude")], 0.0)
    sched.dispatch(0.0)
    assert sched.finish("a", LIMITED, 1.0, "hit your limit", retry_after=3600.0)[0].state is LIMITED
    assert ids(sched.dispatch(1.0)) == ["b"]  # b gets its own try: the account may have come back


def test_retries_count_only_attempts_that_were_not_rate_limited() -> None:
    sched = make()
    sched.add(task("a", "claude", retries=1, retry_delay=0.0, retry_jitter=0.0), 0.0)
    sched.dispatch(0.0)
    sched.finish("a", LIMITED, 0.0, "429")
    sched.dispatch(30.0)
    sched.finish("a", TaskState.FAILED, 31.0, "boom")  # the first real failure: one retry left
    assert sched.entry("a").state is TaskState.RETRY_WAIT
    sched.dispatch(31.0)
    assert sched.finish("a", TaskState.FAILED, 32.0, "boom")[0].state is TaskState.FAILED


def test_a_task_released_from_a_claim_while_its_agent_is_paused_waits_for_the_pause() -> None:
    sched = make()
    sched.add_batch([task("h", "codex", ["x.py"]), task("a", "claude", ["y.py"]), task("w", "claude", ["x.py"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["h", "a"]
    sched.finish("a", LIMITED, 1.0, "429")
    sched.dispatch(1.0)
    sched.finish("h", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == []
    assert reason_of(sched, "w").kind == "rate_limit"
    assert ids(sched.dispatch(31.0)) == ["a"]


def test_cancelling_a_task_that_waits_for_a_rate_limit() -> None:
    sched = make()
    sched.add(task("a", "claude"), 0.0)
    sched.dispatch(0.0)
    sched.finish("a", LIMITED, 0.0, "429")
    assert sched.cancel("a", 1.0)[0].state is TaskState.CANCELLED
    assert sched.unfinished == 0


def test_try_start_refuses_a_paused_agent() -> None:
    sched = make()
    sched.add(task("a", "claude"), 0.0)
    sched.dispatch(0.0)
    sched.finish("a", LIMITED, 0.0, "429")
    with pytest.raises(Exception, match="claude rate-limited"):
        sched.try_start(task("b", "claude"), 1.0)
    sched.cancel("a", 1.0)


def test_task_rejects_a_bad_back_off() -> None:
    with pytest.raises(ValueError, match="rate_limit_backoff"):
        task("a", "claude", rate_limit_backoff=0)
    with pytest.raises(ValueError, match="rate_limit_max_wait"):
        task("a", "claude", rate_limit_max_wait=-1)


# --- through the queue -----------------------------------------------------------------------


def _flaky(limits: list[RateLimitedError]) -> Any:
    """A task body that raises each of ``limits`` in turn, then returns "done"."""

    def work() -> str:
        if limits:
            raise limits.pop(0)
        return "done"

    return work


def test_the_queue_runs_a_rate_limited_task_again_once_the_pause_ends() -> None:
    """No retries, no timeout: the timer must still wake for the pause's end."""
    events: list[TaskEvent] = []
    with TaskQueue(2, on_event=events.append) as queue:
        work = _flaky([RateLimitedError("429 Too Many Requests", retry_after=0.01)])
        future = queue.submit_task(AgentTask("claude", "d", ["x.py"], work, id="a"))
        assert future.result(WAIT) == "done"
    assert [(e.kind, e.attempt) for e in events] == [("started", 1), ("paused", 1), ("started", 2), ("succeeded", 2)]
    assert events[1].error == "429 Too Many Requests"  # queue_core's own error: its message says it all


def test_status_says_which_agent_is_paused_and_until_when() -> None:
    paused = threading.Event()
    with TaskQueue(2, on_event=lambda e: paused.set() if e.kind == "paused" else None) as queue:
        work = _flaky([RateLimitedError("429", retry_after=3600.0)])
        future = queue.submit_task(AgentTask("claude", "d", ["x.py"], work, id="a"))
        assert paused.wait(WAIT)
        [waiting] = queue.get_status().waiting
        assert re.fullmatch(r"claude rate-limited, resumes in (1h 00m|59m \d\ds)", waiting.reason)
        assert queue.cancel("a")
        with pytest.raises(CancelledError):
            future.result(WAIT)


def test_a_task_that_gives_up_fails_its_future_with_the_rate_limit() -> None:
    with TaskQueue(1) as queue:
        work = _flaky([RateLimitedError("you've hit your limit", retry_after=10_000.0)])
        future = queue.submit_task(AgentTask("claude", "d", [], work, id="a", rate_limit_max_wait=60.0))
        with pytest.raises(RateLimitedError, match="hit your limit"):
            future.result(WAIT)
        queue.join(WAIT)
        assert queue.outcomes()[0].status is TaskState.RATE_LIMITED


def test_a_pause_always_ends_at_a_time_status_can_tell() -> None:
    """Before: with rate_limit_max_wait=inf (wait as long as it takes), a reset of inf (a 400-digit
    Retry-After reads so) or a back-off of inf paused the agent until inf; telling when it
    resumes raised OverflowError (round(inf)), which with a registry killed the queue's timer
    thread, writing the run's record: the queue stopped."""
    with pytest.raises(InvalidTaskError, match="rate_limit_backoff"):
        AgentTask("claude", "d", ["x"], lambda: None, rate_limit_backoff=float("inf"))
    sched = make()
    sched.add(task("a", "claude", rate_limit_backoff=30.0, rate_limit_max_wait=float("inf")), 0.0)
    sched.dispatch(0.0)
    sched.finish("a", LIMITED, 0.0, "429", retry_after=float("inf"))
    assert sched.next_wakeup() == 30.0
    assert reason_of(sched, "a").describe(0.0) == "claude rate-limited, resumes in 30s"
