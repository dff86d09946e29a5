"""The line: fairness between runs that want the same path, agent type or quota pool.

A run's tasks that wait for what another run holds (a path, an agent type, units of a quota
pool) take places in a line kept in claims.json, oldest first. Another run treats a place
ahead of its own as if its task ran: it starts nothing that conflicts with it, and counts the
place's units of a pool as taken. So the run that releases a path does not take it back for
its own next task while a task of another run waited through that release: that task goes
first, and the next one of the releasing run joins the line behind it.

Rules, all pure functions of the line here; :class:`~queue_core.queue.TaskQueue` applies them
at every registry step:

* A run holds at most ``max_parallel`` places, its best-ranked waiting tasks (see
  :func:`set_places`). A place belongs to the run, not to one task: when a better-ranked task
  of the run comes to wait, it takes over the run's oldest place.
* A place names the runs it waited for (``behind``). Run R honours place K of another run only
  if R is among them (K waited for R, so R must not take it back), and no place of R's that
  conflicts with K is older (see :func:`ahead`). A place therefore never holds back a run it
  does not wait for, and the oldest place waits only for running tasks: no two runs wait for
  each other for ever.
* A place is fairness, never safety: one of a run that is stopped, or dead, counts for nothing;
  a lost line is rebuilt empty.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .claims import Claim, overlaps
from .clocks import REAL, Clocks
from .errors import InvalidClaimError
from .holds import STALE_AFTER_S, Hold, Owner

__all__ = ["Place", "Wanted", "ahead", "alive_by", "conflict", "live_places", "parse_line", "set_places"]


@dataclass(frozen=True)
class Wanted:
    """A task of this run that waits for other runs: what it would take, and which runs it waits for."""

    task: str
    agent: str
    writes: tuple[str, ...]
    reads: tuple[str, ...]
    behind: frozenset[str]
    pools: tuple[tuple[str, int], ...] = ()  # the units of quota pools it would take


@dataclass(frozen=True)
class Place:
    """A run's place in line: held by its task ``task`` now, since ``since`` (wall time)."""

    owner: Owner
    task: str
    agent: str
    writes: tuple[str, ...]
    reads: tuple[str, ...]
    behind: tuple[str, ...]  # the runs it waited for, sorted
    since: float
    pools: tuple[tuple[str, int], ...] = ()  # the units of quota pools its task would take

    def to_json(self) -> dict[str, Any]:
        """As a hold of its task would be written, with the runs it waited for."""
        hold = Hold(self.owner, self.task, self.agent, self.writes, self.reads, self.since, self.pools)
        return {**hold.to_json(), "behind": list(self.behind)}

    @classmethod
    def from_json(cls, data: Any) -> Place:
        hold = Hold.from_json(data)
        behind = tuple(sorted(str(r) for r in data.get("behind", ())))
        return cls(hold.owner, hold.task, hold.agent, hold.writes, hold.reads, behind, hold.since, hold.pools)


def parse_line(items: Any) -> list[Place]:
    """The places in claims.json's ``waiting``; a damaged one is left out (it is only fairness)."""
    places = (_place(item) for item in (items if isinstance(items, list) else ()))
    return [place for place in places if place is not None]


def _place(item: Any) -> Place | None:
    try:
        return Place.from_json(item)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def set_places(line: Sequence[Place], owner: Owner, wanted: Sequence[Wanted], now: float) -> list[Place]:
    """``line`` with ``owner``'s places held by ``wanted`` (best-ranked first).

    The run's places keep their positions, oldest to its best-ranked task; each keeps the runs
    it waited for, and adds the new ones. What the run no longer needs leaves; what it needs
    more joins at the end.
    """
    todo = iter(wanted)
    result: list[Place] = []
    for place in line:
        if place.owner.run != owner.run:
            result.append(place)
        elif (task := next(todo, None)) is not None:
            behind = tuple(sorted(set(place.behind) | task.behind))
            result.append(Place(owner, task.task, task.agent, task.writes, task.reads, behind, place.since, task.pools))
    result.extend(Place(owner, w.task, w.agent, w.writes, w.reads, tuple(sorted(w.behind)), now, w.pools) for w in todo)
    return result


def live_places(line: Iterable[Place], alive: Callable[[Owner], bool]) -> list[Place]:
    """The places whose run lives, by ``alive`` (asked once per owner)."""
    judged: dict[Owner, bool] = {}
    result: list[Place] = []
    for place in line:
        if place.owner not in judged:
            judged[place.owner] = alive(place.owner)
        if judged[place.owner]:
            result.append(place)
    return result


def ahead(line: Iterable[Place], run: str, stopped: Callable[[Owner], bool]) -> list[Place]:
    """The places of other runs that ``run`` honours: they waited for it, come before every
    conflicting place of its own, and their run is not ``stopped``."""
    mine: list[Place] = []
    honoured: list[Place] = []
    judged: dict[Owner, bool] = {}
    for place in line:
        if place.owner.run == run:
            mine.append(place)
        elif run in place.behind and not any(conflict(place, other) for other in mine):
            if place.owner not in judged:
                judged[place.owner] = stopped(place.owner)
            if not judged[place.owner]:
                honoured.append(place)
    return honoured


def conflict(a: Place, b: Place) -> bool:
    """Whether the tasks of ``a`` and ``b`` may not run at once: one agent type, a quota pool
    both take (whether it has room for both depends on the runs' capacities: say they conflict),
    or claims that overlap where one of them writes."""
    if a.agent == b.agent:
        return True
    if a.pools and b.pools and {pool for pool, _ in a.pools} & {pool for pool, _ in b.pools}:
        return True
    a_writes, b_writes = parse_claims(a.writes), parse_claims(b.writes)
    return any(overlaps(x, y) for x in a_writes for y in (*b_writes, *parse_claims(b.reads))) or any(
        overlaps(x, y) for x in parse_claims(a.reads) for y in b_writes
    )


@functools.lru_cache(maxsize=4096)
def parse_claims(texts: tuple[str, ...]) -> tuple[Claim, ...]:
    """Claims as the registry records them; one written by another version claims everything."""
    try:
        return tuple(Claim.parse(text) for text in texts)
    except InvalidClaimError:
        return (Claim.parse("**"),)


def alive_by(runs_dir: Path, stale_after: float = STALE_AFTER_S, *, clocks: Clocks = REAL) -> Callable[[Owner], bool]:
    """Whether a place's run lives: its own process here, or its heartbeat elsewhere (aged by ``clocks``).

    Not its supervisor or agents, which keep a dead run's holds but never take a place's turn.
    """

    def alive(owner: Owner) -> bool:
        if owner.is_local:
            return owner.process.alive()
        return owner.alive(runs_dir, stale_after, clocks)

    return alive
