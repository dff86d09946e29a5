"""Fairness between runs: a task waiting in another run is not passed over by the run it waits for.

Runs here are TaskQueues of this process on one repository (each its own run, so its own
owner in the registry), or a child process where the test needs one it can stop or kill.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queue_core import AgentTask, TaskQueue
from queue_core.line import Wanted
from queue_core.registry import Registry

from ..conftest import WAIT, Gate, Recorder, eventually, wait_for
from ._order import Order, tickets


def test_a_task_waiting_in_another_run_gets_a_released_path_before_the_releasing_runs_next_task(
    tmp_path: Path,
) -> None:
    """Before: run A re-took hot.txt in the step that freed it; B's task, waiting all along, ran after all of A's."""
    order = Order()
    with TaskQueue(max_parallel=2, repo=tmp_path) as a, TaskQueue(max_parallel=2, repo=tmp_path) as b:
        a.submit_task(AgentTask("x", "first", ["hot.txt"], order.body("a1"), id="a1"))
        wait_for(order.gates["a1"].started, "a1")
        b.submit_task(AgentTask("y", "waits for A", ["hot.txt"], order.body("b1"), id="b1"))
        eventually("b1 to wait in line", lambda: tickets(tmp_path) == [f"{b.registry.run}/b1"])  # type: ignore[union-attr]
        a.submit_task(AgentTask("z", "A's next", ["hot.txt"], order.body("a2"), id="a2"))
        order.gates["a1"].open()
        wait_for(order.gates["b1"].started, "b1")
        eventually("a2 to wait in line", lambda: tickets(tmp_path) == [f"{a.registry.run}/a2"])  # type: ignore[union-attr]
        assert order.started == ["a1", "b1"]
        order.gates["b1"].open()
        wait_for(order.gates["a2"].started, "a2")
        order.gates["a2"].open()
        assert a.join(WAIT)
        assert b.join(WAIT)
    assert order.started == ["a1", "b1", "a2"]
    assert tickets(tmp_path) == []


def test_turns_alternate_between_two_runs_that_both_want_one_path(tmp_path: Path) -> None:
    """Each run's next task waits through one task of the other: A, B, A, B, ... not A, A, A, B, B, B."""
    order = Order()
    with TaskQueue(max_parallel=1, repo=tmp_path) as a, TaskQueue(max_parallel=1, repo=tmp_path) as b:
        a.submit_task(AgentTask("x", "a0", ["hot.txt"], order.body("a0"), id="a0"))
        wait_for(order.gates["a0"].started, "a0")
        a.submit_tasks([AgentTask("x", f"a{i}", ["hot.txt"], order.body(f"a{i}"), id=f"a{i}") for i in (1, 2)])
        b.submit_tasks([AgentTask("y", f"b{i}", ["hot.txt"], order.body(f"b{i}"), id=f"b{i}") for i in (0, 1, 2)])
        eventually("b0 to wait in line", lambda: len(tickets(tmp_path)) == 1)
        for expected in ("b0", "a1", "b1", "a2", "b2"):
            order.gates[order.started[-1]].open()
            wait_for(order.gates[expected].started, expected)
        order.gates["b2"].open()
        assert a.join(WAIT)
        assert b.join(WAIT)
    assert order.started == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_an_agent_type_another_run_waits_for_goes_to_it_first(tmp_path: Path) -> None:
    """One agent type at a time across runs: B's task of that type goes before A's next one."""
    order = Order()
    with TaskQueue(max_parallel=2, repo=tmp_path) as a, TaskQueue(max_parallel=2, repo=tmp_path) as b:
        a.submit_task(AgentTask("claude", "a1", ["a1.txt"], order.body("a1"), id="a1"))
        wait_for(order.gates["a1"].started, "a1")
        b.submit_task(AgentTask("claude", "b1", ["b1.txt"], order.body("b1"), id="b1"))
        eventually("b1 to wait in line", lambda: len(tickets(tmp_path)) == 1)
        a.submit_task(AgentTask("claude", "a2", ["a2.txt"], order.body("a2"), id="a2"))
        order.gates["a1"].open()
        wait_for(order.gates["b1"].started, "b1")
        order.gates["b1"].open()
        wait_for(order.gates["a2"].started, "a2")
        order.gates["a2"].open()
        assert a.join(WAIT)
        assert b.join(WAIT)
    assert order.started == ["a1", "b1", "a2"]


