"""Pool waits: queued tasks parked until a quota pool has room for their units.

A task whose pool has no room for it is *parked on the pool* and costs nothing while it waits.
When units are free, :meth:`PoolWaits.wake` gives back the best-ranked waiters that fit them,
enough to fill them and no more, so a pool that many tasks want costs O(log n) per release,
not O(tasks waiting). A woken task that does not start after all (another rule stops it)
waits elsewhere, and the scheduler asks for more while units stay free.

Waiters are kept in a heap per pool and unit count: the best one that fits ``free`` units is
the best of at most ``free`` heads.

What a waiter may do is the scheduler's to decide; :class:`PoolWaits` only keeps them.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from .entry import TaskEntry
from .slots import WeightedSlot
from .task import TaskState

__all__ = ["PoolWait", "PoolWaits"]

_Heap = list[tuple[tuple[int, int], str]]  # (rank key, task id)


class PoolWait:
    """What a task parked on pool ``pool`` has as its ``blocker``, while it is parked there."""

    __slots__ = ("pool",)

    def __init__(self, pool: str):
        self.pool = pool

    def __repr__(self) -> str:
        return f"PoolWait({self.pool!r})"


class PoolWaits:
    """The tasks parked on each pool, by the units they take of it.

    Pruned lazily: a waiter cancelled, or moved on, stays in its heap until it comes first; a
    waiter is a task that is queued and whose ``blocker`` is its pool's :class:`PoolWait`.
    """

    def __init__(self, entries: Mapping[str, TaskEntry], pools: Mapping[str, WeightedSlot]):
        self._entries = entries
        self._pools = pools
        self._marks = {name: PoolWait(name) for name in pools}
        self._waiting: dict[str, dict[int, _Heap]] = {}  # pool -> units -> heap of waiters
        #: Whether any task may be parked: a dispatch of a queue without pools asks only this.
        self.waiting = False

    def park(self, entry: TaskEntry, pool: str) -> None:
        """Park ``entry`` until ``pool`` has room for the units it takes of it."""
        units = dict(entry.pools)[pool]
        entry.blocker = self._marks[pool]
        heapq.heappush(self._waiting.setdefault(pool, {}).setdefault(units, []), (entry.key, entry.id))
        self.waiting = True

    def wake(self) -> list[TaskEntry]:
        """Take the best-ranked waiters off each pool with free units, as many as fit in them;
        the caller queues them again. A pool more than full (other runs' units) wakes none."""
        woken: list[TaskEntry] = []
        for pool, heaps in self._waiting.items():
            slot = self._pools[pool]
            free = slot.capacity - slot.used
            while free > 0 and (best := self._best(pool, heaps, free)) is not None:
                units, entry = best
                heapq.heappop(heaps[units])
                woken.append(entry)
                free -= units
        self._drop_empty()
        return woken

    def first(self, pool: str) -> tuple[TaskEntry, int] | None:
        """The best-ranked task parked on ``pool``, and the units it takes; None if none is."""
        heaps = self._waiting.get(pool)
        best = None if heaps is None else self._best(pool, heaps, None)
        return None if best is None else (best[1], best[0])

    def pools(self) -> list[str]:
        """The pools tasks may be parked on."""
        return list(self._waiting)

    def _best(self, pool: str, heaps: dict[int, _Heap], free: int | None) -> tuple[int, TaskEntry] | None:
        """The best live waiter among those taking at most ``free`` units (None: any), with its units."""
        mark = self._marks[pool]
        best: tuple[int, TaskEntry] | None = None
        for units, heap in heaps.items():
            if free is not None and units > free:
                continue
            while heap and not self._parked(heap[0][1], mark):
                heapq.heappop(heap)  # cancelled, or moved on
            if heap and (best is None or heap[0][0] < best[1].key):
                best = (units, self._entries[heap[0][1]])
        return best

    def _parked(self, task_id: str, mark: PoolWait) -> bool:
        entry = self._entries[task_id]
        return entry.state is TaskState.QUEUED and entry.blocker is mark

    def _drop_empty(self) -> None:
        for pool in [pool for pool, heaps in self._waiting.items() if not any(heaps.values())]:
            del self._waiting[pool]
        self.waiting = bool(self._waiting)
