"""Deadlines: what falls due with no call from outside, retries waiting and running tasks' deadlines.

Both are heaps keyed by time, pruned lazily: the retry of a task cancelled meanwhile, or the
deadline of an attempt that returned or was taken back, is dropped when it comes first.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping

from .entry import TaskEntry
from .task import TaskState

__all__ = ["Timers"]


class Timers:
    """The retries and deadlines of the scheduler's tasks, by when they fall due."""

    def __init__(self, entries: Mapping[str, TaskEntry]):
        self._entries = entries
        self._retries: list[tuple[float, tuple[int, int], str]] = []  # (retry_at, key, task id)
        self._deadlines: list[tuple[float, tuple[int, int], int, str]] = []  # (deadline, key, attempt, task id)

    def next(self) -> float | None:
        """The earliest time a live retry or deadline falls due, None if none is set."""
        while self._retries and self._entries[self._retries[0][2]].state is not TaskState.RETRY_WAIT:
            heapq.heappop(self._retries)
        while self._deadlines and not self._live(self._deadlines[0]):
            heapq.heappop(self._deadlines)
        times = [heap[0][0] for heap in (self._retries, self._deadlines) if heap]
        return min(times) if times else None

    def retry(self, entry: TaskEntry) -> None:
        """``entry`` waits to retry, at its ``retry_at``."""
        assert entry.retry_at is not None
        heapq.heappush(self._retries, (entry.retry_at, entry.key, entry.id))

    def due_retries(self, now: float) -> Iterator[TaskEntry]:
        """The tasks still waiting to retry whose time has come by ``now``, earliest first.

        Each is checked as it is reached, so the caller may change the state of those given so far.
        """
        while self._retries and self._retries[0][0] <= now:
            entry = self._entries[heapq.heappop(self._retries)[2]]
            if entry.state is TaskState.RETRY_WAIT:
                yield entry

    def start(self, entry: TaskEntry) -> None:
        """``entry`` started an attempt: keep its ``deadline``, if it has one."""
        if entry.deadline is not None:
            heapq.heappush(self._deadlines, (entry.deadline, entry.key, entry.attempts, entry.id))

    def expire(self, now: float) -> list[TaskEntry]:
        """Mark the running tasks whose deadline passed by ``now`` timed out; returns them."""
        expired: list[TaskEntry] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            item = heapq.heappop(self._deadlines)
            if self._live(item):
                entry = self._entries[item[3]]
                entry.timed_out = True
                expired.append(entry)
        return expired

    def _live(self, item: tuple[float, tuple[int, int], int, str]) -> bool:
        entry = self._entries[item[3]]
        # The deadline too: a start taken back (unstart) and made again keeps its attempt number.
        return (
            entry.state is TaskState.RUNNING
            and entry.attempts == item[2]
            and entry.deadline == item[0]
            and not entry.timed_out
        )
