"""What reaches the queue's caller: futures, events, outcomes and the status.

The engine collects each change under its lock as a :class:`Resolution`, and delivers it
outside the lock (callbacks may call the queue): the task's :class:`TaskFuture` is settled, a
:class:`TaskEvent` sent. A finished task's :class:`TaskOutcome`, and the :class:`QueueStatus`,
are built from the scheduler's state on demand.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from .claims import Access, claim_texts
from .errors import QueueError, TaskSkippedError, TaskTimeoutError
from .estimates import Remaining, run_eta
from .records import QueueStatus, RunningTask, TaskOutcome, WaitingTask
from .reports import AgentReport
from .runner import SubprocessAgent
from .scheduler import Scheduler, TaskEntry
from .sync import ClaimSync
from .task import TaskState

__all__ = [
    "EVENT_KINDS",
    "Resolution",
    "TaskEvent",
    "TaskFuture",
    "call_quietly",
    "describe",
    "outcome",
    "queue_status",
    "resumes_at",
    "settle",
]

log = logging.getLogger("queue_core")


@dataclass(frozen=True)
class TaskEvent:
    """A task changed state. ``kind`` is "started"; "retrying" (it failed, a retry is due);
    "paused" (it hit a rate limit: it runs again once its agent's pause ends, see
    AgentTask.rate_limit_backoff); or a terminal state's value. ``error``: the last error, or
    why it was skipped; ``duration_s``: the last attempt's, in a terminal event of a task that
    ran and in "retrying" and "paused"; ``log``: its agent's log, in an event that ends an attempt of an agent command.

    Taken as the attempt ended, so that a listener need not ask the queue (an event stream, a
    report): ``exit_code``, the agent command's (negative: the signal that ended it; None for
    a callable, or before its first attempt ended); ``report``, what the agent reported (its
    cost and tokens those of every attempt so far); ``total_s``, the time of every attempt so
    far, the waits between them left out (None before the first one ran); ``resumes_at``, in
    "retrying" and "paused", when it is due to run again, on the queue's clock (as ``time``)."""

    kind: str
    task_id: str
    agent_type: str
    time: float
    attempt: int
    error: str | None = None
    description: str = ""
    duration_s: float | None = None
    log: str | None = None
    exit_code: int | None = None
    report: AgentReport | None = None
    total_s: float | None = None
    resumes_at: float | None = None


#: Event kinds of the states a task leaves RUNNING for that are not terminal.
EVENT_KINDS = {TaskState.RETRY_WAIT: "retrying", TaskState.QUEUED: "paused"}


@dataclass(frozen=True)
class Resolution:
    """A state change taken under the lock, delivered outside it."""

    future: Future[Any] | None  # None: not terminal yet, or resolved by someone else
    entry: TaskEntry
    state: TaskState
    attempt: int
    reason: str | None
    duration_s: float | None
    log: str | None  # taken under the lock: the attempt's, before a retry starts afresh
    result: Any = None
    error: BaseException | None = None
    exit_code: int | None = None  # these three as TaskEvent has them, taken with the rest
    report: AgentReport | None = None
    total_s: float | None = None
    resumes_at: float | None = None

    @classmethod
    def of(
        cls,
        entry: TaskEntry,
        future: Future[Any] | None,
        state: TaskState | None = None,
        result: Any = None,
        error: BaseException | None = None,
        ended_at: float | None = None,
        resumes_at: float | None = None,
    ) -> Resolution:
        """``entry``'s change; ``ended_at``, when an attempt of it just ended: a task that runs
        again (a retry, a rate limit) has no end of its own to tell the attempt's duration by."""
        state = state or entry.state
        agent = _agent(entry)
        ran = duration(entry)
        if ran is None and ended_at is not None and entry.started_at is not None:
            ran = ended_at - entry.started_at
        return cls(
            future,
            entry,
            state,
            entry.attempts,
            entry.outcome_reason,
            ran,
            agent_log(entry),
            result,
            error,
            exit_code=None if agent is None else agent.exit_code,
            report=None if agent is None else agent.report,
            total_s=entry.ran_s if entry.attempts else None,
            resumes_at=resumes_at,
        )


def settle(item: Resolution) -> None:
    """Settle the future of a terminal state; a caller's concurrent cancel() wins quietly."""
    future, state, task = item.future, item.state, item.entry.task
    assert future is not None
    with contextlib.suppress(InvalidStateError):
        if state is TaskState.SUCCEEDED:
            future.set_result(item.result)
        elif state is TaskState.CANCELLED and not future.running():
            Future.cancel(future)  # the plain method: the task is already cancelled here
            with contextlib.suppress(RuntimeError):  # its begin() notified them already
                future.set_running_or_notify_cancel()  # wait() and as_completed() hear of it
        elif state is TaskState.CANCELLED:
            future.set_exception(CancelledError(f"task {task.id!r} was stopped"))
        elif state is TaskState.SKIPPED:
            future.set_exception(TaskSkippedError(task.id, item.reason or "skipped"))
        elif state in (TaskState.FAILED, TaskState.RATE_LIMITED):
            future.set_exception(item.error or RuntimeError(item.reason or state.value))
        else:  # TIMED_OUT, at the deadline or when the call returned
            future.set_exception(TaskTimeoutError(task.id, task.timeout or 0.0))


