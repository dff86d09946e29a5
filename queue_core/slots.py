"""Named counted slots: the capacities a task must find room in before it starts.

``max_parallel`` is one slot, every running task here holds a unit of it; each agent type has
one (``agent:<type>``), with one unit unless the agent runs several instances; quota pools will
be more. A slot counts its holders and knows who they are, so a task kept out can be told whom
it waits for.
"""

from __future__ import annotations

from .errors import InvalidArgumentError

__all__ = ["Slot"]


class Slot:
    """At most ``capacity`` holders at once, each holding one unit, named by ``name``.

    Admission is the caller's: it asks ``full`` and only then ``take``s a unit. A slot also
    records holders it could not refuse (tasks of other processes, which run whatever this one
    decides), so it may hold more than its capacity; it stays full until enough of them let go.
    """

    __slots__ = ("_holders", "capacity", "full", "name")

    def __init__(self, name: str, capacity: int):
        self.name = name
        self.capacity = capacity
        self._holders: dict[str, None] = {}  # an ordered set: who took a unit first comes first
        #: Whether a new holder must wait: every unit is taken. An attribute kept by take and
        #: release, not a property: dispatch asks it several times for every task.
        self.full = capacity <= 0

    def __repr__(self) -> str:
        return f"Slot({self.name!r}, {len(self._holders)}/{self.capacity}, holders={list(self._holders)})"

    def __len__(self) -> int:
        return len(self._holders)

    @property
    def holders(self) -> tuple[str, ...]:
        """Who holds a unit, in the order they took it."""
        return tuple(self._holders)

    @property
    def first(self) -> str | None:
        """The holder that has held its unit longest, None if there is none: the one a waiting
        task is told it waits for, so the name it is given stays while others come and go."""
        return next(iter(self._holders), None)

    def take(self, holder: str) -> None:
        """Give ``holder`` a unit, full or not (see the class). Raises InvalidArgumentError if it
        holds one already: one holder counted twice would keep a unit taken forever."""
        if holder in self._holders:
            raise InvalidArgumentError(f"{holder!r} already holds a unit of {self.name}")
        self._holders[holder] = None
        self.full = len(self._holders) >= self.capacity

    def resize(self, capacity: int) -> None:
        """Hold ``capacity`` units from now on (``max_parallel="auto"``). Holders beyond it keep
        their units: the slot stays full, admitting nobody, until enough of them let go."""
        self.capacity = capacity
        self.full = len(self._holders) >= capacity

    def release(self, holder: str) -> None:
        """``holder`` gives its unit back; raises KeyError if it holds none."""
        del self._holders[holder]
        self.full = len(self._holders) >= self.capacity
