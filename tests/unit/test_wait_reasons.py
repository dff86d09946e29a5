"""Why a task waits: every blocker named, in one fixed order, from the one admission rule.

Before, a task waiting for a slot *and* a claim was told only "max_parallel (4) reached", and
a task whose agent was busy only that, though the claim would still block it once the slot
or the agent freed. The scheduler is stepped by hand here, no threads.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from queue_core import AgentTask, TaskQueue, repo_status
from queue_core import registry_sync as sync_module
from queue_core.claims import Access, Claim
from queue_core.records import RunRecord, WaitingTask
from queue_core.registry import state_dir
from queue_core.task import TaskState
from tests.conftest import Gate, wait_for

from .test_scheduler import ids, make, reason_of, task


def test_a_task_waiting_for_a_slot_and_a_claim_is_told_both() -> None:
    sched = make(max_parallel=1)
    sched.add_batch([task("spec", "architect", ["docs/"]), task("page", "writer", ["docs/x.md"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["spec"]
    reason = reason_of(sched, "page")
    assert str(reason) == "docs/x.md overlaps docs/ held by architect (spec); max_parallel (1) reached"
    # The first blocker stays the reason's kind and holder, as status --json gives them.
    assert (reason.kind, reason.holder) == ("claim", "spec")


def test_a_task_whose_agent_is_busy_is_told_of_a_claim_held_by_another_task_too() -> None:
    sched = make()
    sched.add_batch(
        [task("a1", "dev", ["src/a.py"]), task("b1", "ops", ["docs/"]), task("a2", "dev", ["docs/b.md"])], 0.0
    )
    assert ids(sched.dispatch(0.0)) == ["a1", "b1"]
    assert str(reason_of(sched, "a2")) == "dev busy (a1); docs/b.md overlaps docs/ held by ops (b1)"


def test_a_holder_already_named_is_not_named_twice() -> None:
    """Its agent busy and its claim held by one task: one blocker, which frees both at once."""
    sched = make()
    sched.add_batch([task("a1", "dev", ["src/a.py"]), task("a2", "dev", ["src/a.py"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["a1"]
    assert str(reason_of(sched, "a2")) == "dev busy (a1)"


def test_every_holder_of_an_overlapping_claim_is_named_in_the_order_of_the_claims() -> None:
    sched = make(max_parallel=3)
    sched.add_batch(
        [task("d", "architect", ["docs/"]), task("s", "ops", ["src/"]), task("w", "writer", ["src/x.py", "docs/y.md"])],
        0.0,
    )
    assert ids(sched.dispatch(0.0)) == ["d", "s"]
    assert str(reason_of(sched, "w")) == (
        "src/x.py overlaps src/ held by ops (s); docs/y.md overlaps docs/ held by architect (d)"
    )


def test_a_rate_limit_pause_comes_first_and_the_claim_it_will_meet_follows() -> None:
    sched = make()
    sched.add_batch([task("a", "claude", ["x.py"]), task("c", "codex", ["x.py"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["a"]
    sched.finish("a", TaskState.RATE_LIMITED, 1.0, "429")
    assert ids(sched.dispatch(1.0)) == ["c"]
    reason = reason_of(sched, "a")
    assert reason.describe(6.0) == "claude rate-limited, resumes in 25s; x.py overlaps x.py held by codex (c)"
    assert (reason.kind, reason.until) == ("rate_limit", 31.0)


def test_other_runs_holds_and_places_in_line_are_named_with_the_cap() -> None:
    sched = make(max_parallel=1)
    sched.hold_external("t9 in run other", "architect", ((Claim.parse("docs/"), Access.WRITE),))
    sched.hold_external("b1 in run B, ahead in line", "dev", ((Claim.parse("src/"), Access.WRITE),), in_line=True)
    sched.add_batch([task("free", "ops", ["bin/"]), task("w", "writer", ["src/a.py", "docs/x.md"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["free"]
    assert str(reason_of(sched, "w")) == (
        "src/a.py overlaps src/, reserved for b1 in run B, ahead in line (waiting longest); "
        "docs/x.md overlaps docs/ held by architect (t9 in run other); max_parallel (1) reached"
    )


def test_a_reservation_and_the_agent_it_is_for_are_named_once() -> None:
    """A task held back by a reservation for a task of its agent is told so once, not twice."""
    sched = make(max_parallel=2)
    sched.add_batch([task("h", "ops", ["x.py"]), task("r", "dev", ["x.py"]), task("late", "dev", ["y.py"])], 0.0)
    assert ids(sched.dispatch(0.0)) == ["h"]  # r is reserved at once (max_bypass=0): late is held back
    assert sched.reserved is not None
    assert sched.reserved.id == "r"
    assert str(reason_of(sched, "late")) == "agent dev, reserved for r (waiting longest)"


def test_a_task_nothing_blocks_is_ready_to_start() -> None:
    sched = make()
    sched.add(task("a", "dev"), 0.0)
    assert str(reason_of(sched, "a")) == "ready to start"


def test_try_start_refuses_with_the_cap_first() -> None:
    """The error ``try_start`` raises is the first blocker of the cap-first order it always used."""
    sched = make(max_parallel=1)
    sched.add(task("spec", "architect", ["docs/"]), 0.0)
    sched.dispatch(0.0)
    with pytest.raises(Exception, match=r"max_parallel \(1\) tasks are already running"):
        sched.try_start(task("page", "writer", ["docs/x.md"]), 0.0)


def test_the_live_status_and_the_run_record_carry_every_blocker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module, "RECORD_INTERVAL_S", 0.0)  # every step writes the record
    gate = Gate()
    with TaskQueue(max_parallel=1, repo=tmp_path, run_id="live") as queue:
        queue.submit_task(AgentTask("architect", "spec", ["docs/"], gate, id="spec"))
        wait_for(gate.started, "spec")
        queue.submit_task(AgentTask("writer", "page", ["docs/x.md"], lambda: None, id="page"))
        live, status = queue.get_status(), repo_status(tmp_path)
        gate.open()
    expected = "docs/x.md overlaps docs/ held by architect (spec); max_parallel (1) reached"
    assert [w.reason for w in live.waiting] == [expected]
    [run] = status.runs
    assert [w.reason for w in run.waiting] == [expected]
    [waiting] = json.loads(json.dumps(status.to_json()))["runs"][0]["waiting"]
    assert (waiting["reason"], waiting["reason_kind"], waiting["blocked_by"]) == (expected, "claim", "spec")


def test_a_recorded_pause_is_told_from_now_and_keeps_the_blockers_after_it(tmp_path: Path) -> None:
    """``status`` tells a rate-limit pause from now, not from when the run wrote its record:
    the rest of the reason (a claim it will meet, a note on its holder) stays as written."""
    written = "claude rate-limited, resumes in 59m 59s; x.py overlaps x.py held by codex (c)"
    with TaskQueue(repo=tmp_path, run_id="reader") as queue:
        assert queue.registry is not None
        status = queue.get_status().recorded(1000.0)
        waiting = WaitingTask("a", "claude", "do a", "queued", written, "rate_limit", resumes_at=10.0**10)
        record = RunRecord(
            "old",
            replace(queue.registry.owner, run="old"),
            1000.0,
            str(tmp_path),
            900.0,
            replace(status, waiting=(waiting,)),
        )
        (state_dir(tmp_path) / "runs" / "old.json").write_text(json.dumps(record.to_json()))
        [run] = [r for r in repo_status(tmp_path).runs if r.run == "old"]
    [told] = run.waiting
    assert told.reason.startswith("claude rate-limited, resumes in ")
    assert told.reason != written
    assert told.reason.endswith("; x.py overlaps x.py held by codex (c)")


def test_a_status_may_describe_only_the_best_ranked_waiting_tasks() -> None:
    """A live view shows a screenful: it need not pay every waiting task's reason, four times a second."""
    gate = Gate()
    with TaskQueue(max_parallel=1) as queue:
        queue.submit_task(AgentTask("architect", "spec", ["docs/"], gate, id="spec"))
        wait_for(gate.started, "spec")
        for i in range(5):
            queue.submit_task(AgentTask("writer", f"page {i}", [f"docs/{i}.md"], lambda: None, id=f"p{i}", priority=i))
        status = queue.get_status(waiting_limit=2)
        gate.open()
    assert [w.id for w in status.waiting] == ["p4", "p3"]
    assert status.queued_tasks == 5
