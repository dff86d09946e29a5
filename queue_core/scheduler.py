"""The pure decision core: which tasks start now, given what runs, what waits, and the time.

No threads, no clock, no I/O: every method takes ``now`` from its caller and returns what
changed, so tests step it one event at a time and the benchmark drives it in simulated time.
:class:`~queue_core.queue.TaskQueue` wraps it with threads and futures.

How a dispatch stays O(log n) per task with many tasks waiting:

* Each agent type has a heap of its queued tasks keyed ``(-priority, seq)``; a heap of agent
  heads picks the best task among agents that are free. A busy agent's whole queue is skipped
  in one step, since at most one task per agent type runs.
* A task whose claims clash with a running task is *parked on that holder* and looked at again
  only when the holder finishes; it does not cost anything while it waits.
* Against starvation, the best-ranked task blocked by a claim gets a reservation: tasks ranked
  below it may not take its agent or any path overlapping its claims, so a stream of later
  small tasks cannot keep it waiting forever. Tasks ranked above it are not held back.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from .claims import Access, Claim, ClaimIndex, overlap_witness
from .errors import (
    AgentAlreadyRunningError,
    CapacityError,
    ClaimConflictError,
    ConflictError,
    DependencyCycleError,
    DuplicateTaskError,
    UnknownDependencyError,
)
from .ownership import FileOwnership
from .task import AgentTask, TaskState

__all__ = ["Scheduler", "TaskEntry", "WaitReason"]

_OUTCOMES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.TIMED_OUT, TaskState.CANCELLED})

# Key of the parked list of tasks that wait for the reservation, beside the holders' task ids.
_RESERVATION = "\0reservation"


@dataclass(frozen=True)
class WaitReason:
    """Why a task is not running; ``str()`` gives the sentence a person reads."""

    kind: str  # "dependency", "retry", "agent", "claim", "reserved", "capacity" or "ready"
    holder: str | None = None  # id of the task that holds or reserves what this one needs
    holder_agent: str | None = None
    claim: str | None = None  # this task's claim ...
    held: str | None = None  # ... and the holder's claim it overlaps
    example: str | None = None  # a path both cover
    needs: tuple[str, ...] = ()  # unfinished dependencies
    until: float | None = None  # when a retry is due
    limit: int | None = None  # max_parallel, for "capacity"

    def describe(self, now: float | None = None) -> str:
        if self.kind == "dependency":
            return "needs " + ", ".join(self.needs)
        if self.kind == "retry":
            left = "" if now is None or self.until is None else f" in {max(0.0, self.until - now):.1f}s"
            return f"retry{left}"
        if self.kind == "agent":
            return f"{self.holder_agent} busy ({self.holder})"
        if self.kind == "claim":
            return f"{self.claim} overlaps {self.held} held by {self.holder_agent} ({self.holder})"
        if self.kind == "reserved":
            what = f"agent {self.holder_agent}" if self.claim is None else f"{self.claim} overlaps {self.held}"
            return f"{what}, reserved for {self.holder} (waiting longest)"
        if self.kind == "ready":
            return "ready to start"
        return f"max_parallel ({self.limit}) reached"

    def __str__(self) -> str:
        return self.describe()

    def to_error(self) -> ConflictError:
        """The ConflictError ``try_start`` raises for this reason."""
        if self.kind == "agent":
            return AgentAlreadyRunningError(self.holder_agent or "", self.holder or "")
        if self.kind in ("claim", "reserved") and self.claim is not None:
            return ClaimConflictError(
                self.claim,
                self.held or "",
                self.holder or "",
                self.holder_agent or "",
                reserved=self.kind == "reserved",
            )
        if self.kind == "reserved":
            return AgentAlreadyRunningError(self.holder_agent or "", self.holder or "", reserved=True)
        if self.kind == "capacity":
            return CapacityError(self.limit or 0)
        return ConflictError(self.describe())


@dataclass(eq=False, slots=True)
class TaskEntry:
    """The scheduler's record of one task. Read it; only the scheduler changes it."""

    task: AgentTask
    key: tuple[int, int]  # (-priority, submission order): smaller runs first
    writes: tuple[Claim, ...]
    reads: tuple[Claim, ...]
    state: TaskState = TaskState.PENDING
    attempts: int = 0
    unmet: int = 0  # dependencies that have not succeeded yet
    dependents: list[str] = field(default_factory=list)
    blocker: WaitReason | None = None  # set while parked
    retry_at: float | None = None
    deadline: float | None = None
    timed_out: bool = False  # ran past its deadline; claims held until it returns
    stop_requested: bool = False
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    outcome_reason: str | None = None  # why skipped, or the last error

    @property
    def id(self) -> str:
        return self.task.id

    @property
    def agent(self) -> str:
        return self.task.agent_type

    def claims(self) -> Iterator[tuple[Claim, Access]]:
        for claim in self.writes:
            yield claim, Access.WRITE
        for claim in self.reads:
            yield claim, Access.READ


