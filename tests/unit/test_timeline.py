"""Reading a run's journal back for the timeline: tasks, attempts, waits, a killed run, damaged
lines, and the critical path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from queue_core.errors import JournalError
from queue_core.timeline import JournalRun, critical_path, journal_lines, run_from_events

from ..conftest import in_thread
from ._journals import KILLED, RELEASE, STANDARD, T0, batch_task, final, jsonl, started, task_line


def read(events: list[dict[str, object]]) -> JournalRun:
    return run_from_events(events)


def test_the_standard_run_as_its_journal_tells_it() -> None:
    run = read(STANDARD)
    assert [t.id for t in run.tasks] == ["spec", "api", "broken", "tests", "flaky", "notes", "after"]
    assert (run.run, run.started_at, run.ended_at, run.exit_code) == ("r1", T0, T0 + 10, 1)
    flaky = run.task("flaky")
    assert flaky is not None
    assert [(a.number, a.ending, a.start - T0, a.end - T0) for a in flaky.attempts] == [
        (1, "retried", 0, 2),
        (2, "succeeded", 3, 5),
    ]
    assert flaky.resumes == {1: "retry after: the agent exited with code 1"}
    broken = run.task("broken")
    assert broken is not None
    assert (broken.outcome, broken.attempts[0].exit_code, broken.error) == (
        "failed",
        3,
        "the agent exited with code 3",
    )
    after = run.task("after")
    assert after is not None
    assert (after.outcome, after.attempts, after.depends_on) == ("skipped", [], ("broken",))
    assert run.wall_s == 10
    assert run.task_s == 6 + 4 + 3 + 6 + 2 + 2 + 3


def test_a_task_is_queued_when_its_last_dependency_ends() -> None:
    run = read(STANDARD)
    tests, spec, after = run.task("tests"), run.task("spec"), run.task("after")
    assert tests is not None
    assert spec is not None
    assert after is not None
    assert run.queued_at(spec) == T0
    assert run.queued_at(tests) == T0 + 4
    assert run.queued_at(after) == T0 + 7


def test_a_killed_run_draws_its_running_attempts_up_to_its_last_line() -> None:
    run = read(KILLED)
    assert run.ended_at is None
    assert run.last_time == T0 + 7
    long, queued = run.task("long"), run.task("queued")
    assert long is not None
    assert queued is not None
    assert [(a.ending, a.end - T0, a.seconds) for a in long.attempts] == [("unfinished", 7, 7)]
    assert long.outcome is None
    assert (queued.attempts, queued.outcome, [r for _, r in queued.reasons]) == (
        [],
        None,
        ["ops busy (long)", "ops busy (long)"],
    )
    assert run.wall_s == 7


def test_a_dependant_of_a_task_that_never_ended_was_never_queued() -> None:
    events = [
        started(0, [batch_task("a", "dev"), batch_task("b", "dev", ["a"])]),
        task_line("started", 0, "a", "dev"),
    ]
    run = read(events)
    b = run.task("b")
    assert b is not None
    assert run.queued_at(b) is None


def test_a_rate_limit_that_is_not_final_pauses_the_attempt_and_a_final_one_ends_the_task() -> None:
    events = [
        started(0, [batch_task("t", "claude")]),
        task_line("started", 0, "t", "claude"),
        task_line("rate_limited", 1, "t", "claude", final=False, error="429", resumes_at=T0 + 31),
        task_line("started", 31, "t", "claude", attempt=2),
        final("rate_limited", 32, "t", "claude", attempt=2, duration=1.0, exit_code=1, error="429 again"),
    ]
    t = read(events).task("t")
    assert t is not None
    assert [a.ending for a in t.attempts] == ["paused", "rate_limited"]
    assert t.resumes[1].startswith("rate-limited: 429")
    assert t.outcome == "rate_limited"


def test_an_attempt_whose_start_line_was_lost_starts_its_duration_before_its_end() -> None:
    events = [
        started(0, [batch_task("t", "dev")]),
        final("failed", 9, "t", "dev", duration=4.0, exit_code=2, error="boom"),
    ]
    t = read(events).task("t")
    assert t is not None
    assert [(a.start - T0, a.end - T0, a.ending) for a in t.attempts] == [(5, 9, "failed")]


def test_a_task_cancelled_while_it_waited_to_retry_gets_no_attempt_made_up() -> None:
    events = [
        started(0, [batch_task("t", "dev")]),
        task_line("started", 0, "t", "dev"),
        task_line("retrying", 2, "t", "dev", exit_code=1, duration_s=2.0, error="x"),
        final("cancelled", 3, "t", "dev", attempt=1, duration=2.0, error="interrupted by SIGINT"),
    ]
    t = read(events).task("t")
    assert t is not None
    assert [a.ending for a in t.attempts] == ["retried"]
    assert t.outcome == "cancelled"


def test_a_second_start_line_ends_the_attempt_whose_end_was_lost() -> None:
    events = [
        started(0, [batch_task("t", "dev")]),
        task_line("started", 0, "t", "dev"),
        task_line("started", 4, "t", "dev", attempt=2),
        final("succeeded", 5, "t", "dev", attempt=2, duration=1.0, exit_code=0),
    ]
    t = read(events).task("t")
    assert t is not None
    assert [(a.number, a.ending, a.end - T0) for a in t.attempts] == [(1, "unfinished", 4), (2, "succeeded", 5)]


def test_unknown_events_and_keys_are_passed_over_and_lines_without_a_time_are_counted() -> None:
    events: list[dict[str, object]] = [
        {**STANDARD[0], "batch": {**STANDARD[0]["batch"], "resume_of": "r0"}, "new_key": [1, 2]},
        {"event": "merged", "run": "r1", "time": T0 + 1, "task": "spec"},  # an event of a later version
        {"event": "started", "run": "r1", "task": "spec"},  # no time
        {"event": "started", "run": "r1", "time": "soon", "task": "spec"},
        {"event": "started", "run": "r1", "time": True, "task": "spec"},
        {"event": "started", "run": "r1", "time": 1e300, "task": "spec"},  # beyond any run
        {"time": T0},  # no event name
        *STANDARD[1:],
    ]
    run = run_from_events(events, unreadable=2)
    assert run.unreadable == 2 + 5
    spec = run.task("spec")
    assert spec is not None
    assert [a.ending for a in spec.attempts] == ["succeeded"]


def test_fields_of_the_wrong_type_are_taken_as_unknown() -> None:
    events = [
        {**started(0, [batch_task("t", "dev")]), "batch": {"tasks": [{"id": 7}, "x", {"id": "t", "depends_on": "a"}]}},
        task_line("started", 0, "t", "dev", attempt="one", description=5),
        final("failed", 2, "t", "dev", duration=2.0, exit_code="3", error=["no"]),
    ]
    t = read(events).task("t")
    assert t is not None
    assert (t.depends_on, t.error, t.attempts[0].exit_code, t.attempts[0].number) == ((), None, None, 1)


def test_a_journal_without_a_readable_line_is_an_error() -> None:
    with pytest.raises(JournalError, match="holds no readable event"):
        run_from_events([{"event": "started"}, {"time": T0}])


def test_a_journal_without_run_started_starts_at_its_first_line() -> None:
    run = read(STANDARD[1:])
    assert run.started_at == T0
    assert [t.id for t in run.tasks][:3] == ["spec", "api", "flaky"]


# -- the file --------------------------------------------------------------------------------


def test_a_half_written_last_line_is_dropped_and_said(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    text = jsonl(STANDARD[:3])
    path.write_text(text + json.dumps(STANDARD[3])[:25])
    lines = journal_lines(path)
    assert (len(lines.events), lines.unreadable, lines.cut) == (3, 0, True)


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl(STANDARD[:3]) + json.dumps(STANDARD[3]))
    lines = journal_lines(path)
    assert (len(lines.events), lines.cut) == (4, False)


def test_lines_that_are_no_json_object_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    garbage = b'not json\n[1, 2]\n{"time": 1.0}\n\xff\xfe\n\n'
    path.write_bytes(jsonl(STANDARD[:2]).encode() + garbage + jsonl(STANDARD[2:4]).encode())
    lines = journal_lines(path)
    assert (len(lines.events), lines.unreadable, lines.cut) == (4, 4, False)


def test_a_missing_journal_a_symlink_and_a_fifo_are_refused_without_waiting(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no such file"):
        journal_lines(tmp_path / "none.jsonl")
    real = tmp_path / "real.jsonl"
    real.write_text(jsonl(STANDARD))
    (tmp_path / "link.jsonl").symlink_to(real)
    with pytest.raises(JournalError, match="cannot be read"):
        journal_lines(tmp_path / "link.jsonl")
    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(JournalError, match="cannot be read"):
        in_thread(lambda: journal_lines(tmp_path / "fifo.jsonl"))


# -- the critical path -----------------------------------------------------------------------


def test_the_critical_path_goes_back_through_the_dependency_that_ended_last() -> None:
    path = critical_path(read(STANDARD))
    assert [(s.task, s.until - T0, s.then) for s in path] == [("api", 4, "dependency"), ("tests", 10, None)]


def test_the_critical_path_goes_back_through_the_release_that_let_a_task_start() -> None:
    path = critical_path(read(RELEASE))
    assert [(s.task, s.then) for s in path] == [("a", "release"), ("b", "dependency"), ("c", None)]


def test_a_later_release_wins_over_a_dependency_that_ended_long_before() -> None:
    events = [
        started(0, [batch_task("dep", "x"), batch_task("holder", "y"), batch_task("t", "y", ["dep"])]),
        task_line("started", 0, "dep", "x"),
        task_line("started", 0, "holder", "y"),
        final("succeeded", 1, "dep", "x", duration=1.0, exit_code=0),
        final("succeeded", 6, "holder", "y", duration=6.0, exit_code=0),
        task_line("started", 6, "t", "y"),
        final("succeeded", 9, "t", "y", duration=3.0, exit_code=0),
    ]
    assert [(s.task, s.then) for s in critical_path(read(events))] == [("holder", "release"), ("t", None)]


def test_in_a_busy_run_the_holder_its_wait_named_wins_over_a_later_unrelated_end() -> None:
    events = [
        started(0, [batch_task("holder", "x"), batch_task("other", "y"), batch_task("t", "z")]),
        task_line("started", 0, "holder", "x"),
        task_line("started", 0, "other", "y"),
        task_line("waiting", 0.1, "t", "z", reason="src/a.py overlaps src/ held by x (holder)"),
        final("succeeded", 5.0, "holder", "x", duration=5.0, exit_code=0),
        final("succeeded", 5.002, "other", "y", duration=5.002, exit_code=0),  # ended just after, unrelated
        task_line("started", 5.003, "t", "z"),
        final("succeeded", 9, "t", "z", duration=4.0, exit_code=0),
    ]
    assert [(s.task, s.then) for s in critical_path(read(events))] == [("holder", "release"), ("t", None)]


def test_the_critical_path_stops_where_no_end_explains_a_start() -> None:
    events = [
        started(0, [batch_task("early", "x"), batch_task("late", "y")]),
        task_line("started", 0, "early", "x"),
        final("succeeded", 1, "early", "x", duration=1.0, exit_code=0),
        task_line("started", 5, "late", "y"),  # waited for the machine: nothing ended near 5
        final("succeeded", 9, "late", "y", duration=4.0, exit_code=0),
    ]
    assert [s.task for s in critical_path(read(events))] == ["late"]


def test_a_retried_task_is_one_step_of_the_critical_path() -> None:
    path = critical_path(read(STANDARD[:1] + [line for line in STANDARD[1:] if line.get("task") == "flaky"]))
    assert [(s.task, s.until - T0) for s in path] == [("flaky", 5)]


def test_nothing_ran_no_critical_path_and_a_cycle_in_a_damaged_journal_ends() -> None:
    assert critical_path(read([started(0, [batch_task("a", "x")])])) == ()
    events = [
        started(0, [batch_task("a", "x", ["b"]), batch_task("b", "x", ["a"])]),
        task_line("started", 1, "a", "x"),
        final("succeeded", 2, "a", "x", duration=1.0, exit_code=0),
        task_line("started", 2, "b", "x"),
        final("succeeded", 3, "b", "x", duration=1.0, exit_code=0),
    ]
    assert [s.task for s in critical_path(read(events))] == ["a", "b"]
