"""The engine of a TaskQueue: its state under one lock, and what each change of it sets off.

The engine holds the scheduler (which decides), the futures, and the counts that tell when
everything is done. Three seams connect it to the world, each given at construction:

- a :class:`~queue_core.sync.ClaimSync`, which makes every decision a step with the other
  processes on the repository (or with nobody);
- an :class:`~queue_core.executor.Executor`, which runs started attempts and hands each to
  :meth:`Engine.work` on a thread of its own;
- a :class:`~queue_core.timer.Timer`, which calls :meth:`Engine.tick` when something timed
  falls due.

A fourth, the machine's :class:`~queue_core.machine.MachineSampler`, is read only while the
scheduler has a machine rule (limits, declared needs, ``max_parallel="auto"``): as tasks are
added, and then on the timer once a second while tasks are unfinished.

Dispatch is event-driven. Whoever changes the state (a submit, an attempt returning, a cancel,
a tick) asks the scheduler, under the lock, which tasks start now; an attempt that just returned
runs the first task its release unblocked on the same thread, without waking another. Nothing
polls. Tests drive the engine step by step with an executor that only records what it was
given, a timer that only records that it was woken, and a fake clock: ``work`` (or ``begin``
and ``end``) and ``tick`` are then called by the test itself.

Futures are resolved, and events sent, outside the lock: callbacks may call the queue.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import threading
import weakref
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any, ParamSpec, TypeVar

from .errors import (
    ConflictError,
    QueueBrokenError,
    QueueError,
    QueueShutdownError,
    QueueUsageError,
    RateLimitedError,
)
from .executor import Executor, ThreadExecutor
from .failfast import FailFast
from .machine import MachineSampler, PsutilSampler
from .records import QueueStatus, TaskOutcome
from .results import (
    EVENT_KINDS,
    Resolution,
    TaskEvent,
    TaskFuture,
    call_quietly,
    describe,
    outcome,
    queue_status,
    resumes_at,
    settle,
)
from .scheduler import Scheduler, TaskEntry
from .sync import ClaimSync, NoSync
from .task import AgentTask, Logged, Stoppable, TaskState, is_supervised
from .timer import Timer, TimerThread

__all__ = ["Engine", "TaskEvent"]

log = logging.getLogger("queue_core")

_P = ParamSpec("_P")
_R = TypeVar("_R")


_live_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _drain_live_engines() -> None:
    # Workers are daemon threads; like concurrent.futures, let queued work finish at exit.
    for engine in list(_live_engines):
        engine.shutdown(wait=True, cancel_pending=False)


class Engine:
    """The state of one TaskQueue, under ``lock``; see the module's docstring."""

    def __init__(
        self,
        sched: Scheduler,
        clock: Callable[[], float],
        on_event: Callable[[TaskEvent], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        *,
        sync: Callable[[Engine], ClaimSync] | None = None,
        executor: Callable[[Engine], Executor] | None = None,
        timer: Callable[[Engine], Timer] | None = None,
        machine: MachineSampler | None = None,
        fail_fast: FailFast | None = None,
    ):
        self.sched = sched
        self.clock = clock
        self.on_event = on_event
        self.on_notice = on_notice
        # lock guards sched and every mutable attribute below.
        self.lock = threading.Lock()
        self.all_done = threading.Condition(self.lock)  # join: nothing unfinished or undelivered
        self.futures: dict[str, Future[Any]] = {}  # unresolved futures, by task id
        self.in_body: set[str] = set()  # ids whose execute_fn has been entered
        self.delivering = 0  # batches of results collected under the lock, not yet delivered
        self.closed = False
        self.aborted = False  # abort(): nothing starts or is retried any more
        self.fail_fast = fail_fast  # once it tripped, nothing new starts (see queue_core.failfast)
        self.broken = False  # a thread of the engine raised: the scheduler may be half-updated
        self.own_thread = threading.local()  # .set on the engine's threads; .owes: see _deliver
        self.sync: ClaimSync = NoSync(clock) if sync is None else sync(self)
        self.machine = machine  # None: psutil's, made if the scheduler's rule ever wants a reading
        work, tick = self._threaded(self.work), self._threaded(self.tick)
        auto = None if sched.machine is None else sched.machine.auto
        workers = sched.max_parallel if auto is None else max(sched.max_parallel, auto.most_allowed)
        self.executor: Executor = ThreadExecutor(work, workers) if executor is None else executor(self)
        self.timer: Timer = TimerThread(tick) if timer is None else timer(self)
        _live_engines.add(self)

    # --- entry points -----------------------------------------------------------------------

    def submit(self, tasks: Sequence[AgentTask]) -> list[Future[Any]]:
        with self.lock:
            if self.closed:
                raise QueueShutdownError()
            now = self.clock()
            if self.sched.machine is not None or any(_needs(t) for t in tasks):
                self._look(now, engage=True)  # a first reading, which tasks' needs are checked against
            # Either validates everything before adding anything.
            finished = self.sched.add(tasks[0], now) if len(tasks) == 1 else self.sched.add_batch(tasks, now)
            if self.fail_fast is not None and self.fail_fast.reason is not None:  # failed fast: none of them starts
                finished += self.fail_fast.cancel_waiting(self.sched, now)
            futures: list[Future[Any]] = [TaskFuture(self.cancel, t.id) for t in tasks]
            self.futures.update(zip((t.id for t in tasks), futures, strict=True))
            self._dispatch(now)
            if any(_timed(t) for t in tasks) or self.sched.machine is not None:
                self.timer.wake()
            resolved = self._collect(finished)
        self._deliver(resolved)
        return futures

    def try_submit(self, task: AgentTask) -> Future[Any]:
        with self.lock:
            refused: BaseException | None = None
            decided = False
            resolved: list[Resolution] = []

            def decide(now: float) -> list[TaskEntry]:
                # Dispatch whatever happens: the step may carry other threads' requests, and
                # syncing with the registry may have freed what other tasks wait for.
                nonlocal refused, decided
                decided = True
                if self.closed:  # shut down while the step waited for the registry
                    refused = QueueShutdownError()
                    return self.sched.dispatch(now)
                if self.fail_fast is not None and self.fail_fast.reason is not None:
                    refused = ConflictError(f"not started: {self.fail_fast.reason}")
                    return self.sched.dispatch(now)
                try:
                    first = self.sched.try_start(task, now)
                except QueueError as exc:
                    refused = exc
                    return self.sched.dispatch(now)
                return [first, *self.sched.dispatch(now)]

            if self.closed:
                raise QueueShutdownError()
            if self.sched.machine is not None or _needs(task):
                self._look(self.clock(), engage=True)
            self._hand_out(self.sync.step(decide, shared=False) or [])
            if not decided:  # the registry could not be read
                refused = self.sync.error
            elif refused is None and self.sched.entry(task.id).state is not TaskState.RUNNING:
                # Its start could not be written, so it went back to the queue: take it out.
                refused = self.sync.error
                resolved = self._collect(self.sched.cancel(task.id, self.clock()))
            if refused is None:
                future: Future[Any] = TaskFuture(self.cancel, task.id)
                self.futures[task.id] = future
                if _timed(task) or self.sched.machine is not None:
                    self.timer.wake()
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
            # Waiting, or started by the scheduler with its body not yet entered: its thread
            # sees stop_requested and does not call it.
            now = self.clock()
            changed = self.sched.cancel(task_id, now)
            if changed:  # a cancelled reservation may free others
                self._dispatch(now)
            resolved = self._collect(changed)
            accepted = bool(changed) or entry.stop_requested
        if stop is not None:
            call_quietly(stop)
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
                changed = self.sched.cancel_waiting(now)
                self._dispatch(now)
            resolved = self._collect(changed)
            self._wake_all()
        self._deliver(resolved)
        if wait and not getattr(self.own_thread, "set", False):
            with self.lock:  # once drained, and closed, nothing starts: the threads are ending
                self.all_done.wait_for(self._drained)
            self.executor.join()
            self.timer.join()
            self.sync.finish(self.outcomes)
            _live_engines.discard(self)

    def abort(self) -> None:
        self.sync.interrupt()  # first: a step waiting for the registry lock lets go of it at once
        with self.lock:  # one section: an attempt that fails meanwhile must not slip into a retry
            self.aborted = self.closed = True
            now = self.clock()
            changed = self.sched.cancel_waiting(now)
            resolved = self._collect(changed)
            running = [e.id for e in self.sched.running]
            self._wake_all()
        self._deliver(resolved)
        for task_id in running:
            self.cancel(task_id)

    def status(self, waiting_limit: int | None = None) -> QueueStatus:
        with self.lock:
            return self.snapshot(waiting_limit)

    def outcomes(self, ids: Collection[str] | None = None) -> list[TaskOutcome]:
        """How each finished task ended (of ``ids`` alone, if given: unknown ones passed over);
        with what an agent command reported (lock held)."""
        entries = self.sched.entries() if ids is None else _entries_of(self.sched, ids)
        return [outcome(e) for e in entries if e.state.is_terminal]

    # --- what the sync reads (lock held) ------------------------------------------------------

    def snapshot(self, waiting_limit: int | None) -> QueueStatus:
        """The status; ``waiting_limit`` caps the waiting tasks described."""
        return queue_status(self.sched, self.sync, self.clock(), waiting_limit)

    def done(self) -> bool:
        return self.closed and self._drained()

    def wake_timer(self) -> bool:
        return self.timer.wake()

    # --- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, now: float, *, keep_one: bool = False) -> TaskEntry | None:
        """Start what may start now and hand it out (lock held; a registry step releases it
        for its I/O). With ``keep_one``, one started entry is returned to the caller instead."""
        if self.aborted:  # nothing starts any more (see abort)
            self.sync.stopped()
            return None
        started = self.sync.step(self.sched.dispatch, shared=True)
        return None if started is None else self._hand_out(started, keep_one=keep_one)

    def _hand_out(self, started: list[TaskEntry], *, keep_one: bool = False) -> TaskEntry | None:
        """Give freshly started entries to the executor (lock held); optionally keep one for the caller."""
        if not started:
            return None
        if any(e.deadline is not None for e in started):
            self.timer.wake()
        mine = started.pop(0) if keep_one else None
        if started:
            self.executor.start(started)
        return mine

    # --- attempts ---------------------------------------------------------------------------

    def _threaded(self, fn: Callable[_P, _R]) -> Callable[_P, _R]:
        """``fn`` as run by one of the engine's threads, which join() must refuse."""

        def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            self.own_thread.set = True
            return fn(*args, **kwargs)

        return run

    def work(self, entry: TaskEntry | None) -> None:
        """Run ``entry``'s attempt, then each one its end hands back (on an executor's thread).

        An unexpected error stops the queue rather than hang it (see _break).
        """
        try:
            while entry is not None and not self.broken:  # a broken scheduler decides nothing more
                entered = self.begin(entry)
                result, error = self._call(entry) if entered else (None, None)
                entry = self.end(entry, entered, result, error)
        except BaseException as exc:  # noqa: BLE001 - a bug here must not leave a future unresolved
            self._break(exc)

    def begin(self, entry: TaskEntry) -> bool:
        """Whether to enter ``entry``'s body now: not if it was stopped, timed out or its
        future cancelled before it ran."""
        with self.lock:
            if getattr(self.own_thread, "owes", False):  # counted here, in a lock this thread takes anyway
                self.own_thread.owes = False
                self._count_delivered()
            # A future already resolved (timed out before it ran) is None here.
            future = self.futures.get(entry.id)
            enter = future is not None and not entry.stop_requested and not entry.timed_out
            if enter:
                self.in_body.add(entry.id)
        if enter and entry.attempts == 1:
            assert future is not None
            enter = future.set_running_or_notify_cancel()  # False: its caller cancelled it
        return enter

    def _call(self, entry: TaskEntry) -> tuple[Any, BaseException | None]:
        """Run the attempt's body; any failure is the task's, never the queue's."""
        task = entry.task
        if self.on_event is not None:
            what = task.task_description
            self._emit(TaskEvent("started", task.id, task.agent_type, self.clock(), entry.attempts, None, what))
        if is_supervised(task.execute_fn):  # its agent's process group, recorded before it runs
            task.execute_fn.record_group_in = self.sync.group_record(task.id)
        try:
            return task.execute_fn(), None
        except BaseException as exc:  # noqa: BLE001
            return None, exc

    def end(
        self, entry: TaskEntry, entered: bool, result: Any = None, error: BaseException | None = None
    ) -> TaskEntry | None:
        """An attempt of ``entry`` returned (or was not entered): record how it ended, start what
        that frees, and deliver. Returns the entry this thread is to run next, if one was freed."""
        with self.lock:
            self.in_body.discard(entry.id)
            if (
                entry.stop_requested
                or (not entered and not entry.timed_out)
                or (self.aborted and not _succeeded(entry, error))
            ):
                outcome = TaskState.CANCELLED  # an attempt that failed as the queue was aborted is not retried
            elif isinstance(error, RateLimitedError):
                outcome = TaskState.RATE_LIMITED  # its agent pauses; the task runs again, or gives up
            elif error is not None or entry.timed_out:
                outcome = TaskState.FAILED  # recorded as TIMED_OUT by the scheduler if it timed out
            else:
                outcome = TaskState.SUCCEEDED
            now = self.clock()
            retry_after = error.retry_after if isinstance(error, RateLimitedError) else None
            why = None if error is None else describe(error)
            if outcome is TaskState.CANCELLED and self.fail_fast is not None:
                why = self.fail_fast.stopped_reason(entry.id) or why
            changed = self.sched.finish(entry.id, outcome, now, why, retry_after)
            if entry.state in (TaskState.RETRY_WAIT, TaskState.QUEUED):  # to run again: the timer says when
                self.timer.wake()
            cancelled, stopping = self._fail_fast(changed, now)  # before the dispatch: nothing starts after it
            # Collected before the dispatch, which may start the retry: its event says "retrying".
            resolved = self._collect([*changed, *cancelled], result=result, error=error, of=entry.id, ended_at=now)
            mine = self._dispatch(now, keep_one=True)
        owes = bool(resolved) and mine is not None
        self.own_thread.owes = owes
        self._deliver(resolved, count_down=not owes)
        for task_id in stopping:
            self.cancel(task_id)
        return mine

    def _fail_fast(self, changed: list[TaskEntry], now: float) -> tuple[list[TaskEntry], list[str]]:
        """If one of ``changed`` is the queue's first failure and it fails fast: cancel every task
        not started, and return them with the running tasks to stop ("cancel"); lock held."""
        rule = self.fail_fast
        if rule is None or not rule.trip(changed):
            return [], []
        stopping = [e.id for e in self.sched.running] if rule.stop_running else []
        rule.stopped.update(stopping)
        return rule.cancel_waiting(self.sched, now), stopping

    # --- time -------------------------------------------------------------------------------

    def tick(self) -> float | None:
        """Do what has fallen due; the seconds until something is due again (inf if nothing is
        timed now), or None once the queue is done and the timer may end."""
        try:
            return self._tick()
        except BaseException as exc:  # noqa: BLE001 - a bug here must not leave a future unresolved
            self._break(exc)
            return None

    def _tick(self) -> float | None:
        notices: list[str] = []
        with self.lock:
            if self.done() and self.sync.idle():
                return None
            now = self.clock()
            due = self.sched.next_wakeup()
            due = None if due is None or due > now else due
            expired = [] if due is None else self.sched.expire(now)
            stops = [
                functools.partial(_time_out, e.task.execute_fn, e.timed_out_reason())
                for e in expired
                if isinstance(e.task.execute_fn, Stoppable)
            ]
            # A last attempt's future fails now, though the call may go on and hold its claims.
            resolved = [
                Resolution.of(entry, self.futures.pop(entry.id, None), TaskState.TIMED_OUT)
                for entry in expired
                if entry.attempts - entry.rate_limits > entry.task.retries
            ]
            if resolved:
                self.delivering += 1
            # With attempts expired, stop them first and dispatch at the next tick: a dispatch
            # may let go of the lock, an expired attempt return meanwhile and its retry start,
            # and a stop meant for the attempt must not reach the retry.
            if not expired:
                others_changed, notices = self.sync.poll(now)
                looked = self._look(now)
                if others_changed or due is not None or looked:
                    self._dispatch(now)
                self.sync.flush()
            beat = self.sync.beat()
            delay = self._delay()
        if beat is not None and self.sync.heartbeat(beat):
            with self.lock:
                self._dispatch(self.clock())  # a step writes back what runs here
        for stop in stops:
            call_quietly(stop)
        for notice in notices:
            self._notice(notice)
        if resolved:
            self._deliver(resolved, events=False)
        return delay

    def _delay(self) -> float | None:
        """Seconds until the next thing timed falls due (lock held); see tick."""
        if self.done() and self.sync.idle():
            return None
        now = self.clock()
        delays = [due - now for due in (self.sched.next_wakeup(), self._next_look()) if due is not None]
        sync = self.sync.delay(now)
        return min(delays if sync is None else [*delays, sync], default=math.inf)

    # --- the machine ------------------------------------------------------------------------

    def _look(self, now: float, *, engage: bool = False) -> bool:
        """Read the machine if the scheduler's rule wants a reading by ``now`` (lock held);
        ``engage``: make the rule if there is none. Whether a dispatch may start more now."""
        machine = self.sched.machine_rule() if engage else self.sched.machine
        if machine is None or not machine.due(now):
            return False
        if self.machine is None:
            self.machine = PsutilSampler()
        try:
            reading = self.machine.read()
        except Exception:  # a sampler's failure must not stop the queue: logged, read again later
            log.warning("the machine could not be read; its last readings stand", exc_info=True)
            machine.missed(now)
            return False
        return self.sched.observe(reading, now)

    def _next_look(self) -> float | None:
        """When the machine is to be read next (lock held): while a rule reads it and tasks are unfinished."""
        machine = self.sched.machine
        return None if machine is None or self.sched.unfinished == 0 else machine.next_look

    # --- results ----------------------------------------------------------------------------

    def _collect(
        self,
        changed: list[TaskEntry],
        *,
        result: Any = None,
        error: BaseException | None = None,
        of: str | None = None,
        ended_at: float | None = None,
    ) -> list[Resolution]:
        """Pair changed entries with their futures (lock held); whoever collects resolves. The
        attempt of ``of`` returned ``result`` or raised ``error``, and ended at ``ended_at``."""
        if not changed:
            if self._drained():
                self.all_done.notify_all()
            return []
        out: list[Resolution] = []
        for entry in changed:
            future = self.futures.pop(entry.id, None) if entry.state.is_terminal else None
            if entry.id == of:
                due = resumes_at(self.sched, entry)
                out.append(Resolution.of(entry, future, result=result, error=error, ended_at=ended_at, resumes_at=due))
            else:
                out.append(Resolution.of(entry, future))
        self.delivering += 1
        return out

    def _deliver(self, resolved: list[Resolution], *, events: bool = True, count_down: bool = True) -> None:
        """Resolve futures and send events, outside the lock (callbacks may re-enter the queue).

        Each delivery collected under the lock is counted down when done, so join() waits for
        it; a thread that runs another attempt next passes ``count_down=False`` and counts down
        in that attempt's ``begin`` (``own_thread.owes``).
        """
        if not resolved:
            return
        try:
            for item in resolved:
                if item.future is not None:
                    settle(item)
                if events and self.on_event is not None:
                    kind = EVENT_KINDS.get(item.state, item.state.value)
                    task = item.entry.task
                    ended = (item.reason, task.task_description, item.duration_s, item.log)
                    taken = (item.exit_code, item.report, item.total_s, item.resumes_at)
                    self._emit(TaskEvent(kind, task.id, task.agent_type, self.clock(), item.attempt, *ended, *taken))
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

    def _wake_all(self) -> None:
        """The queue closed, or its last work ended (lock held): threads with nothing left end."""
        if self._drained():
            self.executor.close()
        self.timer.wake()

    def _emit(self, event: TaskEvent) -> None:
        if self.on_event is not None:
            call_quietly(functools.partial(self.on_event, event))

    def _notice(self, text: str) -> None:
        if self.on_notice is not None:
            call_quietly(functools.partial(self.on_notice, text))


def _timed(task: AgentTask) -> bool:
    """Whether ``task`` may need the timer: for a deadline, or for a retry's due time. The timer
    starts now and lives until the queue is done: at interpreter exit (3.12+) no thread starts."""
    return task.timeout is not None or task.retries > 0


def _needs(task: AgentTask) -> bool:
    """Whether ``task`` declares what it needs of the machine."""
    return task.memory is not None or task.cpus is not None


def _time_out(fn: Stoppable, reason: str) -> None:
    """Stop an attempt that ran past its deadline; its log, if it keeps one, says why first."""
    if isinstance(fn, Logged):
        fn.note(f"{reason}: stopping it")
    fn.stop()


def _succeeded(entry: TaskEntry, error: BaseException | None) -> bool:
    return error is None and not entry.timed_out


def _entries_of(sched: Scheduler, ids: Collection[str]) -> list[TaskEntry]:
    """The entries of the tasks ``ids`` names that ``sched`` has, in that order."""
    found = []
    for task_id in ids:
        with contextlib.suppress(KeyError):  # a task this queue never had
            found.append(sched.entry(task_id))
    return found
