"""The machine as the queue sees it: readings, the default sampler, limits, the rule over the
readings, and max_parallel="auto" (queue_core.machine, queue_core.machine_rule), stepped with
scripted readings and times passed in."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest

from queue_core.errors import InvalidArgumentError, InvalidTaskError
from queue_core.machine import GIB, Limits, PsutilSampler, Reading
from queue_core.machine_rule import AutoParallel, MachineRule, never_fits
from queue_core.slots import Slot
from queue_core.task import AgentTask, TaskState
from queue_core.waits import WaitReason

CORES = 4
TOTAL = 16 * GIB


def reading(cpu: float | None = 10.0, memory: float = 50.0, cores: int = CORES, total: int = TOTAL) -> Reading:
    """A reading with ``memory`` percent in use of ``total``."""
    return Reading.of(cpu, round(total * (100 - memory) / 100), total, cores)


def task(tid: str = "t", **needs: Any) -> AgentTask:
    return AgentTask("a", f"do {tid}", [f"{tid}.py"], lambda: None, id=tid, **needs)


class Entry:
    """What of a TaskEntry the rule reads."""

    def __init__(self, task: AgentTask) -> None:
        self.task = task
        self.id = task.id
        self.state = TaskState.QUEUED
        self.blocker: Any = None


def feed(rule: MachineRule, *readings: Reading, start: float = 0.0, every: float = 1.0) -> list[bool]:
    """Give ``readings`` to ``rule`` a second apart; what each observe returned."""
    slot = Slot("max_parallel", 4)
    return [rule.observe(r, start + i * every, slot) for i, r in enumerate(readings)]


def limit_text(rule: MachineRule, running: int = 1) -> str | None:
    reasons = list(rule.blockers(Entry(task()), running))  # type: ignore[arg-type]
    return None if not reasons else "; ".join(str(r) for r in reasons)


# --- readings and the sampler ---------------------------------------------------------------


def test_a_reading_counts_memory_in_use_as_what_is_not_available() -> None:
    r = Reading.of(12.5, 4 * GIB, 16 * GIB, 8)
    assert r == Reading(12.5, 75.0, 4 * GIB, 16 * GIB, 8)
    assert Reading.of(None, 0, 0, 0) == Reading(None, 100.0, 0, 0, 1)  # nothing known: full, one core


CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
Memory = namedtuple("Memory", "available total")


class FakePs:
    """psutil as the sampler uses it: CPU times and memory set by the test."""

    def __init__(self) -> None:
        self.busy = 0.0
        self.idle = 0.0
        self.available = 8 * GIB

    def cpu_count(self) -> int:
        return 2

    def cpu_times(self) -> CpuTimes:
        # A guest's time is in user already (Linux): it must not count twice.
        return CpuTimes(self.busy, 0.0, 0.0, self.idle, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0)

    def virtual_memory(self) -> Memory:
        return Memory(self.available, 16 * GIB)


def test_the_sampler_measures_cpu_as_a_rate_from_the_second_reading_over_a_long_enough_stretch() -> None:
    ps = FakePs()
    sampler = PsutilSampler(ps)
    assert sampler.read() == Reading(None, 50.0, 8 * GIB, 16 * GIB, 2)  # a rate: unknown at first
    ps.busy, ps.idle = 0.05, 0.05  # 0.1 s of two cores' time: too short to tell
    assert sampler.read().cpu is None
    ps.busy, ps.idle = 1.5, 0.5  # since the first: 1.5 of 2 s busy
    assert sampler.read().cpu == pytest.approx(75.0)
    ps.busy, ps.idle = 1.55, 0.55
    assert sampler.read().cpu == pytest.approx(75.0)  # too short again: the last figure
    ps.busy, ps.idle, ps.available = 1.5 + 0.5, 0.5 + 1.5, 4 * GIB  # the next 2 s: 0.5 busy
    assert sampler.read() == Reading(pytest.approx(25.0), 75.0, 4 * GIB, 16 * GIB, 2)


def test_the_default_sampler_reads_this_machine() -> None:
    sampler = PsutilSampler()
    first = sampler.read()
    assert first.cores >= 1
    assert 0 < first.available <= first.total
    assert 0.0 <= first.memory <= 100.0


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"cpu": 150}, "the cpu limit must be more than 0% and at most 100%, got 150%"),
        ({"memory": 0}, "the memory limit must be more than 0% and at most 100%, got 0%"),
        ({"cpu": "85%"}, "the cpu limit must be a percentage, got '85%'"),
        ({"memory": True}, "the memory limit must be a percentage, got True"),
    ],
)
def test_limits_are_percentages_above_0_up_to_100(limits: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        Limits(**limits)


def test_limits_say_which_are_set() -> None:
    assert not Limits()
    assert Limits(memory=1).items() == [("memory", 1)]
    assert Limits(85, 90).items() == [("cpu", 85), ("memory", 90)]


@pytest.mark.parametrize(
    ("needs", "message"),
    [
        ({"memory": 0}, "field 'memory': must be at least 1, got 0"),
        ({"memory": 1.5}, "field 'memory': must be an integer, got 1.5"),
        ({"cpus": -1}, "field 'cpus': must be at least 0, got -1"),
        ({"cpus": 0}, "field 'cpus': must be more than 0 cores, got 0"),
        ({"cpus": float("inf")}, "field 'cpus': must be more than 0 cores, got inf"),
    ],
)
def test_a_task_declares_positive_needs(needs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTaskError, match=message):
        task(**needs)


def test_a_need_bigger_than_the_machine_never_fits() -> None:
    machine = reading()
    assert never_fits(task(memory=TOTAL, cpus=CORES), machine) is None
    assert never_fits(task(memory=TOTAL + 1), machine) == (
        "memory",
        "needs 16.0 GiB of memory; this machine has 16.0 GiB in all",
    )
    assert never_fits(task(cpus=4.5), machine) == ("cpus", "needs 4.5 cpus; this machine has 4")


# --- limits: the window and the hysteresis --------------------------------------------------


def test_above_a_limit_holds_new_tasks_until_the_mean_falls_below_the_band() -> None:
    rule = MachineRule(Limits(memory=90))
    assert feed(rule, reading(memory=93)) == [False]
    assert rule.holding
    assert limit_text(rule) == "memory 93% > 90%"
    feed(rule, reading(memory=88), reading(memory=86), start=1.0)  # mean 89: under the limit, in the band
    assert rule.holding
    assert limit_text(rule) == "memory 89% (was over 90%: waits until below 85%)"
    assert feed(rule, reading(memory=80), start=3.0) == [True]  # mean of 88, 86, 80: 84.7
    assert not rule.holding
    assert limit_text(rule) is None


def test_a_spike_shorter_than_the_window_does_not_hold() -> None:
    rule = MachineRule(Limits(cpu=85))
    feed(rule, reading(cpu=40), reading(cpu=100), reading(cpu=40), reading(cpu=45))
    assert not rule.holding  # the window's mean never passed 60
    feed(rule, reading(cpu=100), reading(cpu=100), start=4.0)  # mean of 45, 100, 100: 81.7
    assert not rule.holding
    feed(rule, reading(cpu=100), start=6.0)  # a third second: 100
    assert rule.holding


def test_readings_of_another_time_leave_the_window() -> None:
    rule = MachineRule(Limits(memory=90))
    feed(rule, reading(memory=99), reading(memory=99))
    assert rule.holding
    feed(rule, reading(memory=70), start=60.0)  # the queue was idle a minute: the old ones are stale
    assert rule.memory == pytest.approx(70.0)
    assert not rule.holding


def test_cpu_is_not_known_from_one_reading_and_a_cpu_limit_holds_until_it_is() -> None:
    rule = MachineRule(Limits(cpu=85, memory=90))
    assert rule.holding  # nothing read yet
    feed(rule, reading(cpu=None))
    assert limit_text(rule) == "cpu not measured yet (limit 85%)"
    assert feed(rule, reading(cpu=50), start=1.0) == [True]  # known and under: no band to pass
    assert not rule.holding


def test_nothing_running_means_nothing_holds() -> None:
    rule = MachineRule(Limits(memory=1))
    feed(rule, reading(memory=50))
    assert rule.holding
    assert rule.closed(running=1)
    assert not rule.closed(running=0)
    assert limit_text(rule, running=0) is None
    big = Entry(task(memory=TOTAL))
    assert list(rule.blockers(big, 0)) == []  # type: ignore[arg-type]


def test_the_next_look_is_a_second_after_the_last() -> None:
    rule = MachineRule(Limits(memory=90))
    assert rule.due(0.0)
    assert rule.next_look is None  # the owner reads as it adds tasks
    feed(rule, reading(), start=5.0)
    assert rule.next_look == 6.0
    assert not rule.due(5.9)
    assert rule.due(6.0)


# --- declared needs -------------------------------------------------------------------------


def test_a_need_must_be_free_beyond_what_the_running_tasks_declared() -> None:
    rule = MachineRule()
    feed(rule, reading(cpu=25, memory=50))  # 8 GiB available, 3 of 4 cores idle
    running = Entry(task("r", memory=5 * GIB, cpus=2))
    rule.take(running)  # type: ignore[arg-type]
    fits = Entry(task("fits", memory=3 * GIB, cpus=1))
    too_big = Entry(task("big", memory=4 * GIB, cpus=1.5))
    assert list(rule.blockers(fits, 1)) == []  # type: ignore[arg-type]
    assert [str(r) for r in rule.blockers(too_big, 1)] == [  # type: ignore[arg-type]
        "needs 4.0 GiB memory, 3.0 GiB free",
        "needs 1.5 cpus, 1.0 idle",
    ]


def test_a_held_task_is_given_back_when_a_task_with_needs_ends_or_the_room_grows() -> None:
    rule = MachineRule()
    feed(rule, reading(memory=50))
    first = Entry(task("first", memory=6 * GIB))
    rule.take(first)  # type: ignore[arg-type]
    waiting = Entry(task("waiting", memory=4 * GIB))
    (reason,) = rule.blockers(waiting, 1)  # type: ignore[arg-type]
    assert str(reason) == "needs 4.0 GiB memory, 2.0 GiB free"
    rule.hold(waiting, reason)  # type: ignore[arg-type]
    plain = Entry(task("plain"))
    assert rule.let_go(plain, running=1) == []  # type: ignore[arg-type]  # declared nothing: no more room
    assert feed(rule, reading(memory=50), start=1.0) == [False]  # the same room
    assert feed(rule, reading(memory=40), start=2.0) == [True]  # more available: it may fit now
    assert rule.give_back() == [waiting]
    assert rule.give_back() == []  # once
    rule.hold(waiting, reason)  # type: ignore[arg-type]
    assert rule.let_go(first, running=0) == [waiting]  # type: ignore[arg-type]


def test_a_held_task_cancelled_meanwhile_is_not_given_back() -> None:
    rule = MachineRule()
    entry = Entry(task(memory=GIB))
    rule.hold(entry, WaitReason("need", resource="memory", measured=0.0, bound=GIB))  # type: ignore[arg-type]
    entry.state = TaskState.CANCELLED
    assert rule.give_back() == []


def test_a_rule_checks_that_needs_could_ever_fit_once_it_has_a_reading() -> None:
    rule = MachineRule()
    rule.check(task(memory=TOTAL + GIB))  # nothing read: cannot tell
    feed(rule, reading())
    with pytest.raises(InvalidTaskError) as error:
        rule.check(task(memory=TOTAL + GIB))
    assert str(error.value) == "task 't', field 'memory': needs 17.0 GiB of memory; this machine has 16.0 GiB in all"


# --- max_parallel="auto" --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cores", "available", "total", "start", "most"),
    [
        (8, 30 * GIB, 32 * GIB, 8, 8),  # the cores bound it
        (8, 5 * GIB, 32 * GIB, 2, 8),  # the memory available now: 2 GiB a task
        (16, 7 * GIB, 8 * GIB, 3, 4),
        (2, GIB, 4 * GIB, 1, 2),  # never below 1
    ],
)
def test_auto_starts_at_what_the_cores_and_the_available_memory_allow(
    cores: int, available: int, total: int, start: int, most: int
) -> None:
    auto = AutoParallel.for_machine(Reading.of(10.0, available, total, cores))
    assert (auto.start, auto.most_allowed, auto.least, auto.most) == (start, most, start, start)


def adjusted(auto: AutoParallel, slot: Slot, *readings: Reading, start: float) -> list[int]:
    rule = MachineRule(auto=auto)
    sizes = []
    for i, r in enumerate(readings):
        rule.observe(r, start + i * 5.0, slot)
        sizes.append(slot.capacity)
    return sizes


def test_auto_moves_one_slot_every_5s_down_when_busy_up_when_free_and_every_slot_is_used() -> None:
    auto = AutoParallel(2, 3)
    slot = Slot("max_parallel", 2)
    busy, free = reading(cpu=95), reading(cpu=20, memory=40)
    assert adjusted(auto, slot, busy, busy, busy, busy, start=0.0) == [2, 1, 1, 1]  # never below 1
    assert adjusted(auto, slot, free, free, start=20.0) == [1, 1]  # free, but its one slot is not in use
    slot.take("t1")
    assert adjusted(auto, slot, free, free, start=30.0) == [2, 2]  # every slot in use: one more; then one idle
    slot.take("t2")
    assert adjusted(auto, slot, free, free, start=40.0) == [3, 3]  # up to most_allowed, no further
    assert (auto.least, auto.most) == (1, 3)


def test_lowered_below_what_runs_the_slot_admits_nothing_until_enough_have_ended() -> None:
    slot = Slot("max_parallel", 3)
    for holder in ("a", "b", "c"):
        slot.take(holder)
    slot.resize(1)
    assert slot.full
    slot.release("a")
    assert slot.full  # 2 still hold a unit of 1
    slot.release("b")
    assert slot.full
    slot.release("c")
    assert not slot.full