_CHILD = """
import sys
from queue_core.line import Wanted
from queue_core.registry import Registry
registry = Registry(sys.argv[1], "child")
with registry.session() as session:
    session.set_waiting([Wanted("stuck", "y", ("hot.txt",), (), frozenset({sys.argv[2]}))])
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_run_that_is_stopped_or_dead_holds_nobody_back_by_waiting(tmp_path: Path) -> None:
    """Its place in line is only fairness: while it cannot take its turn, others go on."""
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), "a"],  # its place waited for run a
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            assert tickets(tmp_path) == ["child/stuck"]
            with TaskQueue(max_parallel=1, repo=tmp_path, run_id="a") as a:
                gate = Gate()
                a.submit_task(AgentTask("x", "after the child", ["hot.txt"], gate, id="a1"))
                eventually("a1 to wait for the child's turn", lambda: "hot.txt" in str(a.get_status().waiting))
                assert not gate.started.is_set()
                os.kill(child.pid, signal.SIGSTOP)
                wait_for(gate.started, "a1, the child being stopped")
                gate.open()
                assert a.join(WAIT)
                os.kill(child.pid, signal.SIGKILL)
                child.wait(WAIT)
                second = Gate().open()
                a.submit_task(AgentTask("x", "after the child died", ["hot.txt"], second, id="a2"))
                assert a.join(WAIT)
                assert second.started.is_set()
        finally:
            child.kill()


def test_a_run_leaves_the_line_when_it_ends(tmp_path: Path) -> None:
    with TaskQueue(max_parallel=1, repo=tmp_path) as a:
        gate = Gate()
        a.submit_task(AgentTask("x", "holds", ["hot.txt"], gate, id="a1"))
        wait_for(gate.started, "a1")
        b = TaskQueue(max_parallel=1, repo=tmp_path)
        b.submit_task(AgentTask("y", "waits", ["hot.txt"], lambda: None, id="b1"))
        eventually("b1 to wait in line", lambda: len(tickets(tmp_path)) == 1)
        b.shutdown(wait=True, cancel_pending=True)
        assert tickets(tmp_path) == []
        gate.open()


def test_a_place_holds_back_only_the_runs_it_waits_for(tmp_path: Path) -> None:
    """Before: B's task, waiting for agent type x that C held, kept f.txt from A, which B never waited for."""
    c1, a1 = Gate(), Gate().open()
    with (
        TaskQueue(repo=tmp_path, run_id="c") as c,
        TaskQueue(repo=tmp_path, run_id="b") as b,
        TaskQueue(repo=tmp_path, run_id="a") as a,
    ):
        c.submit_task(AgentTask("x", "holds agent x", ["other.txt"], c1, id="c1"))
        wait_for(c1.started, "c1")
        b.submit_task(AgentTask("x", "waits for agent x", ["f.txt"], lambda: None, id="b1"))
        eventually("b1 to wait in line", lambda: tickets(tmp_path) == ["b/b1"])
        a.submit_task(AgentTask("y", "f.txt is free", ["f.txt"], a1, id="a1"))
        wait_for(a1.started, "a1, which b1 does not wait for")
        assert a.join(WAIT)
        c1.open()
        assert b.join(WAIT)


def test_a_run_keeps_its_place_when_a_better_task_of_it_comes_to_wait(tmp_path: Path) -> None:
    """Before: B's new, higher-priority task took a new place at the end, behind C, who came later."""
    gate = Gate()
    with (
        TaskQueue(repo=tmp_path, run_id="a") as a,
        TaskQueue(repo=tmp_path, run_id="b") as b,
        TaskQueue(repo=tmp_path, run_id="c") as c,
    ):
        a.submit_task(AgentTask("x", "holds", ["hot.txt"], gate, id="a1"))
        wait_for(gate.started, "a1")
        b.submit_task(AgentTask("y", "waits", ["hot.txt"], lambda: None, id="b1"))
        eventually("b1 to wait in line", lambda: tickets(tmp_path) == ["b/b1"])
        c.submit_task(AgentTask("z", "waits", ["hot.txt"], lambda: None, id="c1"))
        eventually("c1 to wait in line", lambda: tickets(tmp_path) == ["b/b1", "c/c1"])
        b.submit_task(AgentTask("y", "waits, more urgent", ["hot.txt"], lambda: None, 10, id="b2"))
        eventually("b2 to take b's place", lambda: tickets(tmp_path)[0] == "b/b2")
        assert tickets(tmp_path) == ["b/b2", "c/c1"]
        gate.open()


