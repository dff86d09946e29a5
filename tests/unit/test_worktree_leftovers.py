"""Worktrees and branches that runs left behind (queue_core.worktree_leftovers): found, and pruned
only when nothing is lost."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from queue_core.errors import UnmergedWorkError, WorktreeError
from queue_core.flocks import try_lock
from queue_core.statedir import state_dir
from queue_core.worktree_leftovers import Leftover, leftovers, leftovers_and_idle, prune, sweep
from queue_core.worktree_pool import idle, lock_of, take
from queue_core.worktrees import Worktree, base_commit, create, finish, list_worktrees

from ..conftest import git, git_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n"}).resolve()


def _alive(run: str) -> bool:
    """The runs' liveness as the registry would say: only the run named "live" lives."""
    return run == "live"


def _by_task(repo: Path) -> dict[str, Leftover]:
    return {f"{lo.run}/{lo.task}": lo for lo in leftovers(repo, _alive)}


def _branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()


def _merged_and_unmerged(repo: Path) -> tuple[Worktree, Worktree, str]:
    """Two worktrees of the dead run "dead": one whose branch was merged, one whose commit is on
    no other branch (its tip)."""
    base = base_commit(repo)
    merged = create(repo, "dead", "merged", base)
    (merged.path / "a.txt").write_text("merged\n")
    finish(merged, "merged")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge", "pm/dead/merged")
    unmerged = create(repo, "dead", "unmerged", base)
    (unmerged.path / "b.txt").write_text("kept\n")
    return merged, unmerged, finish(unmerged, "unmerged").tip


def test_leftovers_of_a_killed_run_are_found_with_what_removing_them_would_lose(repo: Path) -> None:
    merged, unmerged, tip = _merged_and_unmerged(repo)
    base = merged.base
    midway = create(repo, "dead", "midway", base)  # SIGKILL mid-run: the agent's work is uncommitted
    (midway.path / "a.txt").write_text("half done\n")
    live = create(repo, "live", "t1", base)
    (live.path / "a.txt").write_text("in progress\n")
    git(repo, "branch", "pm/not/a/task")  # not ours: three levels
    git(repo, "branch", "feature")

    found = _by_task(repo)

    assert sorted(found) == ["dead/merged", "dead/midway", "dead/unmerged", "live/t1"]
    assert found["dead/merged"].unmerged == ()
    assert found["dead/merged"].uncommitted == ()
    assert found["dead/unmerged"].unmerged == (tip,)
    assert found["dead/unmerged"].branch == "pm/dead/unmerged"
    assert found["dead/unmerged"].path == unmerged.path
    assert found["dead/midway"].uncommitted == ("a.txt",)
    assert found["live/t1"].alive
    assert found["live/t1"].unmerged is None  # a live run's worktree is in use: not looked at
    assert not found["dead/midway"].alive


def test_prune_removes_what_loses_nothing_and_refuses_the_rest(repo: Path) -> None:
    merged, unmerged, tip = _merged_and_unmerged(repo)
    found = _by_task(repo)

    prune(found["dead/merged"])
    assert not merged.path.exists()
    assert "pm/dead/merged" not in _branches(repo)

    with pytest.raises(UnmergedWorkError, match="1 commit\\(s\\) on no other branch") as caught:
        prune(found["dead/unmerged"])
    assert caught.value.commits == (tip,)
    assert unmerged.path.exists()
    assert "pm/dead/unmerged" in _branches(repo)

    prune(found["dead/unmerged"], force=True)
    assert not unmerged.path.exists()
    assert not (state_dir(repo) / "worktrees/dead").exists()
    assert _by_task(repo) == {}


def test_uncommitted_work_of_a_dead_run_is_kept_unless_forced(repo: Path) -> None:
    midway = create(repo, "dead", "midway", base_commit(repo))
    (midway.path / "new.txt").write_text("the agent's unsaved work\n")
    [leftover] = leftovers(repo, _alive)
    with pytest.raises(UnmergedWorkError, match="1 uncommitted path") as caught:
        prune(leftover)
    assert caught.value.uncommitted == ("new.txt",)
    assert (midway.path / "new.txt").exists()
    prune(leftover, force=True)
    assert not midway.path.exists()
    assert not [branch for branch in _branches(repo) if branch.startswith("pm/")]


def test_a_live_run_s_leftover_is_never_pruned(repo: Path) -> None:
    live = create(repo, "live", "t1", base_commit(repo))
    [leftover] = leftovers(repo, _alive)
    with pytest.raises(WorktreeError, match="run live is alive"):
        prune(leftover, force=True)
    assert live.path.exists()


def test_prune_looks_again_before_removing(repo: Path) -> None:
    wt = create(repo, "dead", "t1", base_commit(repo))
    [leftover] = leftovers(repo, _alive)
    assert leftover.unmerged == ()
    (wt.path / "a.txt").write_text("changed since the listing\n")
    with pytest.raises(UnmergedWorkError):
        prune(leftover)
    assert wt.path.exists()


def test_a_worktree_whose_folder_is_gone_and_a_lone_branch_are_found_and_pruned(repo: Path) -> None:
    base = base_commit(repo)
    gone = create(repo, "dead", "gone", base)
    shutil.rmtree(gone.path)
    git(repo, "branch", "pm/dead/lone", base)
    found = _by_task(repo)
    assert found["dead/gone"].missing
    assert found["dead/lone"].path is None
    prune(found["dead/gone"])
    prune(found["dead/lone"])
    assert _by_task(repo) == {}
    assert [entry.path for entry in list_worktrees(repo)] == [repo]


