"""Keeping the state directory bounded (queue_core.retention), and its pruning at the end of each run.

What of finished and dead runs goes, and what never does: a live run (its process, its
supervisor, an agent's process group, a fresh heartbeat of another host) is never touched.
Live owners are real child processes blocked on their stdin; nothing here sleeps.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from queue_core import AgentTask, TaskQueue, retention
from queue_core.holds import Hold, Owner
from queue_core.processes import ProcessId
from queue_core.records import RunHistory
from queue_core.registry import Registry, state_dir

from ..conftest import WAIT, Gate, eventually, in_thread, wait_for
from ._state import (
    HOUR,
    Child,
    age,
    child,
    dead,
    finished,
    groups_file,
    holds_file,
    names,
    owner,
    record,
    state,
    tree,
    write_claims,
)

__all__ = ["child", "dead", "state"]  # fixtures: used by name


def prune(state: Path, keep_runs: int, **kw: Any) -> retention.RetentionReport:
    return retention.apply(retention.plan(state, keep_runs, **kw))


def removed_runs(report: retention.RetentionReport) -> set[str]:
    return {r.run for r in report.removed if r.run is not None}


# --- finished runs: the newest N stay ---------------------------------------------------------


def test_finished_runs_beyond_keep_runs_go_oldest_first_by_the_end_in_their_history(state: Path) -> None:
    """Before: every run's history and logs stayed for good (807 -> 2,415 files in three repeats)."""
    now = time.time()
    for i in range(5):  # ended in order r0..r4; modification times in the opposite order
        finished(state, f"r{i}", now - 100 + i, mtime=now - i)
    report = prune(state, 2)
    assert names(state / "history") == {"r3.json", "r4.json"}
    assert names(state / "logs") == {"r3", "r4"}
    assert removed_runs(report) == {"r0", "r1", "r2"}
    assert report.finished_kept == 2
    assert report.files == 6  # three history records and three logs
    assert report.size > 0


def test_a_killed_run_without_history_is_ordered_by_the_time_of_its_files(state: Path) -> None:
    now = time.time()
    finished(state, "old-killed", 0, mtime=now - 50, history=False)
    finished(state, "newer", now - 40)
    finished(state, "new-killed", 0, mtime=now - 10, history=False)
    prune(state, 2)
    assert names(state / "logs") == {"newer", "new-killed"}


def test_within_keep_runs_nothing_goes(state: Path) -> None:
    for i in range(3):
        finished(state, f"r{i}", time.time() - i)
    before = tree(state)
    report = prune(state, 3)
    assert report.removed == []
    assert report.finished_kept == 3
    assert tree(state) == before


def test_keep_runs_must_be_a_positive_integer(state: Path) -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="keep_runs must be a positive integer"):
            retention.plan(state, bad)  # type: ignore[arg-type]


# --- dead runs' records -----------------------------------------------------------------------


def test_a_dead_runs_records_go_at_once_and_its_history_stays_within_keep_runs(state: Path, dead: ProcessId) -> None:
    """Before: a run killed with SIGKILL left runs/<run>.json, .holds and .groups for good."""
    killed = owner("killed", dead, supervisor=dead)
    record(state, killed)
    holds_file(state, killed)
    groups_file(state, "killed", dead)
    finished(state, "killed", 0, mtime=time.time(), history=False)
    report = prune(state, 100)
    assert names(state / "runs") == set()
    assert names(state / "logs") == {"killed"}  # its agents' output: within the newest 100
    (removal,) = report.removed
    assert removal.run == "killed"
    assert f"pid {dead.pid}" in removal.reason


