"""Queued tasks by agent type, so that a dispatch finds the best task that may start in O(log n).

Each agent type has a heap of its queued tasks keyed ``(-priority, seq)``; a heap of agent
heads ranks the agents by their best task. An agent none of whose tasks may start (its slot
full, paused, reserved for another) is *asleep*: its head is off that heap, so its whole queue
is skipped in one step until something wakes it.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from .entry import TaskEntry
from .task import TaskState

__all__ = ["AgentQueues"]


class AgentQueues:
    """Every queued task in its agent's heap, and the heads of the agents awake.

    Both heaps are pruned lazily: a task cancelled while queued, or an agent's stale head, is
    dropped when it comes first.
    """

    def __init__(self, entries: Mapping[str, TaskEntry]):
        self._entries = entries
        self._queues: dict[str, list[tuple[tuple[int, int], str]]] = {}  # agent -> heap of (key, task id)
        self._heads: list[tuple[tuple[int, int], str]] = []  # (best key, agent) of the agents awake

    def push(self, entry: TaskEntry) -> None:
        """Queue ``entry``; its agent wakes if it is the agent's best task now."""
        queue = self._queues.setdefault(entry.agent, [])
        heapq.heappush(queue, (entry.key, entry.id))
        if queue[0][1] == entry.id:
            heapq.heappush(self._heads, (entry.key, entry.agent))

    def wake(self, agent: str) -> None:
        """Rank ``agent`` among the agents awake again (nothing if it has no task queued)."""
        queue = self._queues.get(agent)
        if queue:
            heapq.heappush(self._heads, (queue[0][0], agent))

    def best_key(self) -> tuple[int, int] | None:
        """The rank key of the best awake agent's best task (None: none is awake).

        It may be stale, ranking the agent better than it is; ``take`` then ranks it again.
        """
        return self._heads[0][0] if self._heads else None

    def take(self) -> TaskEntry | None:
        """Put the best awake agent to sleep and return its best task, still queued: the caller
        calls ``remove`` if the task starts or waits elsewhere, and ``wake`` if another task of
        the agent may start. None if the agent's rank was stale (it is ranked again and stays
        awake) or it had no task left: ask ``best_key`` again."""
        key, agent = heapq.heappop(self._heads)
        queue = self._queues[agent]
        first = self.first(agent)
        if first is not None and queue[0][0] != key:
            heapq.heappush(self._heads, (queue[0][0], agent))
            return None
        return first

    def remove(self, entry: TaskEntry) -> None:
        """Take ``entry``, the best task ``take`` gave, out of its agent's queue."""
        _, task_id = heapq.heappop(self._queues[entry.agent])
        assert task_id == entry.id, (task_id, entry.id)

    def first(self, agent: str) -> TaskEntry | None:
        """The best task of ``agent`` still queued, None if there is none."""
        queue = self._queues.get(agent)
        while queue and self._entries[queue[0][1]].state is not TaskState.QUEUED:
            heapq.heappop(queue)  # cancelled while queued
        return self._entries[queue[0][1]] if queue else None