def test_a_detached_worktree_in_the_root_is_found_by_its_folder(repo: Path) -> None:
    wt = create(repo, "dead", "t1", base_commit(repo))
    git(wt.path, "switch", "-q", "--detach")
    git(repo, "branch", "-q", "-D", "pm/dead/t1")
    (wt.path / "a.txt").write_text("x\n")
    git(wt.path, "-c", "user.name=t", "commit", "-q", "-am", "on no branch")
    lost = git(wt.path, "rev-parse", "HEAD").strip()
    [leftover] = leftovers(repo, _alive)
    assert (leftover.run, leftover.task, leftover.branch, leftover.path) == ("dead", "t1", None, wt.path)
    assert leftover.unmerged == (lost,)
    with pytest.raises(UnmergedWorkError):
        prune(leftover)


def test_a_custom_root_is_looked_in(repo: Path, tmp_path: Path) -> None:
    wt = create(repo, "dead", "t1", base_commit(repo), root=tmp_path / "wts")
    git(wt.path, "switch", "-q", "--detach")
    git(repo, "branch", "-q", "-D", "pm/dead/t1")
    assert leftovers(repo, _alive) == []  # a detached worktree elsewhere is not known as ours
    [leftover] = leftovers(repo, _alive, root=tmp_path / "wts")
    assert leftover.path == wt.path


# --- worktrees of the pool (worktree_pool: N) ---------------------------------------------------


def _given_back(repo: Path, run: str, task: str) -> Path:
    """A pool worktree that a merged task gave back: idle."""
    lease = take(repo, run, task, base_commit(repo))
    lease.give_back(delete_branch=True, keep=4)
    return lease.worktree.path


def test_an_idle_pool_worktree_is_no_leftover_and_sweep_leaves_it(repo: Path) -> None:
    path = _given_back(repo, "dead", "t1")
    assert leftovers_and_idle(repo, _alive) == ([], [path])
    assert sweep(repo, _alive, force=True) == []
    assert path.exists()
    assert idle(repo) == [path]


def test_a_pool_worktree_a_killed_run_left_is_a_leftover_like_any_other(repo: Path) -> None:
    base = base_commit(repo)
    worked = take(repo, "dead", "worked", base)
    (worked.worktree.path / "a.txt").write_text("the agent's work\n")
    empty = take(repo, "dead", "empty", base)
    live = take(repo, "live", "t1", base)
    for lease in (worked, empty, live):
        lease.release()  # as a SIGKILL does: the lock goes, the worktree stays as it was

    found = _by_task(repo)

    assert sorted(found) == ["dead/empty", "dead/worked", "live/t1"]
    assert found["dead/worked"].path == worked.worktree.path
    assert found["dead/worked"].branch == "pm/dead/worked"
    assert found["dead/worked"].uncommitted == ("a.txt",)
    assert found["dead/worked"].pooled
    assert found["live/t1"].alive
    swept = {item.leftover.task: item for item in sweep(repo, _alive)}
    assert (swept["empty"].removed, swept["worked"].removed, swept["t1"].removed) == (True, False, False)
    assert not empty.worktree.path.exists()
    assert "pm/dead/empty" not in _branches(repo)
    assert (worked.worktree.path / "a.txt").read_text() == "the agent's work\n"
    again = take(repo, "next", "t1", base)  # the removed entry's place: a new worktree
    assert (again.reused, again.worktree.path) == (False, empty.worktree.path)
    again.release()


def test_a_pool_worktree_killed_mid_reset_is_its_task_s_leftover(repo: Path) -> None:
    path = _given_back(repo, "old", "t0")
    fd = try_lock(lock_of(path), "the lock")
    assert fd is not None
    os.ftruncate(fd, 0)
    os.pwrite(fd, b"task dead t1\n", 0)  # taken for dead/t1, then killed before its branch was made
    (path / "b.txt").write_text("half reset\n")
    os.close(fd)
    [leftover] = leftovers(repo, _alive)
    assert (leftover.run, leftover.task, leftover.branch, leftover.path) == ("dead", "t1", None, path)
    assert leftover.uncommitted == ("b.txt",)


def test_an_idle_pool_worktree_someone_worked_in_is_a_leftover_of_no_run(repo: Path) -> None:
    path = _given_back(repo, "dead", "t1")
    (path / "notes.txt").write_text("someone's notes\n")

    [leftover], idle_now = leftovers_and_idle(repo, _alive)

    assert idle_now == []
    assert (leftover.run, leftover.branch, leftover.path, leftover.alive) == ("", None, path, False)
    assert leftover.uncommitted == ("notes.txt",)
    [kept] = sweep(repo, _alive)
    assert not kept.removed
    assert "1 uncommitted path(s)" in kept.reason
    assert (path / "notes.txt").exists()
    sweep(repo, _alive, force=True)
    assert not path.exists()


def test_a_pool_worktree_in_use_is_never_pruned(repo: Path) -> None:
    path = _given_back(repo, "dead", "t1")
    (path / "notes.txt").write_text("someone's notes\n")
    [leftover] = leftovers(repo, _alive)
    fd = try_lock(lock_of(path), "the lock")  # a task looking at it, this moment
    try:
        with pytest.raises(WorktreeError, match="in use"):
            prune(leftover, force=True)
        assert path.exists()
        assert leftovers(repo, _alive) == []  # held, and no task's: not looked at now
    finally:
        assert fd is not None
        os.close(fd)