@pytest.mark.parametrize("kind", ["process", "supervisor", "agent group", "claims", "holds"])
def test_a_live_run_is_never_touched_and_the_report_says_why(
    state: Path, child: Child, dead: ProcessId, kind: str
) -> None:
    """A live run keeps its records and logs however old they are and however small keep_runs is."""
    now = time.time()
    if kind == "process":
        live = owner("live", child.id)
    elif kind == "supervisor":  # the run was killed; its supervisor still stops its agents
        live = owner("live", dead, supervisor=child.id)
    else:
        live = owner("live", dead, supervisor=dead)
    record(state, live, mtime=now - 10 * HOUR)
    if kind == "agent group":  # run and supervisor killed; an agent's process group lives on
        groups_file(state, "live", child.id)
    if kind == "claims":  # claims.json holds it (another host's run whose record is not written yet)
        live = Owner("elsewhere", 4242, 1.0, "live")
        write_claims(state, [Hold(live, "t", "code_developer", ("src/x.py",), (), now)])
    if kind == "holds":  # its record lost, its holds file names a live process
        (state / "runs" / "live.json").unlink()
        holds_file(state, owner("live", child.id))
    finished(state, "live", 0, mtime=now - 10 * HOUR, history=False)
    finished(state, "newer", now)
    before = tree(state)

    def held() -> set[str]:  # as the registry's session would say, for the claims case
        return {"live"} if kind == "claims" else set()

    report = prune(state, 1, held=held())
    assert tree(state) == before
    (kept,) = report.live
    assert kept.run == "live"
    expected = {
        "process": f"its process (pid {child.pid}) still runs",
        "supervisor": f"its supervisor (pid {child.pid}) still runs",
        "agent group": f"process group {child.pid}",
        "claims": "holds claims",
        "holds": f"pid {child.pid}",
    }[kind]
    assert expected in kept.reason


@pytest.mark.parametrize(("beat_age", "kept"), [(1.0, True), (100.0, False)])
def test_another_hosts_run_lives_by_its_heartbeat(state: Path, beat_age: float, kept: bool) -> None:
    remote = Owner("elsewhere", 4242, 1.0, "remote")
    record(state, remote, mtime=time.time() - beat_age)
    report = prune(state, 100, stale_after=15.0)
    assert (state / "runs" / "remote.json").exists() == kept
    if kept:
        assert "elsewhere" in report.live[0].reason
    else:
        assert "heartbeat" in report.removed[0].reason


@pytest.mark.parametrize(("seconds_ago", "kept"), [(60.0, True), (2 * HOUR, False)])
def test_a_damaged_record_is_kept_while_young(state: Path, seconds_ago: float, kept: bool) -> None:
    """When in doubt, keep: no run writes a damaged record, but an hour is cheap to wait."""
    path = state / "runs" / "odd.json"
    path.write_text('{"run": "odd", "own')
    age(path, seconds_ago)
    report = prune(state, 100)
    assert path.exists() == kept
    assert [k.reason for k in report.live] == (["its record is damaged, but only 60 s old"] if kept else [])


def test_a_record_that_is_no_regular_file_is_kept_while_young(state: Path) -> None:
    """Before: a FIFO in place of a live run's record vouched for nothing: clean removed its logs."""
    os.mkfifo(state / "runs" / "odd.json")
    (state / "logs" / "odd").mkdir(parents=True)
    report = in_thread(lambda: prune(state, 100))
    assert (state / "logs" / "odd").exists()
    assert [k.reason.split(",")[0] for k in report.live] == ["its record is not a regular file"]


def test_a_run_that_only_waits_in_line_is_live(tmp_path: Path) -> None:
    """Before: only holds kept a run whose record was lost; one waiting in line lost its logs."""
    gate = Gate()
    with TaskQueue(repo=tmp_path, run_id="holder") as holder, TaskQueue(repo=tmp_path, run_id="waiter") as waiter:
        holder.submit_task(AgentTask("x", "holds", ["f"], gate, id="h"))
        wait_for(gate.started, "h")
        waiter.submit_task(AgentTask("y", "waits", ["f"], lambda: None, id="w"))
        runs = state_dir(tmp_path) / "runs"
        eventually("the waiter to take a place", lambda: "waiting" in (runs.parent / "claims.json").read_text())
        (runs / "waiter.json").unlink()  # lost: the heartbeat writes it again within a second
        (runs.parent / "logs" / "waiter").mkdir(parents=True)
        assert holder.registry is not None
        report = retention.prune(holder.registry, 1)
        assert "waiter" in {k.run for k in report.live}
        assert (runs.parent / "logs" / "waiter").exists()
        gate.open()


