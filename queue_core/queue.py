"""TaskQueue: runs AgentTasks on worker threads, as many at once as the rules allow.

This is the public front; it wires the parts that do the work (see README, "How it is built"):
the :mod:`~queue_core.scheduler` decides what may start, the :mod:`~queue_core.engine` keeps
the state under one lock and acts on each change, a :mod:`~queue_core.sync` shares every
decision with the other processes on the repository, an :mod:`~queue_core.executor` runs the
attempts on worker threads, and a :mod:`~queue_core.timer` wakes the engine when something
timed falls due (a timeout, a retry, the end of a registry lease, the next look at another
process's claims). Nothing polls.

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

import copy
import functools
import os
import random
import time
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Literal

from .engine import Engine, TaskEvent
from .errors import InvalidTaskError, NotATaskError
from .failfast import FailFast, FailFastMode
from .holds import STALE_AFTER_S
from .isolated import WorktreeAgent
from .machine import Limits, MachineSampler, PsutilSampler
from .machine_rule import AutoParallel, MachineRule
from .ownership import FileOwnership
from .pools import check_capacities
from .realpaths import ClaimResolver
from .records import QueueStatus, TaskOutcome
from .registry import Registry
from .registry_sync import RegistrySync, lock_wait_notice
from .retention import DEFAULT_KEEP_RUNS
from .runner import SubprocessAgent
from .scheduler import DEFAULT_MAX_BYPASS, Scheduler
from .supervisor import shared_supervisor
from .task import AgentTask

__all__ = ["TaskEvent", "TaskQueue"]


class TaskQueue:
    """Runs agent tasks in parallel whenever their claims allow, never otherwise.

    ``max_parallel`` caps running tasks; ``ownership`` gives the paths claimed by a task that
    lists none; ``max_bypass`` is how often lower-ranked tasks may take what a blocked task
    needs before it is reserved (see :mod:`queue_core.scheduler`); ``clock`` and ``rng`` are
    injectable for tests; ``on_event`` is called (from a worker thread, outside the lock) on
    every state change, and must be thread-safe.

    ``pools`` declares quota pools, each a name and its units (``{"anthropic": 2}``): a task
    that names a pool (``AgentTask(..., pools=...)``) starts only while the pool has room for
    its units, and waits, told "pool anthropic full (2/2)", otherwise. With ``repo``, the units
    that tasks of other runs on the repository hold count too, against this queue's capacity.
    Raises InvalidArgumentError for a pool that is not a plain name with a positive count.

    ``instances`` lets an agent type run several tasks at once (one, by default): safe only
    if each runs in a checkout of its own. An agent command of such an agent type must be a
    :class:`~queue_core.isolated.WorktreeAgent` (InvalidTaskError otherwise); a Python callable
    is trusted to keep to its own files.

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

    The machine (see :mod:`queue_core.machine_rule`): with ``limits``, no task starts while
    the machine's CPU or memory in use is above a limit, judged on the mean of the last three
    readings a second apart, with hysteresis; a task that declares ``memory`` or ``cpus``
    starts only while the machine has that much beyond what the running tasks declared; and
    ``max_parallel="auto"`` sets the count from the machine's cores and available memory, then
    moves it while the queue runs. With no task running, one may always start. ``machine``
    reads the machine (default: psutil), about once a second while one of those is in play and
    tasks are unfinished; never otherwise.

    ``fail_fast``: once a task ends FAILED, TIMED_OUT or RATE_LIMITED (a retry due is no failure
    yet), nothing new starts: every task not started ends CANCELLED ("not started: fail-fast
    after t3 failed"), a task submitted later too, and ``try_submit`` raises ConflictError.
    Running tasks finish; with ``"cancel"``, they are stopped as ``abort`` stops them (see
    :mod:`queue_core.failfast`). Raises InvalidArgumentError for anything but False, True or
    ``"cancel"``.

    A queue dropped without ``shutdown`` still finishes the tasks it was given, then frees its
    threads; at interpreter exit, queued work is finished first, as with concurrent.futures.
    """

    #: The parts a queue is built of. A subclass may give its own: the race tests give a
    #: registry that fails on cue and a scheduler that says when a task's end is recorded.
    _registry_type: type[Registry] = Registry
    _scheduler_type: type[Scheduler] = Scheduler

    def __init__(
        self,
        max_parallel: int | Literal["auto"] = 4,
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
        instances: Mapping[str, int] | None = None,
        machine: MachineSampler | None = None,
        limits: Limits | None = None,
        pools: Mapping[str, int] | None = None,
        fail_fast: FailFastMode = False,
    ):
        pools = check_capacities(pools)  # before the registry is made: a bad one leaves nothing behind
        failing = FailFast.of(fail_fast)
        rule = None
        if max_parallel == "auto" or limits:
            auto = None
            if max_parallel == "auto":
                machine = machine or PsutilSampler()
                auto = AutoParallel.for_machine(machine.read())
                max_parallel = auto.start
            rule = MachineRule(limits, auto=auto)
        registry = (
            None
            if repo is None
            else self._registry_type(
                repo,
                run_id,
                supervisor=shared_supervisor().process,
                stale_after=stale_after,
                keep_runs=keep_runs,
                on_lock_wait=None if on_notice is None else functools.partial(lock_wait_notice, on_notice),
            )
        )
        resolve = None if registry is None else ClaimResolver(registry.repo).resolve
        scheduler = self._scheduler_type(
            max_parallel,
            ownership=ownership,
            rng=rng,
            max_bypass=max_bypass,
            resolve=resolve,
            instances=instances,
            machine=rule,
            pools=pools,
        )
        self._instances = dict(instances or {})
        sync = None if registry is None else functools.partial(RegistrySync, registry, on_notice=on_notice)
        self._engine = Engine(scheduler, clock, on_event, on_notice, sync=sync, machine=machine, fail_fast=failing)
        self._registry = registry
        # The threads hold the engine, never this object, so dropping the queue is noticed.
        weakref.finalize(self, self._engine.shutdown, False, False)

    @property
    def max_parallel(self) -> int:
        return self._engine.sched.max_parallel

    def auto_parallel(self) -> AutoParallel | None:
        """With ``max_parallel="auto"``, what it resolved to: ``start``, and so far the ``least``
        and ``most`` it was, up to ``most_allowed``; None otherwise. A copy."""
        with self._engine.lock:
            machine = self._engine.sched.machine
            return None if machine is None or machine.auto is None else copy.copy(machine.auto)

    @property
    def registry(self) -> Registry | None:
        """The repository's shared claim registry, if the queue was given ``repo``."""
        return self._registry

    def submit_task(self, task: AgentTask) -> Future[Any]:
        """Queue ``task``; it starts as soon as its agent, claims, dependencies and a slot allow.

        The future's result is ``execute_fn``'s return value, its exception the task's
        (TaskTimeoutError, TaskSkippedError, CancelledError for a cancelled task, or
        QueueBrokenError if a bug stopped the queue's threads). Raises NotATaskError (a
        TypeError), DuplicateTaskError, UnknownDependencyError, InvalidTaskError for a pool the
        queue does not declare or has fewer units of, InvalidClaimError if with ``repo`` a claim
        resolves outside the repository, or QueueShutdownError after shutdown.
        """
        return self._engine.submit([self._isolated(_checked(task, "submit_task"))])[0]

    def submit_tasks(self, tasks: Sequence[AgentTask]) -> list[Future[Any]]:
        """Queue a batch whose dependencies may point forward within it; all or nothing.

        Raises NotATaskError (a TypeError), DuplicateTaskError, UnknownDependencyError,
        DependencyCycleError or InvalidClaimError before anything is queued.
        """
        return self._engine.submit([self._isolated(task) for task in _checked_batch(tasks)])

    def try_submit(self, task: AgentTask) -> Future[Any]:
        """Start ``task`` right now or raise, without queueing it.

        Raises AgentAlreadyRunningError, ClaimConflictError (naming the holder),
        CapacityError, or ConflictError if a dependency has not succeeded yet. With ``repo``,
        raises InvalidClaimError if a claim resolves outside the repository, and StateError if
        the registry cannot be read (or its lock had within lock_timeout). Raises NotATaskError
        (a TypeError) if ``task`` is not an AgentTask.
        """
        return self._engine.try_submit(self._isolated(_checked(task, "try_submit")))

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

    def get_status(self, waiting_limit: int | None = None) -> QueueStatus:
        """A snapshot: the design note's three fields, then details (see :class:`QueueStatus`).

        ``running_agents`` (agent types running), ``running_files`` (paths being written),
        ``queued_tasks`` (how many wait), ``running`` and ``waiting`` (each waiting task with
        the ``reason`` it waits), ``counts`` by outcome, ``finished_tasks`` and ``failed_tasks``
        (failed, timed out or rate-limited). ``status["running_agents"]`` reads it as the
        design note's dict (see :class:`queue_core.records.ByKey`). With ``waiting_limit``,
        ``waiting`` lists only the best-ranked so many (a view shows a screenful; each reason
        costs a look at the claims held), and ``queued_tasks`` still counts them all.
        """
        return self._engine.status(waiting_limit)

    def outcomes(self, ids: Collection[str] | None = None) -> list[TaskOutcome]:
        """How every finished task ended, in submission order: its description, outcome,
        attempts, last attempt's duration and error, and for an agent command its exit code,
        log and report (see :class:`TaskOutcome`). With ``ids``, only those of these tasks that
        finished, in their order: a listener that asks as each task ends costs the queue the
        tasks it asks for, not all of them."""
        with self._engine.lock:
            return self._engine.outcomes(ids)

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown(wait=True)

    def _isolated(self, task: AgentTask) -> AgentTask:
        """``task``, unless its agent runs several instances and it would run an agent command in
        the shared checkout: two agents in one checkout is what the queue exists to prevent."""
        count = self._instances.get(task.agent_type, 1)
        if (
            count > 1
            and isinstance(task.execute_fn, SubprocessAgent)
            and not isinstance(task.execute_fn, WorktreeAgent)
        ):
            raise InvalidTaskError(
                f"agent {task.agent_type!r} runs {count} instances at once, so its agent commands must each run "
                "in a worktree of their own (a WorktreeAgent)",
                task_id=task.id,
                field="execute_fn",
            )
        return task


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
