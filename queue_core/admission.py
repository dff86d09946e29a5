"""Admission: the one rule for whether a task may start now, and the state only it reads.

A task may start when every slot it needs has a unit free (``max_parallel``, and its agent
type's, which tasks of other processes hold too: see queue_core.slots), every quota pool it
takes has room for its units (held here or elsewhere too), its agent type is not paused by a
rate limit, none of its claims overlaps one held here or elsewhere unless both only read, and
no reservation for a better-ranked task holds it back; and, if the queue reads the machine,
none of the machine's rule holds it (see queue_core.machine_rule). Dispatch, ``try_start`` and
``wait_reason`` all ask here, so what starts and what a waiting task is told cannot disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence

from .claims import Access, Claim, ClaimIndex, Conflict
from .entry import TaskEntry
from .errors import InvalidArgumentError
from .machine_rule import MachineRule
from .pauses import Pauses
from .reservation import Reservation
from .slots import Slot, WeightedSlot
from .waits import WaitReason

__all__ = ["Admission"]

#: The units of quota pools a holder takes: (pool, units) pairs.
_Pools = tuple[tuple[str, int], ...]


class Admission:
    """The slots, the claims held, and the holders elsewhere; the rule over them and over the
    pauses and the reservation, which the scheduler keeps up to date."""

    def __init__(
        self,
        max_parallel: int,
        instances: Mapping[str, int],
        entries: Mapping[str, TaskEntry],
        paused: Pauses,
        reservation: Reservation,
        pools: Mapping[str, int] | None = None,
    ):
        self.parallel = Slot("max_parallel", max_parallel)  # its holders are the tasks running here
        #: ``agent:<type>``: a unit for each task of the type running here or elsewhere.
        self.agent_slots = _AgentSlots({agent: Slot(f"agent:{agent}", n) for agent, n in instances.items()})
        #: ``pool:<name>``: the units of each quota pool that tasks running here or elsewhere take.
        self.pools = {name: WeightedSlot(f"pool:{name}", n) for name, n in (pools or {}).items()}
        self._held = ClaimIndex()  # of the tasks running here and the holders elsewhere
        # Holders elsewhere (other processes' tasks): holder id -> (agent, claims, pools).
        self._external: dict[str, tuple[str, tuple[tuple[Claim, Access], ...], _Pools]] = {}
        self._in_line: set[str] = set()  # holders elsewhere that wait in line ahead of tasks here
        self._entries = entries
        self._paused = paused
        self._reservation = reservation
        #: The machine's rule (limits, needs, auto), if the queue reads the machine; None otherwise.
        self.machine: MachineRule | None = None

    # --- the rule -----------------------------------------------------------------------------

    def agent_blocked(self, entry: TaskEntry) -> WaitReason | None:
        """Why no task of ``entry``'s agent ranked like it may start now, or None: the first
        of ``_agent_rules``. ``blocker`` then gives the task's own."""
        return next(self._agent_rules(entry), None)

    def blocker(self, entry: TaskEntry) -> Conflict | WaitReason | None:
        """What stops ``entry`` from starting, its agent and ``max_parallel`` aside: the first of
        ``_own_rules``; None if nothing."""
        return next(self._own_rules(entry), None)

    def refusal(self, entry: TaskEntry) -> WaitReason | None:
        """Why ``entry`` may not start at once, as ``try_start`` says it: the cap first, then the
        first of ``blockers``; None if it may."""
        return self._capacity() or next(iter(self.blockers(entry)), None)

    def blockers(self, entry: TaskEntry) -> list[WaitReason]:
        """Everything that stops ``entry`` from starting now, each named once, in a fixed order:
        its agent's rules (``_agent_rules``), then its own (``_own_rules``: a holder of several
        overlapping claims named once), and ``max_parallel`` last. The rules dispatch asks
        (``agent_blocked``, ``blocker``, the cap), asked in full."""
        reasons = list(self._agent_rules(entry))
        named = {reason.holder for reason in reasons}
        for rule in self._own_rules(entry):
            if isinstance(rule, WaitReason):
                reasons.append(rule)
            elif rule.owner not in named:  # one that frees everything it blocks at once
                named.add(rule.owner)
                reasons.append(self._overlap(rule))
        capacity = self._capacity()
        # A reservation for a task of its agent is among its agent's rules already.
        return list(dict.fromkeys([*reasons, *(() if capacity is None else (capacity,))]))

    def wait_reason(self, entry: TaskEntry) -> WaitReason:
        """Why the queued ``entry`` has not started: its ``blockers``, the first in the reason's
        fields and the others in its ``also``; "ready" if nothing stops it now."""
        first, *others = self.blockers(entry) or [WaitReason("ready")]
        return dataclasses.replace(first, also=tuple(others)) if others else first

    def _agent_rules(self, entry: TaskEntry) -> Iterator[WaitReason]:
        """The agent-wide rules that stop ``entry``, in order: its rate-limit pause, its slot full
        (tasks of it running here or elsewhere, or in line ahead), and a reservation for a
        better-ranked task of it. Lazy: dispatch asks only for the first."""
        agent = entry.agent
        until = self._paused.until.get(agent)
        if until is not None:
            yield WaitReason("rate_limit", holder_agent=agent, until=until)
        slot = self.agent_slots[agent]
        if slot.full:
            holder = slot.first
            yield WaitReason("reserved" if holder in self._in_line else "agent", holder=holder, holder_agent=agent)
        held_back = self._reservation.holds_back_agent(entry)
        if held_back is not None:
            yield held_back

    def _own_rules(self, entry: TaskEntry) -> Iterator[Conflict | WaitReason]:
        """What of ``entry``'s own stops it, in order: each held claim that overlaps one of its
        claims (in the order of its claims), each pool without room for its units, then a
        reservation of its paths or pools, then the machine (a limit, its needs). Lazy: dispatch
        asks only for the first."""
        yield from self._held.conflicts_of(entry.claims)
        for pool, units in entry.pools:
            slot = self.pools[pool]
            if not slot.room(units):
                yield self._pool_full(slot, pool, units)
        held_back = self._reservation.holds_back(entry)
        if held_back is not None:
            yield held_back
        if self.machine is not None:  # a limit is the same for every task: dispatch stops before it
            yield from self.machine.blockers(entry, len(self.parallel))

    def _overlap(self, conflict: Conflict) -> WaitReason:
        """``conflict`` as a reason: "reserved" if its holder elsewhere waits in line ahead."""
        owner = conflict.owner
        kind = "reserved" if owner in self._in_line else "claim"
        return WaitReason.overlap(kind, conflict.claim, conflict.held, owner, self.agent_of(owner), conflict.example)

    def _pool_full(self, slot: WeightedSlot, pool: str, units: int) -> WaitReason:
        """``pool`` has no room for ``units``: named by its longest holder, or by the longest one
        kept for a run waiting longer, if without those it would have room."""
        kept_for = [holder for holder in slot.holders if holder in self._in_line]
        kept = sum(slot.units_of(holder) for holder in kept_for)
        holder = kept_for[0] if kept_for and slot.used - kept + units <= slot.capacity else slot.first
        agent = None if holder is None else self.agent_of(holder)
        return WaitReason("pool", holder, agent, pool=pool, limit=slot.capacity, used=slot.used, units=units, kept=kept)

    def _capacity(self) -> WaitReason | None:
        return WaitReason("capacity", limit=self.parallel.capacity) if self.parallel.full else None

    # --- what is held -------------------------------------------------------------------------

    def agent_of(self, holder: str) -> str:
        """The agent type of ``holder``, a task here or a holder elsewhere."""
        entry = self._entries.get(holder)
        return entry.agent if entry is not None else self._external[holder][0]

    def take(self, entry: TaskEntry) -> None:
        """``entry`` starts: it takes a unit of its slots, its units of its pools, and holds its claims."""
        self.parallel.take(entry.id)
        self.agent_slots[entry.agent].take(entry.id)
        if entry.pools:
            for pool, units in entry.pools:
                self.pools[pool].take(entry.id, units)
        for claim, access in entry.claims:
            self._held.add(claim, access, entry.id)
        if self.machine is not None:
            self.machine.take(entry)

    def hold_more(self, entry: TaskEntry, claims: Sequence[tuple[Claim, Access]]) -> None:
        """The running ``entry`` holds ``claims`` too, from now until it lets go."""
        for claim, access in claims:
            self._held.add(claim, access, entry.id)

    def let_go(self, entry: TaskEntry) -> Sequence[TaskEntry]:
        """``entry`` stopped running: its units and claims are free. Returns the tasks the
        machine's rule held for their needs that may fit now, to queue again. Raises KeyError
        if it was not running."""
        self.parallel.release(entry.id)
        self.agent_slots[entry.agent].release(entry.id)
        if entry.pools:
            for pool, _ in entry.pools:
                self.pools[pool].release(entry.id)
        for claim, access in entry.claims:
            self._held.remove(claim, access, entry.id)
        return () if self.machine is None else self.machine.let_go(entry, len(self.parallel))

    @property
    def external_holders(self) -> list[str]:
        return list(self._external)

    def hold_external(
        self, holder: str, agent: str, claims: tuple[tuple[Claim, Access], ...], *, in_line: bool, pools: _Pools = ()
    ) -> None:
        """See Scheduler.hold_external. Raises InvalidArgumentError if ``holder`` is known."""
        if holder in self._external or holder in self._entries:
            raise InvalidArgumentError(f"holder {holder!r} is already known")
        if in_line:
            self._in_line.add(holder)
        pools = tuple((pool, units) for pool, units in pools if pool in self.pools)  # no task here takes the others
        self._external[holder] = (agent, claims, pools)
        self.agent_slots[agent].take(holder)
        for pool, units in pools:
            self.pools[pool].take(holder, units)
        for claim, access in claims:
            self._held.add(claim, access, holder)

    def release_external(self, holder: str) -> str:
        """``holder`` elsewhere let go of everything; returns its agent type."""
        agent, claims, pools = self._external.pop(holder)
        self._in_line.discard(holder)
        self.agent_slots[agent].release(holder)
        for pool, _ in pools:
            self.pools[pool].release(holder)
        for claim, access in claims:
            self._held.remove(claim, access, holder)
        return agent

    def agents_held_elsewhere(self) -> Iterator[tuple[str, list[str]]]:
        """Each agent type whose slot is full only because of holders elsewhere, and those:
        without them it would have room."""
        for agent in {agent for agent, _, _ in self._external.values()}:
            slot = self.agent_slots[agent]
            holders = [holder for holder in slot.holders if holder in self._external]
            if slot.full and len(slot) - len(holders) < slot.capacity:
                yield agent, holders

    def pool_held_elsewhere(self, pool: str, units: int) -> list[str]:
        """The holders elsewhere of ``pool`` if it has no room for ``units`` only because of
        them; else none."""
        slot = self.pools[pool]
        holders = [holder for holder in slot.holders if holder in self._external]
        elsewhere = sum(slot.units_of(holder) for holder in holders)
        if holders and not slot.room(units) and slot.used - elsewhere + units <= slot.capacity:
            return holders
        return []


class _AgentSlots(dict[str, Slot]):
    """The agent types' slots; one not in ``instances`` gets the seed's rule, one at a time."""

    def __missing__(self, agent: str) -> Slot:
        slot = self[agent] = Slot(f"agent:{agent}", 1)
        return slot
