"""Why a task waits: the reason a person reads, and the error ``try_start`` raises for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .claims import Claim
from .errors import (
    AgentAlreadyRunningError,
    CapacityError,
    ClaimConflictError,
    ConflictError,
    MachineBusyError,
    PoolFullError,
)
from .machine import size_text

__all__ = ["WaitReason", "seconds_text"]


def seconds_text(seconds: float) -> str:
    """A duration as a person reads it: 25s, 14m 05s, 2h 00m."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


@dataclass(frozen=True)
class WaitReason:
    """Why a task is not running; ``str()`` gives the sentence a person reads.

    The fields are those of the first thing that stops it; ``also`` holds the others, in the
    order of ``Admission.blockers``, so a task waiting for a slot and a claim is told both.

    The machine's kinds (see queue_core.machine_rule): "machine", a limit holds new tasks
    ("memory 93% > 90%"); "need", the room left does not cover what the task declared ("needs
    2.0 GiB memory, 1.2 GiB free"). Neither is ever given while no task of the run runs: a run
    may always start one task, whatever the machine.
    """

    kind: str  # "dependency", "retry", "rate_limit", "agent", "claim", "pool", "reserved", "capacity",
    # "machine", "need" or "ready"
    holder: str | None = None  # id of the task that holds or reserves what this one needs
    holder_agent: str | None = None
    claim: str | None = None  # this task's claim ...
    held: str | None = None  # ... and the holder's claim it overlaps
    example: str | None = None  # a path both cover
    needs: tuple[str, ...] = ()  # unfinished dependencies
    until: float | None = None  # when a retry is due, or a rate-limit pause ends
    limit: int | None = None  # max_parallel, for "capacity"; the pool's units, for "pool"
    resource: str | None = None  # "cpu" or "memory" ("cpus" for a need), for "machine" and "need"
    measured: float | None = None  # the mean of the readings (percent), or the room left; None: not measured
    bound: float | None = None  # the limit (percent), or the task's need
    resumes_below: float | None = None  # a limit that holds though the mean is under it: until below this
    pool: str | None = None  # the quota pool without room ("pool"), or reserved ("reserved")
    used: int | None = None  # its units in use, counting other runs' and places kept in line
    units: int = 1  # the units this task takes of it
    kept: int = 0  # of ``used``, the units kept for other runs' tasks that waited longer (see queue_core.line)
    also: tuple[WaitReason, ...] = ()  # what else stops it

    @classmethod
    def overlap(
        cls, kind: str, claim: Claim, held: Claim, holder: str | None, holder_agent: str, example: str
    ) -> WaitReason:
        """A ``kind`` ("claim" or "reserved") reason: ``claim`` overlaps ``holder``'s ``held``."""
        return cls(kind, holder=holder, holder_agent=holder_agent, claim=claim.text, held=held.text, example=example)

    def describe(self, now: float | None = None, annotate: Callable[[str, str | None], str] | None = None) -> str:
        """The sentence, each blocker's part separated by "; ", a wait that ends at a set time
        told from ``now``; ``annotate(part, holder)`` may add to each part what it knows of the
        holder, once: a holder that blocks two parts (an agent and a pool) is told of after the first."""
        texts: list[str] = []
        notes: set[str] = set()
        for part in (self, *self.also):
            text = part._text(now)
            note = "" if annotate is None else annotate(text, part.holder)[len(text) :]
            texts.append(text if note in notes else text + note)
            notes.add(note)
        return "; ".join(texts)

    def _text(self, now: float | None) -> str:
        if self.kind == "dependency":
            return "needs " + ", ".join(self.needs)
        if self.kind == "retry":
            left = "" if now is None or self.until is None else f" in {max(0.0, self.until - now):.1f}s"
            return f"retry{left}"
        if self.kind == "rate_limit":
            left = "" if now is None or self.until is None else f", resumes in {seconds_text(self.until - now)}"
            return f"{self.holder_agent} rate-limited{left}"
        if self.kind == "agent":
            return f"{self.holder_agent} busy ({self.holder})"
        if self.kind == "claim":
            return f"{self.claim} overlaps {self.held} held by {self.holder_agent} ({self.holder})"
        if self.kind == "pool":
            need = "" if self.units == 1 else f", needs {self.units}"
            kept = "" if not self.kept else f", {self.kept} kept for a run waiting longer"
            return f"pool {self.pool} full ({self.used}/{self.limit}{need}{kept})"
        if self.kind == "reserved":
            what = f"agent {self.holder_agent}" if self.claim is None else f"{self.claim} overlaps {self.held}"
            what = what if self.pool is None else f"pool {self.pool}"
            return f"{what}, reserved for {self.holder} (waiting longest)"
        if self.kind == "machine":
            return self._limit_text()
        if self.kind == "need":
            return self._need_text()
        if self.kind == "ready":
            return "ready to start"
        return f"max_parallel ({self.limit}) reached"

    def _limit_text(self) -> str:
        """``memory 93% > 90%``; in the band, ``cpu 87% (was over 90%: waits until below 85%)``;
        CPU not known yet, ``cpu not measured yet (limit 85%)``."""
        bound = f"{self.bound:g}%"
        if self.measured is None:
            return f"{self.resource} not measured yet (limit {bound})"
        if self.resumes_below is None:
            return f"{self.resource} {self.measured:.0f}% > {bound}"
        return f"{self.resource} {self.measured:.0f}% (was over {bound}: waits until below {self.resumes_below:g}%)"

    def _need_text(self) -> str:
        """``needs 2.0 GiB memory, 1.2 GiB free``; ``needs 1.5 cpus, 0.3 idle``."""
        room = None if self.measured is None else max(0.0, self.measured)
        if self.resource == "memory":
            need, left = f"{size_text(self.bound or 0)} memory", None if room is None else f"{size_text(room)} free"
        else:
            need, left = f"{self.bound:g} cpus", None if room is None else f"{room:.1f} idle"
        return f"needs {need}, {left or 'not measured yet'}"

    def __str__(self) -> str:
        return self.describe()

    def to_error(self) -> ConflictError:
        """The ConflictError ``try_start`` raises for this reason."""
        if self.kind == "agent":
            return AgentAlreadyRunningError(self.holder_agent or "", self.holder or "")
        if self.kind in ("claim", "reserved") and self.claim is not None:
            return ClaimConflictError(
                self.claim,
                self.held or "",
                self.holder or "",
                self.holder_agent or "",
                reserved=self.kind == "reserved",
            )
        if self.pool is not None:
            reserved_for = self.holder if self.kind == "reserved" else None
            return PoolFullError(self.pool, self.used or 0, self.limit or 0, self.units, reserved_for=reserved_for)
        if self.kind == "reserved":
            return AgentAlreadyRunningError(self.holder_agent or "", self.holder or "", reserved=True)
        if self.kind == "capacity":
            return CapacityError(self.limit or 0)
        if self.kind in ("machine", "need"):
            return MachineBusyError(self.describe())
        return ConflictError(self.describe())