def test_a_place_that_comes_to_be_first_lets_go_of_the_one_it_honoured_in_the_same_step(tmp_path: Path) -> None:
    """Before: run r honoured s's place on Y; then r's more urgent t0, wanting Y, took r's older
    place. s honoured that one in turn, and both waited for each other until some other write."""
    s1, r1, t0 = Gate(), Gate(), Gate().open()
    with (
        TaskQueue(max_parallel=3, repo=tmp_path, run_id="r") as r,
        TaskQueue(max_parallel=3, repo=tmp_path, run_id="s") as s,
    ):
        s.submit_task(AgentTask("s-a", "holds X", ["X"], s1, id="s1"))
        wait_for(s1.started, "s1")
        r.submit_task(AgentTask("r-a", "holds Z", ["Z"], r1, id="r1"))
        wait_for(r1.started, "r1")
        r.submit_task(AgentTask("r-b", "waits for X", ["X"], lambda: None, id="t1"))
        eventually("t1 to wait in line", lambda: tickets(tmp_path) == ["r/t1"])
        s.submit_task(AgentTask("s-b", "waits for Z", ["Y", "Z"], lambda: None, id="s2"))
        eventually("s2 to wait in line", lambda: tickets(tmp_path) == ["r/t1", "s/s2"])
        r.submit_task(AgentTask("r-c", "wants Y, urgent", ["Y"], t0, 10, id="t0"))
        wait_for(t0.started, "t0, whose run's place comes first")
        assert [t.id for t in s.get_status().running] == ["s1"]  # not by s1's end, another write
        s1.open()
        r1.open()


def test_a_damaged_place_in_line_is_left_out_not_a_damaged_registry(tmp_path: Path) -> None:
    registry = Registry(tmp_path, "r")
    claims = tmp_path / ".project-manager" / "claims.json"
    data = json.loads(claims.read_text())
    claims.write_text(json.dumps({**data, "waiting": [{"task": "no owner"}]}))
    with registry.session() as session:
        assert session.waiting == []
        assert session.recovering == 0.0
    assert list(claims.parent.glob("claims.json.damaged-*")) == []


def _wanted(task: str, agent: str, path: str, behind: str = "other") -> Wanted:
    return Wanted(task, agent, (path,), (), frozenset({behind}))


def test_the_line_keeps_its_order_and_each_run_its_places(tmp_path: Path) -> None:
    """A place belongs to its run: a better-ranked task that comes to wait takes the run's oldest."""
    first, second = Registry(tmp_path, "first"), Registry(tmp_path, "second")
    with first.session() as session:
        session.set_waiting([_wanted("t1", "x", "a"), _wanted("t2", "x", "b")])
    with second.session() as session:
        session.set_waiting([_wanted("u1", "y", "a")])
    with first.session() as session:  # t3 comes to wait before t1; t2 no longer waits
        session.set_waiting([_wanted("t3", "x", "c"), _wanted("t1", "x", "a")])
    assert tickets(tmp_path) == ["first/t3", "first/t1", "second/u1"]
    with first.session() as session:  # three now: the third joins at the end
        session.set_waiting([_wanted("t3", "x", "c"), _wanted("t1", "x", "a"), _wanted("t4", "x", "d")])
    assert tickets(tmp_path) == ["first/t3", "first/t1", "second/u1", "first/t4"]
    first.finish_run(None)
    assert tickets(tmp_path) == ["second/u1"]


FILES = ["f0", "f1", "f2", "d/"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from("xyz"), st.lists(st.sampled_from(FILES), min_size=1, max_size=2)),
            min_size=1,
            max_size=6,
        ),
        min_size=2,
        max_size=3,
    )
)
def test_runs_waiting_on_one_another_all_finish_and_never_overlap(
    tmp_path_factory: Any, batches: list[list[tuple[str, list[str]]]]
) -> None:
    """Places in line never make two runs wait for each other for ever, and never let a conflict in."""
    repo = tmp_path_factory.mktemp("repo")
    recorder = Recorder()
    queues = [TaskQueue(max_parallel=2, repo=repo) for _ in batches]
    try:
        for n, (queue, batch) in enumerate(zip(queues, batches, strict=True)):
            work = functools.partial(time.sleep, 0.002)  # simulated work, so that runs contend
            ids = [f"q{n}t{i}" for i in range(len(batch))]
            tasks = [recorder.task(a, i, files, work, id=i) for i, (a, files) in zip(ids, batch, strict=True)]
            queue.submit_tasks(tasks)
        for queue in queues:
            assert queue.join(WAIT), f"a run never finished: {queue.get_status().waiting}"
    finally:
        for queue in queues:
            queue.shutdown(wait=True, cancel_pending=True)
    recorder.assert_safe()
    assert tickets(repo) == []
