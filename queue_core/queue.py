"""TaskQueue: runs AgentTasks on worker threads, as many at once as the rules allow.

Dispatch is event-driven. Whoever changes the state (a submit, a task returning, a cancel)
asks the scheduler, under the queue's one lock, which tasks start now; a worker whose task
just returned runs the first task that release unblocked itself, without waking another
thread. Nothing polls: workers sleep on a condition until there is work, and the timer thread
(started only once a task has a timeout or retries) sleeps until the next deadline.

A Python callable cannot be killed. When one outlives its ``timeout`` its future fails with
TaskTimeoutError at the deadline (if no retry is left), but its claims stay held until the call
really returns, so nothing else touches its files while it may still write them. An
``execute_fn`` that also has a ``stop()`` method (see :class:`~queue_core.task.Stoppable`)
is asked to stop on timeout and on cancel.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .errors import QueueShutdownError, TaskSkippedError, TaskTimeoutError
from .ownership import FileOwnership
from .scheduler import Scheduler, TaskEntry
from .task import AgentTask, Stoppable, TaskState

__all__ = ["TaskEvent", "TaskQueue"]

log = logging.getLogger("queue_core")


@dataclass(frozen=True)
class TaskEvent:
    """A task changed state. ``kind`` is "started", "retrying" or a terminal state's value."""

    kind: str
    task_id: str
    agent_type: str
    time: float
    attempt: int
    error: str | None = None


_live_queues: weakref.WeakSet[TaskQueue] = weakref.WeakSet()


@atexit.register
def _finish_live_queues() -> None:
    # Workers are daemon threads; like concurrent.futures, let queued work finish at exit.
    for queue in list(_live_queues):
        queue.shutdown(wait=True)


