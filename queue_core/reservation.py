"""The reservation against starvation: what keeps later tasks from passing a blocked one forever.

The best-ranked task blocked by a claim or a quota pool is *watched*: each task ranked below it
that starts and takes its agent, a path overlapping its claims, or units of a pool it waited for
bypasses it. After ``max_bypass`` bypasses it gets a reservation: tasks ranked below it may no
longer take those, so a stream of later tasks cannot keep it waiting forever. Tasks ranked
above it are never held back. Reserving at once (``max_bypass=0``) leaves slots idle that
backfilling would use.

A pool counts only once the watched task has waited for it, and from then on until the watch
ends, whether the pool has room now or not: what a held-back task is told must not change under
it while nothing wakes it. So a pool that every task takes does not hold back every other task
for one that waits for a path.
"""

from __future__ import annotations

from .claims import overlap_witness
from .entry import TaskEntry
from .task import TaskState
from .waits import WaitReason

__all__ = ["Reservation"]


class Reservation:
    """The watched task, the starts that bypassed it, and what its reservation holds back.

    The scheduler tells it what happens (``watch``, ``bypassed_by``, ``hold_back``) and asks it
    what a task may not do (``holds_back``).
    """

    def __init__(self, max_bypass: int):
        self.max_bypass = max_bypass
        self.watched: TaskEntry | None = None  # the best-ranked task blocked by a claim
        self._bypassed = 0  # lower-ranked tasks that took what it needs since it was watched
        self._held_back: list[TaskEntry] = []  # tasks its reservation kept from starting
        self._pools: set[str] = set()  # the quota pools the watched task waited for since it was watched

    @property
    def reserved(self) -> TaskEntry | None:
        """The task whose agent and claims are reserved against lower-ranked tasks, if any."""
        if self.watched is not None and self._bypassed >= self.max_bypass:
            return self.watched
        return None

    def ranks_above_watched(self, entry: TaskEntry) -> bool:
        return self.watched is None or entry.key < self.watched.key

    def holds_back(self, entry: TaskEntry) -> WaitReason | None:
        """Why the reservation keeps ``entry`` from starting, or None: only a task ranked below
        the reserved one is held back, and only if it would take its agent or overlap its claims."""
        reserved = self.reserved
        if reserved is None or entry.key <= reserved.key:
            return None
        return _clash(entry, reserved, self._pools)

    def holds_back_agent(self, entry: TaskEntry) -> WaitReason | None:
        """Why the reservation keeps every task of ``entry``'s agent ranked like it from starting:
        the reserved task is of that agent. Even with a unit of the agent to spare (several
        instances): the reserved task must find one when its claim is free."""
        reserved = self.reserved
        return None if reserved is None or reserved.agent != entry.agent else self.holds_back(entry)

    def hold_back(self, entry: TaskEntry, reason: WaitReason) -> None:
        """``entry`` waits for the reservation to end, for ``reason``; it is given back by ``watch``."""
        entry.blocker = reason
        self._held_back.append(entry)

    def waits_for_pool(self, entry: TaskEntry, pool: str) -> None:
        """``entry`` waits for room in ``pool``: if it is the watched task, the pool is what it needs too."""
        if entry is self.watched:
            self._pools.add(pool)

    def bypassed_by(self, entry: TaskEntry) -> None:
        """``entry``, not the watched task, started: count it if it took what the watched task needs."""
        watched = self.watched
        if watched is not None and watched.key < entry.key and _clash(entry, watched, self._pools) is not None:
            self._bypassed += 1

    def watch(self, entry: TaskEntry | None) -> tuple[TaskEntry, list[TaskEntry]] | None:
        """Watch ``entry`` from now on (None: no task). If that ends a reservation, returns the
        task it was for and the tasks it still held back, for the scheduler to queue again."""
        ended = self.reserved
        self.watched = entry
        self._bypassed = 0
        if self._pools:  # a new set only when one was used: it is called at every start of a watched task
            self._pools = set()
        if ended is None:
            return None
        held_back, self._held_back = self._held_back, []
        return ended, [e for e in held_back if e.state is TaskState.QUEUED and isinstance(e.blocker, WaitReason)]


def _clash(entry: TaskEntry, reserved: TaskEntry, pools: set[str]) -> WaitReason | None:
    """Why ``entry`` may not run beside ``reserved`` (same agent, overlapping claims, a pool of
    ``pools`` both take), or None."""
    if reserved.agent == entry.agent:
        return WaitReason("reserved", holder=reserved.id, holder_agent=reserved.agent)
    for pool, _ in entry.pools if pools else ():
        if pool in pools:
            return WaitReason("reserved", holder=reserved.id, holder_agent=reserved.agent, pool=pool)
    for claim, access in entry.claims:
        for theirs, their_access in reserved.claims:
            if access.conflicts_with(their_access):
                example = overlap_witness(claim, theirs)
                if example is not None:
                    return WaitReason.overlap("reserved", claim, theirs, reserved.id, reserved.agent, example)
    return None
