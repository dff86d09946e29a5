"""Quota pools: what a task and a queue accept, and the admission rule stepped in virtual time
(units, several pools, holders elsewhere, the reservation against starvation)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from queue_core import TaskQueue
from queue_core.errors import InvalidArgumentError, InvalidTaskError, PoolFullError
from queue_core.scheduler import Scheduler
from queue_core.task import AgentTask, TaskState

from ..conftest import WAIT, Gate, wait_for
from .test_scheduler_slots import claims, ids, reason


def _noop() -> None:
    """The execute_fn of every task here; the scheduler never calls it."""


def task(
    tid: str, agent: str, pools: Mapping[str, int] | Sequence[str] = (), files: Sequence[str] | None = None
) -> AgentTask:
    """A task of ``agent`` taking ``pools``, writing its own file ``<tid>.py`` unless told."""
    return AgentTask(agent, f"do {tid}", [f"{tid}.py"] if files is None else list(files), _noop, id=tid, pools=pools)


def make(pools: Mapping[str, int], max_parallel: int = 8, max_bypass: int = 4) -> Scheduler:
    return Scheduler(max_parallel, rng=random.Random(0), max_bypass=max_bypass, pools=pools)


# --- what a task and a queue accept ---------------------------------------------------------------


def test_a_task_takes_pools_as_a_mapping_of_units_or_a_list_of_names() -> None:
    assert task("t1", "a", {"api": 2, "gpu": 1}).pools == {"api": 2, "gpu": 1}
    listed = task("t2", "a", ["api", "gpu"])
    assert listed.pools == {"api": 1, "gpu": 1}
    assert listed.pool_units == (("api", 1), ("gpu", 1))
    assert task("t3", "a").pools == {}


@pytest.mark.parametrize(
    ("pools", "message"),
    [
        ("api", "expected pool names, or a mapping of pool names to units, got str"),
        (["api", "api"], "pool 'api' is named twice"),
        ({"api": 0}, "the units of pool 'api' must be a positive integer, got 0"),
        ({"api": True}, "the units of pool 'api' must be a positive integer, got True"),
        ({"api": 1.5}, "the units of pool 'api' must be a positive integer, got 1.5"),
        ({"a b": 1}, "a pool name is 1 to 100 letters, digits, '.', '_' or '-', not starting with '.', got 'a b'"),
        ([3], "a pool name is a string, got 3"),
    ],
)
def test_a_task_refuses_pools_that_are_not_names_with_positive_units(pools: object, message: str) -> None:
    with pytest.raises(InvalidTaskError) as info:
        task("t1", "a", pools)  # type: ignore[arg-type]
    assert (info.value.task_id, info.value.field) == ("t1", "pools")
    assert str(info.value) == f"task 't1', field 'pools': {message}"


@pytest.mark.parametrize(
    ("pools", "message"),
    [
        ({"api": 0}, "pool 'api' must be a positive integer of units, got 0"),
        ({"api": True}, "pool 'api' must be a positive integer of units, got True"),
        ({".api": 1}, "a pool name is 1 to 100 letters, digits, '.', '_' or '-', not starting with '.', got '.api'"),
        (["api"], "pools must map pool names to units, got list"),
    ],
)
def test_a_queue_refuses_pools_that_are_not_names_with_positive_capacities(pools: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        Scheduler(2, pools=pools)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_a_task_taking_an_undeclared_pool_is_refused_at_submit_naming_it() -> None:
    sched = make({"api": 2})
    with pytest.raises(InvalidTaskError) as info:
        sched.add(task("t1", "a", {"gpu": 1}), 0.0)
    assert str(info.value) == "task 't1', field 'pools': pool 'gpu' is not declared (pools: api)"
    with pytest.raises(InvalidTaskError, match=r"pool 'api' is not declared \(pools: none\)"):
        make({}).add(task("t1", "a", ["api"]), 0.0)
    assert sched.unfinished == 0


def test_a_task_taking_more_units_than_its_pool_has_is_refused_and_its_batch_with_it() -> None:
    sched = make({"api": 2})
    with pytest.raises(InvalidTaskError, match="field 'pools': takes 3 units of pool 'api', which has 2"):
        sched.add_batch([task("t1", "a", ["api"]), task("t2", "b", {"api": 3})], 0.0)
    assert sched.unfinished == 0
    with pytest.raises(InvalidTaskError, match="takes 3 units"):
        sched.try_start(task("t3", "a", {"api": 3}), 0.0)


# --- the rule, stepped ------------------------------------------------------------------------------


def test_a_pool_of_two_runs_two_of_its_tasks_and_the_third_waits_for_a_unit() -> None:
    sched = make({"api": 2})
    sched.add_batch([task("t1", "a", ["api"]), task("t2", "b", ["api"]), task("t3", "c", ["api"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2"]
    assert reason(sched, "t3") == "pool api full (2/2)"
    waiting = sched.wait_reason(sched.entry("t3"))
    assert waiting is not None
    assert (waiting.kind, waiting.holder, waiting.pool) == ("pool", "t1", "api")
    sched.finish("t2", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t3"]


def test_tasks_without_pools_run_beside_a_full_pool() -> None:
    sched = make({"api": 1})
    sched.add_batch([task("t1", "a", ["api"]), task("t2", "b", ["api"]), task("t3", "c")], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t3"]


def test_units_count_and_a_smaller_later_task_fills_what_a_bigger_one_cannot() -> None:
    sched = make({"gpu": 3})
    sched.add_batch([task("g1", "a", {"gpu": 2}), task("g2", "b", {"gpu": 2}), task("g3", "c", {"gpu": 1})], 0.0)
    assert ids(sched.dispatch(0.0)) == ["g1", "g3"]
    assert reason(sched, "g2") == "pool gpu full (3/3, needs 2)"
    sched.finish("g3", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == []  # one unit free: g2 needs two
    assert reason(sched, "g2") == "pool gpu full (2/3, needs 2)"
    sched.finish("g1", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["g2"]


def test_a_task_of_several_pools_needs_room_in_each() -> None:
    sched = make({"api": 2, "gpu": 1})
    sched.add_batch([task("t1", "a", ["api", "gpu"]), task("t2", "b", ["gpu"]), task("t3", "c", ["api"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t3"]
    assert reason(sched, "t2") == "pool gpu full (1/1)"
    sched.add(task("t4", "d", ["api", "gpu"]), 0.0)
    assert ids(sched.dispatch(0.0)) == []
    assert reason(sched, "t4") == "pool api full (2/2); pool gpu full (1/1)"  # each blocker named
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t2"]
    assert reason(sched, "t4") == "pool gpu full (1/1)"


def test_a_freed_unit_goes_to_the_best_ranked_waiter_not_to_a_later_task() -> None:
    sched = make({"api": 1})
    sched.add(task("t1", "a", ["api"]), 0.0)
    sched.dispatch(0.0)
    sched.add(task("low", "b", ["api"]), 0.0)
    sched.dispatch(0.0)
    urgent = AgentTask("c", "urgent", ["u.py"], _noop, 5, id="urgent", pools=["api"])
    sched.add(urgent, 0.0)
    sched.dispatch(0.0)
    sched.add(task("later", "d", ["api"]), 0.0)
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["urgent"]


def test_a_waiter_woken_for_a_unit_that_waits_for_something_else_leaves_the_unit_to_the_next() -> None:
    sched = make({"api": 2})
    t3 = task("t3", "c", ["api"], ["x.py"])
    sched.add_batch([task("t1", "a", ["api"]), task("t2", "b", ["api"]), t3, task("t4", "d", ["api"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2"]
    sched.add(task("x", "e", files=["x.py"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["x"]
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t4"]  # t3, first in line for the unit, waits for x.py
    assert reason(sched, "t3") == "x.py overlaps x.py held by e (x); pool api full (2/2)"


def test_a_cancelled_waiter_leaves_the_pool_to_the_next() -> None:
    sched = make({"api": 1})
    sched.add_batch([task("t1", "a", ["api"]), task("t2", "b", ["api"]), task("t3", "c", ["api"])], 0.0)
    sched.dispatch(0.0)
    sched.cancel("t2", 0.0)
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t3"]


def test_a_retry_and_a_rate_limit_give_their_units_back_while_they_wait() -> None:
    sched = make({"api": 1})
    flaky = AgentTask("a", "flaky", ["f.py"], _noop, id="flaky", pools=["api"], retries=1, retry_jitter=0.0)
    sched.add_batch([flaky, task("t2", "b", ["api"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["flaky"]
    sched.finish("flaky", TaskState.FAILED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t2"]
    sched.finish("t2", TaskState.RATE_LIMITED, 1.5)
    assert ids(sched.dispatch(2.0)) == ["flaky"]  # its retry fell due; b pauses
    assert sched.entry("t2").state is TaskState.QUEUED


def test_try_start_on_a_full_pool_raises_pool_full_naming_the_pool() -> None:
    sched = make({"api": 1})
    sched.try_start(task("t1", "a", ["api"]), 0.0)
    with pytest.raises(PoolFullError) as info:
        sched.try_start(task("t2", "b", ["api"]), 0.0)
    error = info.value
    assert (error.pool, error.used, error.capacity, error.units, error.reserved_for) == ("api", 1, 1, 1, None)
    assert str(error) == "pool 'api' is full (1 of 1 units in use)"
    assert ids(sched.running) == ["t1"]


def test_max_parallel_still_caps_tasks_whose_pools_have_room() -> None:
    sched = make({"api": 4}, max_parallel=2)
    sched.add_batch([task(f"t{i}", f"a{i}", ["api"]) for i in range(3)], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t0", "t1"]
    assert reason(sched, "t2") == "max_parallel (2) reached"


# --- against starvation ------------------------------------------------------------------------------


def test_a_big_task_is_not_starved_by_a_stream_of_small_ones() -> None:
    """A task needing both units of a pool would wait for ever while one-unit tasks keep one of
    them taken; after max_bypass of them started, the pool is reserved for it."""
    sched = make({"api": 2}, max_bypass=2)
    sched.add(task("s0", "a", ["api"]), 0.0)
    sched.dispatch(0.0)
    sched.add(task("big", "b", {"api": 2}), 0.0)
    running = ["s0"]
    for i in range(1, 10):
        sched.add(task(f"s{i}", "c" if i % 2 else "d", ["api"]), float(i))
        started = ids(sched.dispatch(float(i)))
        running += started
        if "big" in running:
            break
        sched.finish(running.pop(0), TaskState.SUCCEEDED, i + 0.5)
        running += ids(sched.dispatch(i + 0.5))
        if "big" in running:
            break
    assert "big" in running, "the task needing both units never started"
    assert i <= 4


def test_a_reserved_pool_holds_back_later_tasks_that_take_it_and_says_so() -> None:
    sched = make({"api": 2}, max_bypass=0)
    sched.add(task("t1", "a", ["api"]), 0.0)
    sched.dispatch(0.0)
    sched.add_batch([task("big", "b", {"api": 2}), task("small", "c", ["api"]), task("other", "d")], 0.0)
    assert ids(sched.dispatch(0.0)) == ["other"]
    assert reason(sched, "big") == "pool api full (1/2, needs 2)"
    assert reason(sched, "small") == "pool api, reserved for big (waiting longest)"
    with pytest.raises(PoolFullError, match="pool 'api' is reserved for task 'big', which has waited longest"):
        sched.try_start(task("late", "e", ["api"]), 0.0)
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["big"]
    assert reason(sched, "small") == "pool api full (2/2)"


def test_a_pool_every_task_takes_does_not_hold_everything_back_for_a_task_waiting_for_a_path() -> None:
    """The reservation of a task that waits for a path takes its agent and paths, not its pools:
    with room in the pool, later tasks of other paths still start."""
    sched = make({"api": 4}, max_bypass=0)
    sched.add(task("holder", "a", ["api"], ["x.py"]), 0.0)
    sched.dispatch(0.0)
    sched.add_batch([task("waits", "b", ["api"], ["x.py"]), task("later", "c", ["api"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["later"]
    assert sched.reserved is not None
    assert sched.reserved.id == "waits"


# --- holders elsewhere ----------------------------------------------------------------------------------


def test_units_held_by_another_process_count_and_the_waiter_is_told_whom_it_waits_for() -> None:
    sched = make({"api": 2})
    sched.hold_external("x in run other", "z", claims("o.py"), pools=(("api", 2),))
    sched.add_batch([task("t1", "a", ["api"]), task("t2", "b")], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t2"]
    waiting = sched.wait_reason(sched.entry("t1"))
    assert waiting is not None
    assert (str(waiting), waiting.holder) == ("pool api full (2/2)", "x in run other")
    assert [(e.id, holders) for e, holders in sched.waiting_on_external(4)] == [("t1", {"x in run other"})]
    sched.release_external("x in run other")
    assert ids(sched.dispatch(0.0)) == ["t1"]


def test_holders_elsewhere_that_declared_a_bigger_pool_keep_it_full_until_enough_let_go() -> None:
    sched = make({"api": 2})
    sched.hold_external("x in run other", "z", claims("o.py"), pools=(("api", 1),))
    sched.hold_external("y in run other", "z2", claims("p.py"), pools=(("api", 2),))  # their pool has 3
    sched.add(task("t1", "a", ["api"]), 0.0)
    assert ids(sched.dispatch(0.0)) == []
    assert reason(sched, "t1") == "pool api full (3/2)"
    sched.release_external("x in run other")
    assert ids(sched.dispatch(0.0)) == []
    sched.release_external("y in run other")
    assert ids(sched.dispatch(0.0)) == ["t1"]


def test_a_pool_not_declared_here_is_not_counted_for_a_holder_elsewhere() -> None:
    sched = make({"api": 1})
    sched.hold_external("x in run other", "z", claims("o.py"), pools=(("gpu", 4),))
    sched.add(task("t1", "a", ["api"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1"]


def test_tasks_here_that_fill_the_pool_are_what_a_waiter_waits_for_not_another_process() -> None:
    sched = make({"api": 2})
    sched.add_batch([task("t1", "a", ["api"]), task("t2", "b", ["api"]), task("t3", "c", ["api"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2"]
    sched.hold_external("x in run other", "z", claims("o.py"), pools=(("api", 1),))
    assert sched.waiting_on_external(4) == []  # without x, t3 would wait all the same
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == []
    assert [(e.id, holders) for e, holders in sched.waiting_on_external(4)] == [("t3", {"x in run other"})]


def test_a_unit_kept_for_a_run_waiting_in_line_ahead_is_named_so() -> None:
    sched = make({"api": 2})
    sched.add(task("t1", "a", ["api"]), 0.0)
    sched.dispatch(0.0)
    ahead = "w in run other, ahead in line"
    sched.hold_external(ahead, "z", claims("o.py"), in_line=True, pools=(("api", 1),))
    sched.add(task("t2", "b", ["api"]), 0.0)
    assert ids(sched.dispatch(0.0)) == []
    waiting = sched.wait_reason(sched.entry("t2"))
    assert waiting is not None
    assert (str(waiting), waiting.holder) == ("pool api full (2/2, 1 kept for a run waiting longer)", ahead)
    sched.release_external(ahead)
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t2"]


# --- through a TaskQueue ---------------------------------------------------------------------------------


def test_a_queue_runs_a_pools_tasks_within_its_units_and_says_why_the_others_wait() -> None:
    gates = [Gate(), Gate(), Gate()]
    with TaskQueue(4, pools={"api": 2}) as queue:
        futures = [
            queue.submit_task(AgentTask(f"agent{i}", f"call {i}", [f"f{i}.py"], gate, id=f"t{i}", pools=["api"]))
            for i, gate in enumerate(gates)
        ]
        wait_for(gates[0].started, "t0 to start")
        wait_for(gates[1].started, "t1 to start")
        waiting = queue.get_status().waiting
        assert [(w.id, w.reason, w.reason_kind, w.blocked_by) for w in waiting] == [
            ("t2", "pool api full (2/2)", "pool", "t0")
        ]
        assert not gates[2].started.is_set()
        gates[0].open()
        wait_for(gates[2].started, "t2 to start once t0 gave its unit back")
        gates[1].open()
        gates[2].open()
        for future in futures:
            future.result(timeout=WAIT)


def test_a_queue_refuses_a_bad_pool_before_it_touches_the_repository(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="pool 'api' must be a positive integer of units, got 0"):
        TaskQueue(2, pools={"api": 0}, repo=tmp_path)
    assert not (tmp_path / ".project-manager").exists()
    with TaskQueue(2, pools={"api": 1}) as queue, pytest.raises(InvalidTaskError, match="pool 'gpu' is not declared"):
        queue.submit_task(AgentTask("a", "x", ["x.py"], _noop, pools=["gpu"]))
