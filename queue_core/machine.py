"""The machine a queue runs on, as the admission rule sees it: readings, the sampler that takes
them, and the limits a run sets on CPU and memory.

The sampler is injected (``TaskQueue(machine=...)``) so tests drive a queue with scripted
readings; the default, :class:`PsutilSampler`, reads the machine through psutil, which
queue_core depends on already (:mod:`queue_core.processes`). Nothing here decides: the rule
over the readings is :mod:`queue_core.machine_rule`'s.

One convention for every CPU figure, as in the CLI's views: a percentage of the whole machine,
100 when every core is busy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .errors import InvalidArgumentError

__all__ = ["GIB", "Limits", "MachineSampler", "PsutilSampler", "Reading", "size_text"]

GIB = 2**30
#: The shortest stretch a CPU figure is measured over: /proc/stat counts in hundredths of a
#: second, so over less the figure is mostly rounding.
MIN_CPU_PERIOD_S = 0.1


class Reading(NamedTuple):
    """The machine at one moment: ``cpu`` percent busy of all its ``cores`` since the reading
    before (None: not known yet, CPU being a rate), ``memory`` percent in use, ``available``
    and ``total`` memory in bytes."""

    cpu: float | None
    memory: float
    available: int
    total: int
    cores: int

    @classmethod
    def of(cls, cpu: float | None, available: int, total: int, cores: int) -> Reading:
        """A reading whose memory in use is what is not available, as psutil's ``percent`` is."""
        used = 100.0 * (total - available) / total if total > 0 else 100.0
        return cls(cpu, min(100.0, max(0.0, used)), available, total, max(1, cores))


class MachineSampler(Protocol):
    """Reads the machine; called by the engine, its lock held, about once a second while a rule
    needs readings: it must return promptly and never call the queue."""

    def read(self) -> Reading: ...


class PsutilSampler:
    """The machine as psutil reads it (``ps`` stands for psutil in a test).

    CPU is the busy share of every core since the previous reading, counted from the CPU
    times (``psutil.cpu_percent`` keeps its state per thread, and the CLI's view reads it on
    another); the first reading, or one less than MIN_CPU_PERIOD_S after the last counted,
    gives the last figure known (None at first).
    """

    def __init__(self, ps: Any = None) -> None:
        if ps is None:
            import psutil as ps  # only a queue that reads the machine needs it
        self._ps = ps
        self._cores: int = ps.cpu_count() or 1
        self._counted: tuple[float, float] | None = None  # (busy, all) CPU seconds when last counted
        self._cpu: float | None = None

    def read(self) -> Reading:
        busy, every = _cpu_seconds(self._ps.cpu_times())
        if self._counted is None:
            self._counted = (busy, every)
        elif every - self._counted[1] >= MIN_CPU_PERIOD_S * self._cores:
            spent = every - self._counted[1]
            self._cpu = min(100.0, max(0.0, 100.0 * (busy - self._counted[0]) / spent))
            self._counted = (busy, every)
        memory = self._ps.virtual_memory()
        return Reading.of(self._cpu, int(memory.available), int(memory.total), self._cores)


def _cpu_seconds(times: Any) -> tuple[float, float]:
    """(busy, all) CPU seconds of ``psutil.cpu_times()``, as psutil's ``cpu_percent`` counts
    them: idle and waiting for I/O are not busy; guests are already in user and nice (Linux)."""
    every = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return every - times.idle - getattr(times, "iowait", 0.0), every


@dataclass(frozen=True)
class Limits:
    """How busy the machine may be when a new task starts: ``cpu`` and ``memory`` in percent
    (of all cores; of all memory in use), each None for no limit.

    Raises InvalidArgumentError unless each is a number greater than 0 and at most 100.
    """

    cpu: float | None = None
    memory: float | None = None

    def __post_init__(self) -> None:
        for name in ("cpu", "memory"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise InvalidArgumentError(f"the {name} limit must be a percentage, got {value!r}")
            if not 0 < value <= 100:
                raise InvalidArgumentError(f"the {name} limit must be more than 0% and at most 100%, got {value:g}%")

    def __bool__(self) -> bool:
        return self.cpu is not None or self.memory is not None

    def items(self) -> list[tuple[str, float]]:
        """The limits set, as (resource, percent), CPU first."""
        return [(name, value) for name, value in (("cpu", self.cpu), ("memory", self.memory)) if value is not None]


def size_text(size: float) -> str:
    """A memory size as a person reads it: ``512 MiB``, ``2.0 GiB``."""
    if abs(size) >= GIB:
        return f"{size / GIB:.1f} GiB"
    return f"{size / 2**20:.0f} MiB"