# --- stray files --------------------------------------------------------------------------------


STRAYS = [
    ".claims.json.{pid}.tmp",
    "runs/.r.json.{pid}.tmp",
    "runs/.r.json.{pid}.0a1b2c.new",
    "runs/.r.json.dead-0a1b2c",
    "history/.r.json.{pid}.tmp",
    ".write-probe-{pid}",
]


@pytest.mark.parametrize("name", STRAYS)
@pytest.mark.parametrize(("seconds_ago", "goes"), [(2 * HOUR, True), (60.0, False)])
def test_a_stray_temporary_file_goes_once_old_and_its_writer_gone(
    state: Path, dead: ProcessId, name: str, seconds_ago: float, goes: bool
) -> None:
    """Before: a writer killed mid-write left its temporary file for good. A young one may be being written."""
    path = state / name.format(pid=dead.pid)
    path.write_text("x")
    age(path, seconds_ago)
    report = prune(state, 100)
    assert path.exists() != goes
    assert [r.paths for r in report.removed] == ([(path,)] if goes else [])


def test_an_old_temporary_file_of_a_live_writer_stays(state: Path, child: Child) -> None:
    """A writer stopped mid-write (SIGSTOP) for an hour resumes and renames its file: it must be there."""
    path = state / "runs" / f".r.json.{child.pid}.tmp"
    path.write_text("x")
    age(path, 2 * HOUR)
    prune(state, 100)
    assert path.exists()


def test_damaged_copies_beyond_the_cap_go_the_newest_stay(state: Path) -> None:
    stamps = [f"20260101-00000{i}-1-abcdef" for i in range(6)]
    for stamp in stamps:
        (state / f"claims.json.damaged-{stamp}").write_text("garbage")
    report = prune(state, 100)
    assert {p.name for p in state.glob("claims.json.damaged-*")} == {f"claims.json.damaged-{s}" for s in stamps[-3:]}
    assert sum(1 for r in report.removed if r.run is None) == 3


def test_what_the_state_directory_does_not_know_is_left_alone(state: Path) -> None:
    (state / "notes.txt").write_text("mine")
    (state / "runs" / "README").write_text("mine")
    (state / "history" / "summary.csv").write_text("mine")
    age(state / "notes.txt", 10 * HOUR)
    before = tree(state)
    assert prune(state, 1).removed == []
    assert tree(state) == before


# --- hostile entries ---------------------------------------------------------------------------


