"""ClaimSync: how a queue's decisions are shared with the other processes on its repository.

The engine decides, under its one lock, which tasks start (``Scheduler.dispatch``). A sync
makes each decision a step with the world outside the process:

- :class:`NoSync`, a queue on its own: the decision is the step.
- :class:`~queue_core.registry_sync.RegistrySync`, a queue given ``repo``: each decision is
  an atomic step in the repository's on-disk registry, shared with every run on it.

A sync may release the engine's lock during a step (for file I/O): callers hold the lock and
must expect the state to have moved on when ``step`` returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .records import QueueStatus, TaskOutcome
from .scheduler import Scheduler, TaskEntry

__all__ = ["ClaimSync", "Decide", "NoSync", "SyncHost"]


Decide = Callable[[float], list[TaskEntry]]


class SyncHost(Protocol):
    """What a sync reads of the engine it serves; every member is used with the engine's lock held."""

    lock: threading.Lock
    sched: Scheduler
    aborted: bool  # nothing starts any more

    def clock(self) -> float: ...

    def done(self) -> bool:
        """Closed, and nothing left to finish or deliver."""

    def wake_timer(self) -> bool:
        """Have the timer look at its deadlines (``delay``) again; False if no timer can run."""

    def snapshot(self, waiting_limit: int) -> QueueStatus: ...


class ClaimSync(Protocol):
    """The engine's side of a sync. Every method but ``heartbeat``, ``interrupt`` and
    ``finish`` is called with the engine's lock held."""

    error: OSError | None  # the last failure to reach the shared state, until a step works
    lock_wait: str | None  # who holds the shared state's lock, once a wait for it is long

    def step(self, decide: Decide, *, shared: bool) -> list[TaskEntry] | None:
        """Run ``decide`` (a scheduler call that starts tasks) as one step; what started.

        ``shared``: a dispatch, which a step already under way may decide for; then None.
        Otherwise, the caller's own decision, made in a step of its own."""

    def stopped(self) -> None:
        """The queue was aborted: end what keeps the shared state locked, start nothing."""

    def annotate(self, reason: str, holder: str | None) -> str:
        """``reason`` a task waits, and why its holder will not let go soon, if known."""

    def group_record(self, task_id: str) -> tuple[Path, str] | None:
        """Where an agent's process group is recorded before it runs (see SubprocessAgent)."""

    def idle(self) -> bool:
        """Whether nothing is left for the timer: no step under way, nothing locked."""

    def poll(self, now: float) -> tuple[bool, list[str]]:
        """On the timer: whether a dispatch is due for what changed outside, and notices."""

    def flush(self) -> None:
        """On the timer: write what is due to be written."""

    def beat(self) -> list[str] | None:
        """On the timer: the running task ids a heartbeat must vouch for, if one is due now."""

    def delay(self, now: float) -> float | None:
        """Seconds until the sync next needs the timer; None if it does not."""

    def heartbeat(self, running: list[str]) -> bool:
        """Show this run lives (lock not held); True if holds of ``running`` were lost."""

    def interrupt(self) -> None:
        """End any wait for the shared state at once (lock not held)."""

    def finish(self, tasks: Callable[[], list[TaskOutcome]]) -> None:
        """The run is over: record it and drop its entries, once (lock not held)."""


class NoSync:
    """A queue on its own: nothing outside the process to agree with."""

    error: OSError | None = None
    lock_wait: str | None = None

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    def step(self, decide: Decide, *, shared: bool) -> list[TaskEntry]:
        return decide(self._clock())

    def stopped(self) -> None:
        pass

    def annotate(self, reason: str, holder: str | None) -> str:
        return reason

    def group_record(self, task_id: str) -> None:
        return None

    def idle(self) -> bool:
        return True

    def poll(self, now: float) -> tuple[bool, list[str]]:
        return False, []

    def flush(self) -> None:
        pass

    def beat(self) -> None:
        return None

    def delay(self, now: float) -> None:
        return None

    def heartbeat(self, running: list[str]) -> bool:
        return False

    def interrupt(self) -> None:
        pass

    def finish(self, tasks: Callable[[], list[TaskOutcome]]) -> None:
        pass
