"""TaskQueue: runs AgentTasks on worker threads, as many at once as the rules allow.

Dispatch is event-driven. Whoever changes the state (a submit, a task returning, a cancel)
asks the scheduler, under the engine's one lock, which tasks start now; a worker whose task
just returned runs the first task that release unblocked itself, without waking another
thread. Nothing polls: workers sleep on a condition until there is work, and the timer thread
(started only once it has something to time) sleeps until the next deadline: a timeout, a
retry, the end of a registry lease, or the next look at another process's claims.

With ``repo``, each decision is also a step in the repository's on-disk registry, shared
with other processes; see :meth:`_Engine._dispatch` for how a busy queue shares one step
among several decisions, and :meth:`_Engine._decide` for the lease that lets the steps in
a short window skip the file I/O.

A Python callable cannot be killed. When one outlives its ``timeout`` its future fails with
TaskTimeoutError at the deadline (if no retry is left), but its claims stay held until the call
really returns, so nothing else touches its files while it may still write them. An
``execute_fn`` that also has a ``stop()`` method (see :class:`~queue_core.task.Stoppable`)
is asked to stop on timeout and on cancel.

Futures are resolved, and events sent, outside the lock, on the queue's threads: callbacks
must not block on the queue. ``join`` from one of those threads raises, and ``shutdown``
from one of them does not wait, since either would wait for itself.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .claims import Access, Claim
from .errors import (
    NotATaskError,
    QueueBrokenError,
    QueueError,
    QueueShutdownError,
    QueueUsageError,
    RateLimitedError,
    StateError,
    TaskSkippedError,
    TaskTimeoutError,
)
from .holds import HEARTBEAT_S, STALE_AFTER_S, Hold, Owner, live_holds
from .line import Place, Wanted, ahead, alive_by, live_places, parse_claims
from .ownership import FileOwnership
from .processes import STOPPED_HINT, process_state
from .realpaths import ClaimResolver
from .records import QueueStatus, RunHistory, RunningTask, RunRecord, TaskOutcome, WaitingTask
from .registry import Registry, RegistrySession
from .reports import AgentReport
from .retention import DEFAULT_KEEP_RUNS
from .runner import SubprocessAgent
from .scheduler import DEFAULT_MAX_BYPASS, Scheduler, TaskEntry
from .supervisor import shared_supervisor
from .task import AgentTask, Stoppable, TaskState, is_supervised

__all__ = ["TaskEvent", "TaskQueue"]

log = logging.getLogger("queue_core")

#: Seconds between looks at the registry while a task waits for another process's claim.
FOREIGN_CHECK_S = 0.02
#: Shortest interval between two writes of a run's status record (status shows it).
RECORD_INTERVAL_S = 0.05
#: How long a busy queue keeps the registry locked after reading it, so that the steps that
#: follow (one per task start and end) cost no file I/O; the lease is written and unlocked when
#: it ends, and the next one waits as long again, so that other processes get their turn.
LEASE_S = 0.01
#: How many waiting tasks a status record describes (best-ranked first); all are counted.
RECORD_WAITING_MAX = 100
#: Seconds between looks at whether the processes holding what tasks here wait for are stopped or dead.
HOLDER_CHECK_S = 1.0
#: The longest the timer sleeps at once.
MAX_WAIT_S = 3600.0


@dataclass(frozen=True)
class TaskEvent:
    """A task changed state. ``kind`` is "started"; "retrying" (it failed, a retry is due);
    "paused" (it hit a rate limit: it runs again once its agent's pause ends, see
    AgentTask.rate_limit_backoff); or a terminal state's value. ``error``: the last error, or
    why it was skipped; ``duration_s``: the last attempt's, in a terminal event of a task that
    ran."""

    kind: str
    task_id: str
    agent_type: str
    time: float
    attempt: int
    error: str | None = None
    description: str = ""
    duration_s: float | None = None


#: Event kinds of the states a task leaves RUNNING for that are not terminal.
_EVENT_KINDS = {TaskState.RETRY_WAIT: "retrying", TaskState.QUEUED: "paused"}


class TaskQueue:
    """Runs agent tasks in parallel whenever their claims allow, never otherwise.

    ``max_parallel`` caps running tasks; ``ownership`` gives the paths claimed by a task that
    lists none; ``max_bypass`` is how often lower-ranked tasks may take what a blocked task
    needs before it is reserved (see :mod:`queue_core.scheduler`); ``clock`` and ``rng`` are
    injectable for tests; ``on_event`` is called (from a worker thread, outside the lock) on
    every state change, and must be thread-safe.

    With ``repo``, every claim is also taken in the repository's on-disk registry (see
    :mod:`queue_core.registry`), so queues in other processes working on the same repository
    respect each other's agents and paths; the run is recorded in the repository's state
    directory (``queue_core.registry.state_dir(repo)``).
    The process's supervisor (:mod:`queue_core.supervisor`) is started at once, so that every
    hold names it. When the run ends, the newest ``keep_runs`` finished runs keep their history
    and logs, and dead runs' records go (:mod:`queue_core.retention`). Raises StateError if that
    directory cannot be created or written, SupervisorError if the supervisor cannot be
    started, and ValueError if ``keep_runs`` is not a positive integer.

    ``on_notice`` is called with a sentence when a wait is no longer ordinary: the registry lock
    has been held elsewhere for a second (by whom, and whether that process is stopped), a
    process holding what tasks here wait for is stopped, or died while its agents live on.

    A queue dropped without ``shutdown`` still finishes the tasks it was given, then frees its
    threads; at interpreter exit, queued work is finished first, as with concurrent.futures.
    """

    def __init__(
        self,
        max_parallel: int = 4,
        *,
        ownership: FileOwnership | None = None,
        max_bypass: int = DEFAULT_MAX_BYPASS,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_event: Callable[[TaskEvent], None] | None = None,
        repo: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
        on_notice: Callable[[str], None] | None = None,
        stale_after: float = STALE_AFTER_S,
        keep_runs: int = DEFAULT_KEEP_RUNS,
    ):
        registry = (
            None
            if repo is None
            else Registry(
                repo,
                run_id,
                supervisor=shared_supervisor().process,
                stale_after=stale_after,
                keep_runs=keep_runs,
                on_lock_wait=None if on_notice is None else functools.partial(_lock_wait_notice, on_notice),
            )
        )
        resolve = None if registry is None else ClaimResolver(registry.repo).resolve
        scheduler = Scheduler(max_parallel, ownership=ownership, rng=rng, max_bypass=max_bypass, resolve=resolve)
        self._engine = _Engine(scheduler, clock, on_event, registry, on_notice)
        # The threads hold the engine, never this object, so dropping the queue is noticed.
        weakref.finalize(self, self._engine.shutdown, False, False)

    @property
    def max_parallel(self) -> int:
        return self._engine.sched.max_parallel

    @property
    def registry(self) -> Registry | None:
        """The repository's shared claim registry, if the queue was given ``repo``."""
        return self._engine.registry

    def submit_task(self, task: AgentTask) -> Future[Any]:
        """Queue ``task``; it starts as soon as its agent, claims, dependencies and a slot allow.

        The future's result is ``execute_fn``'s return value, its exception the task's
        (TaskTimeoutError, TaskSkippedError, CancelledError for a cancelled task, or
        QueueBrokenError if a bug stopped the queue's threads). Raises NotATaskError (a
        TypeError), DuplicateTaskError, UnknownDependencyError, InvalidClaimError if with
        ``repo`` a claim resolves outside the repository, or QueueShutdownError after shutdown.
        """
        return self._engine.submit([_checked(task, "submit_task")])[0]

    def submit_tasks(self, tasks: Sequence[AgentTask]) -> list[Future[Any]]:
        """Queue a batch whose dependencies may point forward within it; all or nothing.

        Raises NotATaskError (a TypeError), DuplicateTaskError, UnknownDependencyError,
        DependencyCycleError or InvalidClaimError before anything is queued.
        """
        return self._engine.submit(_checked_batch(tasks))

    def try_submit(self, task: AgentTask) -> Future[Any]:
        """Start ``task`` right now or raise, without queueing it.

        Raises AgentAlreadyRunningError, ClaimConflictError (naming the holder),
        CapacityError, or ConflictError if a dependency has not succeeded yet. With ``repo``,
        raises InvalidClaimError if a claim resolves outside the repository, and StateError if
        the registry cannot be read (or its lock had within lock_timeout). Raises NotATaskError
        (a TypeError) if ``task`` is not an AgentTask.
        """
        return self._engine.try_submit(_checked(task, "try_submit"))

    def cancel(self, task_id: str) -> bool:
        """Cancel a task that has not started, or stop a running one that is Stoppable.

        Returns True if the task was cancelled or asked to stop; False if it had finished or
        runs a plain callable that cannot be stopped. Dependents of a cancelled task are
        skipped. Raises KeyError for an unknown id.
        """
        return self._engine.cancel(task_id)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every submitted task has finished and its future is resolved.

        Returns False if ``timeout`` passed first. Raises RuntimeError when called from a
        task, callback or listener of this queue, which would wait for itself.
        """
        return self._engine.join(timeout)

    def shutdown(self, wait: bool = True, cancel_pending: bool = False) -> None:
        """Take no new tasks; optionally cancel those not started; optionally wait for the rest.

        Running tasks are never interrupted here. From one of the queue's own threads it does
        not wait. Calling it again is harmless.
        """
        self._engine.shutdown(wait, cancel_pending)

    def abort(self) -> None:
        """Stop now, as for Ctrl-C: take no new tasks, cancel the queued ones, stop the running ones.

        Returns at once; ``shutdown()`` then waits for the stopped tasks. Running plain
        callables cannot be stopped and are waited for. With ``repo``, a wait for the registry
        lock ends at once, and so does every later one: holds this run could not remove stay,
        as this live process's, until it exits.
        """
        self._engine.abort()

    def get_status(self) -> QueueStatus:
        """A snapshot: the design note's three fields, then details (see :class:`QueueStatus`).

        ``running_agents`` (agent types running), ``running_files`` (paths being written),
        ``queued_tasks`` (how many wait), ``running`` and ``waiting`` (each waiting task with
        the ``reason`` it waits), ``counts`` by outcome, ``finished_tasks`` and ``failed_tasks``
        (failed, timed out or rate-limited). ``status["running_agents"]`` reads it as the
        design note's dict (see :class:`queue_core.records.ByKey`).
        """
        return self._engine.status()

    def outcomes(self) -> list[TaskOutcome]:
        """How every finished task ended, in submission order: its description, outcome,
        attempts, last attempt's duration and error, and for an agent command its exit code,
        log and report (see :class:`TaskOutcome`)."""
        with self._engine.lock:
            return self._engine._finished_tasks()

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown(wait=True)


@dataclass(frozen=True)
class _Resolution:
    """A state change taken under the lock, delivered outside it."""

    future: Future[Any] | None  # None: not terminal yet, or resolved by someone else
    task_id: str
    agent: str
    state: TaskState
    attempt: int
    reason: str | None
    timeout: float | None
    description: str
    duration_s: float | None
    result: Any = None
    error: BaseException | None = None

    @classmethod
    def of(
        cls,
        entry: TaskEntry,
        future: Future[Any] | None,
        state: TaskState | None = None,
        result: Any = None,
        error: BaseException | None = None,
    ) -> _Resolution:
        state = state or entry.state
        return cls(
            future,
            entry.id,
            entry.agent,
            state,
            entry.attempts,
            entry.outcome_reason,
            entry.task.timeout,
            entry.task.task_description,
            _duration(entry),
            result,
            error,
        )


_live_engines: weakref.WeakSet[_Engine] = weakref.WeakSet()


@atexit.register
def _drain_live_engines() -> None:
    # Workers are daemon threads; like concurrent.futures, let queued work finish at exit.
    for engine in list(_live_engines):
        engine.shutdown(wait=True, cancel_pending=False)


class _Engine:
    """The threads and the state of one TaskQueue."""

    def __init__(
        self,
        sched: Scheduler,
        clock: Callable[[], float],
        on_event: Callable[[TaskEvent], None] | None,
        registry: Registry | None,
        on_notice: Callable[[str], None] | None = None,
    ):
        self.sched = sched
        self.registry = registry
        self.on_notice = on_notice
        self.registry_wait: str | None = None  # who holds the registry lock, once a wait is long
        self.next_holder_check = 0.0  # clock time of the next look at the holders' processes
        self.holder_notes: dict[Owner, str] = {}  # external owners that are stopped or dead, and why
        if registry is not None:
            registry.on_lock_wait = self._on_lock_wait
        self.started_at = time.time()
        self.external_holds: dict[str, Hold] = {}  # external holder id -> its hold
        self.places_ahead: dict[str, Place] = {}  # other runs' places in line this run honours, by holder id
        self.next_foreign_check = 0.0  # clock time of the next look at other processes
        self.next_heartbeat = float("inf")  # time.monotonic() of the next heartbeat (see _heartbeat)
        self.run_finished = False
        self.aborted = False  # abort(): nothing starts or is retried any more, the registry is let be
        self.record_written_at = float("-inf")  # clock time the run's status record was last written
        self.record_pending = False  # the status changed since then
        self.registry_error: OSError | None = None  # the last registry failure, until one works
        self.recovery_reported = 0.0  # the end (wall time) of the last recovery window logged
        self.committing = False  # a thread is in a registry step (see _dispatch)
        self.dispatch_wanted = False  # a dispatch was asked for that no step has decided yet
        self.lease: RegistrySession | None = None  # the registry, still locked after a step
        self.lease_ends = 0.0  # time.monotonic() when the lease is written and unlocked
        self.lease_gap_ends = 0.0  # time.monotonic() before which no new lease is kept
        self.clock = clock
        self.on_event = on_event
        # lock guards sched and every mutable attribute below.
        self.lock = threading.Lock()
        self.work = threading.Condition(self.lock)  # workers: runnable got an entry, or closing
        self.timer_wake = threading.Condition(self.lock)  # timer: next_wakeup may be earlier
        self.all_done = threading.Condition(self.lock)  # join: nothing unfinished or undelivered
        self.step_done = threading.Condition(self.lock)  # a registry step ended
        self.futures: dict[str, Future[Any]] = {}  # unresolved futures, by task id
        self.runnable: deque[TaskEntry] = deque()  # started by the scheduler, no worker yet
        self.in_body: set[str] = set()  # ids whose execute_fn has been entered
        self.delivering = 0  # batches of results collected under the lock, not yet delivered
        self.workers: list[threading.Thread] = []
        self.idle_workers = 0
        self.timer: threading.Thread | None = None
        self.closed = False
        self.broken = False  # a thread of the engine raised: the scheduler may be half-updated
        self.own_thread = threading.local()  # .set on the engine's threads
        _live_engines.add(self)

    # --- entry points -----------------------------------------------------------------------

    def submit(self, tasks: Sequence[AgentTask]) -> list[Future[Any]]:
        with self.lock:
            if self.closed:
                raise QueueShutdownError()
            now = self.clock()
            # Either validates everything before adding anything.
            finished = self.sched.add(tasks[0], now) if len(tasks) == 1 else self.sched.add_batch(tasks, now)
            futures: list[Future[Any]] = [_TaskFuture(self, t.id) for t in tasks]
            self.futures.update(zip((t.id for t in tasks), futures, strict=True))
            self._dispatch(now)
            if any(t.timeout is not None or t.retries for t in tasks):
                self._ensure_timer()
            resolved = self._collect(finished)
        self._deliver(resolved)
        return futures

    def try_submit(self, task: AgentTask) -> Future[Any]:
        with self.lock:
            self.step_done.wait_for(lambda: not self.committing)
            if self.closed:
                raise QueueShutdownError()
            refused: BaseException | None = None
            decided = False
            resolved: list[_Resolution] = []

            def decide(now: float) -> list[TaskEntry]:
                # Dispatch whatever happens: the step may carry other threads' requests, and
                # syncing with the registry may have freed what other tasks wait for.
                nonlocal refused, decided
                decided = True
                if self.closed:  # shut down while the step waited for the registry
                    refused = QueueShutdownError()
                    return self.sched.dispatch(now)
                try:
                    first = self.sched.try_start(task, now)
                except QueueError as exc:
                    refused = exc
                    return self.sched.dispatch(now)
                return [first, *self.sched.dispatch(now)]

            self._hand_out(decide(self.clock()) if self.registry is None else self._decide(decide))
            if not decided:  # the registry could not be read
                refused = self.registry_error
            elif refused is None and self.sched.entry(task.id).state is not TaskState.RUNNING:
                # Its start could not be written, so it went back to the queue: take it out.
                refused = self.registry_error
                resolved = self._collect(self.sched.cancel(task.id, self.clock()))
            if refused is None:
                future: Future[Any] = _TaskFuture(self, task.id)
                self.futures[task.id] = future
                if task.timeout is not None or task.retries:
                    self._ensure_timer()
                return future
        self._deliver(resolved, events=False)
        assert refused is not None
        raise refused

    def cancel(self, task_id: str) -> bool:
        with self.lock:
            entry = self.sched.entry(task_id)
            stop = None
            if entry.state is TaskState.RUNNING and entry.id in self.in_body:
                if entry.stop_requested or not isinstance(entry.task.execute_fn, Stoppable):
                    return entry.stop_requested
                stop = entry.task.execute_fn.stop
            # Waiting, or started by the scheduler with its body not yet entered: the worker
            # sees stop_requested and does not call it.
            now = self.clock()
            changed = self.sched.cancel(task_id, now)
            if changed:  # a cancelled reservation may free others
                self._dispatch(now)
            resolved = self._collect(changed)
            accepted = bool(changed) or entry.stop_requested
        if stop is not None:
            _call_quietly(stop)
        self._deliver(resolved)
        return accepted

    def join(self, timeout: float | None) -> bool:
        if getattr(self.own_thread, "set", False):
            raise QueueUsageError("join() from a task, callback or listener of this queue would wait for itself")
        with self.lock:
            return self.all_done.wait_for(self._drained, timeout)

    def shutdown(self, wait: bool, cancel_pending: bool) -> None:
        with self.lock:
            self.closed = True
            changed: list[TaskEntry] = []
            if cancel_pending:
                now = self.clock()
                for entry, _ in self.sched.waiting():
                    changed.extend(self.sched.cancel(entry.id, now))
                self._dispatch(now)
            resolved = self._collect(changed)
            self._wake_all()
        self._deliver(resolved)
        if wait and not getattr(self.own_thread, "set", False):
            joined: set[threading.Thread] = set()
            while True:  # a worker may start another worker while we join
                with self.lock:
                    threads = [t for t in (*self.workers, self.timer) if t is not None and t not in joined]
                if not threads:
                    break
                for thread in threads:
                    thread.join()
                    joined.add(thread)
            self._finish_run()
            _live_engines.discard(self)

    def abort(self) -> None:
        if self.registry is not None:
            self.registry.interrupt()  # first: a step waiting for the lock lets go of it at once
        with self.lock:  # one section: an attempt that fails meanwhile must not slip into a retry
            self.aborted = self.closed = True
            now = self.clock()
            changed = [c for entry, _ in self.sched.waiting() for c in self.sched.cancel(entry.id, now)]
            resolved = self._collect(changed)
            running = [e.id for e in self.sched.running]
            self._wake_all()
        self._deliver(resolved)
        for task_id in running:
            self.cancel(task_id)

    def status(self) -> QueueStatus:
        with self.lock:
            return self._status()

    def _status(self, waiting_limit: int | None = None) -> QueueStatus:
        """The status snapshot (lock held); ``waiting_limit`` caps the waiting tasks described."""
        now = self.clock()
        running = self.sched.running
        reserved = self.sched.reserved
        return QueueStatus(
            queued_tasks=self.sched.unfinished - len(running),
            max_parallel=self.sched.max_parallel,
            running=tuple(
                RunningTask(
                    e.id,
                    e.agent,
                    e.task.task_description,
                    files=_texts(e.writes),
                    reads=_texts(e.reads),
                    attempt=e.attempts,
                    elapsed_s=now - (e.started_at or now),
                    timed_out=e.timed_out,
                    pid=getattr(e.task.execute_fn, "pid", None),
                )
                for e in running
            ),
            waiting=tuple(
                WaitingTask(
                    e.id,
                    e.agent,
                    e.task.task_description,
                    state=e.state.value,
                    reason=self._annotated(reason.describe(now), reason.holder),
                    reason_kind=reason.kind,
                    blocked_by=reason.holder,
                    reserved=e is reserved,
                    resumes_in_s=None if reason.until is None else max(0.0, reason.until - now),
                )
                for e, reason in self.sched.waiting(waiting_limit)
            ),
            counts=self.sched.outcomes,
            registry_error=None if self.registry_error is None else str(self.registry_error),
            registry_wait=self.registry_wait,
        )

    def _annotated(self, reason: str, holder: str | None) -> str:
        """``reason``, and why its holder will not let go soon, if it is another run's and stuck."""
        hold = None if holder is None else self.external_holds.get(holder)
        note = None if hold is None else self.holder_notes.get(hold.owner)
        return reason if note is None else f"{reason}; {note}"

    # --- the registry shared with other processes -------------------------------------------

    def _dispatch(self, now: float, *, keep_one: bool = False) -> TaskEntry | None:
        """Start what may start now and hand it to workers (lock held).

        With ``keep_one``, one started entry is returned to the calling worker instead.

        With a registry this is a group commit. A registry step does its file I/O without the
        queue's lock, so while one runs, other threads finish tasks and ask for a dispatch;
        they wait for that step to end, and the first of them then leads one step that
        decides for all of them: one lock, read and write for several releases and starts.
        """
        if self.aborted:  # nothing starts any more (see abort)
            if self.lease is not None:  # what started on it runs on, and other runs must see it
                session, self.lease = self.lease, None
                self._record_mine(session)
                self._end_lease(session, [], leased=True)
            return None
        if self.registry is None:
            return self._hand_out(self.sched.dispatch(now), keep_one=keep_one)
        self.dispatch_wanted = True
        self.step_done.wait_for(lambda: not self.committing)
        if not self.dispatch_wanted:  # a step that began after the request has decided for it
            return None
        return self._hand_out(self._decide(self.sched.dispatch), keep_one=keep_one)

    def _decide(self, decide: Callable[[float], list[TaskEntry]]) -> list[TaskEntry]:
        """Run ``decide`` (a scheduler call that starts tasks) as one atomic registry step.

        Lock held, and no step running. Under the registry's file lock: read the holds of
        every process, dropping dead owners' (the queue's lock is released for the I/O);
        mirror the other processes' holds into the scheduler; decide; make this run's holds
        match what runs here (so a release is recorded by whichever step next writes). If
        something started, keep the registry locked for the steps that follow, until LEASE_S
        has passed since it was read: those steps read nothing, and the lease is written when
        it ends. But if an agent process started, write the registry first: were this process
        killed, its lock would go with it and anything unwritten be lost, while the agent,
        stopped by the supervisor only within milliseconds, would run without a hold.
        Returns what started.
        """
        assert self.registry is not None
        assert not self.committing
        self.committing = True
        try:
            session = self.lease
            self.lease = None
            leased = session is not None  # kept from an earlier step
            if session is None:
                try:
                    with _released(self.lock):
                        session = self.registry.begin()
                except OSError as exc:  # StateError: unreadable, the lock not had, ...
                    self._registry_failed(exc)
                    return []
                self.lease_ends = time.monotonic() + LEASE_S
            try:
                self.dispatch_wanted = False
                self._sync(session)
                # While a lost registry is recovered, nothing starts; what runs is written back.
                started = [] if session.recovering else decide(self.clock())
                self._record_mine(session)
                # Our places just changed: one may now come before a place of another run that we
                # honoured, and conflict with it. Let that one go at once: no other step may come.
                while not session.recovering and self._sync(session):
                    more = self.sched.dispatch(self.clock())
                    self._record_mine(session)
                    started += more
                    if not more:
                        break
                if self.sched.unfinished:
                    self.next_heartbeat = min(self.next_heartbeat, time.monotonic() + HEARTBEAT_S)
                    self._ensure_timer()  # it beats while tasks run or wait
            except BaseException:  # a bug: still, never drop a locked registry; the timer ends it
                self.lease = session
                self._ensure_timer()
                raise
            # An agent process would outlive us: it starts only once its hold is on disk. A plain
            # callable dies with this process, and may start on the lease, written at its end.
            on_disk_first = any(is_supervised(e.task.execute_fn) for e in started)
            if started and self._may_keep_lease() and (not on_disk_first or self._write_lease(session)):
                self.lease = session
                self.timer_wake.notify()  # it may have looked while the lease was written: time it now
                self._record_changed()
                return started
            started = self._end_lease(session, started, leased=leased)
            if session.recovering and self.registry_error is None:
                wait = session.recovering - time.time()
                error = StateError(self.registry.path, f"it was lost; no task starts for {wait:.1f} s")
                if session.recovering == self.recovery_reported:  # said at its first step: not at each
                    self.registry_error = error
                    self._ensure_timer()
                else:
                    self.recovery_reported = session.recovering
                    self._registry_failed(error)
            return started
        finally:
            self.committing = False
            self.step_done.notify_all()

    def _write_lease(self, session: RegistrySession) -> bool:
        """Write the registry and keep it locked (lock held, and released for the I/O); False if it failed."""
        assert self.registry is not None
        try:
            with _released(self.lock):
                self.registry.write(session)
        except OSError:  # _end_lease tries again, and deals with a failure
            return False
        return True

    def _record_mine(self, session: RegistrySession) -> None:
        """Make this run's holds in ``session`` exactly the tasks running here, and its places in
        line the tasks waiting for another run (lock held)."""
        running = {e.id: e for e in self.sched.running}
        for hold in session.mine():
            if running.pop(hold.task, None) is None:
                session.remove(hold.task)  # released
        for entry in running.values():  # started
            session.add(entry.id, entry.agent, _texts(entry.writes), _texts(entry.reads))
        waiting = [] if self.aborted else self.sched.waiting_on_external(self.sched.max_parallel)
        known = self._external()
        session.set_waiting(
            [
                Wanted(e.id, e.agent, _texts(e.writes), _texts(e.reads), frozenset(known[h].owner.run for h in holders))
                for e, holders in waiting
            ]
        )

    def _may_keep_lease(self) -> bool:
        """Whether a step that started tasks keeps the registry locked (lock held).

        A busy queue does: what started will end soon and ask for steps. Not within
        LEASE_S of the last lease's end, though: a busy queue would lock the registry again
        at once, and another process, which retries every few milliseconds, might never get
        in. Nor without a timer thread to end the lease.
        """
        now = time.monotonic()
        return (
            self.registry_error is None
            and now < self.lease_ends
            and now >= self.lease_gap_ends
            and self._ensure_timer()
        )

    def _end_lease(self, session: RegistrySession, started: list[TaskEntry], *, leased: bool) -> list[TaskEntry]:
        """Write the registry and unlock it (lock held, and released for the I/O).

        ``started`` are this step's starts, not handed out yet; ``leased``, whether the
        registry was kept locked from an earlier step (then the next lease waits LEASE_S, see
        _may_keep_lease). If the write fails, they go
        back to the queue (but those stopped or timed out meanwhile, which end without
        running). If tasks still run on the strength of the unwritten lease, the registry
        stays locked, since nobody may read it without them, and the write is tried again
        every FOREIGN_CHECK_S; nothing starts until it works. If none runs, the registry is
        unlocked unwritten: what it still says can only hold others back, never let them in.
        An interruption (not an OSError) keeps the lease for the timer to write at once.
        """
        assert self.registry is not None
        try:
            with _released(self.lock):
                self.registry.commit(session)
        except BaseException as exc:  # OSError: disk full, ...; or an interruption
            kept = [e for e in started if e.stop_requested or e.timed_out]
            for entry in started:
                if entry not in kept:
                    self.sched.unstart(entry.id)
            self._record_mine(session)
            if not isinstance(exc, OSError):  # interrupted: the timer steps again at once
                self.lease = session
                self.lease_ends = time.monotonic()
                self._ensure_timer()
                raise
            if self.sched.running:
                self.lease = session
                self.lease_ends = time.monotonic() + FOREIGN_CHECK_S  # the next try
            else:
                self.registry.abort(session)
            self._registry_failed(exc)
            return kept
        self.registry_error = None
        if leased:
            self.lease_gap_ends = time.monotonic() + LEASE_S
        self._record_changed()
        return started

    def _lease_left(self) -> float:
        """Seconds until the lease must end, or its write be tried again (lock held).

        Real time, not the queue's clock: other processes wait in real time. A lease of a
        queue that is done, or aborted, ends at once.
        """
        if self.registry_error is None and (self.aborted or (self.closed and self._drained())):
            return 0.0
        return self.lease_ends - time.monotonic()

    def _registry_failed(self, error: OSError) -> None:
        """A registry step failed (lock held): say so once, and let the timer try again."""
        assert self.registry is not None
        if self.registry_error is None and not self.registry.interrupted:
            log.error("no task starts until the claim registry can be used", exc_info=error)
        self.registry_error = error
        self._ensure_timer()

    def _external(self) -> dict[str, Hold | Place]:
        """What the scheduler's external holders stand for, by holder id: other runs' holds, and
        their places in line this run honours (lock held)."""
        return {**self.external_holds, **self.places_ahead}

    def _sync(self, session: RegistrySession) -> bool:
        """Make the scheduler's external holders the other runs' holds, and their places in line
        that this run honours (see queue_core.line): tasks here wait for those as for a hold.

        Returns whether a place honoured until now no longer is.
        """
        holds = {f"{h.task} in run {h.owner.run}": h for h in session.foreign()}
        places = {
            f"{p.task} in run {p.owner.run}, ahead in line": p
            for p in ahead(session.waiting, session.owner.run, _stopped)
        }
        known = self._external()
        now: dict[str, Hold | Place] = {**holds, **places}
        let_go = False
        for holder in self.sched.external_holders:
            if holder not in now or _claimed(now[holder]) != _claimed(known[holder]):
                self.sched.release_external(holder)  # gone, or another task of that id
                known.pop(holder)
                let_go = let_go or holder in self.places_ahead
        for holder, item in now.items():
            if holder not in known:
                writes, reads = parse_claims(item.writes), parse_claims(item.reads)
                claims = (*((c, Access.WRITE) for c in writes), *((c, Access.READ) for c in reads))
                self.sched.hold_external(holder, item.agent, claims, in_line=holder in places)
        self.external_holds = holds  # their latest: a hold may name its agent's group now
        self.places_ahead = places
        if now:
            self._ensure_timer()
        return let_go

    def _waiting_on_others(self) -> bool:
        """Whether some task here may be waiting for another process or the registry (lock held)."""
        if self.aborted:
            return False
        if self.registry_error is not None:
            return True
        return bool(self.external_holds or self.places_ahead) and self.sched.unfinished > len(self.sched.running)

    def _others_changed(self) -> bool:
        """Whether another process wrote the registry or died since we last looked (lock held).

        This is how a release in another process is noticed: while a task here waits on one,
        the timer thread looks every FOREIGN_CHECK_S seconds — one stat() of claims.json, and
        whether each holder's processes live — and sleeps in between, so no CPU spins.
        """
        assert self.registry is not None
        if self.registry_error is not None or self.registry.stamp() != self.registry.last_stamp:
            return True
        runs_dir, stale_after = self.registry.runs_dir, self.registry.stale_after
        if live_holds(self.external_holds.values(), runs_dir, stale_after=stale_after)[1]:
            return True
        places = self.places_ahead.values()
        return len(live_places(places, alive_by(runs_dir, stale_after))) < len(places)

    def _on_lock_wait(self, holder: str | None) -> None:
        """The registry lock: held elsewhere this long and by whom; or None, taken at last.

        Called by the thread that waits for the lock, without the queue's lock.
        """
        with self.lock:
            self.registry_wait = holder
            if not self.run_finished:
                self._record_changed()
        if self.on_notice is not None:
            _lock_wait_notice(self.on_notice, holder)

    def _check_holders(self) -> list[str]:
        """Look whether other runs' processes that tasks here wait for are stopped or dead (lock held).

        Returns the notices of what changed. A stopped run cannot release its claims; a run that
        died keeps them while its supervisor stops its agents, which the status says too.
        """
        notes: dict[Owner, str] = {}
        for owner in {hold.owner for hold in self.external_holds.values() if hold.owner.is_local}:
            state = process_state(owner.pid) if owner.process.alive() else None
            if state == "stopped":
                notes[owner] = f"run {owner.run} (pid {owner.pid}) is stopped: {STOPPED_HINT}"
            elif state is None and owner.supervisor is not None and owner.supervisor_alive():
                notes[owner] = (
                    f"run {owner.run} (pid {owner.pid}) died; its supervisor (pid {owner.supervisor.pid}) is stopping "
                    "its agents, and their claims are held until they are gone"
                )
            elif state is None:
                notes[owner] = (
                    f"run {owner.run} (pid {owner.pid}) died, and so did its supervisor; its agents' processes still "
                    "run and hold their claims until they are gone: end them (see status)"
                )
        changed = [note for owner, note in notes.items() if self.holder_notes.get(owner) != note]
        self.holder_notes = notes
        if changed:
            self._record_changed()
        return changed

    def _notice(self, text: str) -> None:
        if self.on_notice is not None:
            _call_quietly(functools.partial(self.on_notice, text))

    def _record_changed(self) -> None:
        """The run's status changed: write its record now, or soon (lock held).

        Writing the whole status at every step would make a big batch quadratic, so a record
        is written at most every RECORD_INTERVAL_S; the timer writes the last change.
        """
        now = self.clock()
        if now - self.record_written_at >= RECORD_INTERVAL_S:
            self._write_record()
            self.record_pending = False
        else:
            self.record_pending = True
            self._ensure_timer()

    def _write_record(self) -> None:
        """Replace this run's status record, which ``repo_status`` reads (lock held)."""
        assert self.registry is not None
        self.record_written_at = self.clock()
        try:
            self.registry.write_run_record(self._record())
        except OSError:  # only a view: the claims themselves are on disk
            log.warning("could not write this run's status record", exc_info=True)

    def _record(self) -> RunRecord:
        assert self.registry is not None
        wall = time.time()  # a record is read later, by another process: its times are the wall clock's
        return RunRecord(
            self.registry.run,
            self.registry.owner,
            wall,
            repo=str(self.registry.repo),
            started_at=self.started_at,
            status=self._status(RECORD_WAITING_MAX).recorded(wall),
        )

    def _finished_tasks(self) -> list[TaskOutcome]:
        """How each finished task ended; with what an agent command reported (SubprocessAgent)."""
        return [_outcome(e) for e in self.sched.entries() if e.state.is_terminal]

    def _finish_run(self) -> None:
        """Leave a history record and drop this run's registry entries, once."""
        if self.registry is None:
            return
        with self.lock:
            if self.run_finished:  # two threads may shut down at once
                return
            self.step_done.wait_for(lambda: not self.committing)
            if self.lease is not None:  # no timer could end it (at interpreter shutdown)
                # Nothing runs any more: unlocked unwritten, the lease can only hold others back,
                # and finish_run below drops every hold of this run anyway.
                session, self.lease = self.lease, None
                self.registry.abort(session)
            self.run_finished = True
            tasks = self._finished_tasks()
        history = RunHistory(self.registry.run, self.started_at, time.time(), tasks)
        try:
            self.registry.finish_run(history)
        except OSError:  # the history record could not be written: a record, not a claim
            log.warning("could not write this run's history record", exc_info=True)

    # --- workers ----------------------------------------------------------------------------

    def _hand_out(self, started: list[TaskEntry], *, keep_one: bool = False) -> TaskEntry | None:
        """Give freshly started entries to workers (lock held); optionally keep one for the caller."""
        if not started:
            return None
        if any(e.deadline is not None for e in started):
            self.timer_wake.notify()
        mine = started.pop(0) if keep_one else None
        if started:
            self.runnable.extend(started)
            self.work.notify(len(started))
            missing = min(len(self.runnable) - self.idle_workers, self.sched.max_parallel - len(self.workers))
            for _ in range(missing):
                thread = threading.Thread(
                    target=self._thread_main,
                    args=(self._worker,),
                    name=f"TaskQueue-worker-{len(self.workers)}",
                    daemon=True,
                )
                if not _start(thread):
                    break  # the workers there are will drain the work
                self.workers.append(thread)
        return mine

    def _thread_main(self, loop: Callable[[], None]) -> None:
        """Run one of the engine's threads: an unexpected error stops the queue rather than hang it."""
        self.own_thread.set = True
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - a bug here must not leave a future unresolved
            self._break(exc)

    def _break(self, error: BaseException) -> None:
        """A thread of the engine raised: fail every unresolved future, and start nothing more.

        The scheduler may be half-updated, so it decides nothing any more; join() returns, and
        shutdown() waits only for the calls still running.
        """
        thread = threading.current_thread().name
        log.critical("%s failed unexpectedly; the queue stops", thread, exc_info=error)
        with self.lock:
            futures = list(self.futures.values())
            self.futures.clear()
            self.broken = self.aborted = self.closed = True
            self.all_done.notify_all()
            self._wake_all()
        for future in futures:
            broken = QueueBrokenError(thread)
            broken.__cause__ = error
            with contextlib.suppress(InvalidStateError):  # the caller cancelled it meanwhile
                future.set_exception(broken)

    def _worker(self) -> None:
        entry: TaskEntry | None = None
        delivered = False  # results this worker delivered and has not counted down yet
        while True:
            with self.lock:
                if delivered:  # counted here, in a lock the worker takes anyway
                    self._count_delivered()
                if entry is None:
                    while not self.runnable:
                        if self.closed and self._drained():
                            self.workers.remove(threading.current_thread())  # _hand_out counts the live ones
                            return
                        self.idle_workers += 1
                        self.work.wait()
                        self.idle_workers -= 1
                    entry = self.runnable.popleft()
                # A future already resolved (timed out before it ran) is None here.
                future = self.futures.get(entry.id)
                enter = future is not None and not entry.stop_requested and not entry.timed_out
                if enter:
                    self.in_body.add(entry.id)
            if enter and entry.attempts == 1:
                assert future is not None
                enter = future.set_running_or_notify_cancel()  # False: its caller cancelled it
            entry, delivered = self._run(entry, enter)

    def _run(self, entry: TaskEntry, enter: bool) -> tuple[TaskEntry | None, bool]:
        """Run one attempt of ``entry`` (if ``enter``) and deliver its outcome.

        Returns the next entry for this worker, and whether it still owes the count-down of
        a delivery (see :meth:`_deliver`).
        """
        task = entry.task
        result: Any = None
        error: BaseException | None = None
        if enter:
            if self.on_event is not None:
                what = task.task_description
                self._emit(TaskEvent("started", task.id, task.agent_type, self.clock(), entry.attempts, None, what))
            if is_supervised(task.execute_fn):  # its agent's process group, recorded before it runs
                record = None if self.registry is None else (self.registry.groups_path, task.id)
                task.execute_fn.record_group_in = record
            try:
                result = task.execute_fn()
            except BaseException as exc:  # noqa: BLE001 - any failure is the task's, never the queue's
                error = exc
        with self.lock:
            self.in_body.discard(task.id)
            if entry.stop_requested or (not enter and not entry.timed_out) or (self.aborted and error is not None):
                outcome = TaskState.CANCELLED  # an attempt that failed as the queue was aborted is not retried
            elif isinstance(error, RateLimitedError):
                outcome = TaskState.RATE_LIMITED  # its agent pauses; the task runs again, or gives up
            elif error is not None or entry.timed_out:
                outcome = TaskState.FAILED  # recorded as TIMED_OUT by the scheduler if it timed out
            else:
                outcome = TaskState.SUCCEEDED
            now = self.clock()
            retry_after = error.retry_after if isinstance(error, RateLimitedError) else None
            changed = self.sched.finish(task.id, outcome, now, None if error is None else _describe(error), retry_after)
            if entry.state in (TaskState.RETRY_WAIT, TaskState.QUEUED):  # to run again: the timer says when
                self._ensure_timer()
            # Collected before the dispatch, which may start the retry: its event says "retrying".
            resolved = self._collect(changed, result=result, error=error, of=task.id)
            mine = self._dispatch(now, keep_one=True)
        self._deliver(resolved, count_down=False)
        return mine, bool(resolved)

    # --- time -------------------------------------------------------------------------------

    def _ensure_timer(self) -> bool:
        """Start the timer thread, or wake it to look at its deadlines again; False if it cannot run."""
        if self.timer is None:
            thread = threading.Thread(
                target=self._thread_main, args=(self._timer_loop,), name="TaskQueue-timer", daemon=True
            )
            if _start(thread):
                self.timer = thread
        else:
            self.timer_wake.notify()
        return self.timer is not None

    def _timer_loop(self) -> None:
        while True:
            with self.lock:
                while True:
                    if self.closed and self._drained() and self.lease is None and not self.committing:
                        self.timer = None  # a step may still take a lease: _ensure_timer starts another
                        return
                    wake = self.sched.next_wakeup()
                    if self._waiting_on_others():
                        wake = self.next_foreign_check if wake is None else min(wake, self.next_foreign_check)
                    if self.record_pending:
                        flush = self.record_written_at + RECORD_INTERVAL_S
                        wake = flush if wake is None else min(wake, flush)
                    now = self.clock()
                    timeout = None if wake is None else wake - now
                    if self._beating():  # in real time, like the lease: other processes read it
                        beat_in = self.next_heartbeat - time.monotonic()
                        timeout = beat_in if timeout is None else min(timeout, beat_in)
                    if self.lease is not None:
                        lease_left = self._lease_left()
                        timeout = lease_left if timeout is None else min(timeout, lease_left)
                    if timeout is not None and timeout <= 0:
                        break
                    # Bounded: a wait of years (a huge timeout) would overflow; looking again costs nothing.
                    self.timer_wake.wait(MAX_WAIT_S if timeout is None else min(timeout, MAX_WAIT_S))
                due = self.sched.next_wakeup()
                expired = self.sched.expire(now)
                notices: list[str] = []
                stops = [e.task.execute_fn.stop for e in expired if isinstance(e.task.execute_fn, Stoppable)]
                # A last attempt's future fails now, though the call may go on and hold its claims.
                resolved = [
                    _Resolution.of(entry, self.futures.pop(entry.id, None), TaskState.TIMED_OUT)
                    for entry in expired
                    if entry.attempts - entry.rate_limits > entry.task.retries
                ]
                if resolved:
                    self.delivering += 1
                # With attempts expired, stop them first and dispatch on the next pass: a dispatch
                # may let go of the lock, an expired attempt return meanwhile and its retry start,
                # and a stop meant for the attempt must not reach the retry.
                if not expired:
                    others_changed = False
                    if self._waiting_on_others() and now >= self.next_foreign_check:
                        self.next_foreign_check = now + FOREIGN_CHECK_S
                        others_changed = self._others_changed()
                        if now >= self.next_holder_check:
                            self.next_holder_check = now + HOLDER_CHECK_S
                            notices = self._check_holders()
                            # A run ahead in line that was stopped loses its turn at the next step.
                            others_changed = others_changed or any(
                                _stopped(place.owner) for place in self.places_ahead.values()
                            )
                    lease_over = self.lease is not None and self._lease_left() <= 0
                    if others_changed or lease_over or (due is not None and due <= now):
                        self._dispatch(now)  # a step past the lease's end writes and unlocks it
                    if self.record_pending and now >= self.record_written_at + RECORD_INTERVAL_S:
                        self._write_record()
                        self.record_pending = False
                beat = self._beating() and time.monotonic() >= self.next_heartbeat
                running: list[str] = []
                if beat:
                    self.next_heartbeat = time.monotonic() + HEARTBEAT_S
                    if self.lease is None and not self.aborted:
                        running = [e.id for e in self.sched.running]
            if beat:
                self._heartbeat(running)
            for stop in stops:
                _call_quietly(stop)
            for notice in notices:
                self._notice(notice)
            if resolved:
                self._deliver(resolved, events=False)

    def _beating(self) -> bool:
        """Whether this run must show it lives: it holds claims, or waits in line (lock held).

        Aborted too, while what it started runs on: a callable cannot be stopped.
        """
        return self.registry is not None and self.sched.unfinished > 0

    def _heartbeat(self, running: list[str]) -> None:
        """Touch this run's record, and write back its holds if the registry lost them (lock not held).

        ``running``: the tasks whose holds must be in the registry; none while a lease keeps
        the registry locked (what it started is not on disk yet, by design) or after an abort
        (whose step could not take the lock).
        """
        assert self.registry is not None
        try:
            self.registry.heartbeat()
        except OSError:
            log.warning("could not touch this run's record: other hosts may take it for dead", exc_info=True)
        if running and self.registry.lost_holds(running):
            with self.lock:
                self._dispatch(self.clock())  # a step writes back what runs here

    # --- results ----------------------------------------------------------------------------

    def _collect(
        self, changed: list[TaskEntry], *, result: Any = None, error: BaseException | None = None, of: str | None = None
    ) -> list[_Resolution]:
        """Pair changed entries with their futures (lock held); whoever collects resolves."""
        if not changed:
            if self._drained():
                self.all_done.notify_all()
            return []
        out: list[_Resolution] = []
        for entry in changed:
            future = self.futures.pop(entry.id, None) if entry.state.is_terminal else None
            if entry.id == of:
                out.append(_Resolution.of(entry, future, result=result, error=error))
            else:
                out.append(_Resolution.of(entry, future))
        self.delivering += 1
        return out

    def _deliver(self, resolved: list[_Resolution], *, events: bool = True, count_down: bool = True) -> None:
        """Resolve futures and send events, outside the lock (callbacks may re-enter the queue).

        Each delivery collected under the lock is counted down when done, so join() waits for
        it; a worker passes ``count_down=False`` and counts down at its next locked step.
        """
        if not resolved:
            return
        try:
            for item in resolved:
                if item.future is not None:
                    _resolve(item)
                if events and self.on_event is not None:
                    kind = _EVENT_KINDS.get(item.state, item.state.value)
                    at = self.clock()
                    ended = (item.reason, item.description, item.duration_s)
                    self._emit(TaskEvent(kind, item.task_id, item.agent, at, item.attempt, *ended))
        finally:
            if count_down:
                with self.lock:
                    self._count_delivered()

    def _count_delivered(self) -> None:
        self.delivering -= 1
        if self._drained():
            self.all_done.notify_all()
            if self.closed:
                self._wake_all()

    def _drained(self) -> bool:
        """Whether nothing is left to finish or deliver: all is done, or the queue broke (lock held)."""
        return self.broken or (self.sched.unfinished == 0 and self.delivering == 0)

    def _emit(self, event: TaskEvent) -> None:
        if self.on_event is not None:
            _call_quietly(functools.partial(self.on_event, event))

    def _wake_all(self) -> None:
        self.work.notify_all()
        self.timer_wake.notify_all()


