"""The hidden refs a merged task leaves for review (queue_core.taskrefs), on real git repositories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from queue_core.errors import GitError, InvalidArgumentError
from queue_core.statedir import state_dir
from queue_core.taskrefs import Found, Ran, by_run, drop, keep, last_ran, may_have_any, newest
from queue_core.worktree_leftovers import leftovers, sweep
from queue_core.worktrees import Removal, Worktree, base_commit, create, finish, remove

from ..conftest import git, git_repo

R1, R2 = "20261128-090000-11-aaaaaa", "20261128-100000-22-bbbbbb"  # R2 is the newer: run ids sort by time


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"a.txt": "a\n"})


def commit(repo: Path, text: str) -> str:
    """A commit on no branch whose a.txt holds ``text``, child of HEAD."""
    (repo / "a.txt").write_text(text)
    git(repo, "add", "a.txt")
    oid = git(repo, "commit-tree", git(repo, "write-tree").strip(), "-p", "HEAD", "-m", text).strip()
    git(repo, "reset", "-q")
    git(repo, "checkout", "-q", "--", "a.txt")
    return oid


def hidden(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/pm/")
    return dict(line.split() for line in out.splitlines())


def test_keep_writes_both_refs_and_never_reuses_them(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    tip = commit(repo, "task\n")
    keep(repo, R1, "t1", base=base, tip=tip)
    assert hidden(repo) == {f"refs/pm/{R1}/t1/base": base, f"refs/pm/{R1}/t1/tip": tip}
    other = commit(repo, "other\n")
    with pytest.raises(GitError, match="already exists"):
        keep(repo, R1, "t1", base=base, tip=other)
    assert hidden(repo)[f"refs/pm/{R1}/t1/tip"] == tip  # unchanged
    assert "pm/" not in git(repo, "branch", "--list")  # hidden: not a branch


def test_one_transaction_both_refs_or_neither(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-ref", f"refs/pm/{R1}/t1/tip", base)  # only the tip is there: the transaction fails whole
    with pytest.raises(GitError):
        keep(repo, R1, "t1", base=base, tip=commit(repo, "x\n"))
    assert f"refs/pm/{R1}/t1/base" not in hidden(repo)


@pytest.mark.parametrize(
    ("run", "name"),
    [(R1, "a b"), (R1, "x\ny"), (R1, "../up"), (R1, "x/y"), (R1, "x.lock"), (R1, "a..b"), ("r\0", "t"), ("", "t")],
)
def test_a_hostile_name_writes_nothing(repo: Path, run: str, name: str) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(InvalidArgumentError):
        keep(repo, run, name, base=base, tip=base)
    assert hidden(repo) == {}


@pytest.mark.parametrize("oid", ["HEAD", "--all", "0" * 39, f"{'0' * 40}\0create refs/heads/x"])
def test_an_object_id_must_be_one(repo: Path, oid: str) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(InvalidArgumentError):
        keep(repo, R1, "t1", base=base, tip=oid)
    assert hidden(repo) == {}


def test_a_name_led_by_a_dash_is_a_ref_not_an_option(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    keep(repo, "-run", "-t", base=base, tip=base)
    assert set(hidden(repo)) == {"refs/pm/-run/-t/base", "refs/pm/-run/-t/tip"}


# --- newest ------------------------------------------------------------------------------------


def test_newest_takes_the_newest_run_then_the_newest_attempt_kept_or_merged(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    keep(repo, R1, "t1", base=base, tip=commit(repo, "old run\n"))
    assert newest(repo, "t1") == Found(R1, "t1", 1, None, merged=True)
    git(repo, "branch", f"pm/{R2}/t1", commit(repo, "first attempt, kept\n"))
    assert newest(repo, "t1") == Found(R2, "t1", 1, f"pm/{R2}/t1", merged=False)
    keep(repo, R2, "t1.2", base=base, tip=commit(repo, "second attempt, merged\n"))
    found = newest(repo, "t1")
    assert found == Found(R2, "t1.2", 2, None, merged=True)
    assert found is not None
    assert found.revisions() == (f"refs/pm/{R2}/t1.2/base", f"refs/pm/{R2}/t1.2/tip")
    assert found.label == f"pm/{R2}/t1.2"
    assert newest(repo, "t1", run=R1) == Found(R1, "t1", 1, None, merged=True)


def test_a_kept_branch_is_shown_from_where_it_and_head_part(repo: Path) -> None:
    git(repo, "branch", f"pm/{R1}/t1", commit(repo, "kept\n"))
    found = newest(repo, "t1")
    assert found is not None
    assert found.revisions() == (f"HEAD...refs/heads/pm/{R1}/t1",)


def test_a_merged_attempt_whose_branch_is_left_is_shown_from_its_refs(repo: Path) -> None:
    """Its branch is in HEAD's history after a merge: HEAD...BRANCH would show nothing."""
    base = git(repo, "rev-parse", "HEAD").strip()
    tip = commit(repo, "merged\n")
    git(repo, "branch", f"pm/{R1}/t1", tip)
    keep(repo, R1, "t1", base=base, tip=tip)
    found = newest(repo, "t1")
    assert found == Found(R1, "t1", 1, f"pm/{R1}/t1", merged=True)
    assert found is not None
    assert found.revisions() == (f"refs/pm/{R1}/t1/base", f"refs/pm/{R1}/t1/tip")


