"""The machine's rule in admission: limits on CPU and memory, tasks' declared needs, and
``max_parallel="auto"``.

The engine reads the machine (see queue_core.machine) about once a second while the rule is in
play and tasks are unfinished, and hands each reading to the scheduler (``Scheduler.observe``).
The rule judges on the mean of the last WINDOW readings, so every decision is a pure function
of the readings and of what runs, and tests step it with scripted readings.

* Limits: no task starts while the mean of the last readings is above a limit. Once above, the
  mean must fall HYSTERESIS points below the limit before tasks start again: a machine hovering
  at its limit does not start and hold by turns, and one reading above the limit among normal
  ones moves the mean by a third only, so a short spike does not hold the run. CPU is a rate,
  unknown until the sampler has measured it over a while: until then a CPU limit holds.
* Needs: a task that declares ``memory`` (``cpus``) starts only while the memory available
  (the idle cores), less what the tasks running here declared, covers it. A running task's
  declaration counts in full for as long as it runs, even once its agent uses that memory and
  the readings show it used: counted twice then, it may hold a task that would have fit; it
  never lets one start that does not. A task held for its needs waits here, and is queued
  again when a task with needs ends, when nothing of the run runs, or when a reading shows
  more room; it has no reservation: smaller tasks may pass it meanwhile.
* Progress: with no task of the run running, neither holds. A run may always start one task,
  so a run on a machine that stays above its limit still ends, one task at a time.
* Auto: see AutoParallel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from .entry import TaskEntry
from .errors import InvalidTaskError
from .machine import GIB, Limits, Reading, size_text
from .slots import Slot
from .task import AgentTask, TaskState
from .waits import WaitReason

__all__ = ["HYSTERESIS", "LOOK_EVERY_S", "MACHINE_KINDS", "WINDOW", "AutoParallel", "MachineRule", "never_fits"]

#: How many readings the rule judges on, taken LOOK_EVERY_S apart: the mean of the last three.
WINDOW = 3
LOOK_EVERY_S = 1.0
#: Points below its limit the mean must fall, once above, before tasks start again.
HYSTERESIS = 5.0
#: The wait reasons this rule gives: a limit ("machine"), or a task's declared need ("need").
MACHINE_KINDS = ("machine", "need")

_BELOW, _ABOVE, _UNKNOWN = "below", "above", "unknown"


def never_fits(task: AgentTask, machine: Reading) -> tuple[str, str] | None:
    """(field, why) if ``task`` needs more than ``machine`` has at all, idle or not: it could
    never start but alone, and then would not fit either. None if it may fit."""
    if task.memory is not None and task.memory > machine.total:
        return "memory", f"needs {size_text(task.memory)} of memory; this machine has {size_text(machine.total)} in all"
    if task.cpus is not None and task.cpus > machine.cores:
        return "cpus", f"needs {task.cpus:.10g} cpus; this machine has {machine.cores}"
    return None


class MachineRule:
    """The readings of the last WINDOW looks, what each limit makes of them, the needs the
    running tasks declared, and the tasks held for their own needs."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        auto: AutoParallel | None = None,
        look_every: float = LOOK_EVERY_S,
        window: int = WINDOW,
        hysteresis: float = HYSTERESIS,
    ) -> None:
        self.limits = limits or Limits()
        self.auto = auto
        self._look_every = look_every
        self._hysteresis = hysteresis
        self._window: deque[tuple[float, Reading]] = deque(maxlen=window)
        self._stale_after = window * look_every  # a reading older is of another time (the queue was idle)
        self._states = {name: _UNKNOWN for name, _ in self.limits.items()}
        #: Whether a limit holds new tasks (with a task of the run running): read by every dispatch.
        self.holding = bool(self.limits)
        self.last: Reading | None = None
        #: How many readings were taken: a new one may change why tasks wait, and max_parallel.
        self.looks = 0
        self.next_look: float | None = None  # None: a reading is wanted at once
        # The means of the window: CPU percent (None: not measured), memory percent, available bytes.
        self.cpu: float | None = None
        self.memory: float | None = None
        self.available: float | None = None
        self._memory_declared = 0  # by the tasks running here
        self._cpus_declared = 0.0
        self._held: list[TaskEntry] = []  # queued tasks waiting for room for their needs

    # --- readings -------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        """Whether a reading is wanted by ``now``."""
        return self.next_look is None or now >= self.next_look

    def check(self, task: AgentTask) -> None:
        """Raise InvalidTaskError if ``task`` needs more than the machine last read has in all."""
        unfit = None if self.last is None else never_fits(task, self.last)
        if unfit is not None:
            raise InvalidTaskError(unfit[1], task_id=task.id, field=unfit[0])

    def missed(self, now: float) -> None:
        """No reading could be taken at ``now``: the last ones stand, and the next look is a
        while away, as after a reading (never a look again at once, which would spin)."""
        self.next_look = now + self._look_every

    def observe(self, reading: Reading, now: float, parallel: Slot) -> bool:
        """Take ``reading``, made at ``now``, and with ``auto`` resize ``parallel`` (the
        ``max_parallel`` slot); whether more may start than before: a limit stopped holding,
        tasks are held for their needs and the room grew, or the slot grew."""
        was_holding, room_before = self.holding, (self.memory_room(), self.cpu_room())
        while self._window and self._window[0][0] < now - self._stale_after:
            self._window.popleft()
        self._window.append((now, reading))
        self.last = reading
        self.looks += 1
        self.next_look = now + self._look_every
        readings = [r for _, r in self._window]
        cpus = [r.cpu for r in readings if r.cpu is not None]
        self.cpu = sum(cpus) / len(cpus) if cpus else None
        self.memory = sum(r.memory for r in readings) / len(readings)
        self.available = sum(r.available for r in readings) / len(readings)
        for name, limit in self.limits.items():
            self._states[name] = self._judge(self._states[name], self._mean(name), limit)
        self.holding = any(state != _BELOW for state in self._states.values())
        grew = _more(self.memory_room(), room_before[0]) or _more(self.cpu_room(), room_before[1])
        more = (was_holding and not self.holding) or (bool(self._held) and grew)
        if self.auto is not None:
            capacity = self.auto.adjust(self, parallel.capacity, len(parallel), now)
            more = more or capacity > parallel.capacity
            parallel.resize(capacity)
        return more

    def _judge(self, state: str, mean: float | None, limit: float) -> str:
        """A limit's state after a reading: above it until the mean falls HYSTERESIS below."""
        if mean is None:
            return _UNKNOWN
        if state == _ABOVE:
            return _ABOVE if mean > limit - self._hysteresis else _BELOW
        return _ABOVE if mean > limit else _BELOW

    def _mean(self, name: str) -> float | None:
        return self.cpu if name == "cpu" else self.memory

    def memory_room(self) -> float | None:
        """Bytes available beyond what the running tasks declared; None before any reading."""
        return None if self.available is None else self.available - self._memory_declared

    def cpu_room(self) -> float | None:
        """Idle cores beyond what the running tasks declared; None while CPU is not measured."""
        if self.cpu is None or self.last is None:
            return None
        return self.last.cores * (100.0 - self.cpu) / 100.0 - self._cpus_declared

    # --- the rule -------------------------------------------------------------------------

    def closed(self, running: int) -> bool:
        """Whether no task may start now, whatever it is: a limit holds and ``running`` (tasks
        of the run running) is not 0."""
        return self.holding and running > 0

    def blockers(self, entry: TaskEntry, running: int) -> Iterator[WaitReason]:
        """What of the machine stops ``entry``, with ``running`` tasks of the run running: a
        limit, then its needs. Nothing while none runs (the progress guarantee)."""
        if running == 0:
            return
        if self.holding:
            yield self._limit_reason()
        task = entry.task
        if task.memory is not None:
            room = self.memory_room()
            if room is None or task.memory > room:
                yield WaitReason("need", resource="memory", measured=room, bound=task.memory)
        if task.cpus is not None:
            room = self.cpu_room()
            if room is None or task.cpus > room:
                yield WaitReason("need", resource="cpus", measured=room, bound=task.cpus)

    def _limit_reason(self) -> WaitReason:
        """The first limit that holds, as a reason: its mean and, in the band, where it resumes."""
        for name, limit in self.limits.items():
            if self._states[name] != _BELOW:
                mean = self._mean(name)
                below = None if mean is None or mean > limit else limit - self._hysteresis
                return WaitReason("machine", resource=name, measured=mean, bound=limit, resumes_below=below)
        raise AssertionError("no limit holds")  # pragma: no cover - holding says one does

    # --- what runs and what waits ---------------------------------------------------------

    def take(self, entry: TaskEntry) -> None:
        """``entry`` starts: its needs count as taken until it lets go."""
        task = entry.task
        self._memory_declared += task.memory or 0
        self._cpus_declared += task.cpus or 0.0

    def let_go(self, entry: TaskEntry, running: int) -> list[TaskEntry]:
        """``entry`` stopped running, ``running`` tasks of the run left: the tasks held for their
        needs that may now fit, to queue again (its needs are free, or nothing runs)."""
        task = entry.task
        if task.memory is None and task.cpus is None and running > 0:
            return []
        self._memory_declared -= task.memory or 0
        self._cpus_declared = max(0.0, self._cpus_declared - (task.cpus or 0.0))  # no float dust below 0
        return self.give_back()

    def hold(self, entry: TaskEntry, reason: WaitReason) -> None:
        """``entry`` waits for room for its needs (``reason``); ``give_back`` returns it."""
        entry.blocker = reason
        self._held.append(entry)

    def give_back(self) -> list[TaskEntry]:
        """Every task still held for its needs, to be queued again and judged anew."""
        held, self._held = self._held, []
        return [
            e
            for e in dict.fromkeys(held)
            if e.state is TaskState.QUEUED and isinstance(e.blocker, WaitReason) and e.blocker.kind in MACHINE_KINDS
        ]


