"""The pure decision core: which tasks start now, given what runs, what waits, and the time.

No threads, no clock, no I/O: every method takes ``now`` from its caller and returns what
changed, so tests step it one event at a time and the benchmark drives it in simulated time.
:class:`~queue_core.queue.TaskQueue` wraps it with threads and futures.

How a dispatch stays O(log n) per task with many tasks waiting:

* Queued tasks wait in their agent type's heap; a busy agent's whole queue is skipped in one
  step: while its slot is full, none of its tasks may start (see queue_core.agentqueues).
* A task whose claims clash with a running task is *parked on that holder* with every task
  blocked the same way, and costs nothing while it waits; when the holder lets go, the group
  moves as a whole (see queue_core.waitgroups).

* A task whose quota pool has no room is *parked on the pool*; units freed wake as many of
  its best-ranked waiters as they fit (see queue_core.poolwaits).

Backfilling (a blocked task does not hold back later ones) must not starve it: see
queue_core.reservation.

The machine (CPU and memory limits, tasks' declared needs, ``max_parallel="auto"``) is a rule
over readings the owner takes and hands to :meth:`Scheduler.observe`: see queue_core.machine_rule.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Mapping, Sequence

from .admission import Admission
from .agentqueues import AgentQueues
from .claims import Access, Claim, Conflict
from .deadlines import Timers
from .entry import TaskEntry, claims_of
from .errors import DuplicateTaskError, InvalidArgumentError, UnknownDependencyError
from .graph import critical_order, topological
from .machine import Reading
from .machine_rule import MACHINE_KINDS, MachineRule
from .ownership import FileOwnership
from .pauses import Pauses
from .pools import check_capacities, check_takes
from .poolwaits import PoolWaits
from .reservation import Reservation
from .task import AgentTask, TaskState
from .waitgroups import WaitGroups
from .waits import WaitReason

__all__ = ["Scheduler", "TaskEntry", "WaitReason"]

#: A task's claims on real paths: (writes, reads).
_Claims = tuple[tuple[Claim, ...], tuple[Claim, ...]]

_OUTCOMES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.TIMED_OUT, TaskState.CANCELLED, TaskState.RATE_LIMITED}
)

#: How often lower-ranked tasks may take what the best-ranked blocked task needs before it gets
#: a reservation. Chosen with bench/makespan.py (see bench/RESULTS.md).
DEFAULT_MAX_BYPASS = 4


class Scheduler:
    """Decides which tasks start, in priority then submission order, never breaking a rule.

    Rules (see queue_core.admission): at most ``max_parallel`` running; at most one running
    task per agent type, or ``instances[agent]``; at most ``pools[pool]`` units of each quota
    pool taken; no two running tasks with overlapping claims unless both only read; an agent
    type whose attempt hit a rate limit starts nothing until its pause ends. Several instances
    of an agent type are safe only if each of its tasks runs isolated (its own worktree): the
    owner decides that, the scheduler only counts. With ``machine``, or once a task declares
    needs, the machine's rule too (its limits, needs and ``auto``: see
    queue_core.machine_rule), on the readings given to ``observe``. Not thread-safe: the owner
    serialises calls.

    Raises InvalidArgumentError for a count that is not a positive integer (``max_bypass``:
    not negative), or a pool that is not a plain name (see queue_core.pools).
    """

    def __init__(
        self,
        max_parallel: int = 4,
        *,
        ownership: FileOwnership | None = None,
        rng: random.Random | None = None,
        max_bypass: int = DEFAULT_MAX_BYPASS,
        resolve: Callable[[Claim], Sequence[Claim]] | None = None,
        instances: Mapping[str, int] | None = None,
        machine: MachineRule | None = None,
        pools: Mapping[str, int] | None = None,
    ):
        parallel = _count("max_parallel", max_parallel, least=1)
        self._reservation = Reservation(_count("max_bypass", max_bypass, least=0))
        agents = {agent: _count(f"instances of {agent!r}", n, least=1) for agent, n in (instances or {}).items()}
        self._paused = Pauses()  # agent types that hit a rate limit
        # Applied to every claim of every task added: lets the owner, who may look at the disk,
        # turn a claim into the claims on real paths it stands for (see queue_core.realpaths).
        self._resolve = resolve
        self.ownership = ownership or FileOwnership()
        self._rng = rng or random.Random()
        self._seq = 0
        self._entries: dict[str, TaskEntry] = {}
        self._pools = check_capacities(pools)  # quota pool -> its units
        self._admission = Admission(parallel, agents, self._entries, self._paused, self._reservation, self._pools)
        self._admission.machine = machine
        self._pool_waits = PoolWaits(self._entries, self._admission.pools)  # tasks parked on a pool
        self._queues = AgentQueues(self._entries)  # tasks queued, not parked or held back
        self._groups = WaitGroups(self._entries)  # tasks parked on a holder's claim
        self._timers = Timers(self._entries)  # retries waiting, deadlines of running tasks
        self._unfinished = 0
        self._estimated = False  # whether a task was added with an estimate
        self._outcomes = {state.value: 0 for state in TaskState if state.is_terminal}

    # --- queries --------------------------------------------------------------------------

    @property
    def unfinished(self) -> int:
        """Tasks not yet in a terminal state (running ones included)."""
        return self._unfinished

    @property
    def outcomes(self) -> dict[str, int]:
        """How many tasks finished in each terminal state, by the state's value."""
        return dict(self._outcomes)

    @property
    def max_parallel(self) -> int:
        return self._admission.parallel.capacity

    @property
    def running(self) -> list[TaskEntry]:
        """The tasks running here, in the order they started."""
        return [self._entries[task_id] for task_id in self._admission.parallel.holders]

    @property
    def estimated(self) -> bool:
        """Whether a task was added with an ``estimate_s``: only then may a status tell the time left."""
        return self._estimated

    def capacity_of(self, agent: str) -> int:
        """How many tasks of ``agent`` may run here at once."""
        return self._admission.agent_slots[agent].capacity

    @property
    def machine(self) -> MachineRule | None:
        """The machine's rule, if the scheduler has one (see the class)."""
        return self._admission.machine

    @property
    def reserved(self) -> TaskEntry | None:
        """The task whose agent and claims are reserved against lower-ranked tasks, if any."""
        return self._reservation.reserved

    def entry(self, task_id: str) -> TaskEntry:
        """The record of ``task_id``; raises KeyError if no such task was added."""
        return self._entries[task_id]

    def entries(self) -> Iterable[TaskEntry]:
        return self._entries.values()

    def next_wakeup(self) -> float | None:
        """The earliest time a retry falls due, a rate-limit pause ends or a running task's deadline passes."""
        times = [t for t in (self._timers.next(), self._paused.next_end()) if t is not None]
        return min(times) if times else None

    def wait_reason(self, entry: TaskEntry) -> WaitReason | None:
        """Why ``entry`` is not running (None if it runs or has finished)."""
        state = entry.state
        if state is TaskState.PENDING:
            return WaitReason("dependency", needs=self._unmet(entry.task))
        if state is TaskState.RETRY_WAIT:
            return WaitReason("retry", until=entry.retry_at)
        return self._admission.wait_reason(entry) if state is TaskState.QUEUED else None

    def waiting(self, limit: int | None = None) -> list[tuple[TaskEntry, WaitReason]]:
        """Every task not running and not finished, best-ranked first, with its reason.

        With ``limit``, only the first ``limit`` of them: sorting is cheap, reasons are not.
        """
        waiting = (e for e in self._entries.values() if not e.state.is_terminal and e.state is not TaskState.RUNNING)
        ranked = sorted(waiting, key=_rank) if limit is None else heapq.nsmallest(limit, waiting, key=_rank)
        return [(e, reason) for e in ranked if (reason := self.wait_reason(e)) is not None]

    # --- adding tasks ---------------------------------------------------------------------

    def add(self, task: AgentTask, now: float) -> list[TaskEntry]:
        """Queue ``task``; returns the entries that finished because of it (itself if skipped).

        Raises DuplicateTaskError, UnknownDependencyError, or InvalidClaimError if a claim
        cannot be resolved; then nothing is added.
        """
        self._check_new(task)
        return self._add(task, now, self._claims_of(task))

    def add_batch(self, tasks: Sequence[AgentTask], now: float) -> list[TaskEntry]:
        """Queue several tasks whose dependencies may point forward within the batch.

        They rank in the order given, or, if some have an ``estimate_s``, by critical path among
        tasks of equal priority (see queue_core.graph.critical_order). Either way after every
        task added before: a later submission never passes an earlier one of equal priority,
        so no stream of longer tasks can starve a waiting one.

        Everything is checked before anything is added: duplicate ids, unknown dependencies,
        cycles and claims that cannot be resolved raise, and then no task of the batch is queued.
        """
        batch: dict[str, AgentTask] = {}
        for task in tasks:
            if task.id in batch or task.id in self._entries:
                raise DuplicateTaskError(task.id)
            batch[task.id] = task
        claims = {}
        for task in tasks:
            self._check_new(task, batch)
            claims[task.id] = self._claims_of(task)
        # Rank by position in the list (or by estimates), though dependencies must be added
        # before their dependents.
        rank, order = _ranks(tasks, batch, self._seq + 1)
        self._seq += len(tasks)
        finished: list[TaskEntry] = []
        for task_id in order:
            task = batch[task_id]
            finished.extend(self._add(task, now, claims[task.id], seq=rank[task.id]))
        return finished

    def try_start(self, task: AgentTask, now: float) -> TaskEntry:
        """Add ``task`` and start it at once, or raise the ConflictError that says why not.

        Raises AgentAlreadyRunningError, ClaimConflictError (naming the holder),
        CapacityError or InvalidClaimError, and then nothing is added.
        """
        self._check_new(task)
        writes, reads = self._claims_of(task)
        probe = TaskEntry(task, (-task.priority, self._seq + 1), writes, reads)
        needs = self._unmet(task)
        if needs:
            raise WaitReason("dependency", needs=needs).to_error()
        refusal = self._admission.refusal(probe)
        if refusal is not None:
            raise refusal.to_error()
        entry = self._register(task, now, (writes, reads))
        self._start(entry, now)
        return entry

    def _check_new(self, task: AgentTask, batch: Mapping[str, AgentTask] | None = None) -> None:
        """Raise unless ``task`` is new, each dependency is known here or in ``batch``, each pool
        it takes is one of the queue's with room for its units, and its declared needs could fit
        the machine last read (InvalidTaskError)."""
        if task.id in self._entries:
            raise DuplicateTaskError(task.id)
        for dep in task.depends_on:
            if dep not in self._entries and (batch is None or dep not in batch):
                raise UnknownDependencyError(task.id, dep)
        if task.memory is not None or task.cpus is not None:
            self.machine_rule().check(task)
        if task.pool_units:
            check_takes(task, self._pools)

    def _claims_of(self, task: AgentTask) -> _Claims:
        return claims_of(task, self.ownership, self._resolve)

    def _unmet(self, task: AgentTask) -> tuple[str, ...]:
        """The dependencies of ``task`` that have not succeeded (yet)."""
        return tuple(d for d in task.depends_on if self._entries[d].state is not TaskState.SUCCEEDED)

    def _register(self, task: AgentTask, now: float, claims: _Claims, seq: int | None = None) -> TaskEntry:
        if seq is None:
            self._seq += 1
            seq = self._seq
        writes, reads = claims
        entry = TaskEntry(task, (-task.priority, seq), writes, reads, submitted_at=now)
        self._entries[task.id] = entry
        self._unfinished += 1
        self._estimated = self._estimated or task.estimate_s is not None
        return entry

    def _add(self, task: AgentTask, now: float, claims: _Claims, seq: int | None = None) -> list[TaskEntry]:
        entry = self._register(task, now, claims, seq)
        for dep_id in task.depends_on:
            dep = self._entries[dep_id]
            if dep.state is TaskState.SUCCEEDED:
                continue
            if dep.state.is_terminal:
                return self._finish_as(entry, TaskState.SKIPPED, now, f"dependency {dep_id} {dep.state.value}")
            entry.unmet += 1
            dep.dependents.append(task.id)
        if entry.unmet == 0:
            self._enqueue(entry)
        return []

    # --- the decision ---------------------------------------------------------------------

    def dispatch(self, now: float) -> list[TaskEntry]:
        """Start every task that may start now, best-ranked first; returns them, now RUNNING."""
        for agent in self._paused.resume(now):
            self._queues.wake(agent)
        for entry in self._timers.due_retries(now):
            self._enqueue(entry)
        started: list[TaskEntry] = []
        parallel, machine = self._admission.parallel, self._admission.machine
        pooled = self._pool_waits
        if pooled.waiting:
            self._wake_pools()
        # Two lazily pruned heaps rank the candidates: agents' queue heads and released groups.
        while not parallel.full and (machine is None or not machine.closed(len(parallel))):
            released, queued = self._groups.best_key(), self._queues.best_key()
            if released is not None and (queued is None or released < queued):
                self._step_released(now, started)
            elif queued is not None:
                self._step_agent(now, started)
            elif not (pooled.waiting and self._wake_pools()):  # woken tasks that waited elsewhere left units free
                break
        return started

    def _wake_pools(self) -> bool:
        """Queue again the tasks parked on a pool that its free units fit; whether there were any."""
        woken = self._pool_waits.wake()
        for entry in woken:
            self._enqueue(entry)
        return bool(woken)

    def _step_agent(self, now: float, started: list[TaskEntry]) -> None:
        """Look at the best awake agent's best task: start it, park it, or let the agent sleep."""
        entry = self._queues.take()
        if entry is None:
            return  # a stale head, ranked again, or an agent with nothing queued
        if self._admission.agent_blocked(entry) is not None:
            return  # its whole queue waits: woken when the agent is released, reserved or resumed
        self._queues.remove(entry)
        blocker = self._admission.blocker(entry)
        if blocker is None:
            self._start(entry, now)
            started.append(entry)
        else:
            self._park(entry, blocker)
        if not self._admission.agent_slots[entry.agent].full:
            self._queues.wake(entry.agent)  # its next task may start too; if not, when one lets go

    def _step_released(self, now: float, started: list[TaskEntry]) -> None:
        """Look at the best member of a released group; the rest may follow it in one step."""
        taken = self._groups.take()
        if taken is None:
            return  # its rank was stale, or it was empty
        group, entry = taken
        if self._admission.agent_blocked(entry) is not None:
            self._enqueue(entry)  # looked at again when its agent is free
        else:
            blocker = self._admission.blocker(entry)
            if blocker is None:
                self._start(entry, now)
                started.append(entry)
                if group.access is Access.WRITE:  # the rest need what it now holds
                    self._groups.move(group, entry.id, group.claim)
                    return
            elif isinstance(blocker, Conflict) and (blocker.claim, blocker.access) == (group.claim, group.access):
                group.add(entry)  # blocked as the rest are: all move together
                self._groups.move(group, blocker.owner, blocker.held)
                self._consider_starving(entry)
                return
            else:
                self._park(entry, blocker)
        self._groups.put_back(group)

    # --- claims held elsewhere ------------------------------------------------------------

    @property
    def external_holders(self) -> list[str]:
        return self._admission.external_holders

    def hold_external(
        self,
        holder: str,
        agent: str,
        claims: tuple[tuple[Claim, Access], ...],
        *,
        in_line: bool = False,
        pools: tuple[tuple[str, int], ...] = (),
    ) -> None:
        """Record that ``holder`` (a task of another process) runs ``agent`` holding ``claims``
        and ``pools``' units (of those not declared here, none: no task here takes them).

        Tasks here then wait for it exactly as for a running task of their own, but it does not
        count toward ``max_parallel``. ``in_line``: it does not run yet, but waits in line ahead
        of them (see queue_core.line); they are told so. Raises ValueError if ``holder`` is
        already recorded.
        """
        self._admission.hold_external(holder, agent, claims, in_line=in_line, pools=pools)

    def release_external(self, holder: str) -> None:
        """``holder`` let go of everything: tasks waiting for it may start at the next dispatch."""
        agent = self._admission.release_external(holder)
        self._groups.release(holder)
        self._queues.wake(agent)

    def waiting_on_external(self, limit: int) -> list[tuple[TaskEntry, frozenset[str]]]:
        """The ``limit`` best-ranked tasks among those first in wait for a claim or an agent type
        held elsewhere, best first, each with the external holders it waits for.

        Costs O(log n) per group of tasks waiting on an external holder.
        """
        found: dict[str, tuple[TaskEntry, set[str]]] = {}
        for holder in self._admission.external_holders:
            for first in self._groups.first_on(holder):
                if first.agent not in self._paused.until:
                    found.setdefault(first.id, (first, set()))[1].add(holder)
        for agent, holders in self._admission.agents_held_elsewhere():
            best_queued = self._queues.first(agent)
            if best_queued is not None and agent not in self._paused.until:
                found.setdefault(best_queued.id, (best_queued, set()))[1].update(holders)
        for pool in self._pool_waits.pools():
            parked = self._pool_waits.first(pool)
            holders = [] if parked is None else self._admission.pool_held_elsewhere(pool, parked[1])
            if holders and parked is not None and parked[0].agent not in self._paused.until:
                found.setdefault(parked[0].id, (parked[0], set()))[1].update(holders)
        best = heapq.nsmallest(limit, found.values(), key=lambda item: _rank(item[0]))
        return [(entry, frozenset(holders)) for entry, holders in best]

    def _park(self, entry: TaskEntry, blocker: Conflict | WaitReason) -> None:
        if isinstance(blocker, WaitReason):
            machine = self._admission.machine
            if machine is not None and blocker.kind in MACHINE_KINDS:
                machine.hold(entry, blocker)  # queued again when there may be room
            elif blocker.kind == "pool" and blocker.pool is not None:
                self._pool_waits.park(entry, blocker.pool)
                self._consider_starving(entry)
                self._reservation.waits_for_pool(entry, blocker.pool)
            else:
                self._reservation.hold_back(entry, blocker)
            return
        self._groups.park(entry, blocker)
        self._consider_starving(entry)

    def _consider_starving(self, entry: TaskEntry) -> None:
        # Not while its agent is paused: it cannot start before the pause ends, whatever it is reserved.
        if entry.agent not in self._paused.until and self._reservation.ranks_above_watched(entry):
            self._watch(entry)

    def _watch(self, entry: TaskEntry | None) -> None:
        """Watch ``entry`` for starvation (None: none); queue again what an ended reservation held back."""
        ended = self._reservation.watch(entry)
        if ended is not None:
            reserved, held_back = ended
            for waiting in held_back:
                self._enqueue(waiting)
            self._queues.wake(reserved.agent)

    def _enqueue(self, entry: TaskEntry) -> None:
        entry.state = TaskState.QUEUED
        entry.blocker = None
        entry.retry_at = None
        self._queues.push(entry)

    def add_claims(self, task_id: str, claims: Sequence[tuple[Claim, Access]]) -> tuple[tuple[Claim, Access], ...]:
        """The running ``task_id`` claimed ``claims`` as it ran, found free in the registry (see
        queue_core.taskclaims): it holds them too until its attempt ends, and no task may start
        that overlaps them. Returns those it did not hold yet. Raises KeyError if it is not running.
        """
        entry = self._entries[task_id]
        if entry.state is not TaskState.RUNNING:
            raise KeyError(task_id)
        new = tuple(dict.fromkeys(c for c in claims if c not in entry.claims))
        self._admission.hold_more(entry, new)
        entry.added += new
        entry.claims += new
        return new

    def _start(self, entry: TaskEntry, now: float) -> None:
        entry.state = TaskState.RUNNING
        entry.blocker = None
        entry.attempts += 1
        entry.started_at = now
        entry.timed_out = False
        entry.stop_requested = False
        self._admission.take(entry)
        timeout = entry.task.timeout
        entry.deadline = None if timeout is None else now + timeout
        self._timers.start(entry)
        if self._reservation.watched is entry:
            self._watch(None)
        else:
            self._reservation.bypassed_by(entry)

    def unstart(self, task_id: str) -> None:
        """Take back the start of a task that never ran (its owner could not record its claims).

        It is queued again as it was, claims released. Raises KeyError if it is not running.
        """
        entry = self._let_go(task_id)
        entry.attempts -= 1
        entry.started_at = entry.deadline = None
        self._enqueue(entry)

    def _let_go(self, task_id: str) -> TaskEntry:
        """Take the running ``task_id`` off its units and claims; raises KeyError if it is not running."""
        entry = self._entries[task_id]
        for held in self._admission.let_go(entry):  # tasks the machine held for their needs
            self._enqueue(held)
        if entry.added:  # what an attempt claimed as it ran is let go with it
            entry.claims, entry.added = entry.declared(), ()
        self._groups.release(task_id)
        self._queues.wake(entry.agent)
        return entry

    # --- the machine ----------------------------------------------------------------------

    def machine_rule(self) -> MachineRule:
        """The machine's rule; one without limits is made the first time it is asked for (a task
        declares needs, a reading is given)."""
        machine = self._admission.machine
        if machine is None:
            machine = self._admission.machine = MachineRule()
        return machine

    def observe(self, reading: Reading, now: float) -> bool:
        """The machine as read at ``now``, for its rule (which with ``auto`` may move
        ``max_parallel``); whether a dispatch may start what it could not before."""
        machine = self.machine_rule()
        more = machine.observe(reading, now, self._admission.parallel)
        for held in machine.give_back() if more else ():
            self._enqueue(held)
        return more

    # --- time and outcomes ----------------------------------------------------------------

    def expire(self, now: float) -> list[TaskEntry]:
        """Mark running tasks past their deadline as timed out; returns them.

        They stay RUNNING, holding their claims, until :meth:`finish` says they returned.
        """
        return self._timers.expire(now)

    def finish(
        self, task_id: str, outcome: TaskState, now: float, error: str | None = None, retry_after: float | None = None
    ) -> list[TaskEntry]:
        """A running task returned: release its claims and record ``outcome``.

        ``outcome`` is SUCCEEDED, FAILED, TIMED_OUT, CANCELLED or RATE_LIMITED (a timed-out task
        is recorded TIMED_OUT whatever is passed, its error saying after how long and in which
        attempt). A failure with retries left goes to RETRY_WAIT.
        A rate-limited attempt pauses its agent type, for ``retry_after`` seconds if the agent
        named a reset (see queue_core.pauses), and the task is queued again, no retry spent; or
        it ends RATE_LIMITED if the pause would take the agent's run of limits past the task's
        ``rate_limit_max_wait``.
        Returns every entry whose state changed: the task, and dependents skipped because of it.
        """
        if outcome not in _OUTCOMES:
            known = sorted(s.value for s in _OUTCOMES)
            raise InvalidArgumentError(f"a finished attempt is one of {known}, not {outcome.value}")
        entry = self._let_go(task_id)
        entry.ran_s += 0.0 if entry.started_at is None else now - entry.started_at
        if entry.timed_out and outcome is not TaskState.CANCELLED:
            outcome, error = TaskState.TIMED_OUT, entry.timed_out_reason()  # not how the stopped agent exited
        entry.outcome_reason = error
        if outcome is TaskState.RATE_LIMITED:
            return self._rate_limited(entry, now, error, retry_after)
        if outcome is not TaskState.CANCELLED:  # it got an answer from its agent: the limit is over
            self._paused.answered(entry.agent)
        failures = entry.attempts - entry.rate_limits
        if outcome in (TaskState.FAILED, TaskState.TIMED_OUT) and failures <= entry.task.retries:
            entry.state = TaskState.RETRY_WAIT
            entry.retry_at = now + entry.task.retry_delay_for(failures, self._rng.random())
            self._timers.retry(entry)
            return [entry]
        return self._finish_as(entry, outcome, now, error)

    def _rate_limited(
        self, entry: TaskEntry, now: float, error: str | None, retry_after: float | None
    ) -> list[TaskEntry]:
        entry.rate_limits += 1
        gave_up = self._paused.limited(entry.task, entry.started_at or now, now, error, retry_after)
        if gave_up is not None:
            return self._finish_as(entry, TaskState.RATE_LIMITED, now, gave_up)
        watched = self._reservation.watched
        if watched is not None and watched.agent == entry.agent:
            self._watch(None)  # a reservation for a task that cannot start would only idle slots
        self._enqueue(entry)
        return [entry]

    def cancel(self, task_id: str, now: float, reason: str = "cancelled") -> list[TaskEntry]:
        """Cancel a task that is not running, for ``reason``; returns it and the dependents skipped with it.

        A running task is only flagged (``stop_requested``) and returns []: its owner must stop
        it and then call :meth:`finish` with CANCELLED. A finished task returns [].
        Raises KeyError for an unknown id.
        """
        entry = self._entries[task_id]
        if entry.state.is_terminal:
            return []
        if entry.state is TaskState.RUNNING:
            entry.stop_requested = True
            return []
        if self._reservation.watched is entry:
            self._watch(None)
        return self._finish_as(entry, TaskState.CANCELLED, now, reason)

    def cancel_waiting(self, now: float) -> list[TaskEntry]:
        """Cancel every task that is not running, for a queue that takes no new task any more;
        returns what changed. Rate-limit pauses end too: nothing is left to wait for them, and
        a pause left would stay due for a dispatch that an aborted queue never makes."""
        changed = [c for entry, _ in self.waiting() for c in self.cancel(entry.id, now)]
        self._paused.clear()
        return changed

    def _finish_as(self, entry: TaskEntry, state: TaskState, now: float, reason: str | None) -> list[TaskEntry]:
        """Put ``entry`` in terminal ``state``; skip its dependents (transitively) unless it succeeded."""
        changed: list[TaskEntry] = []
        todo = [(entry, state, reason)]
        while todo:
            current, current_state, current_reason = todo.pop()
            current.state = current_state
            current.finished_at = now
            current.outcome_reason = current_reason
            self._unfinished -= 1
            self._outcomes[current_state.value] += 1
            changed.append(current)
            for dep_id in current.dependents:
                dependent = self._entries[dep_id]
                if dependent.state.is_terminal:
                    continue
                if current_state is TaskState.SUCCEEDED:
                    dependent.unmet -= 1
                    if dependent.unmet == 0:
                        self._enqueue(dependent)
                else:
                    todo.append((dependent, TaskState.SKIPPED, f"dependency {current.id} {current_state.value}"))
        return changed


def _count(name: str, value: int, *, least: int) -> int:
    """``value``, checked to be an int (a bool is not a count) of at least ``least`` (0 or 1)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        what = "a positive" if least == 1 else "a non-negative"
        raise InvalidArgumentError(f"{name} must be {what} integer, got {value!r}")
    return value


def _ranks(tasks: Sequence[AgentTask], batch: Mapping[str, AgentTask], first: int) -> tuple[dict[str, int], list[str]]:
    """Each task's rank, from ``first``: in the order given, unless estimates order them; and an
    order to add them in, dependencies first. Raises DependencyCycleError."""
    dependencies = {tid: task.depends_on for tid, task in batch.items()}
    if all(task.estimate_s is None for task in tasks):
        ranked: Iterable[str] = (task.id for task in tasks)
    else:
        ranked = critical_order(dependencies, {task.id: task.estimate_s for task in tasks})
    return {task_id: first + index for index, task_id in enumerate(ranked)}, topological(dependencies)


def _rank(entry: TaskEntry) -> tuple[int, int]:
    return entry.key