def test_a_symlink_in_logs_goes_as_a_link_and_its_target_survives(state: Path, tmp_path: Path) -> None:
    """Removal never follows a link: not one in place of a run's logs, nor one inside them."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    now = time.time()
    (state / "logs" / "linked").symlink_to(outside)
    age(state / "logs" / "linked", 100)
    finished(state, "old", now - 50)
    (state / "logs" / "old" / "inner").symlink_to(outside)
    (state / "history" / "linked2.json").symlink_to(outside / "precious.txt")
    age(state / "history" / "linked2.json", 90)
    finished(state, "new", now)
    report = prune(state, 1)
    assert names(state / "logs") == {"new"}
    assert names(state / "history") == {"new.json"}
    assert (outside / "precious.txt").read_text() == "keep me"
    assert removed_runs(report) == {"linked", "linked2", "old"}


def test_a_fifo_in_the_state_directory_never_blocks_and_goes_as_an_entry(state: Path, dead: ProcessId) -> None:
    now = time.time()
    for fifo in (state / "history" / "f1.json", state / "logs" / "f2", state / "runs" / "f3.json"):
        os.mkfifo(fifo)
        age(fifo, 2 * HOUR)  # a young record that is no regular file is kept, in doubt
    record(state, owner("f4", dead))
    os.mkfifo(state / "runs" / "f4.groups")  # a dead run's groups file that is a FIFO
    finished(state, "new", now)
    report = in_thread(lambda: prune(state, 1))
    assert names(state / "history") == {"new.json"}
    assert names(state / "logs") == {"new"}
    assert names(state / "runs") == set()
    assert {"f1", "f2", "f3", "f4"} <= removed_runs(report)


# --- dry run -----------------------------------------------------------------------------------


def test_a_plan_changes_nothing_and_names_what_apply_removes(state: Path, dead: ProcessId) -> None:
    now = time.time()
    for i in range(4):
        finished(state, f"r{i}", now - 10 + i)
    record(state, owner("killed", dead))
    before = tree(state)
    plan = retention.plan(state, 2)
    assert tree(state) == before
    assert not plan.done
    report = retention.apply(plan)
    assert report.done
    assert removed_runs(report) == removed_runs(plan) == {"r0", "r1", "killed"}
    assert report.files == plan.files
    assert report.size == plan.size


# --- automatic pruning at the end of each run -------------------------------------------------


def test_each_run_keeps_the_last_keep_runs_runs_and_prunes_dead_records(tmp_path: Path, dead: ProcessId) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    runs = []
    for _ in range(4):
        with TaskQueue(2, repo=repo, keep_runs=2) as queue:
            assert queue.registry is not None
            queue.submit_task(AgentTask("dev", "a", ["a.txt"], lambda: None)).result(timeout=WAIT)
            runs.append(queue.registry.run)
    state = state_dir(repo)
    assert names(state / "history") == {f"{run}.json" for run in runs[-2:]}
    record(state, owner("killed", dead))
    with TaskQueue(2, repo=repo, keep_runs=2):
        pass
    assert names(state / "runs") == set()


def test_the_run_that_ends_keeps_its_own_history_and_logs_whatever_the_clocks_say(tmp_path: Path) -> None:
    """With keep_runs 1, another run whose history claims a later end must not push out this one's."""
    repo = tmp_path / "repo"
    repo.mkdir()
    state = state_dir(repo)
    registry = Registry(repo, "mine", keep_runs=1)
    (state / "logs" / "mine").mkdir(parents=True)
    finished(state, "future", time.time() + HOUR)
    registry.finish_run(RunHistory("mine", time.time(), time.time()))
    assert names(state / "history") == {"mine.json"}
    assert names(state / "logs") == {"mine"}


def test_a_pruning_error_never_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()

    def broken(*args: Any, **kw: Any) -> retention.RetentionReport:
        raise PermissionError(13, "Permission denied", "logs/x")

    monkeypatch.setattr(retention, "plan", broken)
    registry = Registry(repo, "r", keep_runs=1)
    with caplog.at_level(logging.WARNING, logger="queue_core"):
        registry.finish_run(RunHistory("r", 1.0, 2.0))
    assert (state_dir(repo) / "history" / "r.json").exists()
    assert names(state_dir(repo) / "runs") == set()
    assert any("Permission denied" in r.getMessage() for r in caplog.records)


def test_keep_runs_is_checked_when_the_queue_is_made(tmp_path: Path) -> None:
    for bad in (0, -3):
        with pytest.raises(ValueError, match="keep_runs must be a positive integer"):
            Registry(tmp_path, keep_runs=bad)


def test_prune_keeps_a_run_that_the_registry_holds_claims_of(tmp_path: Path) -> None:
    """A run of another host whose record is not written yet lives by its hold, read under the lock."""
    repo = tmp_path / "repo"
    repo.mkdir()
    registry = Registry(repo, "me")
    try:
        state = registry.dir
        now = time.time()
        write_claims(state, [Hold(Owner("elsewhere", 4242, 1.0, "remote"), "t", "dev", ("x",), (), now)])
        finished(state, "remote", 0, mtime=now - 10 * HOUR, history=False)
        finished(state, "newer", now)
        report = retention.prune(registry, 1)
        assert names(state / "logs") == {"remote", "newer"}
        reason = "it holds claims, or waits in line, in the registry"
        assert [(k.run, k.reason) for k in report.live] == [("remote", reason)]
        assert report.done
    finally:
        registry.finish_run(None)