class _TaskFuture(Future[Any]):
    """A Future whose cancel() also cancels its task in the queue."""

    def __init__(self, engine: _Engine, task_id: str):
        super().__init__()
        self._engine = engine
        self._task_id = task_id

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        with contextlib.suppress(KeyError):
            self._engine.cancel(self._task_id)
        return True


def _resolve(item: _Resolution) -> None:
    """Settle the future of a terminal state; a caller's concurrent cancel() wins quietly."""
    future, state = item.future, item.state
    assert future is not None
    with contextlib.suppress(InvalidStateError):
        if state is TaskState.SUCCEEDED:
            future.set_result(item.result)
        elif state is TaskState.CANCELLED and not future.running():
            Future.cancel(future)  # the plain method: the task is already cancelled here
        elif state is TaskState.CANCELLED:
            future.set_exception(CancelledError(f"task {item.task_id!r} was stopped"))
        elif state is TaskState.SKIPPED:
            future.set_exception(TaskSkippedError(item.task_id, item.reason or "skipped"))
        elif state in (TaskState.FAILED, TaskState.RATE_LIMITED):
            future.set_exception(item.error or RuntimeError(item.reason or state.value))
        else:  # TIMED_OUT, at the deadline or when the call returned
            future.set_exception(TaskTimeoutError(item.task_id, item.timeout or 0.0))