class TaskQueue:
    """Runs agent tasks in parallel whenever their claims allow, never otherwise.

    ``max_parallel`` caps running tasks; ``ownership`` gives the paths claimed by a task that
    lists none; ``clock`` and ``rng`` are injectable for tests; ``on_event`` is called (from a
    worker thread, outside the lock) on every state change, and must be thread-safe.
    """

    def __init__(
        self,
        max_parallel: int = 4,
        *,
        ownership: FileOwnership | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_event: Callable[[TaskEvent], None] | None = None,
    ):
        self._sched = Scheduler(max_parallel, ownership=ownership, rng=rng)
        self._clock = clock
        self._on_event = on_event
        # _lock guards _sched, _futures, _results, _runnable, _shutdown and the thread bookkeeping.
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # workers: _runnable got an entry, or shutdown
        self._timer_wake = threading.Condition(self._lock)  # timer: next_wakeup may be earlier
        self._all_done = threading.Condition(self._lock)  # join/shutdown: unfinished reached 0
        self._futures: dict[str, Future[Any]] = {}
        self._runnable: deque[TaskEntry] = deque()
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._timer: threading.Thread | None = None
        self._shutdown = False
        _live_queues.add(self)

    @property
    def max_parallel(self) -> int:
        return self._sched.max_parallel

    # --- submitting -------------------------------------------------------------------------

    def submit_task(self, task: AgentTask) -> Future[Any]:
        """Queue ``task``; it starts as soon as its agent, claims, dependencies and a slot allow.

        The future's result is ``execute_fn``'s return value, its exception the task's
        (TaskTimeoutError, TaskSkippedError, or CancelledError for a cancelled task). Raises
        DuplicateTaskError, UnknownDependencyError, or QueueShutdownError after shutdown.
        """
        return self.submit_tasks([task])[0]

    def submit_tasks(self, tasks: Sequence[AgentTask]) -> list[Future[Any]]:
        """Queue a batch whose dependencies may point forward within it; all or nothing.

        Raises DuplicateTaskError, UnknownDependencyError or DependencyCycleError before
        anything is queued.
        """
        with self._lock:
            self._check_open()
            futures = {task.id: Future[Any]() for task in tasks}
            self._futures.update(futures)
            try:
                finished = self._sched.add_batch(tasks, self._clock())
            except BaseException:
                for task_id in futures:
                    del self._futures[task_id]
                raise
            self._hand_out(self._sched.dispatch(self._clock()))
            if any(t.timeout is not None or t.retries for t in tasks):
                self._ensure_timer()
            resolved = self._collect(finished)
        for task_id, future in futures.items():
            future.add_done_callback(functools.partial(self._on_future_done, task_id))
        self._deliver(resolved)
        return list(futures.values())

    def try_submit(self, task: AgentTask) -> Future[Any]:
        """Start ``task`` right now or raise, without queueing it.

        Raises AgentAlreadyRunningError, ClaimConflictError (naming the holder),
        CapacityError, or ConflictError if a dependency has not succeeded yet.
        """
        with self._lock:
            self._check_open()
            entry = self._sched.try_start(task, self._clock())
            future: Future[Any] = Future()
            self._futures[task.id] = future
            self._hand_out([entry])
            if task.timeout is not None or task.retries:
                self._ensure_timer()
        future.add_done_callback(functools.partial(self._on_future_done, task.id))
        return future

    def _check_open(self) -> None:
        if self._shutdown:
            raise QueueShutdownError()

    # --- control ----------------------------------------------------------------------------

    def cancel(self, task_id: str) -> bool:
        """Cancel a waiting task, or stop a running one that is Stoppable.

        Returns True if the task was cancelled or asked to stop; False if it had finished or
        runs a plain callable that cannot be stopped. Dependents of a cancelled task are
        skipped. Raises KeyError for an unknown id.
        """
        with self._lock:
            entry = self._sched.entry(task_id)
            stop = None
            if entry.state is TaskState.RUNNING:
                if not isinstance(entry.task.execute_fn, Stoppable) or entry.stop_requested:
                    return entry.stop_requested
                stop = entry.task.execute_fn.stop
            changed = self._sched.cancel(task_id, self._clock())
            resolved = self._collect(changed)
        if stop is not None:
            self._call_quietly(stop)
            return True
        self._deliver(resolved)
        return bool(changed)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every submitted task has finished; False if ``timeout`` passed first."""
        with self._lock:
            return self._all_done.wait_for(lambda: self._sched.unfinished == 0, timeout)

    def shutdown(self, wait: bool = True, cancel_pending: bool = False) -> None:
        """Take no new tasks; optionally cancel the waiting ones; optionally wait for the rest.

        Running tasks are never interrupted here. Calling it again is harmless.
        """
        with self._lock:
            self._shutdown = True
            changed: list[TaskEntry] = []
            if cancel_pending:
                now = self._clock()
                for entry, _ in self._sched.waiting():
                    changed.extend(self._sched.cancel(entry.id, now))
            resolved = self._collect(changed)
            self._wake_all()
        self._deliver(resolved)
        if wait:
            for thread in self._threads():
                if thread is not threading.current_thread():
                    thread.join()
        _live_queues.discard(self)

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown(wait=True)

    def _threads(self) -> list[threading.Thread]:
        with self._lock:
            return [*self._workers, *([self._timer] if self._timer else [])]

    # --- status -----------------------------------------------------------------------------

    def get_status(self) -> dict[str, Any]:
        """A snapshot: the design note's three keys, then details.

        ``running_agents`` (agent types running), ``running_files`` (paths being written),
        ``queued_tasks`` (how many wait), ``running`` and ``waiting`` (one dict per task,
        each waiting one with the ``reason`` it waits), counts by outcome, ``finished_tasks``
        and ``failed_tasks`` (failed or timed out).
        """
        with self._lock:
            now = self._clock()
            running = self._sched.running
            waiting = self._sched.waiting()
            counts = {state.value: 0 for state in TaskState if state.is_terminal}
            for entry in self._sched.entries():
                if entry.state.is_terminal:
                    counts[entry.state.value] += 1
            reserved = self._sched.reserved
            return {
                "running_agents": [e.agent for e in running],
                "running_files": sorted({c.text for e in running for c in e.writes}),
                "queued_tasks": len(waiting),
                "max_parallel": self._sched.max_parallel,
                "running": [
                    {
                        "id": e.id,
                        "agent": e.agent,
                        "description": e.task.task_description,
                        "files": [c.text for c in e.writes],
                        "reads": [c.text for c in e.reads],
                        "attempt": e.attempts,
                        "elapsed_s": now - (e.started_at or now),
                        "timed_out": e.timed_out,
                    }
                    for e in running
                ],
                "waiting": [
                    {
                        "id": e.id,
                        "agent": e.agent,
                        "description": e.task.task_description,
                        "state": e.state.value,
                        "reason": reason.describe(now),
                        "reason_kind": reason.kind,
                        "blocked_by": reason.holder,
                        "reserved": e is reserved,
                    }
                    for e, reason in waiting
                ],
                "counts": counts,
                "finished_tasks": sum(counts.values()),
                "failed_tasks": counts["failed"] + counts["timed_out"],
            }

    # --- workers ----------------------------------------------------------------------------

    def _hand_out(self, started: list[TaskEntry]) -> None:
        """Give freshly started entries to workers (lock held), adding workers as needed."""
        if not started:
            return
        self._runnable.extend(started)
        self._work.notify(len(started))
        missing = min(len(self._runnable) - self._idle_workers, self._sched.max_parallel - len(self._workers))
        for _ in range(max(0, missing)):
            thread = threading.Thread(target=self._worker, name=f"TaskQueue-worker-{len(self._workers)}", daemon=True)
            self._workers.append(thread)
            thread.start()
        if any(e.deadline is not None for e in started):
            self._timer_wake.notify()

    def _worker(self) -> None:
        entry: TaskEntry | None = None
        while True:
            if entry is None:
                with self._lock:
                    while not self._runnable:
                        if self._shutdown and self._sched.unfinished == 0:
                            return
                        self._idle_workers += 1
                        self._work.wait()
                        self._idle_workers -= 1
                    entry = self._runnable.popleft()
            entry = self._run(entry)

    def _run(self, entry: TaskEntry) -> TaskEntry | None:
        """Run one attempt of ``entry``; return the next entry this worker should run, if any."""
        task = entry.task
        with self._lock:
            future = self._futures[task.id]
        proceed = entry.attempts > 1 or future.set_running_or_notify_cancel()
        result: Any = None
        error: BaseException | None = None
        if proceed:
            self._emit(TaskEvent("started", task.id, task.agent_type, self._clock(), entry.attempts))
            try:
                result = task.execute_fn()
            except BaseException as exc:  # noqa: BLE001 - any failure is the task's, never the queue's
                error = exc
        with self._lock:
            if not proceed or entry.stop_requested:
                outcome = TaskState.CANCELLED
            elif error is not None:
                outcome = TaskState.FAILED
            else:
                outcome = TaskState.SUCCEEDED
            now = self._clock()
            changed = self._sched.finish(task.id, outcome, now, None if error is None else _describe(error))
            started = self._sched.dispatch(now)
            mine = started.pop(0) if started else None
            self._hand_out(started)
            if entry.state is TaskState.RETRY_WAIT:
                self._timer_wake.notify()
            resolved = self._collect(changed, result=result, error=error, of=task.id)
        self._deliver(resolved)
        return mine

    # --- time -------------------------------------------------------------------------------

    def _ensure_timer(self) -> None:
        if self._timer is None:
            self._timer = threading.Thread(target=self._timer_loop, name="TaskQueue-timer", daemon=True)
            self._timer.start()
        else:
            self._timer_wake.notify()

    def _timer_loop(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._shutdown and self._sched.unfinished == 0:
                        return
                    wake = self._sched.next_wakeup()
                    now = self._clock()
                    if wake is not None and wake <= now:
                        break
                    self._timer_wake.wait(None if wake is None else wake - now)
                expired = self._sched.expire(now)
                self._hand_out(self._sched.dispatch(now))
                stops: list[Callable[[], None]] = []
                timeouts: list[tuple[Future[Any], TaskTimeoutError]] = []
                for entry in expired:
                    if isinstance(entry.task.execute_fn, Stoppable):
                        stops.append(entry.task.execute_fn.stop)
                    if entry.attempts > entry.task.retries:  # final attempt: fail the future now
                        timeouts.append(
                            (self._futures[entry.id], TaskTimeoutError(entry.id, entry.task.timeout or 0.0))
                        )
            for stop in stops:
                self._call_quietly(stop)
            for future, timeout_error in timeouts:
                if not future.done():
                    future.set_exception(timeout_error)

    # --- results ----------------------------------------------------------------------------

    def _collect(
        self, changed: list[TaskEntry], *, result: Any = None, error: BaseException | None = None, of: str | None = None
    ) -> list[tuple[Future[Any] | None, TaskEntry, Any, BaseException | None]]:
        """Pair changed entries with their futures (lock held); terminal ones leave the map."""
        out: list[tuple[Future[Any] | None, TaskEntry, Any, BaseException | None]] = []
        for entry in changed:
            future = self._futures.pop(entry.id, None) if entry.state.is_terminal else None
            own = entry.id == of
            out.append((future, entry, result if own else None, error if own else None))
        if self._sched.unfinished == 0:
            self._all_done.notify_all()
            if self._shutdown:
                self._wake_all()
        return out

    def _deliver(self, resolved: list[tuple[Future[Any] | None, TaskEntry, Any, BaseException | None]]) -> None:
        """Resolve futures and send events, outside the lock (callbacks may re-enter the queue)."""
        for future, entry, result, error in resolved:
            state = entry.state
            if future is not None and not future.done():
                if state is TaskState.SUCCEEDED:
                    future.set_result(result)
                elif state is TaskState.CANCELLED and not future.running():
                    future.cancel()
                elif state is TaskState.CANCELLED:
                    future.set_exception(CancelledError(f"task {entry.id!r} was stopped"))
                elif state is TaskState.SKIPPED:
                    future.set_exception(TaskSkippedError(entry.id, entry.outcome_reason or "skipped"))
                elif state is TaskState.TIMED_OUT:
                    future.set_exception(TaskTimeoutError(entry.id, entry.task.timeout or 0.0))
                else:
                    future.set_exception(error or RuntimeError(entry.outcome_reason or "failed"))
            kind = "retrying" if state is TaskState.RETRY_WAIT else state.value
            self._emit(TaskEvent(kind, entry.id, entry.agent, self._clock(), entry.attempts, entry.outcome_reason))

    def _on_future_done(self, task_id: str, future: Future[Any]) -> None:
        # A caller may cancel a future directly; keep the scheduler in step with it.
        if future.cancelled():
            with contextlib.suppress(KeyError):
                self.cancel(task_id)

    def _emit(self, event: TaskEvent) -> None:
        if self._on_event is not None:
            self._call_quietly(lambda: self._on_event(event))  # type: ignore[misc]

    def _wake_all(self) -> None:
        self._work.notify_all()
        self._timer_wake.notify_all()

    @staticmethod
    def _call_quietly(fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:
            log.exception("callback %r raised", fn)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
