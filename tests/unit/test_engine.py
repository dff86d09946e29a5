"""The engine stepped by hand: no thread, no sleep, no monkeypatching.

An executor that only records what it is given, a timer that only counts its wakes, a fake
clock and, where it matters, a fake sync: the test itself enters and ends attempts
(``begin``/``end``) and calls ``tick``, so every interleaving it checks is the one written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any

import pytest

from queue_core import AgentTask, RateLimitedError, TaskState, TaskTimeoutError
from queue_core.engine import Engine, TaskEvent, _live_engines
from queue_core.errors import StateError
from queue_core.failfast import FailFast
from queue_core.scheduler import Scheduler, TaskEntry
from queue_core.sync import ClaimSync, Decide, NoSync


@dataclass
class Handed:
    """An executor that runs nothing: the test runs what it was handed."""

    started: list[TaskEntry] = field(default_factory=list)
    closed: bool = False

    def start(self, entries: Sequence[TaskEntry]) -> None:
        self.started.extend(entries)

    def close(self) -> None:
        self.closed = True

    def join(self) -> None:
        pass

    def ids(self) -> list[str]:
        return [e.id for e in self.started]


@dataclass
class Alarm:
    """A timer that only counts its wakes: the test ticks."""

    wakes: int = 0

    def wake(self) -> bool:
        self.wakes += 1
        return True

    def join(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Stepped:
    """An engine with hand-driven parts, and the events it sent."""

    def __init__(
        self, max_parallel: int = 2, sync: Callable[[Clock], ClaimSync] | None = None, fail_fast: FailFast | None = None
    ) -> None:
        self.clock = Clock()
        self.executor = Handed()
        self.timer = Alarm()
        self.events: list[TaskEvent] = []
        self.engine = Engine(
            Scheduler(max_parallel),
            self.clock,
            self.events.append,
            sync=None if sync is None else (lambda engine: sync(self.clock)),
            executor=lambda engine: self.executor,
            timer=lambda engine: self.timer,
            fail_fast=fail_fast,
        )
        _live_engines.discard(self.engine)  # no thread to drain at exit, even if a test fails midway

    def entry(self, task_id: str) -> TaskEntry:
        return self.engine.sched.entry(task_id)

    def run(self, task_id: str, result: Any = None, error: BaseException | None = None) -> str | None:
        """Enter ``task_id``'s attempt and end it so; the id of the task handed back to run next."""
        entry = self.entry(task_id)
        assert self.engine.begin(entry)
        following = self.engine.end(entry, True, result, error)
        return None if following is None else following.id

    def kinds(self, task_id: str) -> list[str]:
        return [e.kind for e in self.events if e.task_id == task_id]


def task(task_id: str, files: list[str], agent: str = "a", **options: Any) -> AgentTask:
    return AgentTask(agent, f"task {task_id}", files, lambda: None, id=task_id, **options)


def test_a_task_waits_for_the_claim_it_shares_and_its_start_is_handed_to_the_thread_that_freed_it() -> None:
    s = Stepped()
    first, second = s.engine.submit([task("A", ["x.py"]), task("B", ["x.py"], agent="b")])
    assert s.executor.ids() == ["A"]
    assert s.run("A", result="a done") == "B"  # kept by A's thread: the executor is not asked
    assert s.executor.ids() == ["A"]
    assert first.result(timeout=0) == "a done"
    assert s.run("B", result=2) is None
    assert second.result(timeout=0) == 2
    assert s.engine.join(0)


def test_a_timed_out_call_fails_its_future_at_the_deadline_but_holds_its_claims_until_it_returns() -> None:
    s = Stepped()
    (late,) = s.engine.submit([task("A", ["x.py"], timeout=5.0)])
    (waiting,) = s.engine.submit([task("B", ["x.py"], agent="b")])
    assert s.engine.begin(s.entry("A"))
    assert s.timer.wakes  # the deadline is timed
    s.clock.now = 4.0
    assert s.engine.tick() == pytest.approx(1.0)  # not due: the next look in a second
    assert not late.done()
    s.clock.now = 6.0
    s.engine.tick()
    assert isinstance(late.exception(timeout=0), TaskTimeoutError)
    assert s.executor.ids() == ["A"]  # the call may still write x.py
    assert s.engine.status().waiting[0].id == "B"
    following = s.engine.end(s.entry("A"), True, "too late")
    assert following is s.entry("B")
    assert s.entry("A").state is TaskState.TIMED_OUT
    assert not waiting.done()


