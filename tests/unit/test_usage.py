"""cli.usage.UsageSampler, the one psutil sampler of the live view of a run and of ``status --watch``."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any, NamedTuple

import psutil
import pytest

from cli.usage import UsageSampler
from tests.conftest import eventually


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child process of this one, as an agent is of a run's process."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_tree_counts_its_root_unless_told_not_to(sleeper: subprocess.Popen[bytes]) -> None:
    sampler = UsageSampler()
    me = os.getpid()
    below = sampler.trees({"agents": me}, with_roots=False)["agents"]
    whole = sampler.trees({"run": me})["run"]
    assert below[1] > 0  # the child's memory
    assert whole[1] > below[1]  # and this process's


def test_a_root_that_ended_counts_nothing() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert UsageSampler().trees({"gone": proc.pid}) == {"gone": (0, 0)}


def test_the_machine_is_measured_in_its_cores_and_bytes() -> None:
    cpu, cores, used, total = UsageSampler().machine()
    assert 0 <= cpu <= 100
    assert cores == psutil.cpu_count()
    assert 0 < used < total


def test_the_first_sample_shows_a_busy_agent_busy() -> None:
    """Before: psutil's cpu_percent reads 0.0 at its first call, so the first frame showed 0% for
    an agent that kept a core busy."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        eventually("the agent to use CPU", lambda: sum(psutil.Process(busy.pid).cpu_times()[:2]) > 0.05)
        first = UsageSampler().trees({"agents": os.getpid()}, with_roots=False)["agents"]
    finally:
        busy.kill()
        busy.wait()
    assert first[0] > 0


class _Times(NamedTuple):
    user: float
    system: float


class _Memory(NamedTuple):
    rss: int


class _FakeProcess:
    """A psutil.Process whose CPU time the test sets; ``children`` below it."""

    def __init__(self, pid: int, started: float, cpu: float = 0.0, children: tuple[_FakeProcess, ...] = ()):
        self.pid, self.started, self.cpu, self.kids = pid, started, cpu, children

    def cpu_times(self) -> _Times:
        return _Times(self.cpu * 0.75, self.cpu * 0.25)

    def memory_info(self) -> _Memory:
        return _Memory(2**20)

    def create_time(self) -> float:
        return self.started

    def name(self) -> str:
        return "agent"

    def children(self, recursive: bool = False) -> list[_FakeProcess]:
        assert recursive
        return [p for kid in self.kids for p in (kid, *kid.children(recursive=True))]


class _FakePsutil:
    """As much of psutil as the sampler uses: a machine of ``cores`` and a process table."""

    def __init__(self, cores: int, *processes: _FakeProcess):
        self.cores, self.table = cores, {p.pid: p for p in processes}

    def cpu_count(self) -> int:
        return self.cores

    def cpu_percent(self, interval: float | None) -> float:
        assert interval is None  # never blocks the view
        return 54.0

    def virtual_memory(self) -> Any:
        return types.SimpleNamespace(used=3 * 2**30, total=16 * 2**30)

    def Process(self, pid: int) -> _FakeProcess:  # noqa: N802 - psutil's name
        if pid not in self.table:
            raise psutil.NoSuchProcess(pid)
        return self.table[pid]


def test_cpu_is_a_share_of_the_whole_machine_from_the_first_sample_on() -> None:
    agent = _FakeProcess(11, started=90.0, cpu=10.0)  # ran 10 s, all of it on a core
    run = _FakeProcess(10, started=0.0, children=(agent,))
    now = [100.0]
    sampler = UsageSampler(_FakePsutil(2, run, agent), clock=lambda: now[0])
    assert sampler.trees({"agents": 10}, with_roots=False) == {"agents": (50.0, 2**20)}  # one core of two
    now[0], agent.cpu = 102.0, 11.0  # then half a core for 2 s
    assert sampler.trees({"agents": 10}, with_roots=False)["agents"].cpu == 25.0
    assert sampler.machine() == (54.0, 2, 3 * 2**30, 16 * 2**30)


def test_a_reused_pid_is_counted_from_its_new_process_start() -> None:
    agent = _FakeProcess(11, started=90.0, cpu=10.0)
    fake = _FakePsutil(1, _FakeProcess(10, started=0.0, children=(agent,)), agent)
    now = [100.0]
    sampler = UsageSampler(fake, clock=lambda: now[0])
    sampler.trees({"agents": 10}, with_roots=False)
    fake.table[10].kids = (_FakeProcess(11, started=101.0, cpu=0.5),)  # the agent ended; its pid was reused
    now[0] = 102.0
    assert sampler.trees({"agents": 10}, with_roots=False)["agents"].cpu == 50.0  # 0.5 s in its 1 s, not -9.5 s in 2
