"""Scheduler: the pure decision core, stepped one event at a time with ``now`` passed in."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queue_core.claims import Access, Claim, overlaps
from queue_core.errors import (
    AgentAlreadyRunningError,
    CapacityError,
    ClaimConflictError,
    ConflictError,
    DependencyCycleError,
    DuplicateTaskError,
    UnknownDependencyError,
)
from queue_core.machine import GIB, Limits, Reading
from queue_core.machine_rule import AutoParallel, MachineRule
from queue_core.ownership import FileOwnership
from queue_core.scheduler import Scheduler, TaskEntry
from queue_core.task import AgentTask, TaskState


def _noop() -> None:
    """The execute_fn of every task here; the scheduler never calls it."""


def task(tid: str, agent: str, files: Sequence[str] = (), priority: int = 0, **kwargs: Any) -> AgentTask:
    return AgentTask(agent, f"do {tid}", list(files), _noop, priority, id=tid, **kwargs)


def ids(entries: Iterable[TaskEntry]) -> list[str]:
    return [e.id for e in entries]


def make(
    max_parallel: int = 4, *, ownership: FileOwnership | None = None, seed: int = 0, max_bypass: int = 0
) -> Scheduler:
    """A seeded scheduler; reservations apply at once unless ``max_bypass`` says otherwise."""
    return Scheduler(max_parallel, ownership=ownership, rng=random.Random(seed), max_bypass=max_bypass)


def reason_of(sched: Scheduler, tid: str) -> Any:
    reason = sched.wait_reason(sched.entry(tid))
    assert reason is not None, f"{tid} is not waiting"
    return reason


def running_ids(sched: Scheduler) -> set[str]:
    return {e.id for e in sched.running}


# --- basics ---------------------------------------------------------------------------------


def test_single_task_starts() -> None:
    sched = make()
    assert sched.add(task("t1", "a", ["x.py"]), 0.0) == []
    assert sched.entry("t1").state is TaskState.QUEUED
    assert sched.unfinished == 1
    started = sched.dispatch(0.0)
    assert ids(started) == ["t1"]
    entry = sched.entry("t1")
    assert entry.state is TaskState.RUNNING
    assert entry.attempts == 1
    assert entry.started_at == 0.0
    assert sched.wait_reason(entry) is None
    assert sched.dispatch(0.0) == []
    assert ids(sched.finish("t1", TaskState.SUCCEEDED, 1.0)) == ["t1"]
    assert entry.state is TaskState.SUCCEEDED
    assert entry.finished_at == 1.0
    assert sched.wait_reason(entry) is None
    assert sched.unfinished == 0
    assert sched.running == []


def test_different_agents_and_files_start_together() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x.py"]), 0.0)
    sched.add(task("t2", "b", ["y.py"]), 0.0)
    sched.add(task("t3", "c", ["src/"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2", "t3"]
    assert running_ids(sched) == {"t1", "t2", "t3"}


def test_same_agent_waits_for_the_running_one() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x.py"]), 0.0)
    sched.add(task("t2", "a", ["y.py"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1"]
    reason = reason_of(sched, "t2")
    assert reason.kind == "agent"
    assert reason.holder == "t1"
    assert reason.holder_agent == "a"
    assert reason.describe() == "a busy (t1)"
    assert sched.entry("t2").state is TaskState.QUEUED
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t2"]


def test_same_file_waits_for_its_holder() -> None:
    sched = make()
    sched.add(task("t1", "a", ["docs/x.md"]), 0.0)
    sched.add(task("t2", "b", ["./docs//x.md"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1"]
    reason = reason_of(sched, "t2")
    assert reason.kind == "claim"
    assert reason.holder == "t1"
    assert reason.holder_agent == "a"
    assert reason.claim == "docs/x.md"
    assert reason.held == "docs/x.md"
    assert reason.example == "docs/x.md"
    assert reason.describe() == "docs/x.md overlaps docs/x.md held by a (t1)"
    assert sched.dispatch(0.5) == []
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t2"]


@pytest.mark.parametrize(
    ("held", "wanted"),
    [
        ("src/", "src/a.py"),
        ("src/a.py", "src/"),
        ("src/", "src/deep/er/a.py"),
        ("src/*.py", "src/a.py"),
        ("src/a.py", "src/*.py"),
        ("src/**/*.py", "src/x/y/a.py"),
        ("src/**", "src/a.txt"),
        ("src/*.py", "src/[ab].py"),
        ("newpkg", "newpkg/mod.py"),  # a forgotten slash: a plain path covers what is below it
        ("newpkg/mod.py", "newpkg"),
        ("src/**/*.py", "src/pkg"),
    ],
)
def test_directory_and_glob_claims_conflict_with_the_files_they_cover(held: str, wanted: str) -> None:
    sched = make()
    sched.add(task("t1", "a", [held]), 0.0)
    sched.add(task("t2", "b", [wanted]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1"]
    reason = reason_of(sched, "t2")
    assert reason.kind == "claim"
    assert reason.holder == "t1"
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t2"]


@pytest.mark.parametrize(
    ("held", "wanted"),
    [
        ("src/*.py", "src/sub/a.py"),
        ("src/*.py", "src/a.txt"),
        ("src/a.py", "src/ab.py"),
        ("src/", "srcx/a.py"),
        ("docs/x.md", "docs/x.mdx"),
        ("d/**/*.txt", "d/*.py"),
    ],
)
def test_disjoint_claims_run_together(held: str, wanted: str) -> None:
    sched = make()
    sched.add(task("t1", "a", [held]), 0.0)
    sched.add(task("t2", "b", [wanted]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2"]


def test_reads_are_shared_with_reads() -> None:
    sched = make()
    sched.add(_reader("r1", "a", "docs/"), 0.0)
    sched.add(_reader("r2", "b", "docs/x.md"), 0.0)
    sched.add(_reader("r3", "c", "docs/*.md"), 0.0)
    assert ids(sched.dispatch(0.0)) == ["r1", "r2", "r3"]


def _reader(tid: str, agent: str, path: str) -> AgentTask:
    """A task that reads ``path`` and writes only a file of its own."""
    return task(tid, agent, [f"own/{tid}"], reads=[path])


def test_a_read_is_blocked_by_a_write_and_a_write_by_a_read() -> None:
    sched = make()
    sched.add(task("w1", "a", ["docs/x.md"]), 0.0)
    sched.add(_reader("r1", "b", "docs/"), 0.0)
    assert ids(sched.dispatch(0.0)) == ["w1"]
    reason = reason_of(sched, "r1")
    assert (reason.kind, reason.holder, reason.claim, reason.held) == ("claim", "w1", "docs/", "docs/x.md")
    sched.finish("w1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["r1"]
    # Now the reader holds docs/: a writer of a file below it waits for the reader.
    sched.add(_reader("r2", "d", "docs/z.md"), 1.0)
    assert ids(sched.dispatch(1.0)) == ["r2"]  # reads share
    sched.add(task("w2", "c", ["docs/y.md"]), 1.0)
    assert sched.dispatch(1.0) == []
    reason = reason_of(sched, "w2")
    assert (reason.kind, reason.holder, reason.claim, reason.held) == ("claim", "r1", "docs/y.md", "docs/")
    # Later readers of docs/y.md do not starve the writer: it holds the reservation.
    sched.add(_reader("r3", "e", "docs/y.md"), 1.0)
    assert sched.dispatch(1.0) == []
    reason = reason_of(sched, "r3")
    assert (reason.kind, reason.holder, reason.claim) == ("reserved", "w2", "docs/y.md")
    sched.finish("r1", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["w2"]  # r2 reads docs/z.md only
    assert (reason_of(sched, "r3").kind, reason_of(sched, "r3").holder) == ("claim", "w2")
    sched.finish("w2", TaskState.SUCCEEDED, 3.0)
    assert ids(sched.dispatch(3.0)) == ["r3"]


def test_max_parallel_caps_the_running_tasks() -> None:
    sched = make(2)
    for i, agent in enumerate("abcd", 1):
        sched.add(task(f"t{i}", agent, [f"f{i}.py"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2"]
    for tid in ("t3", "t4"):
        reason = reason_of(sched, tid)
        assert reason.kind == "capacity"
        assert reason.limit == 2
        assert "2" in reason.describe()
    sched.finish("t2", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t3"]
    assert len(sched.running) == 2
    sched.finish("t1", TaskState.FAILED, 2.0)
    sched.finish("t3", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["t4"]


def test_max_parallel_must_be_a_positive_integer() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_parallel"):
            Scheduler(bad)  # type: ignore[arg-type]


def test_task_without_files_claims_its_agents_owned_globs() -> None:
    ownership = FileOwnership({"docs_writer": ["docs/"], "coder": ["src/**/*.py"]})
    sched = make(ownership=ownership)
    sched.add(task("d1", "docs_writer"), 0.0)
    sched.add(task("c1", "coder"), 0.0)
    sched.add(task("x1", "other", ["docs/readme.md"]), 0.0)
    sched.add(task("x2", "third", ["src/a/*.txt"]), 0.0)  # a plain src/a/b.txt covers src/a/b.txt/x.py
    assert ids(sched.dispatch(0.0)) == ["d1", "c1", "x2"]
    reason = reason_of(sched, "x1")
    assert (reason.kind, reason.holder, reason.held) == ("claim", "d1", "docs/")


def test_unknown_agent_without_files_claims_everything() -> None:
    sched = make()
    sched.add(task("u1", "unknown"), 0.0)
    sched.add(task("t2", "b", ["anything/at/all.txt"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["u1"]
    reason = reason_of(sched, "t2")
    assert (reason.kind, reason.holder, reason.held) == ("claim", "u1", "**")


# --- ordering -------------------------------------------------------------------------------


def test_priority_beats_submission_order() -> None:
    sched = make(1)
    sched.add(task("low", "a", ["x"]), 0.0)
    sched.add(task("mid", "b", ["y"], 5), 0.0)
    sched.add(task("high", "c", ["z"], 9), 0.0)
    started: list[str] = []
    for now in (0.0, 1.0, 2.0):
        (entry,) = sched.dispatch(now)
        started.append(entry.id)
        sched.finish(entry.id, TaskState.SUCCEEDED, now + 1.0)
    assert started == ["high", "mid", "low"]


def test_equal_priority_is_fifo() -> None:
    sched = make(1)
    for tid, agent in (("t1", "c"), ("t2", "a"), ("t3", "b"), ("t4", "a")):
        sched.add(task(tid, agent, [tid]), 0.0)
    started: list[str] = []
    for step in range(4):
        (entry,) = sched.dispatch(float(step))
        started.append(entry.id)
        sched.finish(entry.id, TaskState.SUCCEEDED, float(step) + 0.5)
    assert started == ["t1", "t2", "t3", "t4"]


def test_equal_priority_is_fifo_within_one_agent_after_a_release() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1"]
    sched.add(task("t2", "a", ["y"]), 0.0)
    sched.add(task("t3", "a", ["z"], 1), 0.0)
    sched.add(task("t4", "a", ["w"]), 0.0)
    started: list[str] = []
    for step in range(1, 4):
        sched.finish(next(iter(running_ids(sched))), TaskState.SUCCEEDED, float(step))
        started.extend(ids(sched.dispatch(float(step))))
    assert started == ["t3", "t2", "t4"]


def test_add_batch_keeps_list_order_for_equal_priorities() -> None:
    """Submission order within a batch is the list order, even with a forward dependency."""
    sched = make(1)
    sched.add_batch(
        [
            task("x", "a", ["x"], depends_on=["z"]),
            task("y", "b", ["y"]),
            task("z", "c", ["z"]),
        ],
        0.0,
    )
    started: list[str] = []
    for step in range(3):
        (entry,) = sched.dispatch(float(step))
        started.append(entry.id)
        sched.finish(entry.id, TaskState.SUCCEEDED, float(step) + 0.5)
    assert started == ["y", "z", "x"]


def test_backfilling_an_unrelated_later_task_starts_past_a_blocked_one() -> None:
    sched = make()
    sched.add(task("t0", "a", ["shared.py"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t0"]
    sched.add(task("t1", "b", ["shared.py"]), 0.0)
    sched.add(task("t2", "a", ["other.py"]), 0.0)
    sched.add(task("t3", "c", ["unrelated.py"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t3"]
    assert reason_of(sched, "t1").kind == "claim"
    assert reason_of(sched, "t2").kind == "agent"
    sched.finish("t0", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t1", "t2"]


# --- starvation -----------------------------------------------------------------------------


def test_reservation_prevents_starvation_by_a_stream_of_small_tasks() -> None:
    """T needs F and G; A holds F, B holds G; later tasks alternately want F or G."""
    sched = make(8)
    sched.add(task("A", "ha", ["F"]), 0.0)
    sched.add(task("B", "hb", ["G"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["A", "B"]
    sched.add(task("T", "big", ["F", "G"]), 0.0)
    assert sched.dispatch(0.0) == []
    assert sched.reserved is sched.entry("T")
    reason = reason_of(sched, "T")
    assert (reason.kind, reason.holder) == ("claim", "A")

    # A stream of later tasks: without a reservation, each release of F or G would go to
    # one of them and T would never hold both at once.
    sched.add(task("s1", "s1", ["F"]), 0.5)
    sched.add(task("s2", "s2", ["G"]), 0.5)
    assert sched.dispatch(0.5) == []
    sched.finish("A", TaskState.SUCCEEDED, 1.0)
    assert sched.dispatch(1.0) == []  # F is free, but reserved for T
    assert sched.reserved is sched.entry("T")
    assert (reason_of(sched, "T").kind, reason_of(sched, "T").holder) == ("claim", "B")
    reason = reason_of(sched, "s1")
    assert reason.kind == "reserved"
    assert reason.holder == "T"
    assert reason.claim == "F"
    assert reason.describe() == "F overlaps F, reserved for T (waiting longest)"
    sched.add(task("s3", "s3", ["F"]), 1.5)
    sched.add(task("s4", "s4", ["G"]), 1.5)
    assert sched.dispatch(1.5) == []
    assert reason_of(sched, "s3").kind == "reserved"
    assert reason_of(sched, "s3").holder == "T"
    # An unrelated later task is not held back by the reservation.
    sched.add(task("u", "u", ["H"]), 1.5)
    assert ids(sched.dispatch(1.5)) == ["u"]

    sched.finish("B", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["T"]
    # The stream now waits for T, and the best-ranked of it holds the next reservation.
    assert sched.reserved is sched.entry("s1")
    for tid in ("s1", "s2", "s3", "s4"):
        reason = reason_of(sched, tid)
        assert (reason.kind, reason.holder) == ("claim", "T"), tid
    sched.finish("T", TaskState.SUCCEEDED, 3.0)
    assert ids(sched.dispatch(3.0)) == ["s1", "s2"]


def test_reservation_on_the_agent_holds_back_later_tasks_of_that_agent() -> None:
    sched = make()
    sched.add(task("A", "ha", ["F"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["A"]
    sched.add(task("T", "big", ["F"]), 0.0)
    sched.add(task("U", "big", ["unrelated.py"]), 0.0)
    sched.add(task("V", "other", ["other.py"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["V"]
    assert sched.reserved is sched.entry("T")
    reason = reason_of(sched, "U")
    assert reason.kind == "reserved"
    assert reason.holder == "T"
    assert reason.holder_agent == "big"
    assert reason.claim is None
    assert reason.describe() == "agent big, reserved for T (waiting longest)"
    sched.add(task("W", "big", ["more.py"]), 0.5)
    assert sched.dispatch(0.5) == []
    assert reason_of(sched, "W").kind == "reserved"
    sched.finish("A", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["T"]
    assert reason_of(sched, "U").kind == "agent"
    sched.finish("T", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["U"]


def test_higher_priority_task_is_not_held_back_by_a_lower_ranked_reservation() -> None:
    sched = make()
    sched.add(task("A", "ha", ["F"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["A"]
    sched.add(task("T", "big", ["F", "G"]), 0.0)
    assert sched.dispatch(0.0) == []
    assert sched.reserved is sched.entry("T")
    sched.add(task("low", "l", ["G"]), 0.0)  # ranked below T: held back
    sched.add(task("low_agent", "big", ["Y"]), 0.0)
    assert sched.dispatch(0.0) == []
    assert (reason_of(sched, "low").kind, reason_of(sched, "low").holder) == ("reserved", "T")
    assert (reason_of(sched, "low_agent").kind, reason_of(sched, "low_agent").holder) == ("reserved", "T")
    sched.add(task("high", "h", ["G"], 10), 0.0)  # ranked above T: takes G
    sched.add(task("high_agent", "big", ["Z"], 10), 0.0)  # ranked above T: takes T's agent
    assert ids(sched.dispatch(0.0)) == ["high", "high_agent"]
    assert sched.reserved is sched.entry("T")


def test_a_reserved_reader_shares_with_later_readers_but_not_writers() -> None:
    sched = make()
    sched.add(task("W", "w", ["docs/a.md"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["W"]
    sched.add(_reader("R", "r", "docs/"), 0.0)
    assert sched.dispatch(0.0) == []
    assert sched.reserved is sched.entry("R")
    sched.add(_reader("L", "l", "docs/b.md"), 0.0)
    sched.add(task("M", "m", ["docs/c.md"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["L"]
    reason = reason_of(sched, "M")
    assert (reason.kind, reason.holder, reason.claim, reason.held) == ("reserved", "R", "docs/c.md", "docs/")
    sched.finish("W", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["R"]
    assert (reason_of(sched, "M").kind, reason_of(sched, "M").holder) == ("claim", "R")


def test_a_better_ranked_blocked_task_takes_over_the_reservation() -> None:
    sched = make()
    sched.add(task("A", "ha", ["F"]), 0.0)
    sched.add(task("B", "hb", ["G"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["A", "B"]
    sched.add(task("T", "t", ["F"]), 0.0)
    sched.add(task("L", "l", ["F2"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["L"]
    assert sched.reserved is sched.entry("T")
    sched.add(task("P", "p", ["G", "F3"], 5), 0.0)
    assert sched.dispatch(0.0) == []
    assert sched.reserved is sched.entry("P")
    sched.add(task("q", "q", ["F3"]), 0.0)  # overlaps P's reservation
    assert sched.dispatch(0.0) == []
    assert (reason_of(sched, "q").kind, reason_of(sched, "q").holder) == ("reserved", "P")


def test_cancelling_the_reserved_task_frees_what_it_held_back() -> None:
    sched = make()
    sched.add(task("A", "ha", ["F"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["A"]
    sched.add(task("T", "big", ["F", "G"]), 0.0)
    sched.add(task("L", "l", ["G"]), 0.0)
    sched.add(task("M", "big", ["Z"]), 0.0)
    assert sched.dispatch(0.0) == []
    assert sched.reserved is sched.entry("T")
    assert reason_of(sched, "L").kind == "reserved"
    assert reason_of(sched, "M").kind == "reserved"
    assert ids(sched.cancel("T", 1.0)) == ["T"]
    assert sched.entry("T").state is TaskState.CANCELLED
    assert sched.reserved is None
    assert ids(sched.dispatch(1.0)) == ["L", "M"]


# --- dependencies ---------------------------------------------------------------------------


def test_dependency_chain_runs_in_order() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.add(task("t2", "b", ["y"], depends_on=["t1"]), 0.0)
    sched.add(task("t3", "c", ["z"], 9, depends_on=["t2"]), 0.0)
    assert sched.entry("t2").state is TaskState.PENDING
    reason = reason_of(sched, "t3")
    assert reason.kind == "dependency"
    assert reason.needs == ("t2",)
    assert reason.describe() == "needs t2"
    assert ids(sched.dispatch(0.0)) == ["t1"]
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert sched.entry("t2").state is TaskState.QUEUED
    assert ids(sched.dispatch(1.0)) == ["t2"]
    sched.finish("t2", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["t3"]
    sched.finish("t3", TaskState.SUCCEEDED, 3.0)
    assert sched.unfinished == 0


def test_dependency_waits_for_all_its_dependencies() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.add(task("t2", "b", ["y"]), 0.0)
    sched.add(task("t3", "c", ["z"], depends_on=["t1", "t2"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2"]
    sched.finish("t2", TaskState.SUCCEEDED, 1.0)
    assert sched.dispatch(1.0) == []
    assert reason_of(sched, "t3").needs == ("t1",)
    sched.finish("t1", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["t3"]


@pytest.mark.parametrize("outcome", [TaskState.FAILED, TaskState.TIMED_OUT, TaskState.CANCELLED])
def test_unsuccessful_dependency_skips_dependents_transitively(outcome: TaskState) -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.add(task("t2", "b", ["y"], depends_on=["t1"]), 0.0)
    sched.add(task("t3", "c", ["z"], depends_on=["t2"]), 0.0)
    sched.add(task("t4", "d", ["w"], depends_on=["t1", "t3"]), 0.0)
    sched.add(task("free", "e", ["v"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "free"]
    changed = sched.finish("t1", outcome, 1.0, error="boom")
    assert sorted(ids(changed)) == ["t1", "t2", "t3", "t4"]
    assert sched.entry("t1").state is outcome
    assert sched.entry("t1").outcome_reason == "boom"
    assert sched.entry("t2").outcome_reason == f"dependency t1 {outcome.value}"
    assert sched.entry("t3").outcome_reason == "dependency t2 skipped"
    assert sched.entry("t4").outcome_reason in {f"dependency t1 {outcome.value}", "dependency t3 skipped"}
    for tid in ("t2", "t3", "t4"):
        entry = sched.entry(tid)
        assert entry.state is TaskState.SKIPPED
        assert entry.finished_at == 1.0
        assert entry.attempts == 0
    assert sched.unfinished == 1
    assert sched.dispatch(1.0) == []
    assert sched.waiting() == []


def test_failed_dependency_reason_names_the_dependency() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.add(task("t2", "b", ["y"], depends_on=["t1"]), 0.0)
    sched.dispatch(0.0)
    sched.finish("t1", TaskState.FAILED, 1.0)
    assert sched.entry("t2").outcome_reason == "dependency t1 failed"


def test_cancel_of_a_queued_task_skips_its_dependents() -> None:
    sched = make()
    sched.add(task("blocker", "a", ["x"]), 0.0)
    sched.dispatch(0.0)
    sched.add(task("t1", "a", ["y"]), 0.0)
    sched.add(task("t2", "b", ["z"], depends_on=["t1"]), 0.0)
    sched.add(task("t3", "c", ["w"], depends_on=["t2"]), 0.0)
    assert sched.unfinished == 4
    changed = sched.cancel("t1", 1.0)
    assert ids(changed) == ["t1", "t2", "t3"]
    assert sched.entry("t1").state is TaskState.CANCELLED
    assert sched.entry("t1").outcome_reason == "cancelled"
    assert sched.entry("t2").state is TaskState.SKIPPED
    assert sched.entry("t2").outcome_reason == "dependency t1 cancelled"
    assert sched.entry("t3").outcome_reason == "dependency t2 skipped"
    assert sched.unfinished == 1
    sched.finish("blocker", TaskState.SUCCEEDED, 2.0)
    assert sched.dispatch(2.0) == []
    assert sched.unfinished == 0


def test_cancel_of_a_pending_task_skips_its_dependents_and_not_its_dependencies() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.add(task("t2", "b", ["y"], depends_on=["t1"]), 0.0)
    sched.add(task("t3", "c", ["z"], depends_on=["t2"]), 0.0)
    sched.dispatch(0.0)
    assert ids(sched.cancel("t2", 0.5)) == ["t2", "t3"]
    assert sched.entry("t1").state is TaskState.RUNNING
    assert sched.finish("t1", TaskState.SUCCEEDED, 1.0) == [sched.entry("t1")]
    assert sched.dispatch(1.0) == []
    assert sched.unfinished == 0


def test_adding_a_task_that_depends_on_a_failed_task_skips_it_at_once() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.dispatch(0.0)
    sched.finish("t1", TaskState.FAILED, 1.0)
    changed = sched.add(task("t2", "b", ["y"], depends_on=["t1"]), 2.0)
    assert ids(changed) == ["t2"]
    entry = sched.entry("t2")
    assert entry.state is TaskState.SKIPPED
    assert entry.outcome_reason == "dependency t1 failed"
    assert entry.finished_at == 2.0
    assert sched.unfinished == 0
    assert sched.dispatch(2.0) == []


def test_adding_a_task_that_depends_on_a_succeeded_task_queues_it() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.dispatch(0.0)
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert sched.add(task("t2", "b", ["y"], depends_on=["t1"]), 2.0) == []
    assert sched.entry("t2").state is TaskState.QUEUED
    assert ids(sched.dispatch(2.0)) == ["t2"]


def test_add_batch_with_forward_references() -> None:
    sched = make()
    changed = sched.add_batch(
        [
            task("c", "x", ["c"], depends_on=["b"]),
            task("b", "y", ["b"], depends_on=["a"]),
            task("a", "z", ["a"]),
        ],
        0.0,
    )
    assert changed == []
    assert sched.unfinished == 3
    assert ids(sched.dispatch(0.0)) == ["a"]
    sched.finish("a", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["b"]
    sched.finish("b", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["c"]


def test_add_batch_skips_tasks_depending_on_an_already_failed_task() -> None:
    sched = make()
    sched.add(task("old", "a", ["x"]), 0.0)
    sched.dispatch(0.0)
    sched.finish("old", TaskState.FAILED, 1.0)
    changed = sched.add_batch(
        [task("n2", "b", ["y"], depends_on=["n1"]), task("n1", "c", ["z"], depends_on=["old"])], 2.0
    )
    assert sorted(ids(changed)) == ["n1", "n2"]
    assert sched.entry("n1").outcome_reason == "dependency old failed"
    assert sched.entry("n2").outcome_reason == "dependency n1 skipped"
    assert sched.unfinished == 0


def _assert_nothing_added(sched: Scheduler, tids: Iterable[str], unfinished: int) -> None:
    for tid in tids:
        with pytest.raises(KeyError):
            sched.entry(tid)
    assert sched.unfinished == unfinished


def test_add_batch_rejects_unknown_dependencies_and_adds_nothing() -> None:
    sched = make()
    sched.add(task("old", "a", ["x"]), 0.0)
    batch = [task("n1", "b", ["y"]), task("n2", "c", ["z"], depends_on=["n1", "ghost"])]
    with pytest.raises(UnknownDependencyError) as info:
        sched.add_batch(batch, 0.0)
    assert info.value.dependency == "ghost"
    assert info.value.task_id == "n2"
    _assert_nothing_added(sched, ["n1", "n2"], 1)
    assert ids(sched.dispatch(0.0)) == ["old"]


def test_add_batch_rejects_cycles_and_adds_nothing() -> None:
    sched = make()
    batch = [
        task("free", "f", ["f"]),
        task("a", "x", ["a"], depends_on=["b"]),
        task("b", "y", ["b"], depends_on=["c"]),
        task("c", "z", ["c"], depends_on=["a"]),
    ]
    with pytest.raises(DependencyCycleError) as info:
        sched.add_batch(batch, 0.0)
    assert info.value.cycle == ["a", "b", "c", "a"]
    _assert_nothing_added(sched, ["free", "a", "b", "c"], 0)
    assert sched.dispatch(0.0) == []
    # The same ids can be submitted afterwards: nothing of the failed batch stuck.
    sched.add_batch([task("free", "f", ["f"]), task("a", "x", ["a"])], 1.0)
    assert ids(sched.dispatch(1.0)) == ["free", "a"]


def test_add_batch_rejects_a_two_task_cycle() -> None:
    sched = make()
    with pytest.raises(DependencyCycleError) as info:
        sched.add_batch([task("p", "x", ["p"], depends_on=["q"]), task("q", "y", ["q"], depends_on=["p"])], 0.0)
    assert info.value.cycle == ["p", "q", "p"]
    _assert_nothing_added(sched, ["p", "q"], 0)


def test_add_batch_rejects_duplicates_and_adds_nothing() -> None:
    sched = make()
    sched.add(task("old", "a", ["x"]), 0.0)
    with pytest.raises(DuplicateTaskError) as info:
        sched.add_batch([task("n1", "b", ["y"]), task("n1", "c", ["z"])], 0.0)
    assert info.value.task_id == "n1"
    _assert_nothing_added(sched, ["n1"], 1)
    with pytest.raises(DuplicateTaskError):
        sched.add_batch([task("n2", "b", ["y"]), task("old", "c", ["z"])], 0.0)
    _assert_nothing_added(sched, ["n2"], 1)
    assert sched.entry("old").task.agent_type == "a"


def test_add_rejects_duplicates_and_unknown_dependencies() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    with pytest.raises(DuplicateTaskError):
        sched.add(task("t1", "b", ["y"]), 0.0)
    with pytest.raises(UnknownDependencyError):
        sched.add(task("t2", "b", ["y"], depends_on=["nope"]), 0.0)
    _assert_nothing_added(sched, ["t2"], 1)
    assert sched.entry("t1").agent == "a"
    assert ids(sched.dispatch(0.0)) == ["t1"]


# --- retries --------------------------------------------------------------------------------


def test_failed_task_with_retries_waits_releases_its_claims_and_runs_again() -> None:
    sched = make(seed=3)
    sched.add(task("t1", "a", ["F"], retries=1, retry_delay=1.0, retry_jitter=0.1), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1"]
    changed = sched.finish("t1", TaskState.FAILED, 1.0, error="boom")
    entry = sched.entry("t1")
    assert changed == [entry]
    assert entry.state is TaskState.RETRY_WAIT
    assert entry.outcome_reason == "boom"
    assert entry.retry_at is not None
    assert 1.9 <= entry.retry_at <= 2.1
    assert sched.unfinished == 1
    assert sched.next_wakeup() == entry.retry_at
    reason = reason_of(sched, "t1")
    assert (reason.kind, reason.until) == ("retry", entry.retry_at)
    # Its agent and its claims are free meanwhile.
    sched.add(task("t2", "a", ["F"]), 1.0)
    assert ids(sched.dispatch(1.0)) == ["t2"]
    sched.finish("t2", TaskState.SUCCEEDED, 1.5)
    assert sched.dispatch(entry.retry_at - 1e-6) == []
    assert entry.state is TaskState.RETRY_WAIT
    assert ids(sched.dispatch(entry.retry_at)) == ["t1"]
    assert entry.attempts == 2
    assert entry.retry_at is None
    assert sched.next_wakeup() is None
    # No retries left: the second failure is final.
    assert ids(sched.finish("t1", TaskState.FAILED, 3.0)) == ["t1"]
    assert entry.state is TaskState.FAILED
    assert sched.unfinished == 0


def test_retry_then_success_lets_dependents_run() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"], retries=2, retry_jitter=0.0), 0.0)
    sched.add(task("t2", "b", ["y"], depends_on=["t1"]), 0.0)
    sched.dispatch(0.0)
    sched.finish("t1", TaskState.FAILED, 0.0)
    assert sched.entry("t2").state is TaskState.PENDING
    assert sched.next_wakeup() == 1.0
    assert ids(sched.dispatch(1.0)) == ["t1"]
    sched.finish("t1", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["t2"]


def _fail_repeatedly(sched: Scheduler, tid: str, times: int) -> list[float]:
    """Fail ``tid`` ``times`` times, each retry started when due; the delays it waited."""
    delays: list[float] = []
    now = 0.0
    assert ids(sched.dispatch(now)) == [tid]
    for _ in range(times):
        now += 1.0
        sched.finish(tid, TaskState.FAILED, now)
        entry = sched.entry(tid)
        if entry.state is not TaskState.RETRY_WAIT:
            break
        assert entry.retry_at is not None
        assert sched.next_wakeup() == entry.retry_at
        delays.append(entry.retry_at - now)
        now = entry.retry_at
        assert ids(sched.dispatch(now)) == [tid]
    return delays


def test_backoff_grows_exponentially_and_is_capped_without_jitter() -> None:
    sched = make()
    sched.add(
        task("t", "a", ["x"], retries=5, retry_delay=1.0, retry_backoff=2.0, retry_max_delay=5.0, retry_jitter=0.0),
        0.0,
    )
    delays = _fail_repeatedly(sched, "t", 6)
    assert delays == pytest.approx([1.0, 2.0, 4.0, 5.0, 5.0])
    assert sched.entry("t").state is TaskState.FAILED
    assert sched.entry("t").attempts == 6


def test_backoff_with_jitter_stays_within_bounds() -> None:
    jitter = 0.25
    sched = make(seed=11)
    sched.add(
        task("t", "a", ["x"], retries=5, retry_delay=0.5, retry_backoff=3.0, retry_max_delay=10.0, retry_jitter=jitter),
        0.0,
    )
    delays = _fail_repeatedly(sched, "t", 6)
    assert len(delays) == 5
    for n, delay in enumerate(delays, 1):
        base = min(10.0, 0.5 * 3.0 ** (n - 1))
        assert base * (1 - jitter) - 1e-9 <= delay <= min(10.0, base * (1 + jitter)) + 1e-9, (n, delay)
    # Jitter really spreads the delays: not all at the un-jittered base.
    assert any(abs(d - min(10.0, 0.5 * 3.0 ** (n - 1))) > 1e-6 for n, d in enumerate(delays, 1))


def test_backoff_jitter_follows_the_seeded_rng() -> None:
    seed = 42
    sched = make(seed=seed)
    sched.add(task("t", "a", ["x"], retries=3, retry_delay=2.0, retry_backoff=2.0, retry_jitter=0.5), 0.0)
    delays = _fail_repeatedly(sched, "t", 3)
    mirror = random.Random(seed)
    expected = [2.0 * 2.0 ** (n - 1) * (1 + 0.5 * (2 * mirror.random() - 1)) for n in (1, 2, 3)]
    assert delays == pytest.approx(expected)


def test_same_seed_gives_the_same_retry_times_and_another_seed_does_not() -> None:
    def retry_times(seed: int) -> list[float]:
        sched = make(seed=seed)
        sched.add(task("t", "a", ["x"], retries=4, retry_jitter=0.5), 0.0)
        return _fail_repeatedly(sched, "t", 4)

    assert retry_times(5) == retry_times(5)
    assert retry_times(5) != retry_times(6)


def test_timed_out_attempt_with_retries_left_is_retried() -> None:
    sched = make()
    sched.add(task("t", "a", ["x"], timeout=2.0, retries=1, retry_jitter=0.0), 0.0)
    sched.dispatch(0.0)
    assert ids(sched.expire(2.0)) == ["t"]
    sched.finish("t", TaskState.SUCCEEDED, 3.0)
    entry = sched.entry("t")
    assert entry.state is TaskState.RETRY_WAIT
    assert entry.retry_at == 4.0
    assert ids(sched.dispatch(4.0)) == ["t"]
    assert entry.timed_out is False
    assert entry.deadline == 6.0
    sched.finish("t", TaskState.SUCCEEDED, 5.0)
    assert entry.state is TaskState.SUCCEEDED


def test_cancel_while_waiting_to_retry() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"], retries=1), 0.0)
    sched.add(task("t2", "b", ["y"], depends_on=["t1"]), 0.0)
    sched.dispatch(0.0)
    sched.finish("t1", TaskState.FAILED, 1.0)
    assert ids(sched.cancel("t1", 1.5)) == ["t1", "t2"]
    assert sched.entry("t1").state is TaskState.CANCELLED
    assert sched.next_wakeup() is None
    assert sched.dispatch(100.0) == []
    assert sched.unfinished == 0


# --- timeouts -------------------------------------------------------------------------------


def test_expire_marks_timed_out_and_keeps_claims_until_finish() -> None:
    sched = make()
    sched.add(task("t1", "a", ["F"], timeout=5.0), 0.0)
    sched.add(task("t2", "b", ["G"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1", "t2"]
    entry = sched.entry("t1")
    assert entry.deadline == 5.0
    assert sched.next_wakeup() == 5.0
    assert sched.expire(4.999) == []
    assert entry.timed_out is False
    assert ids(sched.expire(5.0)) == ["t1"]
    assert entry.timed_out is True
    assert entry.state is TaskState.RUNNING
    assert sched.expire(6.0) == []  # reported once
    assert sched.next_wakeup() is None
    # Its claims and its agent stay held until it really returns.
    sched.add(task("w1", "c", ["F"]), 6.0)
    sched.add(task("w2", "a", ["H"]), 6.0)
    assert sched.dispatch(6.0) == []
    assert (reason_of(sched, "w1").kind, reason_of(sched, "w1").holder) == ("claim", "t1")
    assert (reason_of(sched, "w2").kind, reason_of(sched, "w2").holder) == ("agent", "t1")
    # SUCCEEDED is passed, TIMED_OUT is recorded.
    assert ids(sched.finish("t1", TaskState.SUCCEEDED, 7.0)) == ["t1"]
    assert entry.state is TaskState.TIMED_OUT
    assert ids(sched.dispatch(7.0)) == ["w1", "w2"]


def test_timed_out_task_skips_its_dependents() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"], timeout=1.0), 0.0)
    sched.add(task("t2", "b", ["y"], depends_on=["t1"]), 0.0)
    sched.dispatch(0.0)
    sched.expire(1.0)
    changed = sched.finish("t1", TaskState.FAILED, 2.0)
    assert ids(changed) == ["t1", "t2"]
    assert sched.entry("t1").state is TaskState.TIMED_OUT
    assert sched.entry("t2").outcome_reason == "dependency t1 timed_out"


def test_timed_out_task_finished_as_cancelled_is_cancelled() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"], timeout=1.0, retries=3), 0.0)
    sched.dispatch(0.0)
    sched.expire(1.0)
    sched.finish("t1", TaskState.CANCELLED, 2.0)
    assert sched.entry("t1").state is TaskState.CANCELLED
    assert sched.unfinished == 0


def test_next_wakeup_is_the_earliest_of_deadlines_and_retries() -> None:
    sched = make()
    assert sched.next_wakeup() is None
    sched.add(task("t1", "a", ["x"], timeout=10.0), 0.0)
    sched.add(task("t2", "b", ["y"], retries=1, retry_delay=3.0, retry_jitter=0.0), 0.0)
    sched.dispatch(0.0)
    assert sched.next_wakeup() == 10.0
    sched.finish("t2", TaskState.FAILED, 1.0)
    assert sched.next_wakeup() == 4.0
    sched.finish("t1", TaskState.SUCCEEDED, 2.0)
    assert sched.next_wakeup() == 4.0
    sched.dispatch(4.0)
    assert sched.next_wakeup() is None


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_a_queued_task() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.add(task("t2", "a", ["y"]), 0.0)
    sched.add(task("t3", "a", ["z"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["t1"]
    assert ids(sched.cancel("t2", 0.5)) == ["t2"]
    assert sched.entry("t2").state is TaskState.CANCELLED
    assert sched.entry("t2").finished_at == 0.5
    assert sched.unfinished == 2
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t3"]
    assert sched.cancel("t2", 2.0) == []  # already finished


def test_cancel_a_running_task_only_flags_it() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.add(task("t2", "b", ["y"], depends_on=["t1"]), 0.0)
    sched.dispatch(0.0)
    assert sched.cancel("t1", 1.0) == []
    entry = sched.entry("t1")
    assert entry.stop_requested is True
    assert entry.state is TaskState.RUNNING
    assert sched.entry("t2").state is TaskState.PENDING
    assert ids(sched.finish("t1", TaskState.CANCELLED, 2.0)) == ["t1", "t2"]
    assert entry.state is TaskState.CANCELLED
    assert sched.entry("t2").state is TaskState.SKIPPED


def test_cancel_a_task_parked_on_a_holder() -> None:
    sched = make()
    sched.add(task("h", "a", ["F"]), 0.0)
    sched.dispatch(0.0)
    sched.add(task("p", "b", ["F"]), 0.0)
    sched.add(task("q", "c", ["Q"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["q"]
    assert sched.reserved is sched.entry("p")
    sched.cancel("p", 1.0)
    assert sched.reserved is None
    sched.finish("h", TaskState.SUCCEEDED, 2.0)
    sched.finish("q", TaskState.SUCCEEDED, 2.0)
    assert sched.dispatch(2.0) == []
    assert sched.entry("p").state is TaskState.CANCELLED


def test_cancel_unknown_id_raises_key_error() -> None:
    with pytest.raises(KeyError):
        make().cancel("nope", 0.0)


# --- try_start ------------------------------------------------------------------------------


def test_try_start_starts_at_once() -> None:
    sched = make()
    entry = sched.try_start(task("t1", "a", ["x"]), 0.0)
    assert entry is sched.entry("t1")
    assert entry.state is TaskState.RUNNING
    assert entry.attempts == 1
    assert sched.unfinished == 1
    assert running_ids(sched) == {"t1"}


def test_try_start_agent_already_running() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.dispatch(0.0)
    with pytest.raises(AgentAlreadyRunningError) as info:
        sched.try_start(task("t2", "a", ["y"]), 0.0)
    assert info.value.holder == "t1"
    assert info.value.agent_type == "a"
    _assert_nothing_added(sched, ["t2"], 1)


def test_try_start_claim_conflict_names_the_holder() -> None:
    sched = make()
    sched.add(task("t1", "a", ["src/"]), 0.0)
    sched.dispatch(0.0)
    with pytest.raises(ClaimConflictError) as info:
        sched.try_start(task("t2", "b", ["src/x.py"]), 0.0)
    assert info.value.holder == "t1"
    assert info.value.holder_agent == "a"
    assert info.value.claim == "src/x.py"
    assert info.value.held_claim == "src/"
    assert info.value.reserved is False
    _assert_nothing_added(sched, ["t2"], 1)
    # A read against a read is fine.
    sched.add(_reader("r1", "c", "docs/"), 0.0)
    sched.dispatch(0.0)
    assert sched.try_start(_reader("r2", "d", "docs/a.md"), 0.0).state is TaskState.RUNNING


def test_try_start_capacity() -> None:
    sched = make(1)
    sched.add(task("t1", "a", ["x"]), 0.0)
    sched.dispatch(0.0)
    with pytest.raises(CapacityError) as info:
        sched.try_start(task("t2", "b", ["y"]), 0.0)
    assert info.value.max_parallel == 1
    _assert_nothing_added(sched, ["t2"], 1)


def test_try_start_with_unmet_dependency_raises_conflict_error() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    with pytest.raises(ConflictError, match="t1") as info:
        sched.try_start(task("t2", "b", ["y"], depends_on=["t1"]), 0.0)
    assert type(info.value) is ConflictError
    _assert_nothing_added(sched, ["t2"], 1)
    sched.dispatch(0.0)
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    assert sched.try_start(task("t2", "b", ["y"], depends_on=["t1"]), 1.0).state is TaskState.RUNNING


def test_try_start_validation_errors_add_nothing() -> None:
    sched = make()
    sched.add(task("t1", "a", ["x"]), 0.0)
    with pytest.raises(DuplicateTaskError):
        sched.try_start(task("t1", "b", ["y"]), 0.0)
    with pytest.raises(UnknownDependencyError):
        sched.try_start(task("t2", "b", ["y"], depends_on=["ghost"]), 0.0)
    _assert_nothing_added(sched, ["t2"], 1)
    assert sched.entry("t1").agent == "a"


def test_try_start_respects_the_reservation() -> None:
    sched = make()
    sched.add(task("A", "ha", ["F"]), 0.0)
    sched.dispatch(0.0)
    sched.add(task("T", "big", ["F", "G"]), 0.0)
    sched.dispatch(0.0)
    assert sched.reserved is sched.entry("T")
    with pytest.raises(ClaimConflictError) as info:
        sched.try_start(task("g", "other", ["G"]), 0.0)
    assert info.value.reserved is True
    assert info.value.holder == "T"
    with pytest.raises(AgentAlreadyRunningError) as agent_info:
        sched.try_start(task("b", "big", ["Z"]), 0.0)
    assert agent_info.value.holder == "T"
    _assert_nothing_added(sched, ["g", "b"], 2)
    # A higher-priority task ranks above the reservation and may start.
    assert sched.try_start(task("hi", "other", ["G"], 1), 0.0).state is TaskState.RUNNING


# --- waiting() ------------------------------------------------------------------------------


def test_waiting_lists_best_ranked_first_with_reasons() -> None:
    sched = make(3)
    sched.add(task("R", "r", ["r"], retries=1, retry_jitter=0.0), 0.0)
    assert ids(sched.dispatch(0.0)) == ["R"]
    sched.finish("R", TaskState.FAILED, 0.0)  # retry at 1.0
    sched.add(task("A", "a", ["x"]), 0.0)
    sched.add(task("B", "b", ["y"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["A", "B"]
    sched.add(task("C", "a", ["z"]), 0.0)  # agent a busy
    sched.add(task("D", "c", ["x"]), 0.0)  # x held by A
    sched.add(task("E", "d", ["w"]), 0.0)  # starts: third slot
    assert ids(sched.dispatch(0.0)) == ["E"]
    sched.add(task("F", "e", ["v"]), 0.0)  # no slot left
    sched.add(task("G", "g", ["u"], 7, depends_on=["F"]), 0.0)  # needs F; ranked first
    assert sched.dispatch(0.5) == []

    waiting = sched.waiting()
    assert [(e.id, r.kind) for e, r in waiting] == [
        ("G", "dependency"),
        ("R", "retry"),
        ("C", "agent"),
        ("D", "claim"),
        ("F", "capacity"),
    ]
    reasons = {e.id: r for e, r in waiting}
    assert reasons["G"].needs == ("F",)
    assert reasons["R"].until == 1.0
    assert reasons["R"].describe(0.5) == "retry in 0.5s"
    assert reasons["C"].holder == "A"
    assert (reasons["D"].holder, reasons["D"].claim, reasons["D"].held) == ("A", "x", "x")
    assert reasons["F"].limit == 3
    for entry, reason in waiting:
        assert sched.wait_reason(entry) == reason
    assert sched.waiting(limit=2) == waiting[:2]  # the best-ranked ones, as a status record shows them
    assert sched.waiting(limit=0) == []


def test_outcomes_count_every_terminal_state() -> None:
    sched = make(2)
    sched.add_batch([task("A", "a", ["x"]), task("B", "b", ["y"]), task("C", "c", ["z"], depends_on=["B"])], 0.0)
    assert sched.outcomes == {
        "succeeded": 0,
        "failed": 0,
        "timed_out": 0,
        "cancelled": 0,
        "skipped": 0,
        "rate_limited": 0,
    }
    assert ids(sched.dispatch(0.0)) == ["A", "B"]
    sched.finish("A", TaskState.SUCCEEDED, 1.0)
    sched.finish("B", TaskState.FAILED, 1.0)  # C is skipped with it
    sched.add(task("D", "d", ["w"]), 1.0)
    sched.cancel("D", 1.0)
    assert sched.outcomes == {
        "succeeded": 1,
        "failed": 1,
        "timed_out": 0,
        "cancelled": 1,
        "skipped": 1,
        "rate_limited": 0,
    }
    assert sched.unfinished == 0


# --- determinism ----------------------------------------------------------------------------


def _random_batch(rng: random.Random, n: int) -> list[AgentTask]:
    files = ["a.py", "b.py", "d/", "d/x.py", "d/*.py", "e/f.txt"]
    tasks: list[AgentTask] = []
    for i in range(n):
        earlier = [t.id for t in tasks]
        tasks.append(
            task(
                f"t{i}",
                rng.choice("wxyz"),
                rng.sample(files, rng.randint(1, 2)),
                rng.randint(0, 2),
                depends_on=rng.sample(earlier, min(len(earlier), rng.randint(0, 1))),
                retries=rng.randint(0, 1),
                retry_jitter=0.5,
            )
        )
    return tasks


def _replay(seed: int) -> list[tuple[float, str, int]]:
    """Run a random batch with pseudo-random outcomes; the (time, id, attempt) of each start."""
    rng = random.Random(seed)
    tasks = _random_batch(rng, 20)
    sched = Scheduler(3, rng=random.Random(seed))
    sched.add_batch(tasks, 0.0)
    starts: list[tuple[float, str, int]] = []
    ends: dict[str, float] = {}
    now = 0.0
    for _ in range(1000):
        for entry in sched.dispatch(now):
            starts.append((now, entry.id, entry.attempts))
            ends[entry.id] = now + rng.choice([0.5, 1.0, 1.5])
        times = [*ends.values()]
        if (wake := sched.next_wakeup()) is not None:
            times.append(wake)
        if not times:
            break
        now = min(times)
        for tid in sorted(t for t, end in ends.items() if end == now):
            del ends[tid]
            sched.finish(tid, TaskState.SUCCEEDED if rng.random() < 0.7 else TaskState.FAILED, now)
    assert sched.unfinished == 0
    return starts


def test_same_calls_give_the_same_start_order() -> None:
    first = _replay(1234)
    assert len(first) >= 5
    assert _replay(1234) == first
    assert _replay(4321) != first


# --- property test --------------------------------------------------------------------------

AGENTS = ("a", "b", "c", "d")
PATHS = ("f1.py", "f2.py", "d/", "d/x.py", "d/*.py", "e/", "e/y.txt", "e/**/*.txt")
OWNERSHIP = {"a": ["d/"], "b": ["e/**/*.txt", "f1.py"]}  # c and d unregistered: they own "**"
MAX_ATTEMPTS = 8  # outcomes drawn per task, used in turn; rate limits spend no retry, so more may run


#: The quota pools of the runs with pools, and the units a task may take of each.
POOLS = {"api": 2, "gpu": 3}
POOL_UNITS = {"api": (1, 2), "gpu": (1, 2, 3)}


@st.composite
def task_specs(draw: st.DrawFn, *, pools: bool = False) -> list[dict[str, Any]]:
    """Random tasks; with ``pools``, each takes a random part of POOLS (drawn last, so that
    the batches without pools are drawn as before)."""
    n = draw(st.integers(1, 12))
    specs: list[dict[str, Any]] = []
    for i in range(n):
        specs.append(
            {
                "id": f"t{i}",
                "agent": draw(st.sampled_from(AGENTS)),
                "files": draw(st.lists(st.sampled_from(PATHS), max_size=2, unique=True)),
                "reads": draw(st.lists(st.sampled_from(PATHS), max_size=2, unique=True)),
                "priority": draw(st.integers(0, 2)),
                "depends_on": draw(st.lists(st.sampled_from([s["id"] for s in specs]), max_size=2, unique=True))
                if specs
                else [],
                "retries": draw(st.integers(0, 2)),
                "timeout": draw(st.none() | st.sampled_from([1.5, 3.0])),
                "outcomes": draw(
                    st.lists(
                        st.sampled_from([TaskState.SUCCEEDED, TaskState.FAILED, TaskState.RATE_LIMITED]),
                        min_size=MAX_ATTEMPTS,
                        max_size=MAX_ATTEMPTS,
                    )
                ),
                "durations": draw(st.lists(st.integers(1, 4), min_size=MAX_ATTEMPTS, max_size=MAX_ATTEMPTS)),
                "gap": draw(st.sampled_from([0.0, 0.0, 0.0, 1.0, 2.5])),
            }
        )
        if pools:
            taken = draw(st.lists(st.sampled_from(sorted(POOLS)), max_size=2, unique=True))
            specs[-1]["pools"] = {pool: draw(st.sampled_from(POOL_UNITS[pool])) for pool in taken}
    return specs


def _check_running_set(
    sched: Scheduler,
    started: list[TaskEntry],
    instances: Mapping[str, int],
    pools: Mapping[str, int],
    *,
    lowered_ok: bool = False,
) -> None:
    running = sched.running
    # lowered_ok: max_parallel="auto" may lower the cap below what runs; then nothing may start.
    assert len(running) <= sched.max_parallel or (lowered_ok and not started)
    for agent, count in Counter(e.agent for e in running).items():
        assert count <= instances.get(agent, 1), f"{count} running tasks of {agent}: {ids(running)}"
    for pool, capacity in pools.items():
        used = sum(units for e in running for name, units in e.pools if name == pool)
        assert used <= capacity, f"{used} units of pool {pool} taken: {ids(running)}"
    for i, one in enumerate(running):
        for other in running[i + 1 :]:
            for mine, my_write in [*((c, True) for c in one.writes), *((c, False) for c in one.reads)]:
                for theirs, their_write in [*((c, True) for c in other.writes), *((c, False) for c in other.reads)]:
                    if my_write or their_write:
                        assert not overlaps(mine, theirs), f"{one.id} {mine} and {other.id} {theirs} run together"
    for entry in started:
        assert entry.state is TaskState.RUNNING
        for dep in entry.task.depends_on:
            assert sched.entry(dep).state is TaskState.SUCCEEDED, f"{entry.id} started before {dep} succeeded"
    reserved = sched.reserved
    if reserved is not None:
        assert reserved.state is TaskState.QUEUED, (reserved.id, reserved.state)
    # One admission rule: right after a dispatch, no queued task may be told it is ready to start.
    for entry in sched.entries():
        if entry.state is TaskState.QUEUED:
            assert getattr(sched.wait_reason(entry), "kind", None) not in (None, "ready"), entry.id
    if not running:
        # Nothing runs: every ready task is free to start, so dispatch must not leave one queued,
        # unless its agent is paused by a rate limit.
        queued = [e for e in sched.entries() if e.state is TaskState.QUEUED]
        assert not [e.id for e in queued if getattr(sched.wait_reason(e), "kind", None) != "rate_limit"]


class RandomMachine:
    """A machine whose readings the seed draws, with limits and tasks' needs drawn too: a
    16 GiB, 4-core machine, CPU unknown now and then, anything from idle to full."""

    TOTAL, CORES = 16 * GIB, 4

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.limits = Limits(self.rng.choice([None, 50.0, 85.0]), self.rng.choice([None, 1.0, 60.0, 90.0]))
        self.auto_every = self.rng.choice([None, 1.0, 3.0])  # max_parallel="auto" moving this often

    def rule(self, max_parallel: int) -> MachineRule:
        auto = None if self.auto_every is None else AutoParallel(max_parallel, max_parallel + 2, every=self.auto_every)
        return MachineRule(self.limits, auto=auto)

    def needs(self) -> dict[str, Any]:
        return {
            "memory": self.rng.choice([None, None, GIB, 4 * GIB, 12 * GIB]),
            "cpus": self.rng.choice([None, None, 0.5, 2.0, 4.0]),
        }

    def read(self) -> Reading:
        cpu = None if self.rng.random() < 0.1 else self.rng.uniform(0.0, 100.0)
        return Reading.of(cpu, int(self.TOTAL * self.rng.uniform(0.0, 1.0)), self.TOTAL, self.CORES)


def _check_machine(sched: Scheduler, running_before: list[TaskEntry], started: list[TaskEntry]) -> None:
    """Each task started beside another kept to the machine's rule as it stood (a dispatch
    reads no machine): no limit held, and its needs fitted in the room the tasks running before
    it left, counted here apart from the rule's own sums."""
    rule = sched.machine
    assert rule is not None
    memory = sum(e.task.memory or 0 for e in running_before)
    cpus = sum(e.task.cpus or 0.0 for e in running_before)
    for i, entry in enumerate(started):
        if running_before or i:  # the progress guarantee: one may start when none runs
            assert not rule.holding, f"{entry.id} started while a limit held"
            if entry.task.memory is not None:
                assert rule.available is not None
                assert entry.task.memory <= rule.available - memory, f"{entry.id} did not fit in memory"
            if entry.task.cpus is not None:
                assert rule.cpu is not None
                assert rule.last is not None
                idle = rule.last.cores * (100.0 - rule.cpu) / 100.0
                assert entry.task.cpus <= idle - cpus + 1e-9, f"{entry.id} did not fit in cores"
        memory += entry.task.memory or 0
        cpus += entry.task.cpus or 0.0