def _checked(task: object, method: str) -> AgentTask:
    """``task``, if it is an AgentTask: callers without type checks pass anything."""
    if not isinstance(task, AgentTask):
        raise NotATaskError(method, "an AgentTask", task)
    return task


def _checked_batch(tasks: object) -> Sequence[AgentTask]:
    """``tasks``, if it is a sequence (not a str) of AgentTasks."""
    expected = "a sequence of AgentTasks"
    if isinstance(tasks, str) or not isinstance(tasks, Sequence):
        raise NotATaskError("submit_tasks", expected, tasks)
    for index, task in enumerate(tasks):
        if not isinstance(task, AgentTask):
            raise NotATaskError("submit_tasks", expected, task, index)
    return tasks


def _texts(claims: tuple[Claim, ...]) -> tuple[str, ...]:
    return tuple(c.text for c in claims)


def _lock_wait_notice(on_notice: Callable[[str], None], holder: str | None) -> None:
    """Tell ``on_notice`` who holds the registry lock a step waits for, or that it is free again."""
    text = "the registry lock is free again" if holder is None else f"waiting for the registry: {holder}"
    _call_quietly(functools.partial(on_notice, text))


def _claimed(item: Hold | Place) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    return item.agent, item.writes, item.reads


def _stopped(owner: Owner) -> bool:
    """Whether a run here is stopped (SIGSTOP, Ctrl-Z): it cannot take its turn in line."""
    return owner.is_local and process_state(owner.pid) == "stopped"


