"""The machine in admission: the scheduler and the engine stepped with scripted readings and a
fake clock, and a TaskQueue driven by a scripted sampler (see queue_core.machine_rule)."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pytest

from queue_core import AgentTask, TaskQueue, TaskState, repo_status
from queue_core import registry_sync as sync_module
from queue_core.engine import Engine, _live_engines
from queue_core.errors import InvalidTaskError, MachineBusyError
from queue_core.machine import GIB, Limits, MachineSampler, Reading
from queue_core.machine_rule import AutoParallel, MachineRule
from queue_core.scheduler import Scheduler

from ..conftest import WAIT
from .test_engine import Alarm, Clock, Handed
from .test_scheduler_slots import ids

CORES = 4
TOTAL = 16 * GIB


def reading(cpu: float | None = 10.0, memory: float = 50.0) -> Reading:
    return Reading.of(cpu, round(TOTAL * (100 - memory) / 100), TOTAL, CORES)


def task(tid: str, **kw: Any) -> AgentTask:
    """A task of its own agent and file: only the machine and max_parallel may stop it."""
    return AgentTask(f"agent-{tid}", f"do {tid}", [f"{tid}.py"], lambda: None, id=tid, **kw)


def reason(sched: Scheduler, tid: str) -> str:
    why = sched.wait_reason(sched.entry(tid))
    assert why is not None
    return str(why)


def limited(limits: Limits, *readings: Reading, max_parallel: int = 4) -> Scheduler:
    sched = Scheduler(max_parallel, machine=MachineRule(limits))
    for i, r in enumerate(readings):
        sched.observe(r, float(i))
    return sched


# --- the scheduler, stepped -----------------------------------------------------------------


def test_above_a_limit_a_run_starts_one_task_at_a_time_and_the_others_are_told_why() -> None:
    sched = limited(Limits(memory=90), reading(memory=93))
    sched.add_batch([task("a"), task("b"), task("c")], 0.0)
    assert ids(sched.dispatch(0.0)) == ["a"]  # nothing ran: one may start, whatever the machine
    assert reason(sched, "b") == "memory 93% > 90%"
    assert sched.wait_reason(sched.entry("b")).kind == "machine"  # type: ignore[union-attr]
    sched.finish("a", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["b"]  # nothing runs again: the next one
    sched.finish("b", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["c"]
    assert sched.unfinished == 1


def test_new_tasks_start_again_once_the_mean_falls_below_the_band() -> None:
    sched = limited(Limits(memory=90), reading(memory=93))
    sched.add_batch([task(t) for t in "abcd"], 0.0)
    assert ids(sched.dispatch(0.0)) == ["a"]
    assert not sched.observe(reading(memory=87), 1.0)  # mean 90, not over it: not yet under 85
    assert ids(sched.dispatch(1.0)) == []
    assert reason(sched, "b") == "memory 90% (was over 90%: waits until below 85%)"
    assert sched.observe(reading(memory=70), 2.0)  # mean 83: released; a dispatch is due
    assert ids(sched.dispatch(2.0)) == ["b", "c", "d"]


def test_a_spike_shorter_than_the_window_holds_nothing() -> None:
    sched = limited(Limits(cpu=85), reading(cpu=40))
    sched.add_batch([task(t) for t in "abc"], 0.0)
    assert ids(sched.dispatch(0.0)) == ["a", "b", "c"]
    sched.add(task("d"), 1.0)
    sched.observe(reading(cpu=100), 1.0)  # one second at 100%: the mean is 70
    assert ids(sched.dispatch(1.0)) == ["d"]


def test_max_parallel_and_a_limit_are_both_named_a_limit_first() -> None:
    sched = limited(Limits(cpu=50), reading(cpu=99), max_parallel=1)
    sched.add_batch([task("a"), task("b")], 0.0)
    sched.dispatch(0.0)
    assert reason(sched, "b") == "cpu 99% > 50%; max_parallel (1) reached"


def test_try_start_says_what_of_the_machine_refuses() -> None:
    sched = limited(Limits(memory=90), reading(memory=95))
    sched.try_start(task("first"), 0.0)  # nothing runs: allowed
    with pytest.raises(MachineBusyError, match=r"memory 95% > 90%"):
        sched.try_start(task("second"), 0.0)
    assert [e.id for e in sched.entries()] == ["first"]


def test_a_task_with_needs_waits_for_room_and_starts_when_a_task_with_needs_ends() -> None:
    sched = Scheduler(4)
    sched.observe(reading(cpu=0.0, memory=50), 0.0)  # 8 GiB available, 4 idle cores
    sched.add_batch(
        [
            task("big", memory=6 * GIB),
            task("second", memory=3 * GIB),
            task("plain"),
            task("cores", cpus=4),
        ],
        0.0,
    )
    assert ids(sched.dispatch(0.0)) == ["big", "plain", "cores"]  # second does not fit beside big
    assert reason(sched, "second") == "needs 3.0 GiB memory, 2.0 GiB free"
    sched.finish("plain", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == []  # plain declared nothing: no more room than before
    sched.finish("big", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["second"]


def test_a_task_held_for_its_needs_starts_when_a_reading_shows_room() -> None:
    sched = Scheduler(4)
    sched.observe(reading(memory=80), 0.0)  # 3.2 GiB available
    sched.add_batch([task("first", memory=2 * GIB), task("second", memory=2 * GIB)], 0.0)
    assert ids(sched.dispatch(0.0)) == ["first"]
    assert not sched.observe(reading(memory=80), 1.0)  # the same room: no dispatch due
    assert sched.observe(reading(memory=20), 2.0)  # mean available 8.5 GiB: second may fit
    assert ids(sched.dispatch(2.0)) == ["second"]


def test_a_need_bigger_than_the_machine_is_refused_when_added_and_nothing_is_added() -> None:
    sched = Scheduler(2)
    sched.observe(reading(), 0.0)
    with pytest.raises(InvalidTaskError, match=r"field 'cpus': needs 5 cpus; this machine has 4"):
        sched.add_batch([task("ok", cpus=1), task("huge", cpus=5)], 0.0)
    assert list(sched.entries()) == []


def test_a_scheduler_without_limits_or_needs_has_no_machine_rule() -> None:
    sched = Scheduler(2)
    sched.add(task("a"), 0.0)
    assert sched.machine is None
    sched.add(task("b", memory=GIB), 0.0)
    assert sched.machine is not None  # a task declared needs: judged from now on


def test_auto_lowered_below_what_runs_admits_nothing_until_enough_end() -> None:
    auto = AutoParallel(3, 3, every=5.0)
    sched = Scheduler(3, machine=MachineRule(auto=auto))
    sched.observe(reading(cpu=20), 0.0)
    sched.add_batch([task(t) for t in "abcde"], 0.0)
    assert ids(sched.dispatch(0.0)) == ["a", "b", "c"]
    for second in range(1, 11):  # busy for 10 s: two steps down, 5 s apart
        sched.observe(reading(cpu=97), float(second))
    assert sched.max_parallel == 1
    assert [e.id for e in sched.running] == ["a", "b", "c"]  # a change stops no running task
    sched.finish("a", TaskState.SUCCEEDED, 11.0)
    assert ids(sched.dispatch(11.0)) == []
    assert reason(sched, "d") == "max_parallel (1) reached"
    sched.finish("b", TaskState.SUCCEEDED, 12.0)
    sched.finish("c", TaskState.SUCCEEDED, 12.0)
    assert ids(sched.dispatch(12.0)) == ["d"]


def test_auto_raised_starts_more_at_once() -> None:
    auto = AutoParallel(1, 2, every=5.0)
    sched = Scheduler(1, machine=MachineRule(auto=auto))
    sched.observe(reading(cpu=20, memory=30), 0.0)
    sched.add_batch([task("a"), task("b")], 0.0)
    assert ids(sched.dispatch(0.0)) == ["a"]
    assert sched.observe(reading(cpu=20, memory=30), 5.0)  # free, every slot in use: one more
    assert ids(sched.dispatch(5.0)) == ["b"]


# --- the engine, stepped: the machine is read at submit, then on the timer --------------------


class Scripted:
    """A sampler that gives the readings it was given, in turn, the last one ever after."""

    def __init__(self, *readings: Reading) -> None:
        self.readings = list(readings)
        self.reads = 0

    def read(self) -> Reading:
        self.reads += 1
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def stepped(sched: Scheduler, sampler: MachineSampler) -> tuple[Engine, Clock, Handed]:
    clock, executor, timer = Clock(), Handed(), Alarm()
    engine = Engine(sched, clock, executor=lambda _: executor, timer=lambda _: timer, machine=sampler)
    _live_engines.discard(engine)
    return engine, clock, executor


def test_the_engine_reads_the_machine_each_second_while_tasks_wait_and_starts_them_when_it_frees() -> None:
    sampler = Scripted(reading(memory=95), reading(memory=95), reading(memory=60), reading(memory=60))
    engine, clock, executor = stepped(Scheduler(4, machine=MachineRule(Limits(memory=90))), sampler)
    engine.submit([task("a"), task("b")])
    assert executor.ids() == ["a"]
    assert sampler.reads == 1  # read as the tasks came
    assert engine.tick() == pytest.approx(1.0)  # not due yet: the next look in a second, no busy loop
    assert sampler.reads == 1
    clock.now = 1.0
    assert engine.tick() == pytest.approx(1.0)
    assert executor.ids() == ["a"]  # the mean is still 95
    clock.now = 2.0
    engine.tick()  # 95, 95, 60: a mean of 83.3, under 85
    assert executor.ids() == ["a", "b"]
    assert sampler.reads == 3
    for tid in ("a", "b"):
        entry = engine.sched.entry(tid)
        assert engine.begin(entry)
        engine.end(entry, True)
    assert engine.tick() == math.inf  # nothing unfinished: the machine is not read any more
    assert sampler.reads == 3


def test_an_engine_whose_tasks_ask_nothing_of_the_machine_never_reads_it() -> None:
    sampler = Scripted(reading())
    engine, _, executor = stepped(Scheduler(2), sampler)
    engine.submit([task("a"), task("b")])
    assert executor.ids() == ["a", "b"]
    assert engine.tick() == math.inf
    assert sampler.reads == 0


def test_a_task_with_needs_makes_the_engine_read_the_machine_and_check_them_first() -> None:
    sampler = Scripted(reading(memory=50))
    engine, _, executor = stepped(Scheduler(2), sampler)
    with pytest.raises(InvalidTaskError, match=r"needs 32\.0 GiB of memory; this machine has 16\.0 GiB in all"):
        engine.submit([task("a", memory=32 * GIB)])
    engine.submit([task("b", memory=6 * GIB), task("c", memory=6 * GIB)])
    assert executor.ids() == ["b"]  # 8 GiB available: c does not fit beside b
    assert sampler.reads == 1
    assert engine.tick() == pytest.approx(1.0)


class Broken:
    """A sampler that cannot read the machine."""

    reads = 0

    def read(self) -> Reading:
        self.reads += 1
        raise OSError("no /proc here")


def test_a_sampler_that_fails_is_logged_and_asked_again_a_second_later(caplog: pytest.LogCaptureFixture) -> None:
    sampler = Broken()
    engine, clock, executor = stepped(Scheduler(4, machine=MachineRule(Limits(memory=90))), sampler)
    engine.submit([task("a"), task("b")])
    assert executor.ids() == ["a"]  # nothing read: the limit is not known to be kept, one runs
    assert "the machine could not be read" in caplog.text
    assert engine.tick() == pytest.approx(1.0)  # not at once again: no spin
    clock.now = 1.0
    engine.tick()
    assert sampler.reads == 2


# --- a TaskQueue with a scripted sampler ----------------------------------------------------


def test_a_queue_says_why_a_task_waits_for_the_machine_in_its_status() -> None:
    release = threading.Event()
    with TaskQueue(4, machine=Scripted(reading(memory=93)), limits=Limits(memory=90)) as queue:
        first = queue.submit_task(AgentTask("agent-a", "do a", ["a.py"], lambda: release.wait(WAIT), id="a"))
        second = queue.submit_task(task("b"))
        status = queue.get_status()
        assert [w.reason for w in status.waiting] == ["memory 93% > 90%"]
        assert [w.reason_kind for w in status.waiting] == ["machine"]
        release.set()
        assert first.result(WAIT) is True
        assert second.result(WAIT) is None  # started once a ended: nothing ran


def test_a_queue_with_max_parallel_auto_takes_its_count_from_the_machine() -> None:
    machine = Scripted(Reading.of(10.0, 5 * GIB, 32 * GIB, 8))
    with TaskQueue("auto", machine=machine) as queue:
        assert queue.max_parallel == 2  # 5 GiB available: 2 GiB a task
        auto = queue.auto_parallel()
        assert auto is not None
        assert (auto.start, auto.most_allowed) == (2, 8)
    assert TaskQueue(2).auto_parallel() is None


def test_status_from_another_process_reads_a_machine_wait_from_the_runs_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module, "RECORD_INTERVAL_S", 0.0)  # every step writes the record
    release = threading.Event()
    limits = Limits(cpu=80)
    with TaskQueue(2, repo=tmp_path, machine=Scripted(reading(cpu=97)), limits=limits) as queue:
        queue.submit_task(AgentTask("a", "holds", ["a.py"], lambda: release.wait(WAIT), id="a"))
        queue.submit_task(AgentTask("b", "waits", ["b.py"], lambda: None, id="b"))
        [run] = repo_status(tmp_path).runs
        [waiting] = run.waiting
        assert (waiting.id, waiting.reason, waiting.reason_kind) == ("b", "cpu 97% > 80%", "machine")
        release.set()
        assert queue.join(WAIT)
