"""Quota pools across runs: the units a run's tasks take are held in the registry like its claims.

Runs here are TaskQueues of this process on one repository, each its own run in the registry;
tests/integration/test_pools_cli.py has two processes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from queue_core import AgentTask, TaskQueue, repo_status
from queue_core.claimsfile import holds_in
from queue_core.holds import Hold, Owner
from queue_core.line import Place, Wanted, conflict, set_places

from ..conftest import WAIT, Gate, eventually, wait_for
from . import _order
from ._order import tickets


def claims_json(repo: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((repo / ".project-manager" / "claims.json").read_text())
    return data


class Order(_order.Order):
    """Task bodies that note the order in which they start, each of a task taking pools."""

    def task(self, name: str, agent: str, pools: Any = ("api",)) -> AgentTask:
        """A task of ``agent`` on its own file, taking ``pools``."""
        return AgentTask(agent, name, [f"{name}.txt"], self.body(name), id=name, pools=pools)


# --- the hold -------------------------------------------------------------------------------------


OWNER = Owner("host", 42, 1.0, "run-a")


def test_a_hold_without_pools_is_written_as_before_and_one_with_adds_a_key_only() -> None:
    plain = Hold(OWNER, "t1", "dev", ("x.py",), (), 5.0)
    assert list(plain.to_json()) == ["owner", "task", "agent", "writes", "reads", "since"]
    pooled = Hold(OWNER, "t1", "dev", ("x.py",), (), 5.0, (("api", 1), ("gpu", 2)))
    written = pooled.to_json()
    assert written["pools"] == {"api": 1, "gpu": 2}
    # An older version reads the keys it knows, and finds what a hold without pools has.
    assert {key: value for key, value in written.items() if key != "pools"} == plain.to_json()
    assert Hold.from_json(json.loads(json.dumps(written))) == pooled
    assert Hold.from_json(json.loads(json.dumps(plain.to_json()))) == plain


def test_a_place_in_line_keeps_the_pools_its_task_would_take() -> None:
    wanted = Wanted("t2", "dev", ("y.py",), (), frozenset({"run-b"}), (("api", 2),))
    (place,) = set_places([], OWNER, [wanted], 7.0)
    assert place.pools == (("api", 2),)
    assert Place.from_json(json.loads(json.dumps(place.to_json()))) == place
    assert "pools" not in set_places([], OWNER, [Wanted("t3", "dev", ("z",), (), frozenset())], 7.0)[0].to_json()


def test_places_that_take_one_pool_conflict_and_those_of_different_pools_do_not() -> None:
    def place(task: str, agent: str, pools: tuple[tuple[str, int], ...]) -> Place:
        return Place(OWNER, task, agent, (f"{task}.py",), (), ("run-b",), 1.0, pools)

    assert conflict(place("a", "x", (("api", 1),)), place("b", "y", (("api", 1),)))
    assert not conflict(place("a", "x", (("api", 1),)), place("b", "y", (("gpu", 1),)))
    assert not conflict(place("a", "x", ()), place("b", "y", (("api", 1),)))


# --- two runs ---------------------------------------------------------------------------------------


def test_a_run_without_pools_writes_claims_json_as_before(tmp_path: Path) -> None:
    gate = Gate()
    with TaskQueue(2, repo=tmp_path) as queue:
        queue.submit_task(AgentTask("a", "plain", ["x.txt"], gate, id="plain"))
        wait_for(gate.started, "plain")
        eventually(
            "its hold on disk",
            lambda: (
                [h.task for h in holds_in((tmp_path / ".project-manager" / "claims.json").read_bytes())] == ["plain"]
            ),
        )
        assert "pools" not in claims_json(tmp_path)["holds"][0]
        gate.open()


def test_units_a_run_takes_are_in_the_registry_and_count_in_another_run(tmp_path: Path) -> None:
    order = Order()
    with TaskQueue(4, repo=tmp_path, pools={"api": 2}) as a, TaskQueue(4, repo=tmp_path, pools={"api": 2}) as b:
        a.submit_tasks([order.task("a1", "x"), order.task("a2", "y")])
        wait_for(order.gates["a2"].started, "a2")
        held = [("a1", {"api": 1}), ("a2", {"api": 1})]
        # A callable may start on a lease, written at its end (see queue_core.registry_sync).
        eventually(
            "their holds on disk",
            lambda: sorted((h["task"], h["pools"]) for h in claims_json(tmp_path)["holds"]) == held,
        )
        b.submit_task(order.task("b1", "z"))
        eventually("b1 to wait in line", lambda: tickets(tmp_path) == [f"{b.registry.run}/b1"])  # type: ignore[union-attr]
        (waiting,) = b.get_status().waiting
        assert (waiting.reason, waiting.reason_kind) == ("pool api full (2/2)", "pool")
        assert waiting.blocked_by == f"a1 in run {a.registry.run}"  # type: ignore[union-attr]
        eventually(
            "status to say so",
            lambda: [w.reason for run in repo_status(tmp_path).runs for w in run.waiting] == ["pool api full (2/2)"],
        )
        assert sorted(order.started) == ["a1", "a2"]  # both run; which body begins first is the threads' race
        order.gates["a1"].open()
        wait_for(order.gates["b1"].started, "b1")
        order.gates["a2"].open()
        order.gates["b1"].open()
        assert a.join(WAIT)
        assert b.join(WAIT)


def test_a_unit_another_run_waits_for_goes_to_it_before_the_releasing_runs_next_task(tmp_path: Path) -> None:
    """A pool full because of run A does not starve run B: B's task waits in line, and A,
    which honours the place, leaves the unit it frees to it."""
    order = Order()
    with TaskQueue(4, repo=tmp_path, pools={"api": 1}) as a, TaskQueue(4, repo=tmp_path, pools={"api": 1}) as b:
        a.submit_task(order.task("a1", "x"))
        wait_for(order.gates["a1"].started, "a1")
        b.submit_task(order.task("b1", "y"))
        eventually("b1 to wait in line", lambda: tickets(tmp_path) == [f"{b.registry.run}/b1"])  # type: ignore[union-attr]
        a.submit_task(order.task("a2", "z"))
        order.gates["a1"].open()
        wait_for(order.gates["b1"].started, "b1")
        eventually("a2 to wait in line", lambda: tickets(tmp_path) == [f"{a.registry.run}/a2"])  # type: ignore[union-attr]
        order.gates["b1"].open()
        wait_for(order.gates["a2"].started, "a2")
        order.gates["a2"].open()
        assert a.join(WAIT)
        assert b.join(WAIT)
    assert order.started == ["a1", "b1", "a2"]


def test_each_run_applies_its_own_capacity_to_the_units_of_all(tmp_path: Path) -> None:
    """Run A declares api: 1 and B api: 3: with A's task running, B starts two more; A, at
    its capacity, starts nothing more until enough of them end."""
    order = Order()
    with TaskQueue(4, repo=tmp_path, pools={"api": 1}) as a, TaskQueue(4, repo=tmp_path, pools={"api": 3}) as b:
        a.submit_task(order.task("a1", "w"))
        wait_for(order.gates["a1"].started, "a1")
        b.submit_tasks([order.task("b1", "x"), order.task("b2", "y"), order.task("b3", "z")])
        wait_for(order.gates["b2"].started, "b2")
        eventually("b3 to wait", lambda: [w.id for w in b.get_status().waiting] == ["b3"])
        assert b.get_status().waiting[0].reason == "pool api full (3/3)"
        order.gates["a1"].open()
        wait_for(order.gates["b3"].started, "b3")
        a.submit_task(order.task("a2", "v"))
        eventually("a2 to wait", lambda: [w.reason for w in a.get_status().waiting] == ["pool api full (3/1)"])
        for name in ("b1", "b2", "b3"):
            order.gates[name].open()
        wait_for(order.gates["a2"].started, "a2")
        order.gates["a2"].open()
        assert a.join(WAIT)
        assert b.join(WAIT)


def test_a_hold_whose_pools_are_damaged_is_damaged_as_a_whole() -> None:
    """As with any other field: the registry then rebuilds claims.json from the runs' own records."""
    data = Hold(OWNER, "t1", "dev", ("x.py",), (), 5.0).to_json()
    for damaged in (["api"], {"api": "many"}, "api"):
        with pytest.raises((ValueError, TypeError)):
            Hold.from_json({**data, "pools": damaged})