def _outcome(entry: TaskEntry) -> TaskOutcome:
    """How ``entry``, which finished, ended."""
    fn = entry.task.execute_fn
    agent = fn if isinstance(fn, SubprocessAgent) else None
    exit_code = None if agent is None else agent.exit_code
    return TaskOutcome(
        entry.id,
        entry.agent,
        entry.task.task_description,
        entry.state,
        attempts=entry.attempts,
        duration_s=_duration(entry),
        reason=entry.outcome_reason,
        exit_code=exit_code,
        log=None if agent is None or exit_code is None else str(agent.log),
        report=None if agent is None else agent.report or AgentReport(),
    )


def _duration(entry: TaskEntry) -> float | None:
    if entry.started_at is None or entry.finished_at is None:
        return None
    return entry.finished_at - entry.started_at


@contextlib.contextmanager
def _released(lock: threading.Lock) -> Iterator[None]:
    """Release a held lock for the body, and take it again however the body ends."""
    lock.release()
    try:
        yield
    finally:
        lock.acquire()


def _start(thread: threading.Thread) -> bool:
    try:
        thread.start()
    except RuntimeError:  # e.g. "can't create new thread at interpreter shutdown" (3.12+)
        log.warning("could not start %s", thread.name, exc_info=True)
        return False
    return True


def _call_quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:
        log.exception("callback %r raised", fn)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