def test_a_retry_starts_only_once_its_delay_has_passed_on_the_engines_clock() -> None:
    s = Stepped()
    (future,) = s.engine.submit([task("A", ["x.py"], retries=1, retry_delay=2.0, retry_jitter=0.0)])
    wakes = s.timer.wakes
    assert s.run("A", error=RuntimeError("flaky")) is None
    assert s.timer.wakes > wakes  # the retry is timed
    assert s.kinds("A") == ["retrying"]
    s.clock.now = 1.0
    assert s.engine.tick() == pytest.approx(1.0)
    assert s.executor.ids() == ["A"]
    s.clock.now = 2.0
    assert s.engine.tick() == math.inf  # nothing timed any more, but the queue is not done
    assert s.executor.ids() == ["A", "A"]
    assert s.entry("A").attempts == 2
    assert s.run("A", result="second") is None
    assert future.result(timeout=0) == "second"


def test_a_rate_limit_pauses_the_agent_and_its_task_runs_again_when_the_pause_ends() -> None:
    s = Stepped()
    s.engine.submit([task("A", ["x.py"]), task("A2", ["y.py"])])  # one agent: A2 waits for A
    assert s.run("A", error=RateLimitedError("429", retry_after=30.0)) is None  # A2 may not take the paused agent
    assert s.kinds("A") == ["paused"]
    assert [w.reason_kind for w in s.engine.status().waiting] == ["rate_limit", "rate_limit"]
    s.clock.now = 29.0
    s.engine.tick()
    assert s.executor.ids() == ["A"]
    s.clock.now = 30.0
    s.engine.tick()
    assert s.executor.ids() == ["A", "A"]  # the paused task first, in its place


def test_cancelling_a_waiting_task_resolves_its_future_and_starts_nothing() -> None:
    s = Stepped()
    s.engine.submit([task("A", ["x.py"])])
    (waiting,) = s.engine.submit([task("B", ["x.py"], agent="b")])
    assert s.engine.cancel("B")
    with pytest.raises(CancelledError):
        waiting.result(timeout=0)
    assert s.run("A") is None
    assert s.executor.ids() == ["A"]


def test_an_attempt_stopped_before_its_body_was_entered_is_not_entered() -> None:
    s = Stepped()
    (future,) = s.engine.submit([task("A", ["x.py"])])
    s.engine.abort()
    entry = s.entry("A")
    assert not s.engine.begin(entry)
    s.engine.end(entry, False)
    assert future.cancelled()
    assert entry.state is TaskState.CANCELLED


def test_the_executor_is_closed_once_the_queue_is_shut_down_and_everything_is_delivered() -> None:
    s = Stepped()
    s.engine.submit([task("A", ["x.py"])])
    s.engine.shutdown(wait=False, cancel_pending=False)
    assert not s.executor.closed  # A still runs
    s.run("A")
    assert s.executor.closed
    assert s.engine.tick() is None  # and the timer has nothing left


