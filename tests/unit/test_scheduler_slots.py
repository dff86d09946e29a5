"""Slots: named counted capacities, alone and as the scheduler's ``max_parallel`` and agent types."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

import pytest

from queue_core.claims import Access, Claim
from queue_core.errors import AgentAlreadyRunningError, CapacityError, InvalidArgumentError
from queue_core.scheduler import Scheduler, TaskEntry
from queue_core.slots import Slot, WeightedSlot
from queue_core.task import AgentTask, TaskState

# --- the slot alone -----------------------------------------------------------------------------


def test_a_slot_of_two_admits_two_holders_and_is_full_with_them() -> None:
    slot = Slot("agent:dev", 2)
    assert not slot.full
    slot.take("t1")
    assert not slot.full  # one unit is left
    slot.take("t2")
    assert slot.full
    assert slot.holders == ("t1", "t2")
    assert len(slot) == 2


def test_a_slot_of_one_is_full_with_one_holder() -> None:
    slot = Slot("agent:dev", 1)
    slot.take("t1")
    assert slot.full


def test_the_first_holder_is_the_one_that_has_held_longest() -> None:
    slot = Slot("agent:dev", 2)
    assert slot.first is None
    slot.take("t2")
    slot.take("t1")
    assert slot.first == "t2"  # the order taken, not the names'
    slot.release("t2")
    slot.take("t3")
    assert slot.first == "t1"
    assert slot.holders == ("t1", "t3")


def test_a_released_unit_makes_room_again() -> None:
    slot = Slot("max_parallel", 2)
    slot.take("t1")
    slot.take("t2")
    slot.release("t1")
    assert not slot.full
    assert slot.holders == ("t2",)


def test_holders_it_could_not_refuse_keep_it_full_until_enough_let_go() -> None:
    slot = Slot("agent:dev", 1)
    slot.take("here")
    slot.take("elsewhere")  # another process runs it whatever this one decides
    assert len(slot) == 2
    slot.release("here")
    assert slot.full
    slot.release("elsewhere")
    assert not slot.full


def test_a_holder_takes_one_unit_only() -> None:
    slot = Slot("agent:dev", 2)
    slot.take("t1")
    with pytest.raises(InvalidArgumentError, match="'t1' already holds a unit of agent:dev"):
        slot.take("t1")
    assert slot.holders == ("t1",)


def test_releasing_what_is_not_held_raises() -> None:
    slot = Slot("agent:dev", 1)
    with pytest.raises(KeyError):
        slot.release("t1")


def test_repr_names_the_slot_its_count_and_holders() -> None:
    slot = Slot("agent:dev", 2)
    slot.take("t1")
    assert repr(slot) == "Slot('agent:dev', 1/2, holders=['t1'])"


def test_a_holder_of_a_weighted_slot_may_take_several_units() -> None:
    slot = WeightedSlot("pool:gpu", 3)
    slot.take("t1", 2)
    assert slot.used == 2
    assert not slot.full
    assert slot.room(1)
    assert not slot.room(2)  # not full, yet no room for two
    slot.take("t2")
    assert slot.full
    assert slot.units_of("t1") == 2
    assert slot.units_of("t3") == 0
    slot.release("t1")
    assert slot.used == 1
    assert slot.room(2)
    assert repr(slot) == "WeightedSlot('pool:gpu', 1/3, holders=['t2'])"


def test_a_one_unit_slot_answers_as_a_weighted_one_does() -> None:
    slot = Slot("agent:dev", 2)
    slot.take("t1")
    assert (slot.used, slot.units_of("t1"), slot.units_of("t2"), slot.room(1), slot.room(2)) == (1, 1, 0, True, False)


def test_units_it_could_not_refuse_count_past_its_capacity() -> None:
    slot = WeightedSlot("pool:api", 2)
    slot.take("elsewhere", 3)  # another run, which declared a pool of 3
    assert slot.used == 3
    assert not slot.room(1)
    slot.take("here")
    slot.release("elsewhere")
    assert slot.used == 1
    assert slot.room(1)


# --- the scheduler's slots ------------------------------------------------------------------------


def _noop() -> None:
    """The execute_fn of every task here; the scheduler never calls it."""


def task(tid: str, agent: str, files: Sequence[str] | None = None) -> AgentTask:
    """A task of ``agent`` that writes ``files``, its own file ``<tid>.py`` unless told."""
    return AgentTask(agent, f"do {tid}", [f"{tid}.py"] if files is None else list(files), _noop, id=tid)


def make(max_parallel: int = 4, instances: Mapping[str, int] | None = None) -> Scheduler:
    return Scheduler(max_parallel, rng=random.Random(0), max_bypass=0, instances=instances)


def ids(entries: Iterable[TaskEntry]) -> list[str]:
    return [e.id for e in entries]


def reason(sched: Scheduler, tid: str) -> str:
    return str(sched.wait_reason(sched.entry(tid)))


def claims(path: str) -> tuple[tuple[Claim, Access], ...]:
    return ((Claim.parse(path), Access.WRITE),)


def test_an_agent_of_two_instances_runs_two_tasks_and_the_third_waits_for_the_longest_holder() -> None:
    sched = make(instances={"dev": 2})
    for tid in ("t1", "t2", "t3"):
        sched.add(task(tid, "dev"), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2"]
    assert reason(sched, "t3") == "dev busy (t1)"
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t3"]
    sched.add(task("t4", "dev"), 1.0)
    assert ids(sched.dispatch(1.0)) == []
    assert reason(sched, "t4") == "dev busy (t2)"  # t2 has held its unit longest now


def test_an_agent_with_one_instance_left_starts_one_more_task() -> None:
    sched = make(instances={"dev": 2})
    sched.add(task("t1", "dev"), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1"]
    sched.add_batch([task("t2", "dev"), task("t3", "dev")], 1.0)
    assert ids(sched.dispatch(1.0)) == ["t2"]
    assert reason(sched, "t3") == "dev busy (t1)"


def test_instances_of_one_agent_leave_the_others_one_at_a_time() -> None:
    sched = make(instances={"dev": 3})
    sched.add_batch([task("o1", "ops"), task("o2", "ops"), task("d1", "dev"), task("d2", "dev")], 0.0)
    assert ids(sched.dispatch(0.0)) == ["o1", "d1", "d2"]
    assert reason(sched, "o2") == "ops busy (o1)"


def test_instances_of_one_agent_never_share_a_claim() -> None:
    sched = make(instances={"dev": 2})
    sched.add_batch([task("t1", "dev", ["src/"]), task("t2", "dev", ["src/a.py"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1"]
    assert reason(sched, "t2") == "src/a.py overlaps src/ held by dev (t1)"


def test_max_parallel_caps_the_instances_of_an_agent() -> None:
    sched = make(max_parallel=2, instances={"dev": 3})
    sched.add_batch([task("t1", "dev"), task("t2", "dev"), task("t3", "dev")], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2"]
    assert reason(sched, "t3") == "max_parallel (2) reached"
    with pytest.raises(CapacityError):
        sched.try_start(task("t4", "dev"), 0.0)


def test_try_start_takes_a_free_instance_and_names_the_longest_holder_when_there_is_none() -> None:
    sched = make(instances={"dev": 2})
    sched.try_start(task("t1", "dev"), 0.0)
    assert ids(sched.running) == ["t1"]
    sched.try_start(task("t2", "dev"), 0.0)
    with pytest.raises(AgentAlreadyRunningError, match="already running task 't1'") as error:
        sched.try_start(task("t3", "dev"), 0.0)
    assert error.value.holder == "t1"
    assert ids(sched.running) == ["t1", "t2"]


def test_a_task_of_another_process_takes_a_unit_of_its_agent_here() -> None:
    sched = make(instances={"dev": 2})
    sched.hold_external("x in run other", "dev", claims("other.py"))
    sched.add_batch([task("t1", "dev"), task("t2", "dev")], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1"]
    assert reason(sched, "t2") == "dev busy (x in run other)"
    assert [(e.id, holders) for e, holders in sched.waiting_on_external(4)] == [("t2", {"x in run other"})]
    sched.release_external("x in run other")
    assert ids(sched.dispatch(0.0)) == ["t2"]


def test_tasks_here_that_fill_their_agent_are_what_its_next_task_waits_for_not_another_process() -> None:
    sched = make(instances={"dev": 2})
    sched.add_batch([task("t1", "dev"), task("t2", "dev"), task("t3", "dev")], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2"]
    sched.hold_external("x in run other", "dev", claims("other.py"))  # three holders of two units
    assert sched.waiting_on_external(4) == []  # t3 would wait without x, so it waits for t1 and t2
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == []  # t2 and x still fill it
    assert [(e.id, holders) for e, holders in sched.waiting_on_external(4)] == [("t3", {"x in run other"})]


@pytest.mark.parametrize("count", [0, -1, True, 1.5])
def test_instances_must_be_positive_integers(count: object) -> None:
    with pytest.raises(InvalidArgumentError, match="instances of 'dev' must be a positive integer"):
        Scheduler(4, instances={"dev": count})  # type: ignore[dict-item]