def _simulate(
    specs: list[dict[str, Any]],
    max_parallel: int,
    reverse_batch: bool,
    seed: int,
    instances: Mapping[str, int] | None = None,
    estimates: Sequence[float | None] = (),
    machine: RandomMachine | None = None,
    pools: Mapping[str, int] | None = None,
) -> Scheduler:
    # The seed also picks how soon a starving task is reserved (0: at once ... 4: the default).
    instances = instances or {}
    pools = pools or {}
    sched = Scheduler(
        max_parallel,
        ownership=FileOwnership(OWNERSHIP),
        rng=random.Random(seed),
        max_bypass=seed % 5,
        instances=instances,
        machine=None if machine is None else machine.rule(max_parallel),
        pools=pools,
    )
    if machine is not None:
        sched.observe(machine.read(), 0.0)
    by_id = {s["id"]: s for s in specs}
    tasks = {
        s["id"]: task(
            s["id"],
            s["agent"],
            s["files"],
            s["priority"],
            reads=s["reads"],
            depends_on=s["depends_on"],
            retries=s["retries"],
            timeout=s["timeout"],
            rate_limit_backoff=1.0,
            rate_limit_max_wait=10.0,  # 1 + 2 + 4: a fourth limit in a row gives up
            estimate_s=estimates[i] if i < len(estimates) else None,
            **({} if machine is None else machine.needs()),
            pools=s.get("pools", {}),
        )
        for i, s in enumerate(specs)
    }
    # Arrival times grow with the id, so a dependency is known before its dependent arrives.
    # Tasks arriving at 0 come as one batch (reversed: forward references), the rest one by one.
    arrivals: list[tuple[float, str]] = []
    clock = 0.0
    for spec in specs:
        clock += spec["gap"]
        arrivals.append((clock, spec["id"]))
    batch = [tasks[tid] for when, tid in arrivals if when == 0.0]
    sched.add_batch(batch[::-1] if reverse_batch else batch, 0.0)
    fixed = [(when, tid) for when, tid in arrivals if when > 0.0]

    ends: dict[str, float] = {}
    now = 0.0
    for _ in range(2000 if machine is None else 20000):  # with a machine, a look each second
        while fixed and fixed[0][0] <= now:
            _, tid = fixed.pop(0)
            sched.add(tasks[tid], now)
        sched.expire(now)
        if machine is not None and sched.machine is not None and sched.machine.due(now):
            sched.observe(machine.read(), now)
        running_before = sched.running
        started = sched.dispatch(now)
        _check_running_set(sched, started, instances, pools or {}, lowered_ok=machine is not None)
        if machine is not None:
            _check_machine(sched, running_before, started)
        for entry in started:
            assert entry.attempts - entry.rate_limits <= by_id[entry.id]["retries"] + 1
            ends[entry.id] = now + by_id[entry.id]["durations"][(entry.attempts - 1) % MAX_ATTEMPTS]
        times = [*ends.values()]
        if fixed:
            times.append(fixed[0][0])
        if (wake := sched.next_wakeup()) is not None:
            assert wake >= now
            times.append(wake)
        if sched.machine is not None and sched.machine.next_look is not None and sched.unfinished:
            times.append(sched.machine.next_look)
        if not times:
            break
        now = min(times)
        for tid in sorted(t for t, end in ends.items() if end == now):
            del ends[tid]
            entry = sched.entry(tid)
            sched.finish(tid, by_id[tid]["outcomes"][(entry.attempts - 1) % MAX_ATTEMPTS], now)
    else:
        pytest.fail("the simulation did not end")
    return sched


