"""CPU and memory, as the live view of a run and ``status --watch`` show them: the machine's, and
each process tree's (a run's process and its agents).

psutil counts CPU from one reading to the next of the same object: the machine's from the
previous call, a process's from the previous call on the same psutil.Process. So a sampler
lives as long as the view it feeds, and keeps the processes of one sample for the next.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

import psutil

from queue_core.supervisor import PROCESS_NAMES

Key = TypeVar("Key")


class UsageSampler:
    """Samples the machine and process trees, each time a view is drawn; the first sample
    counts CPU from the sampler's creation."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading only starts the measurement
        self._procs: dict[int, psutil.Process] = {}  # every process of the previous sample, by pid

    def machine(self) -> str:
        """``machine: CPU 12%, memory 3.1 of 15.5 GiB``; CPU since the previous call."""
        memory = psutil.virtual_memory()
        return (
            f"machine: CPU {psutil.cpu_percent(interval=None):.0f}%, memory {memory.used / 2**30:.1f} of "
            f"{memory.total / 2**30:.1f} GiB"
        )

    def trees(self, roots: Mapping[Key, int], *, with_roots: bool = True) -> dict[Key, tuple[float, int]]:
        """The summed CPU percent and resident memory of the process tree below each pid of
        ``roots``, by key: the root itself unless ``with_roots`` is False (the live view leaves
        out its own process), never the supervisor's processes. A process that ended counts
        nothing; a root that ended, nothing at all."""
        procs: dict[int, psutil.Process] = {}
        usage = {}
        for key, pid in roots.items():
            try:
                root = self._procs.get(pid) or psutil.Process(pid)
                found = [root, *_agent_processes(root)] if with_roots else _agent_processes(root)
            except psutil.Error:  # it ended since its pid was read
                found = []
            tree = [self._procs.get(proc.pid, proc) for proc in found]
            procs.update((proc.pid, proc) for proc in tree)
            usage[key] = _summed(tree)
        self._procs = procs
        return usage


def _agent_processes(root: psutil.Process) -> list[psutil.Process]:
    """The processes below ``root``, but for the supervisor's own (agents, their children)."""

    def ours(proc: psutil.Process) -> bool:
        try:
            return proc.name() in PROCESS_NAMES
        except psutil.Error:  # it ended meanwhile
            return True

    return [proc for proc in root.children(recursive=True) if not ours(proc)]


def _summed(processes: Iterable[psutil.Process]) -> tuple[float, int]:
    usage = [_usage(process) for process in processes]
    return sum(u[0] for u in usage), sum(u[1] for u in usage)


def _usage(process: psutil.Process) -> tuple[float, int]:
    try:
        return process.cpu_percent(interval=None), process.memory_info().rss
    except psutil.Error:  # it ended meanwhile
        return 0.0, 0
