"""Named counted slots: the capacities a task must find room in before it starts.

``max_parallel`` is one slot, every running task here holds a unit of it; each agent type has
one (``agent:<type>``), with one unit unless the agent runs several instances; each quota pool
is one too (``pool:<name>``), a :class:`WeightedSlot`, whose holders may take several units
each. A slot counts its units and knows who holds them, so a task kept out can be told whom it
waits for.
"""

from __future__ import annotations

from .errors import InvalidArgumentError

__all__ = ["Slot", "WeightedSlot"]


class Slot:
    """At most ``capacity`` holders at once, each holding one unit, named by ``name``.

    Admission is the caller's: it asks ``full`` (or ``room``) and only then ``take``s a unit. A
    slot also records holders it could not refuse (tasks of other processes, which run whatever
    this one decides), so it may hold more than its capacity; it stays full until enough of them
    let go.
    """

    __slots__ = ("_holders", "capacity", "full", "name")

    def __init__(self, name: str, capacity: int):
        self.name = name
        self.capacity = capacity
        # An ordered map, holder -> its units: who took a unit first comes first.
        self._holders: dict[str, int] = {}
        #: Whether a new holder must wait: every unit is taken. An attribute kept by take and
        #: release, not a property: dispatch asks it several times for every task.
        self.full = capacity <= 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.used}/{self.capacity}, holders={list(self._holders)})"

    def __len__(self) -> int:
        return len(self._holders)

    @property
    def used(self) -> int:
        """The units held, by every holder."""
        return len(self._holders)

    @property
    def holders(self) -> tuple[str, ...]:
        """Who holds units, in the order they took them."""
        return tuple(self._holders)

    @property
    def first(self) -> str | None:
        """The holder that has held its units longest, None if there is none: the one a waiting
        task is told it waits for, so the name it is given stays while others come and go."""
        return next(iter(self._holders), None)

    def units_of(self, holder: str) -> int:
        """The units ``holder`` holds (0 if none)."""
        return self._holders.get(holder, 0)

    def room(self, units: int) -> bool:
        """Whether ``units`` more fit now: for one unit, ``not full``."""
        return self.used + units <= self.capacity

    def take(self, holder: str) -> None:
        """Give ``holder`` a unit, full or not (see the class). Raises InvalidArgumentError if it
        holds one already: one holder counted twice would keep a unit taken forever."""
        if holder in self._holders:
            raise InvalidArgumentError(f"{holder!r} already holds a unit of {self.name}")
        self._holders[holder] = 1
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


class WeightedSlot(Slot):
    """A slot whose holders take any number of units: a quota pool's (a task may take two of a
    GPU pool). A subclass, so that the one-unit slots every task takes stay as fast as they were."""

    __slots__ = ("_used",)

    def __init__(self, name: str, capacity: int):
        super().__init__(name, capacity)
        self._used = 0

    @property
    def used(self) -> int:
        return self._used

    def take(self, holder: str, units: int = 1) -> None:
        """Give ``holder`` ``units``, room or not (see Slot). Raises InvalidArgumentError if it
        holds some already."""
        if holder in self._holders:
            raise InvalidArgumentError(f"{holder!r} already holds a unit of {self.name}")
        self._holders[holder] = units
        self._used += units
        self.full = self._used >= self.capacity

    def release(self, holder: str) -> None:
        """``holder`` gives its units back; raises KeyError if it holds none."""
        self._used -= self._holders.pop(holder)
        self.full = self._used >= self.capacity