def _examples(count: int) -> settings:
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


_random_batches = given(
    specs=task_specs(),
    max_parallel=st.integers(1, 4),
    reverse_batch=st.booleans(),
    seed=st.integers(0, 2**16),
)


@_examples(400)
@_random_batches
def test_random_batches_are_safe_and_complete(
    specs: list[dict[str, Any]], max_parallel: int, reverse_batch: bool, seed: int
) -> None:
    _check_outcomes(_simulate(specs, max_parallel, reverse_batch, seed), specs)


@_examples(100)
@_random_batches
def test_random_batches_with_several_instances_of_agents_are_safe_and_complete(
    specs: list[dict[str, Any]], max_parallel: int, reverse_batch: bool, seed: int
) -> None:
    """As above, with two instances of a registered agent and three of one that owns "**"."""
    _check_outcomes(_simulate(specs, max_parallel, reverse_batch, seed, instances={"a": 2, "c": 3}), specs)


@_examples(200)
@given(
    specs=task_specs(),
    max_parallel=st.integers(1, 4),
    reverse_batch=st.booleans(),
    seed=st.integers(0, 2**16),
    estimates=st.lists(st.none() | st.floats(0.0, 50.0), min_size=12, max_size=12),
)
def test_random_batches_with_estimates_are_safe_and_complete(
    specs: list[dict[str, Any]], max_parallel: int, reverse_batch: bool, seed: int, estimates: list[float | None]
) -> None:
    """As above, each task with an estimate or none: the order changes, never the rules."""
    _check_outcomes(_simulate(specs, max_parallel, reverse_batch, seed, estimates=estimates), specs)


