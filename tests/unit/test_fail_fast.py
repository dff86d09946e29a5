"""Fail fast (``TaskQueue(fail_fast=...)``), stepped by hand: the failure is decided under the
engine's lock, before the dispatch of the same step, so nothing starts once it is decided."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any

import pytest

from queue_core import AgentTask, RateLimitedError, TaskQueue, TaskState
from queue_core.errors import ConflictError, InvalidArgumentError
from queue_core.failfast import FailFast

from ..conftest import WAIT, Gate, wait_for
from .test_engine import Stepped


class FailingFast(Stepped):
    """An engine with hand-driven parts that fails fast (``mode``), and the events it sent."""

    def __init__(self, mode: bool | str = True, max_parallel: int = 2) -> None:
        super().__init__(max_parallel, fail_fast=FailFast.of(mode))

    def ended(self, task_id: str) -> tuple[TaskState, str | None]:
        entry = self.entry(task_id)
        return entry.state, entry.outcome_reason


@dataclass
class StopMe:
    """A Stoppable body that only records that it was asked to stop."""

    stops: list[str] = field(default_factory=list)

    def __call__(self) -> None:
        return None

    def stop(self) -> None:
        self.stops.append("stop")


def task(task_id: str, files: list[str], agent: str | None = None, **options: Any) -> AgentTask:
    body = options.pop("body", lambda: None)
    return AgentTask(agent or f"agent-{task_id}", f"task {task_id}", files, body, id=task_id, **options)


def test_a_task_its_failure_would_have_started_in_the_same_step_does_not_start() -> None:
    s = FailingFast()
    s.engine.submit([task("A", ["x.py"]), task("B", ["x.py"])])  # B waits for A's claim
    assert s.executor.ids() == ["A"]
    assert s.run("A", error=RuntimeError("no")) is None  # without fail_fast, A's thread would run B next
    assert s.executor.ids() == ["A"]
    assert s.ended("B") == (TaskState.CANCELLED, "not started: fail-fast after A failed")
    assert s.entry("B").attempts == 0
    assert [(e.task_id, e.kind, e.error) for e in s.events if e.task_id == "B"] == [
        ("B", "cancelled", "not started: fail-fast after A failed")
    ]
    assert s.engine.join(0)


def test_without_fail_fast_the_same_step_starts_the_waiting_task() -> None:
    s = FailingFast(mode=False)
    s.engine.submit([task("A", ["x.py"]), task("B", ["x.py"])])
    assert s.run("A", error=RuntimeError("no")) == "B"


def test_running_tasks_finish_and_every_task_not_started_is_cancelled() -> None:
    s = FailingFast(max_parallel=2)
    futures = s.engine.submit([task("A", ["a"]), task("B", ["b"]), task("C", ["c"]), task("D", ["d"])])
    assert s.executor.ids() == ["A", "B"]
    assert s.engine.begin(s.entry("B"))
    assert s.run("A", error=RuntimeError("no")) is None
    assert s.ended("C") == (TaskState.CANCELLED, "not started: fail-fast after A failed")
    assert s.ended("D") == (TaskState.CANCELLED, "not started: fail-fast after A failed")
    assert futures[2].cancelled()
    assert not s.entry("B").stop_requested  # it finishes
    s.engine.end(s.entry("B"), True, "b done")
    assert futures[1].result(timeout=0) == "b done"
    assert s.executor.ids() == ["A", "B"]


def test_with_cancel_running_tasks_are_stopped_and_say_why() -> None:
    s = FailingFast("cancel", max_parallel=2)
    body = StopMe()
    futures = s.engine.submit([task("A", ["a"]), task("B", ["b"], body=body), task("C", ["c"])])
    assert s.engine.begin(s.entry("B"))
    s.run("A", error=RuntimeError("no"))
    assert body.stops == ["stop"]
    s.engine.end(s.entry("B"), True, error=RuntimeError("terminated"))  # as a stopped agent ends
    assert s.ended("B") == (TaskState.CANCELLED, "stopped: fail-fast after A failed")
    assert s.ended("C") == (TaskState.CANCELLED, "not started: fail-fast after A failed")
    with pytest.raises(CancelledError):
        futures[1].result(timeout=0)
    assert s.engine.join(0)


def test_with_cancel_a_task_started_but_not_yet_entered_is_never_entered() -> None:
    s = FailingFast("cancel", max_parallel=2)
    s.engine.submit([task("A", ["a"]), task("B", ["b"])])
    assert s.engine.begin(s.entry("A"))
    s.engine.end(s.entry("A"), True, error=RuntimeError("no"))
    assert not s.engine.begin(s.entry("B"))  # its thread had not entered it yet
    s.engine.end(s.entry("B"), False)
    assert s.ended("B") == (TaskState.CANCELLED, "stopped: fail-fast after A failed")


def test_a_failure_with_a_retry_due_is_not_a_failure_yet() -> None:
    s = FailingFast(max_parallel=1)
    s.engine.submit([task("A", ["a"], retries=1, retry_delay=5.0, retry_jitter=0.0), task("B", ["b"])])
    assert s.run("A", error=RuntimeError("flaky")) == "B"  # A waits to retry; B may start
    assert s.run("B") is None
    s.clock.now = 5.0
    s.engine.tick()
    assert s.executor.ids() == ["A", "A"]
    s.engine.submit([task("C", ["c"])])
    assert s.run("A", error=RuntimeError("again")) is None
    assert s.ended("A") == (TaskState.FAILED, "RuntimeError: again")
    assert s.ended("C") == (TaskState.CANCELLED, "not started: fail-fast after A failed")


def test_a_task_waiting_to_retry_when_another_fails_is_not_retried() -> None:
    s = FailingFast(max_parallel=2)
    s.engine.submit([task("A", ["a"], retries=2, retry_delay=5.0), task("B", ["b"])])
    assert s.engine.begin(s.entry("B"))
    s.run("A", error=RuntimeError("flaky"))
    assert s.entry("A").state is TaskState.RETRY_WAIT
    s.engine.end(s.entry("B"), True, error=RuntimeError("no"))
    assert s.ended("A") == (TaskState.CANCELLED, "not retried: fail-fast after B failed")
    s.clock.now = 10.0
    s.engine.tick()
    assert s.executor.ids() == ["A", "B"]


def test_tasks_not_started_are_cancelled_dependents_first_and_the_failures_dependents_are_skipped() -> None:
    s = FailingFast(max_parallel=1)
    s.engine.submit(
        [
            task("A", ["a"]),
            task("B", ["b"]),
            task("C", ["c"], depends_on=["B"]),
            task("D", ["d"], depends_on=["C"]),
            task("E", ["e"], depends_on=["A"]),
        ]
    )
    s.run("A", error=RuntimeError("no"))
    reason = "not started: fail-fast after A failed"
    assert [s.ended(t) for t in "BCD"] == [(TaskState.CANCELLED, reason)] * 3
    assert s.ended("E") == (TaskState.SKIPPED, "dependency A failed")
    assert s.engine.sched.outcomes["cancelled"] == 3


@pytest.mark.parametrize(
    ("options", "error", "said"),
    [
        ({"timeout": 1.0}, None, "timed out"),
        ({"rate_limit_max_wait": 0.0}, RateLimitedError("429"), "stayed rate-limited"),
    ],
)
def test_a_timeout_and_a_rate_limit_for_good_fail_fast_too(
    options: dict[str, Any], error: BaseException | None, said: str
) -> None:
    s = FailingFast(max_parallel=1)
    s.engine.submit([task("A", ["a"], **options), task("B", ["b"])])
    assert s.engine.begin(s.entry("A"))
    if "timeout" in options:
        s.clock.now = 2.0
        s.engine.tick()
    s.engine.end(s.entry("A"), True, error=error)
    assert s.ended("B") == (TaskState.CANCELLED, f"not started: fail-fast after A {said}")


def test_a_rate_limit_that_pauses_a_task_and_a_cancelled_task_are_no_failure() -> None:
    s = FailingFast(max_parallel=1)
    s.engine.submit([task("A", ["a"], agent="shared"), task("B", ["b"]), task("C", ["c"])])
    assert s.run("A", error=RateLimitedError("429", retry_after=30.0)) == "B"  # paused, to run again
    assert s.engine.cancel("C")
    assert s.run("B") is None
    assert s.engine.fail_fast is not None
    assert s.engine.fail_fast.reason is None
    s.clock.now = 30.0
    s.engine.tick()
    assert s.executor.ids() == ["A", "A"]


def test_after_it_failed_fast_a_new_task_is_cancelled_and_try_submit_refuses() -> None:
    s = FailingFast(max_parallel=2)
    s.engine.submit([task("A", ["a"])])
    s.run("A", error=RuntimeError("no"))
    (late,) = s.engine.submit([task("B", ["b"])])
    assert late.cancelled()
    assert s.ended("B") == (TaskState.CANCELLED, "not started: fail-fast after A failed")
    with pytest.raises(ConflictError, match="not started: fail-fast after A failed"):
        s.engine.try_submit(task("C", ["c"]))
    assert s.executor.ids() == ["A"]


@pytest.mark.parametrize("mode", ["yes", 1, None, "Cancel"])
def test_a_fail_fast_that_is_not_false_true_or_cancel_is_refused(mode: object) -> None:
    with pytest.raises(InvalidArgumentError, match="fail_fast must be False, True or"):
        TaskQueue(fail_fast=mode)  # type: ignore[arg-type]


def test_a_queue_on_threads_fails_fast_while_a_task_runs_and_starts_nothing_more() -> None:
    running, started = Gate(), []

    def fail() -> None:
        wait_for(running.started, "B to run")
        raise RuntimeError("no")

    def never() -> None:
        started.append("C")

    with TaskQueue(2, fail_fast=True) as queue:
        a, b, c = queue.submit_tasks(
            [task("A", ["a"], body=fail), task("B", ["b"], body=running), task("C", ["c"], body=never)]
        )
        with pytest.raises(RuntimeError):
            a.result(timeout=WAIT)
        with pytest.raises(CancelledError):
            c.result(timeout=WAIT)
        running.open()
        assert b.result(timeout=WAIT) is None
    assert started == []
    reasons = {o.id: (o.status, o.reason) for o in queue.outcomes()}
    assert reasons["C"] == (TaskState.CANCELLED, "not started: fail-fast after A failed")
    assert reasons["B"][0] is TaskState.SUCCEEDED


@dataclass
class Blocking:
    """A Stoppable body that runs until it is stopped, then fails as a stopped agent does."""

    entered: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __call__(self) -> None:
        self.entered.set()
        assert self.stopped.wait(WAIT), "never stopped"
        raise RuntimeError("terminated")

    def stop(self) -> None:
        self.stopped.set()


def test_a_queue_on_threads_with_cancel_stops_the_running_task() -> None:
    body = Blocking()

    def fail() -> None:
        wait_for(body.entered, "B to run")
        raise RuntimeError("no")

    with TaskQueue(2, fail_fast="cancel") as queue:
        queue.submit_tasks([task("A", ["a"], body=fail), task("B", ["b"], body=body)])
        assert queue.join(WAIT)
    reasons = {o.id: (o.status, o.reason) for o in queue.outcomes()}
    assert reasons["B"] == (TaskState.CANCELLED, "stopped: fail-fast after A failed")
