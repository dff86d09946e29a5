"""Wait groups: queued tasks parked on the holder of a claim they need, moved as a whole.

A task whose claims clash with a running task is *parked on that holder*, in a
:class:`WaitGroup` with every task blocked the same way, and costs nothing while it waits.
When the holder lets go, the group is released, to be looked at best-ranked member first;
once one member starts (or is blocked the same way again) the rest follow it in one step, so
a hot path that many tasks want costs O(log n) per release, not O(tasks waiting).

What a member may do is the scheduler's to decide; :class:`WaitGroups` only keeps the groups.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from .claims import Access, Claim, Conflict
from .entry import TaskEntry
from .task import TaskState

__all__ = ["WaitGroup", "WaitGroups"]


@dataclass(eq=False)
class WaitGroup:
    """Queued tasks that one held claim blocks, each through the same claim and access of its
    own: so what frees or blocks one member frees or blocks them all (see the module)."""

    claim: Claim  # the members' claim ...
    access: Access  # ... and how they use it
    held: Claim  # the holder's claim it overlaps
    # A heap of (rank key, task id). Lazily pruned: a member cancelled or moved on stays until
    # it comes first; a member is a task that is queued and whose ``blocker`` is this group.
    members: list[tuple[tuple[int, int], str]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, Access, str]:
        return (self.claim.text, self.access, self.held.text)

    def add(self, entry: TaskEntry) -> None:
        heapq.heappush(self.members, (entry.key, entry.id))


class WaitGroups:
    """The groups parked on each holder, and the released ones ranked by their best member."""

    def __init__(self, entries: Mapping[str, TaskEntry]):
        self._entries = entries
        self._on: dict[str, dict[tuple[str, Access, str], WaitGroup]] = {}  # holder id -> groups parked on it
        # Released groups: (best member's key, order pushed, group); a key may be stale, see take.
        self._released: list[tuple[tuple[int, int], int, WaitGroup]] = []
        self._order = itertools.count()

    def park(self, entry: TaskEntry, conflict: Conflict) -> None:
        """Park ``entry`` on the holder of ``conflict``, in the group of tasks blocked alike."""
        holder = conflict.owner
        groups = self._on.setdefault(holder, {})
        group = groups.get((conflict.claim.text, conflict.access, conflict.held.text))
        if group is None:
            group = WaitGroup(conflict.claim, conflict.access, conflict.held)
            groups[group.key] = group
        group.add(entry)
        entry.blocker = group

    def release(self, holder: str) -> None:
        """``holder`` let go of its claims: the groups parked on it are released, to be looked at."""
        for group in self._on.pop(holder, {}).values():
            if group.members:
                self._push(group)

    def best_key(self) -> tuple[int, int] | None:
        """The rank key of the best released group's best member (None: none is released).

        It may be stale, ranking the group better than it is; ``take`` then ranks it again.
        """
        return self._released[0][0] if self._released else None

    def take(self) -> tuple[WaitGroup, TaskEntry] | None:
        """Take the best member out of the best released group, and the group: it is the
        caller's to ``move`` it or ``put_back``. None if the group's rank was stale (it is ranked
        again) or it had no member left (it is dropped): ask ``best_key`` again."""
        key, _, group = heapq.heappop(self._released)
        members = self._pruned(group)
        if members and members[0][0] != key:
            self._push(group)
            return None
        if not members:
            return None
        return group, self._entries[heapq.heappop(members)[1]]

    def put_back(self, group: WaitGroup) -> None:
        """The group ``take`` gave stays released, ranked by its best member; dropped if empty."""
        if group.members:
            self._push(group)

    def move(self, group: WaitGroup, holder: str, held: Claim) -> None:
        """Park the group ``take`` gave, whole, on ``holder``, whose ``held`` claim now blocks every member."""
        group.held = held
        groups = self._on.setdefault(holder, {})
        other = groups.setdefault(group.key, group)
        if other is not group:  # merge the smaller into the larger: O(n log n) over all merges
            small, large = sorted((group, other), key=lambda g: len(g.members))
            for item in small.members:
                if self._is_member(item[1], small):
                    heapq.heappush(large.members, item)
                    self._entries[item[1]].blocker = large
            groups[group.key] = large

    def first_on(self, holder: str) -> list[TaskEntry]:
        """The best-ranked member of each group parked on ``holder``: what it is first in line for."""
        return [
            self._entries[members[0][1]]
            for group in self._on.get(holder, {}).values()
            if (members := self._pruned(group))
        ]

    def _push(self, group: WaitGroup) -> None:
        heapq.heappush(self._released, (group.members[0][0], next(self._order), group))

    def _pruned(self, group: WaitGroup) -> list[tuple[tuple[int, int], str]]:
        """The group's members, with those cancelled or moved on dropped from the top."""
        members = group.members
        while members and not self._is_member(members[0][1], group):
            heapq.heappop(members)
        return members

    def _is_member(self, task_id: str, group: WaitGroup) -> bool:
        entry = self._entries[task_id]
        return entry.state is TaskState.QUEUED and entry.blocker is group
