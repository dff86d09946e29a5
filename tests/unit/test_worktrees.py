"""A task's worktree from its birth to its removal (queue_core.worktrees), on real git repositories."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from queue_core.changes import GitCalls
from queue_core.claims import Claim
from queue_core.errors import (
    GitError,
    InvalidArgumentError,
    InvalidTaskIdError,
    UnmergedWorkError,
    WorktreeError,
)
from queue_core.statedir import state_dir
from queue_core.worktrees import (
    SUBJECT_MAX,
    Removal,
    Worktree,
    base_commit,
    check_claims,
    commit_message,
    create,
    finish,
    list_worktrees,
    remove,
)

from ..conftest import WAIT, git, git_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"a.txt": "a\n", "src/b.py": "b = 1\n", "docs/c.md": "c\n"}).resolve()


def _head(cwd: Path) -> str:
    return git(cwd, "rev-parse", "HEAD").strip()


def _branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/pm/").split()


def _commit_all(cwd: Path, message: str) -> str:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "-m", message)
    return _head(cwd)


# --- create ---------------------------------------------------------------------------------


def test_a_worktree_starts_from_the_base_while_the_user_s_checkout_has_moved_on(repo: Path) -> None:
    base = base_commit(repo)
    (repo / "a.txt").write_text("the user's next commit\n")
    _commit_all(repo, "moved on")
    (repo / "src/b.py").write_text("b = 'uncommitted edit'\n")
    (repo / "notes.txt").write_text("untracked\n")
    status_before = git(repo, "status", "--porcelain")

    wt = create(repo, "r1", "t1", base)

    assert wt.path == state_dir(repo) / "worktrees" / "r1" / "t1"
    assert (wt.branch, wt.base, wt.task, wt.run, wt.repo) == ("pm/r1/t1", base, "t1", "r1", repo)
    assert (wt.path / "a.txt").read_text() == "a\n"
    assert (wt.path / "src/b.py").read_text() == "b = 1\n"
    assert not (wt.path / "notes.txt").exists()
    assert git(wt.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "pm/r1/t1"
    # The user's files and status are untouched; the worktree lies outside the working tree.
    assert (repo / "src/b.py").read_text() == "b = 'uncommitted edit'\n"
    assert (repo / "a.txt").read_text() == "the user's next commit\n"
    assert git(repo, "status", "--porcelain") == status_before
    assert not wt.path.is_relative_to(repo / "src")
    assert wt.env() == {"PM_WORKTREE": str(wt.path)}


def test_worktree_root_puts_it_elsewhere(repo: Path, tmp_path: Path) -> None:
    base = base_commit(repo)
    assert create(repo, "r1", "t1", base, root=tmp_path / "wts").path == (tmp_path / "wts/r1/t1").resolve()
    assert create(repo, "r1", "t2", base, root="../rel").path == (tmp_path / "rel/r1/t2").resolve()


def test_base_commit_of_a_repository_without_commits_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(WorktreeError, match="no commit yet"):
        base_commit(empty)
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    with pytest.raises(GitError):  # not a repository at all
        base_commit(nowhere)


def test_an_existing_branch_or_folder_is_never_reused(repo: Path) -> None:
    base = base_commit(repo)
    first = create(repo, "r1", "t1", base)
    (first.path / "work.txt").write_text("the first task's work\n")
    with pytest.raises(WorktreeError, match="already exists"):
        create(repo, "r1", "t1", base)
    assert (first.path / "work.txt").read_text() == "the first task's work\n"

    git(repo, "branch", "pm/r2/t1")  # someone's branch of that name
    with pytest.raises(WorktreeError, match="branch pm/r2/t1 already exists"):
        create(repo, "r2", "t1", base)
    assert not (state_dir(repo) / "worktrees/r2/t1").exists()

    squatter = state_dir(repo) / "worktrees/r3/t1"
    squatter.mkdir(parents=True)
    with pytest.raises(WorktreeError, match="already exists"):
        create(repo, "r3", "t1", base)
    assert "pm/r3/t1" not in _branches(repo)


@pytest.mark.parametrize("task", ["../x", "x/y", "", ".hidden", "--upload-pack=touch", "a b", "x\ny"])
def test_a_hostile_task_id_is_refused(repo: Path, task: str) -> None:
    with pytest.raises(InvalidTaskIdError):
        create(repo, "r1", task, base_commit(repo))
    assert _branches(repo) == []


@pytest.mark.parametrize("task", ["x.lock", "a..b", "end."])
def test_a_task_id_that_cannot_name_a_branch_is_refused(repo: Path, task: str) -> None:
    with pytest.raises(InvalidArgumentError, match="cannot name a branch"):
        create(repo, "r1", task, base_commit(repo))
    assert _branches(repo) == []
    assert not (state_dir(repo) / "worktrees/r1" / task).exists()


@pytest.mark.parametrize("run", ["../up", "a/b", "r:1", ".x", ""])
def test_a_hostile_run_id_is_refused(repo: Path, run: str) -> None:
    with pytest.raises(InvalidArgumentError):
        create(repo, run, "t1", base_commit(repo))
    assert _branches(repo) == []


def test_a_name_led_by_a_dash_is_a_name_not_an_option(repo: Path) -> None:
    wt = create(repo, "-r", "-t", base_commit(repo))
    assert wt.branch == "pm/-r/-t"
    assert wt.path.name == "-t"


@pytest.mark.parametrize("base", ["--output={out}", "-h", "no-such-branch", "HEAD:a.txt"])
def test_a_base_that_is_no_commit_is_refused_and_never_an_option(repo: Path, base: str, tmp_path: Path) -> None:
    with pytest.raises(WorktreeError, match="names no commit"):
        create(repo, "r1", "t1", base.format(out=tmp_path / "hostile"))
    assert not (tmp_path / "hostile").exists()
    assert _branches(repo) == []


# --- finish ---------------------------------------------------------------------------------


@pytest.fixture
def wt(repo: Path) -> Worktree:
    return create(repo, "r1", "t1", base_commit(repo))


def test_finish_commits_what_the_agent_left_and_lists_exactly_what_changed(wt: Worktree) -> None:
    (wt.path / "a.txt").write_text("changed\n")
    (wt.path / "new dir").mkdir()
    (wt.path / "new dir/n.txt").write_text("new\n")
    (wt.path / "docs/c.md").unlink()

    changes = finish(wt, "implement US-038")

    assert changes.paths == ("a.txt", "docs/c.md", "new dir/n.txt")
    assert (changes.insertions, changes.deletions) == (2, 2)  # a.txt's line replaced, n.txt's, c.md's
    assert changes.commit is not None
    assert changes.commit == changes.tip == _head(wt.path)
    assert git(wt.path, "log", "-1", "--format=%B").strip() == "t1: implement US-038"
    assert git(wt.path, "status", "--porcelain") == ""
    assert git(wt.repo, "rev-parse", "refs/heads/pm/r1/t1").strip() == changes.tip


def test_finish_with_the_agent_s_own_commits_and_nothing_left(wt: Worktree) -> None:
    (wt.path / "src/b.py").write_text("b = 2\n")
    _commit_all(wt.path, "agent's own commit")
    (wt.path / "src/d.py").write_text("d = 4\n")
    tip = _commit_all(wt.path, "and another")

    changes = finish(wt, "whatever")

    assert changes.commit is None
    assert changes.tip == tip
    assert changes.paths == ("src/b.py", "src/d.py")


def test_finish_with_nothing_changed(wt: Worktree) -> None:
    changes = finish(wt, "nothing to do")
    assert (changes.paths, changes.commit, changes.tip) == ((), None, wt.base)
    assert (changes.insertions, changes.deletions) == (0, 0)


def test_a_rename_lists_both_paths(wt: Worktree) -> None:
    os.rename(wt.path / "src/b.py", wt.path / "src/renamed.py")
    assert finish(wt, "rename").paths == ("src/b.py", "src/renamed.py")


def test_a_rename_the_agent_committed_lists_both_paths(wt: Worktree) -> None:
    git(wt.path, "mv", "docs/c.md", "docs/moved.md")
    _commit_all(wt.path, "git mv")
    assert finish(wt, "rename").paths == ("docs/c.md", "docs/moved.md")


def test_ignored_files_are_not_committed(repo: Path) -> None:
    (repo / ".gitignore").write_text("build/\n")
    _commit_all(repo, "ignore build")
    wt = create(repo, "r1", "t1", base_commit(repo))
    (wt.path / "build").mkdir()
    (wt.path / "build/out.o").write_text("binary\n")
    assert finish(wt, "build").paths == ()


def test_a_long_description_keeps_the_subject_short_and_the_whole_text_in_the_body(wt: Worktree) -> None:
    text = "implement " + ", ".join(["a very long feature"] * 10) + "\nsecond line"
    (wt.path / "a.txt").write_text("x\n")
    finish(wt, text)
    subject, _, body = git(wt.path, "log", "-1", "--format=%B").partition("\n\n")
    assert len(subject) <= SUBJECT_MAX
    assert subject.startswith("t1: implement a very long feature")
    assert subject.endswith("...")
    assert body.strip() == text.strip()


def test_commit_message_shapes() -> None:
    assert commit_message("t1", "fix it") == "t1: fix it\n"
    assert commit_message("t1", "  ") == "t1\n"
    assert commit_message("t1", "fix it\n\ndetails") == "t1: fix it\n\nfix it\n\ndetails\n"
    assert commit_message("t1", "-m --amend \0x") == "t1: -m --amend x\n"


def test_a_description_that_looks_like_options_is_only_a_message(wt: Worktree) -> None:
    (wt.path / "a.txt").write_text("x\n")
    finish(wt, "--amend --author=evil <e@x> # not a comment")
    assert git(wt.path, "log", "-1", "--format=%s").strip() == "t1: --amend --author=evil <e@x> # not a comment"
    assert git(wt.path, "rev-list", "--count", "HEAD").strip() == "2"


def _no_identity(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """An environment where git knows no user and guesses none (as on a fresh CI machine)."""
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "user.useConfigOnly")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "true")


def test_without_an_identity_the_commit_falls_back_to_project_manager(
    wt: Worktree, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_identity(monkeypatch, tmp_path)
    (wt.path / "a.txt").write_text("x\n")
    finish(wt, "task")
    assert git(wt.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>").strip() == (
        "project-manager <project-manager@localhost>|project-manager <project-manager@localhost>"
    )


def test_the_user_s_identity_is_used_when_there_is_one(
    wt: Worktree, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_identity(monkeypatch, tmp_path)
    git(wt.repo, "config", "user.name", "Ada")
    git(wt.repo, "config", "user.email", "ada@example.invalid")
    (wt.path / "a.txt").write_text("x\n")
    finish(wt, "task")
    assert git(wt.path, "log", "-1", "--format=%an <%ae>").strip() == "Ada <ada@example.invalid>"


def test_a_worktree_that_left_its_branch_is_not_committed(wt: Worktree) -> None:
    git(wt.path, "switch", "-q", "-c", "elsewhere")
    (wt.path / "a.txt").write_text("work\n")
    with pytest.raises(WorktreeError, match="left its branch pm/r1/t1 for refs/heads/elsewhere"):
        finish(wt, "task")
    assert (wt.path / "a.txt").read_text() == "work\n"
    git(wt.path, "switch", "-q", "--detach")
    with pytest.raises(WorktreeError, match="detached HEAD"):
        finish(wt, "task")


def test_an_unfinished_merge_is_not_committed(wt: Worktree) -> None:
    git(wt.repo, "switch", "-q", "-c", "side")
    (wt.repo / "a.txt").write_text("side\n")
    _commit_all(wt.repo, "side")
    (wt.path / "a.txt").write_text("agent\n")
    _commit_all(wt.path, "agent")
    merge = ["git", "-c", "user.name=t", "-c", "user.email=t@x", "merge", "-q", "side"]
    assert subprocess.run(merge, cwd=wt.path, capture_output=True, check=False, timeout=WAIT).returncode != 0
    with pytest.raises(WorktreeError, match="unfinished operation \\(MERGE_HEAD\\)"):
        finish(wt, "task")
    assert "<<<<<<<" in (wt.path / "a.txt").read_text()


def test_a_branch_reset_behind_its_base_is_refused(repo: Path) -> None:
    (repo / "a.txt").write_text("second\n")
    _commit_all(repo, "second")
    wt = create(repo, "r1", "t1", base_commit(repo))
    git(wt.path, "reset", "-q", "--hard", "HEAD~1")
    with pytest.raises(WorktreeError, match="no longer descends"):
        finish(wt, "task")


def test_check_claims_lists_the_unclaimed_paths(wt: Worktree) -> None:
    (wt.path / "src/b.py").write_text("b = 2\n")
    (wt.path / "src/new.py").write_text("new\n")
    (wt.path / "package-lock.json").write_text("{}\n")
    os.rename(wt.path / "docs/c.md", wt.path / "src/c.md")
    paths = finish(wt, "t").paths
    claims = [Claim.parse("src/**/*.py")]
    assert check_claims(paths, claims) == ["docs/c.md", "package-lock.json", "src/c.md"]
    assert check_claims(paths, [Claim.parse("src/"), Claim.parse("docs/"), Claim.parse("*.json")]) == []


# --- remove ---------------------------------------------------------------------------------


def test_a_merged_task_s_worktree_and_branch_go(wt: Worktree) -> None:
    (wt.path / "a.txt").write_text("done\n")
    finish(wt, "t")
    (wt.path / "build.log").write_text("ignored leftovers do not stop the removal\n")
    (wt.repo / ".git/info/exclude").write_text("*.log\n")
    git(wt.repo, "merge", "-q", "--no-ff", "-m", "merge t1", "pm/r1/t1")

    assert remove(wt, delete_branch=True) == Removal(True)
    assert not wt.path.exists()
    assert not wt.path.parent.exists()  # the run's folder, now empty
    assert _branches(wt.repo) == []
    assert [entry.path for entry in list_worktrees(wt.repo)] == [wt.repo]


def test_an_unmerged_branch_is_kept_and_the_caller_told(wt: Worktree) -> None:
    (wt.path / "a.txt").write_text("not merged\n")
    tip = finish(wt, "t").tip
    removal = remove(wt, delete_branch=True)
    assert not removal.branch_deleted
    assert removal.kept_because == "1 commit(s) of pm/r1/t1 are on no other branch"
    assert not wt.path.exists()
    assert git(wt.repo, "rev-parse", "refs/heads/pm/r1/t1").strip() == tip


def test_a_branch_merged_elsewhere_but_not_into_head_is_kept_by_git_s_own_check(wt: Worktree) -> None:
    (wt.path / "a.txt").write_text("x\n")
    finish(wt, "t")
    git(wt.repo, "branch", "other", "pm/r1/t1")  # reachable from another branch, not from HEAD
    removal = remove(wt, delete_branch=True)
    assert not removal.branch_deleted
    assert removal.kept_because is not None
    assert "git branch --delete failed" in removal.kept_because
    assert "pm/r1/t1" in _branches(wt.repo)


def test_the_branch_stays_when_not_asked_to_go(wt: Worktree) -> None:
    assert remove(wt, delete_branch=False) == Removal(False)
    assert not wt.path.exists()
    assert _branches(wt.repo) == ["pm/r1/t1"]


def test_uncommitted_work_is_never_removed(wt: Worktree) -> None:
    (wt.path / "a.txt").write_text("uncommitted\n")
    (wt.path / "fresh.txt").write_text("untracked\n")
    with pytest.raises(UnmergedWorkError, match="2 uncommitted path") as caught:
        remove(wt, delete_branch=True)
    assert caught.value.uncommitted == ("a.txt", "fresh.txt")
    assert (wt.path / "fresh.txt").read_text() == "untracked\n"
    assert _branches(wt.repo) == ["pm/r1/t1"]


@pytest.mark.parametrize("change", ["untracked", "staged", "deleted", "mode"])
def test_each_kind_of_uncommitted_change_stops_the_removal(wt: Worktree, change: str) -> None:
    if change == "untracked":
        (wt.path / "src/new.py").write_text("new\n")
    elif change == "staged":
        (wt.path / "src/new.py").write_text("new\n")
        git(wt.path, "add", "src/new.py")
    elif change == "deleted":
        (wt.path / "src/b.py").unlink()
    else:
        os.chmod(wt.path / "src/b.py", 0o755)  # noqa: S103 - a mode change is a change
    with pytest.raises(UnmergedWorkError, match="1 uncommitted path"):
        remove(wt, delete_branch=True)
    assert wt.path.exists()


def test_a_commit_on_no_branch_in_a_detached_worktree_is_never_removed(wt: Worktree) -> None:
    git(wt.path, "switch", "-q", "--detach")
    (wt.path / "a.txt").write_text("detached work\n")
    lost = _commit_all(wt.path, "detached")
    with pytest.raises(UnmergedWorkError, match="HEAD is on no branch") as caught:
        remove(wt, delete_branch=True)
    assert caught.value.commits == (lost,)
    assert wt.path.exists()


def test_a_folder_that_is_no_worktree_is_left_alone(repo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine\n")
    fake = Worktree(folder, "pm/r1/t1", base_commit(repo), "t1", "r1", repo)
    with pytest.raises(WorktreeError, match="not a worktree"):
        remove(fake, delete_branch=True)
    assert (folder / "keep.txt").read_text() == "mine\n"


def test_a_worktree_whose_folder_was_deleted_is_still_removed(wt: Worktree) -> None:
    shutil.rmtree(wt.path)
    assert remove(wt, delete_branch=True) == Removal(True)  # no commits: nothing to lose
    assert [entry.path for entry in list_worktrees(wt.repo)] == [wt.repo]


def test_a_deleted_folder_s_commit_on_no_branch_is_still_guarded(wt: Worktree) -> None:
    git(wt.path, "switch", "-q", "--detach")
    (wt.path / "a.txt").write_text("detached work\n")
    lost = _commit_all(wt.path, "detached")
    shutil.rmtree(wt.path)  # its reflog, in git's records of the worktree, still names the commit
    with pytest.raises(UnmergedWorkError) as caught:
        remove(wt, delete_branch=False)
    assert caught.value.commits == (lost,)


def test_an_interrupted_git_fails_cleanly(wt: Worktree) -> None:
    calls = GitCalls()
    calls.interrupt(0.0)
    with pytest.raises(GitError, match="interrupted"):
        finish(wt, "t", git=calls)


def test_tasks_made_finished_and_removed_at_once_from_many_threads(repo: Path) -> None:
    base = base_commit(repo)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []
    made: list[Worktree] = []
    lock = threading.Lock()

    def task(i: int) -> None:
        try:
            barrier.wait(WAIT)
            wt = create(repo, "r1", f"t{i}", base)
            (wt.path / f"f{i}.txt").write_text(f"{i}\n")
            assert finish(wt, f"task {i}").paths == (f"f{i}.txt",)
            with lock:
                made.append(wt)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    _in_threads(task, 6)
    assert not errors, errors
    for wt in made:
        git(repo, "merge", "-q", "--no-ff", "-m", f"merge {wt.task}", wt.branch)
    removals: list[Removal] = []

    def drop(i: int) -> None:
        try:
            barrier.wait(WAIT)
            removals.append(remove(made[i], delete_branch=True))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    _in_threads(drop, 6)
    assert not errors, errors
    assert removals == [Removal(True)] * 6
    assert _branches(repo) == []


def _in_threads(fn: Callable[[int], None], count: int) -> None:
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()


def _make_and_drop(repo: str, run: str, rounds: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    """In a process of its own: ``rounds`` worktrees made and removed, each round started with the others."""
    base = base_commit(repo)
    for i in range(rounds):
        barrier.wait(WAIT)
        wt = create(repo, run, f"t{i}", base)
        assert remove(wt, delete_branch=True).branch_deleted


def test_processes_making_and_removing_worktrees_at_once_never_trip_on_each_others(repo: Path) -> None:
    # git reads every worktree's admin folder to make or remove one, and fails on one that another
    # `git worktree add` is writing ("failed to read .git/worktrees/t3/commondir").
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(6)
    runs = [f"20261128-12000{n}-1-abcdef" for n in range(6)]
    processes = [context.Process(target=_make_and_drop, args=(str(repo), run, 6, barrier)) for run in runs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(4 * WAIT)
    assert [process.exitcode for process in processes] == [0] * len(processes)
    assert len(list_worktrees(repo)) == 1
