"""CPU and memory, as the live view of a run and ``status --watch`` show them: the machine's, and
each process tree's (a run's process and its agents).

One convention for every CPU figure: a percentage of the whole machine, 100 when every core is
busy, as the machine's own figure is; an agent that keeps one core of two busy is 50%. Each
figure is labelled so where it is shown (``machine_text``, ``usage_text``: "CPU 50% of 2 cores").

A figure is CPU time over wall time since the previous sample. A process seen for the first
time is counted from its start (its CPU time over its age): the first frame shows a busy agent
busy, where psutil's ``cpu_percent`` would say 0.0 until its second call. So a sampler lives as
long as the view it feeds, and keeps the processes of one sample for the next.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import psutil

from queue_core.supervisor import PROCESS_NAMES

Key = TypeVar("Key")


class Usage(NamedTuple):
    """What a process tree uses: ``cpu`` in percent of the whole machine, ``memory`` resident bytes."""

    cpu: float
    memory: int


class Machine(NamedTuple):
    """The machine: ``cpu`` percent busy (of all its ``cores``), memory ``used`` of ``total`` bytes;
    a ``total`` of 0: psutil could not read it."""

    cpu: float
    cores: int
    used: int
    total: int


class UsageSampler:
    """Samples the machine and process trees, each time a view is drawn.

    ``ps`` is psutil, or what stands for it in a test; ``clock`` the wall clock, which process
    start times are in.
    """

    def __init__(self, ps: Any = psutil, clock: Callable[[], float] = time.time) -> None:
        self._ps = ps
        self._clock = clock
        self.cores: int = ps.cpu_count() or 1
        with contextlib.suppress(Exception):  # psutil failing: see machine()
            ps.cpu_percent(interval=None)  # the machine's first reading only starts the measurement
        # Every process of the previous sample, by pid: (its start time, CPU seconds, when read).
        self._seen: dict[int, tuple[float, float, float]] = {}

    def machine(self) -> Machine:
        """The machine's CPU since the previous call (the first: since the sampler was made) and
        memory; a total of 0 if psutil fails (no /proc in a container): the view is only a view,
        and a failure here must neither end the run nor stop its view."""
        try:
            memory = self._ps.virtual_memory()
            return Machine(self._ps.cpu_percent(interval=None), self.cores, memory.used, memory.total)
        except Exception:  # noqa: BLE001 - psutil.Error, OSError, and what else it may raise
            return Machine(0.0, self.cores, 0, 0)

    def trees(self, roots: Mapping[Key, int], *, with_roots: bool = True) -> dict[Key, Usage]:
        """What the process tree below each pid of ``roots`` uses, by key: the root itself unless
        ``with_roots`` is False (the live view leaves out its own process), never the
        supervisor's processes. A process that ended counts nothing; a root that ended, nothing at all."""
        now = self._clock()
        seen: dict[int, tuple[float, float, float]] = {}
        usage = {}
        for key, pid in roots.items():
            try:
                root = self._ps.Process(pid)
                found = [root, *_agent_processes(root)] if with_roots else _agent_processes(root)
            except psutil.Error:  # it ended since its pid was read
                found = []
            samples = [self._sample(proc, now, seen) for proc in found]
            usage[key] = Usage(sum(s.cpu for s in samples), sum(s.memory for s in samples))
        self._seen = seen
        return usage

    def _sample(self, proc: Any, now: float, seen: dict[int, tuple[float, float, float]]) -> Usage:
        """What ``proc`` used since the previous sample, or since its start; noted in ``seen``."""
        try:
            times, memory, started = proc.cpu_times(), proc.memory_info().rss, proc.create_time()
        except psutil.Error:  # it ended meanwhile
            return Usage(0.0, 0)
        cpu = times.user + times.system
        previous = self._seen.get(proc.pid)
        # A pid seen before but of a process started since is another process: counted from its start.
        _, last_cpu, last_at = previous if previous is not None and previous[0] == started else (started, 0.0, started)
        seen[proc.pid] = (started, cpu, now)
        wall = now - last_at
        return Usage(max(0.0, cpu - last_cpu) / wall / self.cores * 100 if wall > 0 else 0.0, memory)


def _agent_processes(root: Any) -> list[Any]:
    """The processes below ``root``, but for the supervisor's own (agents, their children)."""

    def ours(proc: Any) -> bool:
        try:
            return proc.name() in PROCESS_NAMES
        except psutil.Error:  # it ended meanwhile
            return True

    return [proc for proc in root.children(recursive=True) if not ours(proc)]


def machine_text(machine: Machine) -> str:
    """``machine  CPU 54% of 2 cores, memory 3.1 of 15.5 GiB``."""
    if machine.total == 0:
        return f"machine  CPU and memory not known ({_cores(machine.cores)})"
    memory = f"memory {machine.used / 2**30:.1f} of {machine.total / 2**30:.1f} GiB"
    return f"machine  CPU {machine.cpu:.0f}% of {_cores(machine.cores)}, {memory}"


def usage_text(usage: Usage, cores: int) -> str:
    """``CPU 50% of 2 cores, memory 300 MiB``: the CPU as the machine's is, a share of all its cores."""
    return f"CPU {usage.cpu:.0f}% of {_cores(cores)}, memory {usage.memory / 2**20:.0f} MiB"


def _cores(cores: int) -> str:
    return "1 core" if cores == 1 else f"{cores} cores"
