"""queue_core.changes: snapshots of a git working tree, what changed between two, what no claim covers."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from queue_core import AgentTask, TaskEvent, TaskQueue
from queue_core.changes import (
    SharedSnapshots,
    Snapshot,
    Stray,
    StrayWrites,
    changed_paths,
    changes_between,
    parse_status,
    take_snapshot,
    uncovered,
)
from queue_core.claims import Claim
from queue_core.errors import GitError
from queue_core.registry import read_holds

from ..conftest import WAIT, Gate, eventually, git, git_repo, wait_for

AWKWARD = ("with space.txt", "new\nline.txt", "ünï cødé.md", " lead and trail ")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit: ``tracked.txt``, ``dir/a.py``, and ``.gitignore`` ignoring ``*.log``."""
    return git_repo(tmp_path / "repo", {"tracked.txt": "one\n", "dir/a.py": "a = 1\n", ".gitignore": "*.log\n"})


def changed(repo: Path, before: Snapshot) -> set[str]:
    return changes_between(repo, before, take_snapshot(repo))


# --- parse_status: git's bytes, no git needed ---------------------------------------------------


def test_parse_reads_each_kind_of_entry_and_keeps_paths_whole() -> None:
    data = b"\0".join(
        [
            b"# branch.oid 0123abcd",
            b"# branch.head main",
            b"1 .M N... 100644 100644 100644 aaaa bbbb with space.txt",
            b"1 D. N... 100644 000000 000000 aaaa 0000 gone\nline.py",
            b"2 R. N... 100644 100644 100644 aaaa aaaa R100 new name.py",
            b"old name.py",
            b"u UU N... 100644 100644 100644 100644 a b c both.py",
            "? ünï cødé.md".encode(),
            b"? caf\xe9.txt",  # not UTF-8: kept as the file system's bytes
            b"? nested/",
            b"! build.log",
            b"",
        ]
    )
    head, entries = parse_status(data)
    assert head == "0123abcd"
    assert set(entries) == {
        "with space.txt",
        "gone\nline.py",
        "new name.py",
        "both.py",
        "ünï cødé.md",
        os.fsdecode(b"caf\xe9.txt"),
        "nested",
    }
    assert entries["with space.txt"] == "1 .M N... 100644 100644 100644 aaaa bbbb"
    assert entries["ünï cødé.md"] == "?"


def test_parse_keeps_only_paths_below_the_prefix_relative_to_it() -> None:
    data = b"# branch.oid (initial)\0? sub/dir/x.py\0? sub/other.py\0? top.py\0"
    assert parse_status(data, "sub/dir/") == (None, {"x.py": "?"})


@pytest.mark.parametrize("entry", [b"1 .M N... 100644 short", b"X what is this"])
def test_parse_refuses_an_entry_it_cannot_read(entry: bytes) -> None:
    with pytest.raises(GitError, match="cannot read"):
        parse_status(entry + b"\0")


# --- snapshots of a real repository ---------------------------------------------------------------


def test_a_clean_tree_has_no_entries_and_names_head(repo: Path) -> None:
    snapshot = take_snapshot(repo)
    assert snapshot.entries == {}
    assert snapshot.head == git(repo, "rev-parse", "HEAD").strip()


def test_new_files_with_awkward_names_are_seen_and_ignored_ones_are_not(repo: Path) -> None:
    before = take_snapshot(repo)
    for name in AWKWARD:
        (repo / name).write_text("x")
    (repo / "deep" / "er").mkdir(parents=True)
    (repo / "deep" / "er" / "f.txt").write_text("x")
    (repo / "build.log").write_text("ignored")
    assert changed(repo, before) == {*AWKWARD, "deep/er/f.txt"}


def test_a_file_dirty_before_and_written_again_is_seen(repo: Path) -> None:
    (repo / "tracked.txt").write_text("dirty before\n")
    (repo / "untracked.txt").write_text("there before\n")
    before = take_snapshot(repo)
    assert set(before.entries) == {"tracked.txt", "untracked.txt"}
    (repo / "tracked.txt").write_text("written again, longer\n")
    # The same size: only the times tell (set apart from the snapshot's by a whole second).
    os.utime(repo / "untracked.txt", ns=(0, (repo / "untracked.txt").stat().st_mtime_ns + 10**9))
    assert changed(repo, before) == {"tracked.txt", "untracked.txt"}
    assert changed(repo, take_snapshot(repo)) == set()


def test_deleted_and_restored_files_are_seen(repo: Path) -> None:
    (repo / "tracked.txt").write_text("dirty before\n")
    before = take_snapshot(repo)
    (repo / "dir" / "a.py").unlink()
    git(repo, "checkout", "--", "tracked.txt")  # back as committed: no longer listed
    assert changed(repo, before) == {"dir/a.py", "tracked.txt"}