def outcome(entry: TaskEntry) -> TaskOutcome:
    """How ``entry``, which finished, ended."""
    agent = _agent(entry)
    exit_code = None if agent is None else agent.exit_code
    return TaskOutcome(
        entry.id,
        entry.agent,
        entry.task.task_description,
        entry.state,
        attempts=entry.attempts,
        duration_s=duration(entry),
        reason=entry.outcome_reason,
        exit_code=exit_code,
        log=agent_log(entry),
        report=None if agent is None else agent.report or AgentReport(),
        total_s=entry.ran_s if entry.attempts else None,
        isolation=None if agent is None else agent.isolation,
        merge=None if agent is None else agent.merge_outcome(),
    )


def agent_log(entry: TaskEntry) -> str | None:
    """The log of ``entry``'s agent command, once one of its attempts ran; None for a callable."""
    agent = _agent(entry)
    return None if agent is None or agent.exit_code is None else str(agent.log)


def _agent(entry: TaskEntry) -> SubprocessAgent | None:
    fn = entry.task.execute_fn
    return fn if isinstance(fn, SubprocessAgent) else None


def resumes_at(sched: Scheduler, entry: TaskEntry) -> float | None:
    """When ``entry``, whose attempt ended and which is to run again, is due: its retry, or the
    end of its agent's rate-limit pause; None if it is not waiting for a time (lock held)."""
    if entry.state.is_terminal:
        return None
    reason = sched.wait_reason(entry)
    return None if reason is None else reason.until


def duration(entry: TaskEntry) -> float | None:
    if entry.started_at is None or entry.finished_at is None:
        return None
    return entry.finished_at - entry.started_at


def describe(error: BaseException) -> str:
    """An attempt's error in a line: queue_core's own by its message, a sentence that needs no
    class name ("the agent exited with code 3"); any other with its class ("ValueError: no")."""
    text = str(error)
    if isinstance(error, QueueError) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def call_quietly(fn: Callable[[], object]) -> None:
    """Call a user's callback: what it raises is logged, never the queue's problem."""
    try:
        fn()
    except Exception:
        log.exception("callback %r raised", fn)


class TaskFuture(Future[Any]):
    """A Future whose cancel() also cancels its task in the queue (``cancel_task``)."""

    def __init__(self, cancel_task: Callable[[str], object], task_id: str):
        super().__init__()
        self._cancel_task = cancel_task
        self._task_id = task_id

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        with contextlib.suppress(KeyError):
            self._cancel_task(self._task_id)
        return True


def queue_status(sched: Scheduler, sync: ClaimSync, now: float, waiting_limit: int | None) -> QueueStatus:
    """The status of a queue (its engine's lock held); ``waiting_limit`` caps the waiting tasks described."""
    running = sched.running
    reserved = sched.reserved
    return QueueStatus(
        queued_tasks=sched.unfinished - len(running),
        max_parallel=sched.max_parallel,
        running=tuple(
            RunningTask(
                e.id,
                e.agent,
                e.task.task_description,
                files=claim_texts(e.held(Access.WRITE)),
                reads=claim_texts(e.held(Access.READ)),
                attempt=e.attempts,
                elapsed_s=now - (e.started_at or now),
                timed_out=e.timed_out,
                pid=getattr(e.task.execute_fn, "pid", None),
                estimate_s=e.task.estimate_s,
                worker=getattr(e.task.execute_fn, "worker", None),
                added=tuple(c.text for c, _ in e.added),
            )
            for e in running
        ),
        waiting=tuple(
            WaitingTask(
                e.id,
                e.agent,
                e.task.task_description,
                state=e.state.value,
                reason=reason.describe(now, sync.annotate),
                reason_kind=reason.kind,
                blocked_by=reason.holder,
                reserved=e is reserved,
                resumes_in_s=None if reason.until is None else max(0.0, reason.until - now),
            )
            for e, reason in sched.waiting(waiting_limit)
        ),
        counts=sched.outcomes,
        registry_error=None if sync.error is None else str(sync.error),
        registry_wait=sync.lock_wait,
        eta_s=_eta(sched, now) if sched.estimated else None,
    )


def _eta(sched: Scheduler, now: float) -> float | None:
    """The time the tasks not finished are likely to take yet, from their estimates (None if one
    has none). A look at every task: only asked of a queue given estimates."""
    left = [
        Remaining.of(
            e.id,
            e.agent,
            e.task.estimate_s,
            elapsed_s=now - e.started_at if e.state is TaskState.RUNNING and e.started_at is not None else 0.0,
            dependents=e.dependents,
        )
        for e in sched.entries()
        if not e.state.is_terminal
    ]
    return run_eta(left, sched.max_parallel, sched.capacity_of)