def _more(after: float | None, before: float | None) -> bool:
    return after is not None and (before is None or after > before)


#: What one task is reckoned to take, for max_parallel="auto": an agent CLI (half a GiB of
#: node or Python) and the builds and tests it runs.
TASK_MEMORY = 2 * GIB
#: Auto lowers max_parallel when the mean is at or above these (or a limit holds) ...
AUTO_BUSY_CPU, AUTO_BUSY_MEMORY = 90.0, 90.0
#: ... and raises it, every slot being in use, when at or below these.
AUTO_FREE_CPU, AUTO_FREE_MEMORY = 60.0, 75.0
AUTO_EVERY_S = 5.0


@dataclass
class AutoParallel:
    """``max_parallel="auto"``: as many slots as the machine has cores and TASK_MEMORY of
    available memory for, at least 1 (``start``); then, every AUTO_EVERY_S, one fewer when the
    machine is busy, one more (up to ``most_allowed``: as many as cores and all memory allow)
    when it is free and every slot is in use. Never below 1; a change stops no running task:
    lowered below what runs, max_parallel admits nothing until enough have ended."""

    start: int
    most_allowed: int
    every: float = AUTO_EVERY_S
    least: int = field(init=False)  # the fewest and most slots it has set during the run
    most: int = field(init=False)
    _next: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.least = self.most = self.start

    @classmethod
    def for_machine(cls, machine: Reading) -> AutoParallel:
        """The slots for ``machine``: ``max(1, min(cores, available // TASK_MEMORY))``."""
        start = max(1, min(machine.cores, machine.available // TASK_MEMORY))
        return cls(start, max(start, min(machine.cores, machine.total // TASK_MEMORY)))

    def adjust(self, rule: MachineRule, capacity: int, running: int, now: float) -> int:
        """The slots from ``now`` on, ``capacity`` set now and ``running`` tasks running."""
        if self._next is None or rule.cpu is None or rule.memory is None or rule.available is None:
            self._next = now + self.every if self._next is None else self._next
            return capacity
        if now < self._next:
            return capacity
        self._next = now + self.every
        if rule.holding or rule.cpu >= AUTO_BUSY_CPU or rule.memory >= AUTO_BUSY_MEMORY:
            capacity = max(1, capacity - 1)
        elif (
            rule.cpu <= AUTO_FREE_CPU
            and rule.memory <= AUTO_FREE_MEMORY
            and rule.available >= TASK_MEMORY
            and running >= capacity
        ):
            capacity = min(self.most_allowed, capacity + 1)
        self.least, self.most = min(self.least, capacity), max(self.most, capacity)
        return capacity