class Unreachable(NoSync):
    """A sync whose shared state cannot be reached until ``heal``; what it lets start is decided as usual."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.error: OSError | None = StateError("claims.json", "unreadable")

    def step(self, decide: Decide, *, shared: bool) -> list[TaskEntry]:
        return [] if self.error is not None else super().step(decide, shared=shared)

    def poll(self, now: float) -> tuple[bool, list[str]]:
        return self.error is None, []

    def delay(self, now: float) -> float | None:
        return 0.5

    def heal(self) -> None:
        self.error = None


def test_while_the_shared_state_cannot_be_reached_nothing_starts_and_the_status_says_why() -> None:
    s = Stepped(sync=Unreachable)
    sync = s.engine.sync
    assert isinstance(sync, Unreachable)
    s.engine.submit([task("A", ["x.py"])])
    assert s.executor.ids() == []
    assert s.engine.status().registry_error == str(sync.error)
    with pytest.raises(StateError):
        s.engine.try_submit(task("B", ["y.py"], agent="b"))
    assert s.engine.tick() == 0.5
    sync.heal()
    s.engine.tick()
    assert s.executor.ids() == ["A"]
    assert s.engine.status().registry_error is None


def test_after_an_abort_a_pause_that_nothing_waits_for_any_more_is_not_timed() -> None:
    """Before: the pause's end stayed due, the aborted engine never dispatched to end it, and
    the timer thread spun on it at full CPU until the queue was shut down."""
    s = Stepped()
    s.engine.submit([task("A", ["x.py"]), task("A2", ["y.py"]), task("B", ["z.py"], agent="b")])
    assert s.engine.begin(s.entry("B"))  # a plain callable: it runs on after the abort
    assert s.run("A", error=RateLimitedError("429", retry_after=30.0)) is None
    s.engine.abort()
    s.clock.now = 31.0
    assert s.engine.tick() == math.inf  # B runs on, untimed
    s.engine.end(s.entry("B"), True)
    assert s.engine.join(0)


def test_an_attempt_that_timed_out_and_returns_after_an_abort_is_not_retried() -> None:
    """Before: it went to retry_wait, which an aborted queue never dispatches: join() and
    shutdown() waited for ever, and the timer spun on the retry's past due time."""
    s = Stepped()
    (future,) = s.engine.submit([task("A", ["x.py"], timeout=1.0, retries=1, retry_delay=0.0)])
    assert s.engine.begin(s.entry("A"))
    s.clock.now = 2.0
    s.engine.tick()  # expired; a retry is left, so the future waits for the call's end
    s.engine.abort()
    assert s.engine.end(s.entry("A"), True, "returned late") is None
    assert s.entry("A").state is TaskState.CANCELLED
    assert future.cancelled() or isinstance(future.exception(timeout=0), CancelledError)
    assert s.engine.tick() is None
    assert s.engine.join(0)


def test_a_future_the_queue_cancels_is_reported_done_to_concurrent_futures_waiters() -> None:
    """Before: cancel() alone left it CANCELLED, never CANCELLED_AND_NOTIFIED, so wait() and
    as_completed() did not count it done."""
    s = Stepped()
    s.engine.submit([task("A", ["x.py"])])
    (waiting,) = s.engine.submit([task("B", ["x.py"], agent="b")])
    assert s.engine.cancel("B")
    assert futures.wait([waiting], timeout=0).done == {waiting}
    assert list(futures.as_completed([waiting], timeout=0)) == [waiting]


def test_the_status_tells_each_running_tasks_estimate_and_the_time_the_run_has_left() -> None:
    s = Stepped(max_parallel=2)
    s.engine.submit(
        [
            task("A", ["a.py"], estimate_s=60.0),
            task("B", ["b.py"], estimate_s=30.0),  # agent a too: after A
            task("C", ["c.py"], agent="c", estimate_s=10.0),
        ]
    )
    assert s.executor.ids() == ["A", "C"]
    s.clock.now = 20.0
    status = s.engine.status()
    assert [(t.id, t.estimate_s) for t in status.running] == [("A", 60.0), ("C", 10.0)]
    # Left: A 40 s, then B 30 s on the same agent; C is past its estimate, counted done.
    assert status.eta_s == 70.0
    assert s.run("C") is None
    s.clock.now = 60.0
    assert s.run("A") == "B"
    s.clock.now = 75.0
    assert s.engine.status().eta_s == 15.0


def test_a_queue_without_estimates_tells_no_time_left() -> None:
    s = Stepped()
    s.engine.submit([task("A", ["a.py"], agent="x"), task("B", ["b.py"], estimate_s=5.0)])
    status = s.engine.status()
    assert status.eta_s is None  # A has none: the run's time left is unknown
    assert [(t.id, t.estimate_s) for t in status.running] == [("B", 5.0), ("A", None)]