def test_what_a_commit_made_meanwhile_is_seen(repo: Path) -> None:
    before = take_snapshot(repo)
    (repo / "committed.py").write_text("x = 1\n")
    (repo / "tracked.txt").write_text("changed and committed\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "an agent commits")
    after = take_snapshot(repo)
    assert changed_paths(before, after) == set()  # the tree is clean again: only HEAD moved
    assert changes_between(repo, before, after) == {"committed.py", "tracked.txt"}


def test_the_first_commit_of_a_repository_is_seen(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    before = take_snapshot(tmp_path)
    assert before.head is None
    (tmp_path / "first.py").write_text("x\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    assert changed(tmp_path, before) == {"first.py"}


def test_a_subdirectory_as_the_repository_sees_only_itself_relative_to_itself(repo: Path) -> None:
    before = take_snapshot(repo / "dir", "dir/")
    (repo / "dir" / "b.py").write_text("b\n")
    (repo / "outside.txt").write_text("not ours\n")
    assert changes_between(repo / "dir", before, take_snapshot(repo / "dir", "dir/"), "dir/") == {"b.py"}


def test_outside_a_git_repository_a_snapshot_fails_with_git_s_reason(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not a git repository"):
        take_snapshot(tmp_path)


# --- uncovered: pure ------------------------------------------------------------------------------


def test_uncovered_keeps_what_no_claim_covers() -> None:
    claims = [Claim.parse(text) for text in ("src/a.py", "docs/", "tests/**/*.py", "new pkg")]
    paths = ["src/a.py", "src/b.py", "docs/x/y.md", "tests/u/t.py", "tests/u/t.txt", "new pkg/m.py", "z"]
    assert uncovered(paths, claims) == ["src/b.py", "tests/u/t.txt", "z"]
    assert uncovered(paths, []) == sorted(paths)


# --- StrayWrites: windows, tasks beside each other, failures ---------------------------------------


def ev(kind: str, task: str, attempt: int = 1) -> TaskEvent:
    return TaskEvent(kind, task, "agent", 0.0, attempt)


def claims(*texts: str) -> tuple[Claim, ...]:
    return tuple(Claim.parse(t) for t in texts)


def test_a_task_alone_is_told_what_it_changed_outside_its_claims(repo: Path) -> None:
    (repo / "dirty-before.txt").write_text("not the task's doing\n")
    watch = StrayWrites(repo, {"a": claims("dir/")})
    watch.event(ev("started", "a"))
    (repo / "dir" / "a.py").write_text("claimed\n")
    (repo / "stray file.txt").write_text("not claimed\n")
    (repo / "tracked.txt").unlink()
    (repo / "x.log").write_text("ignored\n")
    found = watch.event(ev("succeeded", "a"))
    assert found == Stray(("stray file.txt", "tracked.txt"), ())
    assert watch.of("a") == found
    assert watch.of("never-started") == Stray()


def test_a_task_that_stays_inside_its_claims_reports_nothing(repo: Path) -> None:
    watch = StrayWrites(repo, {"a": claims("tracked.txt")})
    watch.event(ev("started", "a"))
    (repo / "tracked.txt").write_text("mine\n")
    assert watch.event(ev("succeeded", "a")) is None
    assert watch.of("a") == Stray()


def test_with_tasks_beside_it_their_claims_count_and_they_are_named(repo: Path) -> None:
    watch = StrayWrites(repo, {"a": claims("a.txt"), "b": claims("b.txt"), "c": claims("c.txt"), "d": claims("d.txt")})
    watch.event(ev("started", "c"))
    watch.event(ev("started", "a"))  # c runs beside a from a's start
    watch.event(ev("succeeded", "c"))
    watch.event(ev("started", "b"))  # b starts while a runs
    for name in ("a.txt", "b.txt", "c.txt", "stray.txt"):
        (repo / name).write_text(name)
    watch.event(ev("succeeded", "b"))
    assert watch.event(ev("succeeded", "a")) == Stray(("stray.txt",), ("b", "c"))
    watch.event(ev("started", "d"))  # after them all: what they wrote was there before it started
    assert watch.event(ev("succeeded", "d")) is None
    assert watch.of("b") == Stray(("c.txt", "stray.txt"), ("a",))  # c had ended: c.txt is nobody's in b's time
    assert watch.of("c") == Stray()  # it ended before anything was written: a beside it is no matter
    assert watch.of("d") == Stray((), ())


def test_attempts_add_up(repo: Path) -> None:
    watch = StrayWrites(repo, {"a": claims("a.txt")})
    watch.event(ev("started", "a"))
    (repo / "first.txt").write_text("1")
    assert watch.event(ev("retrying", "a")) == Stray(("first.txt",), ())
    watch.event(ev("started", "a", 2))
    (repo / "second.txt").write_text("2")
    watch.event(ev("failed", "a", 2))
    assert watch.of("a") == Stray(("first.txt", "second.txt"), ())


def test_outside_a_git_repository_nothing_is_known_and_it_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watch = StrayWrites(tmp_path, {"a": claims("a"), "b": claims("b")})
    with caplog.at_level(logging.WARNING, logger="queue_core"):
        for task in ("a", "b"):
            watch.event(ev("started", task))
            (tmp_path / f"{task}-stray").write_text("x")
            assert watch.event(ev("succeeded", task)) is None
    assert (watch.of("a"), watch.of("b"), watch.of("never-started")) == (None, None, Stray())
    assert watch.failure is not None
    assert "not a git repository" in watch.failure
    warnings = [r.getMessage() for r in caplog.records if r.name == "queue_core"]
    assert warnings == [f"changes outside the claims are not reported in this run: {watch.failure}"]


def test_when_git_goes_missing_mid_run_what_was_found_stays_and_the_rest_is_unknown(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = StrayWrites(repo, {"a": claims("a"), "b": claims("b")})
    watch.event(ev("started", "a"))
    (repo / "stray").write_text("x")
    watch.event(ev("succeeded", "a"))
    watch.event(ev("started", "b"))
    monkeypatch.setenv("PATH", str(repo / "no-such-dir"))
    assert watch.event(ev("succeeded", "b")) is None
    assert watch.of("a") == Stray(("stray",), ())
    assert watch.of("b") is None
    assert watch.failure is not None
    assert "could not run" in watch.failure


def test_a_task_still_running_when_asked_is_unknown(repo: Path) -> None:
    watch = StrayWrites(repo, {"a": claims("a")})
    watch.event(ev("started", "a"))
    assert watch.of("a") is None


def test_tasks_of_another_run_holding_claims_count_beside_it(repo: Path) -> None:
    """Two runs on one repository: what the other run's running task writes in its claims is not ours."""
    gate = Gate()
    with TaskQueue(1, repo=repo, run_id="other-run") as other:
        future = other.submit_task(AgentTask("other", "writes theirs.txt", ["theirs.txt"], gate, id="t9"))
        wait_for(gate.started, "the other run's task")
        eventually("its hold on disk", lambda: bool(read_holds(repo)))  # written within the queue's lease
        watch = StrayWrites(repo, {"a": claims("a")}, run="this-run")
        watch.event(ev("started", "a"))
        (repo / "theirs.txt").write_text("theirs\n")
        (repo / "stray").write_text("nobody's\n")
        found = watch.event(ev("succeeded", "a"))
        gate.open()
        future.result(timeout=WAIT)
    assert found == Stray(("stray",), ("other-run/t9",))


def test_the_run_s_own_state_in_the_working_tree_is_never_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repository whose git directory is found through GIT_DIR keeps the state in .project-manager/."""
    work, git_dir = tmp_path / "work", tmp_path / "elsewhere.git"
    work.mkdir()
    monkeypatch.setenv("GIT_DIR", str(git_dir))
    monkeypatch.setenv("GIT_WORK_TREE", str(work))
    git(work, "init", "-q")
    watch = StrayWrites(work, {"a": claims("a")})
    watch.event(ev("started", "a"))
    (work / ".project-manager" / "logs").mkdir(parents=True)
    (work / ".project-manager" / "logs" / "a.log").write_text("the agent's output\n")
    (work / "stray").write_text("x")
    assert watch.event(ev("succeeded", "a")) == Stray(("stray",), ())


# --- SharedSnapshots: one git status at a time, shared by whoever waits -----------------------------


def test_requests_during_a_snapshot_share_the_next_one_and_never_an_earlier_one() -> None:
    gates: list[Gate] = []
    taken: list[Snapshot] = []

    def take() -> Snapshot:
        gate = Gate(result=Snapshot(None, {f"#{len(gates)}": ("?", None)}))
        gates.append(gate)
        snapshot: Snapshot = gate()
        taken.append(snapshot)
        return snapshot

    shared = SharedSnapshots(take)
    got: dict[str, Snapshot] = {}
    threads = {name: threading.Thread(target=lambda n=name: got.__setitem__(n, shared.get())) for name in "abc"}
    threads["a"].start()
    eventually("a's snapshot begun", lambda: len(gates) == 1)
    threads["b"].start()
    threads["c"].start()
    eventually("b and c waiting", lambda: shared.waiting == 2)  # a's began before them: not theirs
    gates[0].open()
    eventually("the next snapshot begun", lambda: len(gates) == 2)
    gates[1].open()
    for thread in threads.values():
        thread.join(WAIT)
        assert not thread.is_alive()
    assert taken == [got["a"], got["b"]]
    assert got["b"] is got["c"]


def test_a_failed_snapshot_fails_every_request_it_serves_and_the_next_may_succeed() -> None:
    results: list[Snapshot | Exception] = [GitError("boom"), ValueError("a bug"), Snapshot(None, {})]

    def take() -> Snapshot:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    shared = SharedSnapshots(take)
    with pytest.raises(GitError, match="boom"):
        shared.get()
    with pytest.raises(GitError, match="the snapshot failed: ValueError"):
        shared.get()
    assert shared.get() == Snapshot(None, {})