class Scheduler:
    """Decides which tasks start, in priority then submission order, never breaking a rule.

    Rules: at most ``max_parallel`` running; at most one running task per agent type; no two
    running tasks with overlapping claims unless both only read. Not thread-safe: the owner
    serialises calls.
    """

    def __init__(
        self, max_parallel: int = 4, *, ownership: FileOwnership | None = None, rng: random.Random | None = None
    ):
        if not isinstance(max_parallel, int) or isinstance(max_parallel, bool) or max_parallel < 1:
            raise ValueError(f"max_parallel must be a positive integer, got {max_parallel!r}")
        self.max_parallel = max_parallel
        self.ownership = ownership or FileOwnership()
        self._rng = rng or random.Random()
        self._seq = 0
        self._entries: dict[str, TaskEntry] = {}
        self._queues: dict[str, list[tuple[tuple[int, int], str]]] = {}  # agent -> heap of queued
        self._agent_heads: list[tuple[tuple[int, int], str]] = []  # (head key, agent), lazily pruned
        self._parked: dict[str, list[str]] = {}  # holder id (or _RESERVATION) -> parked task ids
        self._retries: list[tuple[float, tuple[int, int], str]] = []
        self._deadlines: list[tuple[float, tuple[int, int], int, str]] = []
        self._running: dict[str, TaskEntry] = {}
        self._agent_running: dict[str, str] = {}
        self._held = ClaimIndex()
        self._reserved: TaskEntry | None = None
        self._unfinished = 0

    # --- queries --------------------------------------------------------------------------

    @property
    def unfinished(self) -> int:
        """Tasks not yet in a terminal state (running ones included)."""
        return self._unfinished

    @property
    def running(self) -> list[TaskEntry]:
        return list(self._running.values())

    @property
    def reserved(self) -> TaskEntry | None:
        return self._reserved

    def entry(self, task_id: str) -> TaskEntry:
        """The record of ``task_id``; raises KeyError if no such task was added."""
        return self._entries[task_id]

    def entries(self) -> Iterable[TaskEntry]:
        return self._entries.values()

    def next_wakeup(self) -> float | None:
        """The earliest time a retry falls due or a running task's deadline passes."""
        while self._retries and self._entries[self._retries[0][2]].state is not TaskState.RETRY_WAIT:
            heapq.heappop(self._retries)
        while self._deadlines and not self._deadline_live(self._deadlines[0]):
            heapq.heappop(self._deadlines)
        times = [heap[0][0] for heap in (self._retries, self._deadlines) if heap]
        return min(times) if times else None

    def wait_reason(self, entry: TaskEntry) -> WaitReason | None:
        """Why ``entry`` is not running (None if it runs or has finished)."""
        state = entry.state
        if state is TaskState.PENDING:
            needs = tuple(d for d in entry.task.depends_on if self._entries[d].state is not TaskState.SUCCEEDED)
            return WaitReason("dependency", needs=needs)
        if state is TaskState.RETRY_WAIT:
            return WaitReason("retry", until=entry.retry_at)
        if state is not TaskState.QUEUED:
            return None
        if entry.blocker is not None:
            return entry.blocker
        holder = self._agent_running.get(entry.agent)
        if holder is not None:
            return WaitReason("agent", holder=holder, holder_agent=entry.agent)
        reserved = self._reserved
        if (
            reserved is not None
            and reserved is not entry
            and reserved.agent == entry.agent
            and reserved.key < entry.key
        ):
            return WaitReason("reserved", holder=reserved.id, holder_agent=reserved.agent)
        if len(self._running) >= self.max_parallel:
            return WaitReason("capacity", limit=self.max_parallel)
        return WaitReason("ready")

    def waiting(self) -> list[tuple[TaskEntry, WaitReason]]:
        """Every task not running and not finished, best-ranked first, with its reason."""
        waiting = [e for e in self._entries.values() if not e.state.is_terminal and e.state is not TaskState.RUNNING]
        waiting.sort(key=lambda e: e.key)
        return [(e, reason) for e in waiting if (reason := self.wait_reason(e)) is not None]

    # --- adding tasks ---------------------------------------------------------------------

    def add(self, task: AgentTask, now: float) -> list[TaskEntry]:
        """Queue ``task``; returns the entries that finished because of it (itself if skipped).

        Raises DuplicateTaskError or UnknownDependencyError; then nothing is added.
        """
        self._check_new(task)
        return self._add(task, now)

    def add_batch(self, tasks: Sequence[AgentTask], now: float) -> list[TaskEntry]:
        """Queue several tasks whose dependencies may point forward within the batch.

        Everything is checked before anything is added: duplicate ids, unknown dependencies
        and cycles raise, and then no task of the batch is queued.
        """
        batch: dict[str, AgentTask] = {}
        for task in tasks:
            if task.id in batch or task.id in self._entries:
                raise DuplicateTaskError(task.id)
            batch[task.id] = task
        for task in tasks:
            self._check_new(task, batch)
        # Rank by position in the list, though dependencies must be added before their dependents.
        first = self._seq + 1
        rank = {task.id: first + index for index, task in enumerate(tasks)}
        self._seq += len(tasks)
        finished: list[TaskEntry] = []
        for task in _topological(batch):
            finished.extend(self._add(task, now, seq=rank[task.id]))
        return finished

    def try_start(self, task: AgentTask, now: float) -> TaskEntry:
        """Add ``task`` and start it at once, or raise the ConflictError that says why not.

        Raises AgentAlreadyRunningError, ClaimConflictError (naming the holder) or
        CapacityError, and then nothing is added.
        """
        self._check_new(task)
        writes, reads = self._claims_of(task)
        probe = TaskEntry(task, (-task.priority, self._seq + 1), writes, reads)
        needs = tuple(d for d in task.depends_on if self._entries[d].state is not TaskState.SUCCEEDED)
        if needs:
            raise WaitReason("dependency", needs=needs).to_error()
        if len(self._running) >= self.max_parallel:
            raise CapacityError(self.max_parallel)
        holder = self._agent_running.get(task.agent_type)
        if holder is not None:
            raise AgentAlreadyRunningError(task.agent_type, holder)
        reason = self._blocker(probe)
        if reason is not None:
            raise reason.to_error()
        entry = self._register(task, now)
        self._start(entry, now)
        return entry

    def _check_new(self, task: AgentTask, batch: Mapping[str, AgentTask] | None = None) -> None:
        """Raise unless ``task`` is new and each dependency is known here or in ``batch``."""
        if task.id in self._entries:
            raise DuplicateTaskError(task.id)
        for dep in task.depends_on:
            if dep not in self._entries and (batch is None or dep not in batch):
                raise UnknownDependencyError(task.id, dep)

    def _claims_of(self, task: AgentTask) -> tuple[tuple[Claim, ...], tuple[Claim, ...]]:
        writes = task.write_claims
        if not writes and not task.read_claims:  # names nothing: assume it writes what its agent owns
            writes = self.ownership.owned_claims(task.agent_type)
        return writes, task.read_claims

    def _register(self, task: AgentTask, now: float, seq: int | None = None) -> TaskEntry:
        if seq is None:
            self._seq += 1
            seq = self._seq
        writes, reads = self._claims_of(task)
        entry = TaskEntry(task, (-task.priority, seq), writes, reads, submitted_at=now)
        self._entries[task.id] = entry
        self._unfinished += 1
        return entry

    def _add(self, task: AgentTask, now: float, seq: int | None = None) -> list[TaskEntry]:
        entry = self._register(task, now, seq)
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
        while self._retries and self._retries[0][0] <= now:
            _, _, task_id = heapq.heappop(self._retries)
            entry = self._entries[task_id]
            if entry.state is TaskState.RETRY_WAIT:
                self._enqueue(entry)
        started: list[TaskEntry] = []
        heads = self._agent_heads
        while heads and len(self._running) < self.max_parallel:
            key, agent = heads[0]
            queue = self._queues.get(agent)
            while queue and self._entries[queue[0][1]].state is not TaskState.QUEUED:
                heapq.heappop(queue)  # cancelled while queued
            if agent in self._agent_running or not queue:
                heapq.heappop(heads)  # pushed again when the agent is released
                continue
            if queue[0][0] != key:
                heapq.heapreplace(heads, (queue[0][0], agent))  # stale head: re-rank
                continue
            entry = self._entries[queue[0][1]]
            reserved = self._reserved
            if reserved is not None and reserved is not entry and reserved.agent == agent and reserved.key < entry.key:
                heapq.heappop(heads)  # the agent is reserved: its whole queue waits, pushed back on release
                continue
            heapq.heappop(queue)
            reason = self._blocker(entry)
            if reason is None:
                heapq.heappop(heads)
                self._start(entry, now)
                started.append(entry)
            else:
                self._park(entry, reason)
                if queue:
                    heapq.heapreplace(heads, (queue[0][0], agent))
                else:
                    heapq.heappop(heads)
        return started

    def _blocker(self, entry: TaskEntry) -> WaitReason | None:
        """What stops ``entry`` from starting, its agent and the cap aside; None if nothing."""
        conflict = self._held.first_conflict(entry.claims())
        if conflict is not None:
            holder = self._entries[conflict.owner]
            return WaitReason(
                "claim",
                holder=holder.id,
                holder_agent=holder.agent,
                claim=conflict.claim.text,
                held=conflict.held.text,
                example=conflict.example,
            )
        reserved = self._reserved
        if reserved is None or reserved is entry or entry.key < reserved.key:
            return None  # only tasks ranked below the reservation are held back by it
        if reserved.agent == entry.agent:
            return WaitReason("reserved", holder=reserved.id, holder_agent=reserved.agent)
        for claim, access in entry.claims():
            for theirs, their_access in reserved.claims():
                if access.conflicts_with(their_access):
                    example = overlap_witness(claim, theirs)
                    if example is not None:
                        return WaitReason(
                            "reserved",
                            holder=reserved.id,
                            holder_agent=reserved.agent,
                            claim=claim.text,
                            held=theirs.text,
                            example=example,
                        )
        return None

    def _park(self, entry: TaskEntry, reason: WaitReason) -> None:
        entry.blocker = reason
        if reason.kind == "claim":
            self._parked.setdefault(reason.holder or "", []).append(entry.id)
            if self._reserved is None or entry.key < self._reserved.key:
                self._reserve(entry)
        else:
            self._parked.setdefault(_RESERVATION, []).append(entry.id)

    def _reserve(self, entry: TaskEntry | None) -> None:
        """Make ``entry`` the reservation (None: no reservation); free what the old one held back."""
        old = self._reserved
        self._reserved = entry
        if old is not None:
            self._unpark(_RESERVATION)
            self._push_head(old.agent)

    def _unpark(self, holder: str) -> None:
        for task_id in self._parked.pop(holder, ()):
            entry = self._entries[task_id]
            if entry.state is TaskState.QUEUED and entry.blocker is not None:
                self._enqueue(entry)

    def _enqueue(self, entry: TaskEntry) -> None:
        entry.state = TaskState.QUEUED
        entry.blocker = None
        entry.retry_at = None
        queue = self._queues.setdefault(entry.agent, [])
        heapq.heappush(queue, (entry.key, entry.id))
        if queue[0][1] == entry.id:
            heapq.heappush(self._agent_heads, (entry.key, entry.agent))

    def _push_head(self, agent: str) -> None:
        queue = self._queues.get(agent)
        if queue:
            heapq.heappush(self._agent_heads, (queue[0][0], agent))

    def _start(self, entry: TaskEntry, now: float) -> None:
        entry.state = TaskState.RUNNING
        entry.blocker = None
        entry.attempts += 1
        entry.started_at = now
        entry.timed_out = False
        entry.stop_requested = False
        self._running[entry.id] = entry
        self._agent_running[entry.agent] = entry.id
        for claim, access in entry.claims():
            self._held.add(claim, access, entry.id)
        timeout = entry.task.timeout
        entry.deadline = None if timeout is None else now + timeout
        if entry.deadline is not None:
            heapq.heappush(self._deadlines, (entry.deadline, entry.key, entry.attempts, entry.id))
        if self._reserved is entry:
            self._reserve(None)

    # --- time and outcomes ----------------------------------------------------------------

    def expire(self, now: float) -> list[TaskEntry]:
        """Mark running tasks past their deadline as timed out; returns them.

        They stay RUNNING, holding their claims, until :meth:`finish` says they returned.
        """
        expired: list[TaskEntry] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            item = heapq.heappop(self._deadlines)
            if self._deadline_live(item):
                entry = self._entries[item[3]]
                entry.timed_out = True
                expired.append(entry)
        return expired

    def _deadline_live(self, item: tuple[float, tuple[int, int], int, str]) -> bool:
        entry = self._entries[item[3]]
        return entry.state is TaskState.RUNNING and entry.attempts == item[2] and not entry.timed_out

    def finish(self, task_id: str, outcome: TaskState, now: float, error: str | None = None) -> list[TaskEntry]:
        """A running task returned: release its claims and record ``outcome``.

        ``outcome`` is SUCCEEDED, FAILED, TIMED_OUT or CANCELLED (a timed-out task is recorded
        TIMED_OUT whatever is passed). A failure with retries left goes to RETRY_WAIT.
        Returns every entry whose state changed: the task, and dependents skipped because of it.
        """
        if outcome not in _OUTCOMES:
            raise ValueError(f"a finished attempt is one of {sorted(s.value for s in _OUTCOMES)}, not {outcome.value}")
        entry = self._running.pop(task_id)
        del self._agent_running[entry.agent]
        for claim, access in entry.claims():
            self._held.remove(claim, access, entry.id)
        self._unpark(entry.id)
        self._push_head(entry.agent)
        if entry.timed_out and outcome is not TaskState.CANCELLED:
            outcome = TaskState.TIMED_OUT
        entry.outcome_reason = error
        if outcome in (TaskState.FAILED, TaskState.TIMED_OUT) and entry.attempts <= entry.task.retries:
            entry.state = TaskState.RETRY_WAIT
            entry.retry_at = now + entry.task.retry_delay_for(entry.attempts, self._rng.random())
            heapq.heappush(self._retries, (entry.retry_at, entry.key, entry.id))
            return [entry]
        return self._finish_as(entry, outcome, now, error)

    def cancel(self, task_id: str, now: float) -> list[TaskEntry]:
        """Cancel a task that is not running; returns it and the dependents skipped with it.

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
        if self._reserved is entry:
            self._reserve(None)
        return self._finish_as(entry, TaskState.CANCELLED, now, "cancelled")

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


def _topological(batch: dict[str, AgentTask]) -> list[AgentTask]:
    """The batch's tasks, each after its dependencies in the batch; raises DependencyCycleError."""
    order: list[AgentTask] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in batch:
        if root in state:
            continue
        path = [root]
        stack = [iter(batch[root].depends_on)]
        state[root] = 1
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                done = path.pop()
                stack.pop()
                state[done] = 2
                order.append(batch[done])
            elif dep in batch and state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise DependencyCycleError(cycle)
            elif dep in batch and dep not in state:
                state[dep] = 1
                path.append(dep)
                stack.append(iter(batch[dep].depends_on))
    return order