@_random_batches
def test_random_batches_on_a_random_machine_are_safe_and_complete(
    specs: list[dict[str, Any]], max_parallel: int, reverse_batch: bool, seed: int
) -> None:
    """As above, on a machine whose readings jump at random, with limits (1% of memory: above
    it always), needs (up to the whole machine) and max_parallel="auto" drawn by the seed: the
    rules hold, the machine's too, and every task still ends (one may always start when none
    runs; a lowered max_parallel stops no running task, and admits none until below it)."""
    sched = _simulate(specs, max_parallel, reverse_batch, seed, machine=RandomMachine(seed))
    _check_outcomes(sched, specs)


@_examples(300)
@given(
    specs=task_specs(pools=True),
    max_parallel=st.integers(1, 4),
    reverse_batch=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_batches_with_quota_pools_are_safe_and_complete(
    specs: list[dict[str, Any]], max_parallel: int, reverse_batch: bool, seed: int
) -> None:
    """As above, each task taking units of up to two pools: never more units in use than a
    pool has, every task completes, and no task that may start is left waiting."""
    sched = _simulate(specs, max_parallel, reverse_batch, seed, instances={"a": 2}, pools=POOLS)
    _check_outcomes(sched, specs)


def _check_outcomes(sched: Scheduler, specs: list[dict[str, Any]]) -> None:
    """Every task of ``specs`` ended as its drawn outcomes, retries and dependencies say."""
    assert sched.unfinished == 0
    assert sched.running == []
    for spec in specs:
        entry = sched.entry(spec["id"])
        assert entry.state.is_terminal, (entry.id, entry.state)
        deps_ok = all(sched.entry(d).state is TaskState.SUCCEEDED for d in spec["depends_on"])
        assert (entry.state is TaskState.SKIPPED) == (not deps_ok), (entry.id, entry.state)
        if entry.state is TaskState.SKIPPED:
            assert entry.attempts == 0
            continue
        last = (entry.attempts - 1) % MAX_ATTEMPTS
        assert entry.attempts >= 1
        assert entry.attempts - entry.rate_limits <= spec["retries"] + 1
        duration = spec["durations"][last]
        # A task that returns exactly at its deadline finishes before expire() sees it.
        timed_out = spec["timeout"] is not None and duration > spec["timeout"]
        if timed_out:
            assert entry.state is TaskState.TIMED_OUT
        else:
            assert entry.state is spec["outcomes"][last]
        if entry.attempts - entry.rate_limits < spec["retries"] + 1:
            assert entry.state in (TaskState.SUCCEEDED, TaskState.RATE_LIMITED)


def test_try_start_on_a_reserved_agent_says_reserved_not_running() -> None:
    sched = make()
    sched.add(task("hold", "b", ["f"]), 0.0)
    sched.dispatch(0.0)
    sched.add(task("starved", "a", ["f"]), 0.0)
    sched.dispatch(0.0)
    assert sched.reserved is not None
    assert sched.reserved.id == "starved"
    with pytest.raises(AgentAlreadyRunningError, match="reserved for task 'starved'") as error:
        sched.try_start(task("late", "a", ["g"]), 0.0)
    assert error.value.reserved is True


@pytest.mark.parametrize("outcome", [TaskState.QUEUED, TaskState.RUNNING, TaskState.PENDING, TaskState.SKIPPED])
def test_finish_rejects_a_state_that_is_not_an_outcome(outcome: TaskState) -> None:
    sched = make()
    sched.add(task("t1", "a", ["f"]), 0.0)
    sched.dispatch(0.0)
    with pytest.raises(ValueError, match="a finished attempt is one of"):
        sched.finish("t1", outcome, 1.0)
    assert sched.entry("t1").state is TaskState.RUNNING
    assert sched.unfinished == 1


def test_a_queued_task_not_yet_dispatched_is_ready_not_at_capacity() -> None:
    sched = make(max_parallel=2)
    sched.add(task("t1", "a", ["f"]), 0.0)
    assert str(reason_of(sched, "t1")) == "ready to start"


def test_a_task_with_only_reads_writes_nothing() -> None:
    sched = make()
    sched.add(task("reader", "assistant", [], reads=["docs/"]), 0.0)
    sched.add(task("writer", "dev", ["src/a.py"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["reader", "writer"]
    assert sched.entry("reader").writes == ()


# --- reservation aging and wait groups -------------------------------------------------------


def test_the_reservation_applies_only_after_max_bypass_bypasses() -> None:
    """T waits for F and G; each lower-ranked task that takes one of them bypasses it."""
    sched = make(max_parallel=2, max_bypass=2)
    sched.add(task("A", "ha", ["F"]), 0.0)
    sched.dispatch(0.0)
    sched.add(task("T", "big", ["F", "G"]), 0.0)
    sched.add(task("B", "hb", ["G"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["B"]  # bypass 1: B takes G while T waits for A's F
    assert sched.reserved is None  # watched, not yet reserved
    sched.add(task("x1", "hx1", ["F"]), 1.0)
    sched.finish("A", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["x1"]  # bypass 2: T still waits for G, x1 takes F
    assert sched.reserved is sched.entry("T")
    sched.add(task("x2", "hx2", ["G"]), 2.0)
    sched.finish("B", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == []  # G is free but reserved for T, which waits for F
    assert str(reason_of(sched, "x2")) == "G overlaps G, reserved for T (waiting longest)"
    sched.finish("x1", TaskState.SUCCEEDED, 3.0)
    assert ids(sched.dispatch(3.0)) == ["T"]
    assert sched.reserved is None
    sched.finish("T", TaskState.SUCCEEDED, 4.0)
    assert ids(sched.dispatch(4.0)) == ["x2"]


def test_max_bypass_must_be_a_non_negative_integer() -> None:
    with pytest.raises(ValueError, match="max_bypass"):
        Scheduler(2, max_bypass=-1)


def test_many_tasks_on_one_hot_file_move_as_a_group() -> None:
    """Each release looks at one waiter, not all of them: the rest follow the one that starts."""
    n = 200
    sched = make(max_parallel=4)
    sched.add_batch([task(f"t{i}", f"agent{i}", ["hot.py"]) for i in range(n)], 0.0)
    order: list[str] = []
    now = 0.0
    started = sched.dispatch(now)
    while started:
        assert len(started) == 1
        order.append(started[0].id)
        now += 1.0
        sched.finish(started[0].id, TaskState.SUCCEEDED, now)
        started = sched.dispatch(now)
    assert order == [f"t{i}" for i in range(n)]
    assert sched.unfinished == 0


def test_a_group_keeps_its_reason_and_members_when_it_moves() -> None:
    sched = make(max_parallel=4)
    sched.add_batch([task(f"t{i}", f"agent{i}", ["hot.py"]) for i in range(4)], 0.0)
    sched.dispatch(0.0)
    held = "hot.py overlaps hot.py held by agent0 (t0)"
    reserved = "hot.py overlaps hot.py, reserved for t1 (waiting longest)"  # max_bypass=0: at once
    assert [str(r) for _, r in sched.waiting()] == [held, f"{held}; {reserved}", f"{held}; {reserved}"]
    sched.finish("t0", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["t1"]
    assert [str(r) for _, r in sched.waiting()] == ["hot.py overlaps hot.py held by agent1 (t1)"] * 2
    sched.cancel("t2", 1.0)
    sched.finish("t1", TaskState.SUCCEEDED, 2.0)
    assert ids(sched.dispatch(2.0)) == ["t3"]  # the cancelled member is skipped


def test_a_released_group_member_whose_agent_is_busy_does_not_hold_back_the_rest() -> None:
    sched = make(max_parallel=4)
    sched.add(task("hold", "h", ["hot.py"]), 0.0)
    sched.add(task("busy", "b", ["other.py"]), 0.0)
    sched.dispatch(0.0)
    sched.add(task("w1", "b", ["hot.py"]), 0.0)  # agent b is busy: waits in b's queue
    sched.add(task("w2", "c", ["hot.py"]), 0.0)
    sched.add(task("w3", "d", ["hot.py"]), 0.0)
    sched.dispatch(0.0)
    sched.finish("hold", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["w2"]  # w1's agent is busy; w2 takes the file
    assert reason_of(sched, "w1").kind == "agent"
    assert str(reason_of(sched, "w3")) == "hot.py overlaps hot.py held by c (w2)"


# --- claims held by other processes ----------------------------------------------------------


def _claims(*paths: str) -> tuple[tuple[Claim, Access], ...]:
    return tuple((Claim.parse(p), Access.WRITE) for p in paths)


def test_an_external_holder_blocks_like_a_running_task_but_takes_no_slot() -> None:
    sched = make(max_parallel=1)
    sched.hold_external("t9 in run other", "architect", _claims("docs/"))
    sched.add(task("doc", "writer", ["docs/x.md"]), 0.0)
    sched.add(task("arch", "architect", ["src/a.py"]), 0.0)
    sched.add(task("free", "dev", ["src/b.py"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["free"]  # the only slot is ours to use
    assert str(reason_of(sched, "doc")) == (
        "docs/x.md overlaps docs/ held by architect (t9 in run other); max_parallel (1) reached"
    )
    assert str(reason_of(sched, "arch")) == "architect busy (t9 in run other); max_parallel (1) reached"
    sched.finish("free", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == []
    sched.release_external("t9 in run other")
    assert ids(sched.dispatch(1.0)) == ["doc"]  # the cap is 1: arch waits for the slot
    assert reason_of(sched, "arch").kind == "capacity"
    assert sched.external_holders == []


def test_try_start_names_an_external_holder() -> None:
    sched = make()
    sched.hold_external("t9 in run other", "architect", _claims("src/"))
    with pytest.raises(ClaimConflictError, match="t9 in run other"):
        sched.try_start(task("x", "dev", ["src/x.py"]), 0.0)
    with pytest.raises(AgentAlreadyRunningError, match="t9 in run other"):
        sched.try_start(task("y", "architect", ["docs/y.md"]), 0.0)


def test_an_external_holder_id_must_be_new() -> None:
    sched = make()
    sched.add(task("t1", "a", ["f"]), 0.0)
    with pytest.raises(ValueError, match="already known"):
        sched.hold_external("t1", "b", _claims("g"))
    sched.hold_external("ext", "b", _claims("g"))
    with pytest.raises(ValueError, match="already known"):
        sched.hold_external("ext", "b", _claims("g"))


# --- estimates: the order of a batch ------------------------------------------------------------


def _run_one_at_a_time(sched: Scheduler, *, durations: Mapping[str, float] | None = None) -> list[str]:
    """Run everything queued, one task at a time (max_parallel 1); the order they started in."""
    order: list[str] = []
    now = 0.0
    while started := sched.dispatch(now):
        (entry,) = started
        order.append(entry.id)
        now += (durations or {}).get(entry.id, 1.0)
        sched.finish(entry.id, TaskState.SUCCEEDED, now)
    assert sched.unfinished == 0
    return order


def test_of_equal_priority_the_longest_critical_path_starts_first() -> None:
    """c is short but d waits for it: c + d is the longest chain, then b, then a."""
    sched = make(1)
    sched.add_batch(
        [
            task("a", "p", ["a.py"], estimate_s=1.0),
            task("b", "q", ["b.py"], estimate_s=5.0),
            task("c", "r", ["c.py"], estimate_s=2.0),
            task("d", "s", ["d.py"], estimate_s=10.0, depends_on=["c"]),
        ],
        0.0,
    )
    assert _run_one_at_a_time(sched) == ["c", "d", "b", "a"]


def test_of_equal_critical_paths_the_longest_estimate_starts_first() -> None:
    sched = make(1)
    sched.add_batch(
        [
            task("x", "p", ["x.py"], estimate_s=3.0),
            task("y", "q", ["y.py"], estimate_s=2.0, depends_on=["x"]),
            task("z", "r", ["z.py"], estimate_s=5.0),
            task("w", "s", ["w.py"], estimate_s=5.0),  # as z in all: submission order
        ],
        0.0,
    )
    assert _run_one_at_a_time(sched) == ["z", "w", "x", "y"]


def test_priority_wins_over_any_estimate() -> None:
    sched = make(1)
    sched.add_batch(
        [
            task("long", "p", ["a.py"], estimate_s=1000.0),
            task("urgent", "q", ["b.py"], priority=1, estimate_s=1.0),
            task("chain", "r", ["c.py"], estimate_s=1.0),
            task("after", "s", ["d.py"], estimate_s=5000.0, depends_on=["chain"]),
        ],
        0.0,
    )
    assert _run_one_at_a_time(sched) == ["urgent", "chain", "after", "long"]


def test_without_estimates_the_order_is_the_submission_order() -> None:
    sched = make(1)
    sched.add_batch([task(f"t{i}", f"agent{i}", [f"f{i}.py"]) for i in range(5)][::-1], 0.0)
    assert _run_one_at_a_time(sched) == ["t4", "t3", "t2", "t1", "t0"]


def test_a_task_without_an_estimate_counts_as_none_of_the_run() -> None:
    """In a batch where some tasks have estimates, one without goes after them (and before none
    of them), unless a dependant it holds up has one."""
    sched = make(1)
    sched.add_batch(
        [
            task("unknown", "p", ["a.py"]),
            task("known", "q", ["b.py"], estimate_s=2.0),
            task("unknown2", "r", ["c.py"]),
            task("holds_up", "s", ["d.py"]),
            task("after", "t", ["e.py"], estimate_s=3.0, depends_on=["holds_up"]),
        ],
        0.0,
    )
    assert _run_one_at_a_time(sched) == ["holds_up", "after", "known", "unknown", "unknown2"]


def test_estimates_never_let_a_later_submission_pass_an_earlier_one() -> None:
    """Each submission is ordered within itself; tasks already queued keep their place, so a
    stream of long tasks cannot keep a short one waiting (the reservation's guarantee holds)."""
    sched = make(1)
    sched.add(task("hold", "h", ["h.py"]), 0.0)
    assert ids(sched.dispatch(0.0)) == ["hold"]
    sched.add(task("short", "p", ["a.py"], estimate_s=1.0), 0.0)
    sched.add_batch(
        [task("long", "q", ["b.py"], estimate_s=100.0), task("longer", "r", ["c.py"], estimate_s=200.0)], 0.0
    )
    sched.add(task("longest", "s", ["d.py"], estimate_s=300.0), 0.0)
    sched.finish("hold", TaskState.SUCCEEDED, 1.0)
    assert _run_one_at_a_time(sched) == ["short", "longer", "long", "longest"]


def test_the_reservation_still_saves_a_short_task_from_a_stream_of_long_ones() -> None:
    """T (short) needs F, which A holds; later long tasks want F too. As without estimates, T is
    reserved after max_bypass bypasses and starts before any of them once F is free."""
    sched = make(max_parallel=4, max_bypass=1)
    sched.add(task("A", "ha", ["F"], estimate_s=10.0), 0.0)
    assert ids(sched.dispatch(0.0)) == ["A"]
    sched.add_batch(
        [task("T", "t", ["F", "G"], estimate_s=1.0), task("B", "hb", ["G"], estimate_s=50.0)],
        0.0,
    )
    assert ids(sched.dispatch(0.0)) == ["B"]  # B ranks above T in its batch; it takes G, T waits
    assert sched.reserved is None
    sched.add_batch([task(f"long{i}", f"l{i}", ["F"], estimate_s=100.0 * (i + 1)) for i in range(3)], 1.0)
    sched.finish("A", TaskState.SUCCEEDED, 1.0)
    assert ids(sched.dispatch(1.0)) == ["long2"]  # T waits for B's G: long2 takes F, the one bypass allowed
    assert sched.reserved is sched.entry("T")
    sched.finish("long2", TaskState.SUCCEEDED, 2.0)
    assert sched.dispatch(2.0) == []  # F is free, but reserved for T
    assert {reason_of(sched, f"long{i}").kind for i in range(2)} == {"reserved"}
    sched.finish("B", TaskState.SUCCEEDED, 3.0)
    assert ids(sched.dispatch(3.0)) == ["T"]
    sched.finish("T", TaskState.SUCCEEDED, 4.0)
    assert ids(sched.dispatch(4.0)) == ["long1"]  # then the longest left of the later batch


def test_waiting_lists_tasks_in_the_order_they_would_start() -> None:
    sched = make(1)
    sched.add(task("hold", "h", ["h.py"]), 0.0)
    sched.dispatch(0.0)
    sched.add_batch([task("a", "p", ["a.py"], estimate_s=1.0), task("b", "q", ["b.py"], estimate_s=9.0)], 0.0)
    assert [e.id for e, _ in sched.waiting()] == ["b", "a"]