def test_a_task_whose_id_holds_a_dot_is_not_anothers_attempt(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    keep(repo, R1, "x.2", base=base, tip=base)  # the task "x.2", or x's second attempt
    keep(repo, R1, "x.y", base=base, tip=base)
    git(repo, "update-ref", f"refs/pm/{R1}/x.\u00b2/base", base)  # git takes it; no attempt number
    git(repo, "update-ref", f"refs/pm/{R1}/x.\u00b2/tip", base)
    assert newest(repo, "x") == Found(R1, "x.2", 2, None, merged=True)
    assert newest(repo, "x.2") == Found(R1, "x.2", 1, None, merged=True)
    assert newest(repo, "x.y") == Found(R1, "x.y", 1, None, merged=True)
    assert newest(repo, "y") is None


def test_half_a_pair_or_an_unknown_ref_is_not_an_attempt(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-ref", f"refs/pm/{R1}/t1/tip", base)
    git(repo, "update-ref", f"refs/pm/{R1}/t1/other", base)
    assert newest(repo, "t1") is None
    assert newest(repo, "t1", run=R2) is None


# --- by_run and drop ----------------------------------------------------------------------------


def test_drop_deletes_in_one_transaction_and_none_if_one_moved(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    keep(repo, R1, "t1", base=base, tip=commit(repo, "one\n"))
    keep(repo, R2, "t1", base=base, tip=commit(repo, "two\n"))
    listed = by_run(repo)
    assert sorted(listed) == [R1, R2]
    assert {ref for ref, _ in listed[R1]} == {f"refs/pm/{R1}/t1/base", f"refs/pm/{R1}/t1/tip"}

    git(repo, "update-ref", f"refs/pm/{R1}/t1/tip", base)  # moved since it was listed
    with pytest.raises(GitError):
        drop(repo, [*listed[R1], *listed[R2]])
    assert len(hidden(repo)) == 4  # nothing went

    drop(repo, [*by_run(repo)[R1], *by_run(repo)[R2]])
    assert hidden(repo) == {}
    drop(repo, [])  # nothing to do: no git call needed


def test_drop_touches_nothing_outside_refs_pm(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    with pytest.raises(InvalidArgumentError):
        drop(repo, [("refs/heads/master", head)])
    assert git(repo, "rev-parse", "refs/heads/master").strip() == head


# --- a merged task's branch goes once its hidden refs keep its commits (worktrees.remove) ----------


def squash_merged(repo: Path) -> tuple[Worktree, str]:
    """A task's worktree whose branch was squash-merged into master after a commit of the user's:
    no branch has the task's own commit."""
    wt = create(repo, R1, "t1", base_commit(repo))
    (wt.path / "a.txt").write_text("the task's\n")
    tip = finish(wt, "t").tip
    (repo / "user.txt").write_text("the user's\n")
    git(repo, "add", "user.txt")
    git(repo, "commit", "-qm", "the user goes on")
    git(repo, "merge", "-q", "--squash", wt.branch)
    git(repo, "commit", "-qm", "squashed")
    return wt, tip


def test_a_squash_merged_branch_goes_once_its_tip_is_kept(repo: Path) -> None:
    wt, tip = squash_merged(repo)
    assert remove(wt, delete_branch=True).kept_because == f"1 commit(s) of pm/{R1}/t1 are on no other branch"
    keep(repo, R1, "t1", base=wt.base, tip=tip)
    assert remove(wt, delete_branch=True, kept_at=f"refs/pm/{R1}/t1/tip") == Removal(True)
    assert git(repo, "branch", "--list", "pm/*") == ""
    shown = git(repo, "diff", f"refs/pm/{R1}/t1/base", f"refs/pm/{R1}/t1/tip")
    assert shown.endswith("--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+the task's\n")
    assert "user.txt" not in shown  # the user's commit meanwhile is not the task's


def test_a_branch_that_moved_since_its_tip_was_kept_stays(repo: Path) -> None:
    wt, tip = squash_merged(repo)
    keep(repo, R1, "t1", base=wt.base, tip=tip)
    (wt.path / "a.txt").write_text("more, after the merge\n")
    git(wt.path, "commit", "-qam", "more")
    removal = remove(wt, delete_branch=True, kept_at=f"refs/pm/{R1}/t1/tip")
    assert not removal.branch_deleted
    assert removal.kept_because is not None
    assert "moved" in removal.kept_because
    assert git(repo, "rev-parse", f"refs/heads/{wt.branch}").strip() != tip  # kept, with the new commit


def test_a_kept_at_ref_that_is_missing_keeps_the_branch(repo: Path) -> None:
    wt, tip = squash_merged(repo)
    removal = remove(wt, delete_branch=True, kept_at=f"refs/pm/{R1}/t1/tip")
    assert not removal.branch_deleted
    assert git(repo, "rev-parse", f"refs/heads/{wt.branch}").strip() == tip


def test_a_branch_checked_out_elsewhere_stays(repo: Path, tmp_path: Path) -> None:
    wt, tip = squash_merged(repo)
    keep(repo, R1, "t1", base=wt.base, tip=tip)
    remove(wt, delete_branch=False)
    git(repo, "worktree", "add", "-q", str(tmp_path / "mine"), wt.branch)  # the user's look at it
    removal = remove(wt, delete_branch=True, kept_at=f"refs/pm/{R1}/t1/tip")
    assert not removal.branch_deleted
    assert removal.kept_because is not None
    assert "checked out" in removal.kept_because
    assert git(tmp_path / "mine", "symbolic-ref", "HEAD").strip() == f"refs/heads/{wt.branch}"


# --- last_ran: what the history records say of a task that left nothing ----------------------------


def history(repo: Path, run: str, *tasks: dict[str, object]) -> Path:
    directory = state_dir(repo) / "history"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{run}.json"
    path.write_text(json.dumps({"run": run, "started_at": 1, "ended_at": 2, "tasks": list(tasks), "version": 1}))
    return path


def test_last_ran_reads_the_newest_record_of_the_task(repo: Path) -> None:
    history(repo, R1, {"id": "t1", "attempts": 1, "isolation": "worktree"})
    history(repo, R2, {"id": "t1", "attempts": 2, "isolation": "shared"}, {"id": "t2", "attempts": 0})
    assert last_ran(repo, "t1") == Ran(R2, "shared", 2)
    assert last_ran(repo, "t1", run=R1) == Ran(R1, "worktree", 1)
    assert last_ran(repo, "t2") == Ran(R2, None, 0)  # written before isolation was, or a Python callable
    assert last_ran(repo, "t3") is None
    assert last_ran(repo, "t1", run="20261128-000000-9-999999") is None


def test_last_ran_skips_what_is_not_a_record(repo: Path, tmp_path: Path) -> None:
    history(repo, R1, {"id": "t1", "attempts": 1, "isolation": "worktree"})
    directory = state_dir(repo) / "history"
    (directory / f"{R2}.json").write_text("{not json")
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"tasks": [{"id": "t1", "isolation": "shared"}]}))
    (directory / "20261128-110000-4-dddddd.json").symlink_to(target)  # never followed
    os.mkfifo(directory / "20261128-120000-5-eeeeee.json")  # never waited on
    (directory / "20261128-130000-6-ffffff.json").write_text(json.dumps({"tasks": [{"id": "t1", "attempts": "x"}]}))
    (directory / "20261128-140000-7-000000.json").write_text(json.dumps({"tasks": [{"id": "t1", "isolation": 3}]}))
    assert last_ran(repo, "t1") == Ran("20261128-140000-7-000000", None, 0)
    assert last_ran(repo, "t1", run=R2) is None
    assert last_ran(repo, "t1", run="20261128-110000-4-dddddd") is None


def test_hidden_refs_are_no_leftovers_of_a_dead_run(repo: Path) -> None:
    """`status` and `clean` list a dead run's branches and worktrees: the refs are neither."""
    head = git(repo, "rev-parse", "HEAD").strip()
    keep(repo, R1, "t1", base=head, tip=commit(repo, "merged\n"))
    assert leftovers(repo, lambda run: False) == []
    assert sweep(repo, lambda run: False, force=True) == []
    assert len(by_run(repo)[R1]) == 2


def test_may_have_any_is_false_only_when_there_surely_are_none(repo: Path) -> None:
    git_dir = repo / ".git"
    assert not may_have_any(git_dir)
    git(repo, "tag", "v1")
    git(repo, "pack-refs", "--all")  # packed-refs without ours
    assert not may_have_any(git_dir)
    head = git(repo, "rev-parse", "HEAD").strip()
    keep(repo, R1, "t1", base=head, tip=head)
    assert may_have_any(git_dir)  # loose
    git(repo, "pack-refs", "--all")
    assert not (git_dir / "refs/pm" / R1 / "t1").exists()
    assert may_have_any(git_dir)  # packed
    drop(repo, by_run(repo)[R1])
    assert by_run(repo) == {}


def test_a_branch_of_a_run_the_state_directory_does_not_know_is_the_users_not_a_task_s(repo: Path) -> None:
    git(repo, "branch", "pm/alice/wip", commit(repo, "the user's own work\n"))
    assert newest(repo, "wip", known=lambda run: False) is None
    git(repo, "branch", f"pm/{R1}/wip", commit(repo, "a task's\n"))
    assert newest(repo, "wip", known=lambda run: run == R1) == Found(R1, "wip", 1, f"pm/{R1}/wip", merged=False)
