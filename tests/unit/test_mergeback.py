"""queue_core.mergeback: a task's branch merged into the user's branch, their work never touched.

Real repositories: the "user" works in the main checkout (commits, edits, stages, leaves
untracked and ignored files); a task's commits are made in a worktree of its own, on its
branch, as the queue will make them.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from queue_core import mergeback, mergeplan
from queue_core.changes import GitCalls
from queue_core.claims import Claim
from queue_core.errors import GitError, InvalidArgumentError
from queue_core.mergeback import ConflictCause, MergeMode, MergeResult, MergeStatus, merge_back

from ..conftest import git, git_repo

BRANCH = "pm/run1/t1"
MODES = [MergeMode.MERGE, MergeMode.SQUASH, MergeMode.REBASE]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The user's repository on ``main``: a.txt, b.txt, src/x.py, .gitignore ignoring ``*.env``."""
    path = git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n", "src/x.py": "x = 1\n", ".gitignore": "*.env\n"})
    git(path, "branch", "-M", "main")
    git(path, "config", "user.name", "User")
    git(path, "config", "user.email", "user@example.invalid")
    return path


def head(repo: Path, ref: str = "HEAD") -> str:
    return git(repo, "rev-parse", ref).strip()


def task_branch(repo: Path, *commits: Mapping[str, str | None], base: str | None = None) -> Path:
    """BRANCH made in a worktree of its own from ``base`` (main), one commit per mapping
    (path -> text, None deletes), authored by the agent; the worktree's path."""
    worktree = repo.parent / "wt"
    git(repo, "worktree", "add", "-q", "-b", BRANCH, str(worktree), base or head(repo))
    for number, files in enumerate(commits, 1):
        for name, text in files.items():
            if text is None:
                (worktree / name).unlink()
            else:
                (worktree / name).parent.mkdir(parents=True, exist_ok=True)
                (worktree / name).write_text(text)
        git(worktree, "add", "-A", "-f", ".")
        agent = ["-c", "user.name=Agent", "-c", "user.email=agent@example.invalid"]
        date = f"@{1_700_000_000 + number} +0130"
        subprocess.run(
            ["git", *agent, "commit", "-q", "--allow-empty", "-m", f"task commit {number}\n\nbody {number}"],
            cwd=worktree,
            check=True,
            env={**os.environ, "GIT_AUTHOR_DATE": date},
        )
    return worktree


def is_ancestor(repo: Path, commit: str, of: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", commit, of], cwd=repo, check=False).returncode == 0


def user_commit(repo: Path, files: Mapping[str, str], message: str = "user's commit") -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", *files)
    git(repo, "commit", "-q", "-m", message)
    return head(repo)


def state(repo: Path) -> tuple[Any, ...]:
    """Everything of the user's checkout a merge-back must not change when it merges nothing."""
    files = {
        path.relative_to(repo).as_posix(): path.read_bytes()
        for path in sorted(repo.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(repo).parts
    }
    return (
        git(repo, "status", "--porcelain=v2", "--branch", "--untracked-files=all", "--ignored"),
        git(repo, "ls-files", "--stage"),
        git(repo, "diff", "--cached"),
        git(repo, "for-each-ref"),
        files,
    )


def no_operation_under_way(repo: Path) -> bool:
    return not any(
        Path(repo, git(repo, "rev-parse", "--git-path", name).strip()).exists()
        for name in ("MERGE_HEAD", "rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD", "index.lock")
    )


def merge(
    repo: Path,
    mode: MergeMode = MergeMode.MERGE,
    *,
    base: str,
    claims: tuple[str, ...] = ("a.txt", "new.txt", "newdir/"),
    message: str = "task t1: do it",
    git_calls: GitCalls | None = None,
) -> MergeResult:
    return merge_back(
        repo,
        target_branch="main",
        base=base,
        branch=BRANCH,
        mode=mode,
        message=message,
        claims=[Claim.parse(c) for c in claims],
        **({"git": git_calls} if git_calls is not None else {}),
    )


def user_work(repo: Path) -> dict[str, bytes]:
    """The user's uncommitted work, beside files a task changes: an unstaged edit, a staged
    one, an untracked file and an ignored one. Their bytes, by path."""
    (repo / "src/x.py").write_bytes(b"x = 2  # mine, unstaged\n")
    (repo / "b.txt").write_bytes(b"b, staged by me\n")
    git(repo, "add", "b.txt")
    (repo / "notes.md").write_bytes(b"untracked\n")
    (repo / "local.env").write_bytes(b"SECRET=1\n")
    return {name: (repo / name).read_bytes() for name in ("src/x.py", "b.txt", "notes.md", "local.env")}


# --- merged: the history each mode makes, and the user's work kept -------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_merges_and_keeps_the_users_uncommitted_work(repo: Path, mode: MergeMode) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"}, {"new.txt": "new\n"})
    theirs = user_commit(repo, {"src/x.py": "x = 1  # committed\n"})
    work = user_work(repo)
    task_tip = head(repo, BRANCH)

    result = merge(repo, mode, base=base)

    assert result.status is MergeStatus.MERGED, result.reason
    assert result.commit == head(repo, "main")
    assert sorted(result.changed) == ["a.txt", "new.txt"]
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert (repo / "a.txt").read_text() == "a by the task\n"
    assert (repo / "new.txt").read_text() == "new\n"
    for name, data in work.items():  # byte for byte, and still uncommitted
        assert (repo / name).read_bytes() == data
    assert git(repo, "diff", "--cached", "--name-only").split() == ["b.txt"]  # staged stays staged
    assert git(repo, "diff", "--name-only").split() == ["src/x.py"]  # unstaged stays unstaged
    assert git(repo, "ls-files", "--others", "--exclude-standard").split() == ["notes.md"]
    assert no_operation_under_way(repo)
    parents = git(repo, "log", "--format=%P", f"{theirs}..main").splitlines()
    if mode is MergeMode.MERGE:
        assert git(repo, "log", "-1", "--format=%P", "main").split() == [theirs, task_tip]
        assert git(repo, "log", "-1", "--format=%B", "main") == "task t1: do it\n\n"
    elif mode is MergeMode.SQUASH:
        assert parents == [theirs]
        assert not is_ancestor(repo, task_tip, "main")
    else:  # linear: each replayed commit's one parent is the one before it
        first = git(repo, "rev-parse", "main~1").strip()
        assert parents == [first, theirs]
        assert git(repo, "log", "--format=%an|%ae|%ad|%cn|%s|%b", "--date=raw", f"{theirs}..main").splitlines() == [
            "Agent|agent@example.invalid|1700000002 +0130|User|task commit 2|body 2",
            "",
            "Agent|agent@example.invalid|1700000001 +0130|User|task commit 1|body 1",
            "",
        ]
    assert head(repo, BRANCH) == task_tip  # the task's branch is left as it was


def test_a_rebase_onto_an_unmoved_branch_takes_the_commits_as_they_are(repo: Path) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    result = merge(repo, MergeMode.REBASE, base=base)
    assert result.status is MergeStatus.MERGED
    assert head(repo, "main") == head(repo, BRANCH)
    assert git(repo, "status", "--porcelain").strip() == ""


def test_a_rebase_drops_a_commit_the_user_made_already(repo: Path) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": "same\n"}, {"new.txt": "new\n"})
    theirs = user_commit(repo, {"a.txt": "same\n"})
    result = merge(repo, MergeMode.REBASE, base=base)
    assert result.status is MergeStatus.MERGED
    assert git(repo, "log", "--format=%s", f"{theirs}..main").splitlines() == ["task commit 2"]


@pytest.mark.parametrize("mode", MODES)
def test_a_branch_with_nothing_new_merges_nothing(repo: Path, mode: MergeMode) -> None:
    base = head(repo)
    task_branch(repo)
    before = state(repo)
    result = merge(repo, mode, base=base)
    assert result.status is MergeStatus.MERGED
    assert result.commit is None
    assert state(repo) == before


def test_merge_none_merges_nothing(repo: Path) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    before = state(repo)
    result = merge(repo, MergeMode.NONE, base=base)
    assert result.status is MergeStatus.NONE
    assert state(repo) == before


def test_a_message_that_starts_with_a_dash_is_the_message(repo: Path) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    for mode, message in ((MergeMode.MERGE, "--amend -m x\n"), (MergeMode.SQUASH, "-F /etc/passwd")):
        if mode is MergeMode.SQUASH:
            git(repo, "reset", "-q", "--hard", base)
        result = merge(repo, mode, base=base, message=message)
        assert result.status is MergeStatus.MERGED, result.reason
        assert git(repo, "log", "-1", "--format=%B", "main") == message.rstrip("\n") + "\n\n"


# --- blocked: the user's work stands in the way ----------------------------------------------------


@pytest.mark.parametrize(
    ("touch", "blocking"),
    [
        pytest.param(lambda r: (r / "a.txt").write_text("mine\n"), "a.txt", id="modified"),
        pytest.param(lambda r: ((r / "a.txt").write_text("mine\n"), git(r, "add", "a.txt")), "a.txt", id="staged"),
        pytest.param(lambda r: (r / "a.txt").unlink(), "a.txt", id="deleted"),
        pytest.param(lambda r: (r / "new.txt").write_text("my own\n"), "new.txt", id="untracked-in-the-way"),
        pytest.param(lambda r: (r / "task.env").write_text("MINE=1\n"), "task.env", id="ignored-in-the-way"),
        pytest.param(lambda r: (r / "newdir").write_text("a file\n"), "newdir/f.txt", id="file-where-a-dir-goes"),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_a_change_of_the_users_where_the_merge_writes_blocks_it_and_changes_nothing(
    repo: Path, mode: MergeMode, touch: Callable[[Path], object], blocking: str
) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n", "new.txt": "new\n", "task.env": "T=1\n", "newdir/f.txt": "f\n"})
    user_commit(repo, {"src/x.py": "x = 3\n"})
    user_work(repo)
    touch(repo)
    before = state(repo)

    result = merge(repo, mode, base=base, claims=("a.txt", "new.txt", "task.env", "newdir/"))

    assert result.status is MergeStatus.BLOCKED
    assert result.blocking == (blocking,)
    assert blocking in result.reason
    assert state(repo) == before
    assert no_operation_under_way(repo)


def test_blocked_says_which_file_you_modified(repo: Path) -> None:
    base = head(repo)
    task_branch(repo, {"src/x.py": "x = 9\n"})
    (repo / "src/x.py").write_text("x = 2\n")
    result = merge(repo, base=base)
    assert result.reason.startswith("the merge would change src/x.py, which you have modified")


@pytest.mark.parametrize("mode", MODES)
def test_a_checkout_on_another_branch_or_detached_blocks_the_merge(repo: Path, mode: MergeMode) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    git(repo, "checkout", "-q", "-b", "elsewhere")
    before = state(repo)
    result = merge(repo, mode, base=base)
    assert (result.status, result.reason) == (
        MergeStatus.BLOCKED,
        "your checkout is on elsewhere now, not main: nothing was merged",
    )
    git(repo, "checkout", "-q", "--detach", "main")
    assert "a detached HEAD" in merge(repo, mode, base=base).reason
    assert head(repo, "main") == base
    git(repo, "checkout", "-q", "elsewhere")
    assert state(repo) == before


def _conflicting_side(repo: Path, operation: str) -> None:
    """A branch "side" whose b.txt conflicts with main's, and the user's ``git OPERATION side``
    on main, left stopped on that conflict."""
    git(repo, "checkout", "-q", "-b", "side", "HEAD~0")
    user_commit(repo, {"b.txt": "side\n"})
    git(repo, "checkout", "-q", "main")
    user_commit(repo, {"b.txt": "main\n"})
    subprocess.run(["git", operation, "side"], cwd=repo, capture_output=True, check=False)


def user_rebase_stopped(repo: Path) -> None:
    """The user's own rebase, stopped on a conflict (rebase-merge/ exists, HEAD detached)."""
    _conflicting_side(repo, "rebase")
    assert Path(repo, git(repo, "rev-parse", "--git-path", "rebase-merge").strip()).is_dir()


def user_merge_stopped(repo: Path) -> None:
    """The user's own merge, stopped on a conflict: MERGE_HEAD, main still checked out."""
    _conflicting_side(repo, "merge")
    assert Path(repo, git(repo, "rev-parse", "--git-path", "MERGE_HEAD").strip()).is_file()


@pytest.mark.parametrize(
    ("stop", "what"), [(user_rebase_stopped, "a rebase"), (user_merge_stopped, "a merge")], ids=["rebase", "merge"]
)
def test_an_operation_under_way_in_the_checkout_blocks_the_merge(
    repo: Path, stop: Callable[[Path], None], what: str
) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    stop(repo)
    before = state(repo)
    result = merge(repo, base=base)
    assert (result.status, result.reason) == (
        MergeStatus.BLOCKED,
        f"{what} is under way in your checkout: nothing was merged",
    )
    assert state(repo) == before


def test_a_missing_branch_blocks_and_a_bad_base_is_refused(repo: Path) -> None:
    base = head(repo)
    result = merge(repo, base=base)
    assert result.status is MergeStatus.BLOCKED
    assert "was not found" in result.reason
    for bad in ("--upload-pack=x", "HEAD", ""):
        with pytest.raises(InvalidArgumentError):
            merge(repo, base=bad)


# --- conflicts: nothing to abort, the cause told ----------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_conflict_with_the_users_commit_changes_nothing_and_says_so(repo: Path, mode: MergeMode) -> None:
    base = head(repo)
    task_branch(repo, {"new.txt": "first\n"}, {"a.txt": "a by the task\n"})
    user_commit(repo, {"a.txt": "a by the user\n"})
    user_work(repo)
    before = state(repo)

    result = merge(repo, mode, base=base)

    assert result.status is MergeStatus.CONFLICT
    assert result.conflicts == ("a.txt",)
    assert result.cause is ConflictCause.TARGET_COMMITS
    assert "main has commits since the run started" in result.reason
    assert state(repo) == before
    assert no_operation_under_way(repo)
    if mode is MergeMode.REBASE:  # the commit whose replay conflicts is named
        assert result.reason.startswith(f"replaying {head(repo, BRANCH)[:12]} of {BRANCH} onto main conflicts")


def test_a_conflict_from_a_write_outside_the_claims_is_told_as_such(repo: Path) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n", "b.txt": "b, stray\n"})
    user_commit(repo, {"b.txt": "b by the user\n"})
    before = state(repo)
    result = merge(repo, base=base, claims=("a.txt",))
    assert (result.status, result.conflicts, result.cause) == (
        MergeStatus.CONFLICT,
        ("b.txt",),
        ConflictCause.STRAY_WRITES,
    )
    assert "the task wrote b.txt outside its claims" in result.reason
    assert state(repo) == before


def test_a_modify_delete_conflict_is_a_conflict(repo: Path) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": None})
    user_commit(repo, {"a.txt": "a changed\n"})
    result = merge(repo, base=base)
    assert (result.status, result.conflicts) == (MergeStatus.CONFLICT, ("a.txt",))


# --- the user's branch moving while the merge is applied ------------------------------------------


class Hooked(GitCalls):
    """GitCalls that runs ``hook`` once, just before the first git command named ``when``."""

    def __init__(self, when: str, hook: Callable[[], None]):
        super().__init__()
        self.when, self.hook = when, hook
        self.calls: list[str] = []

    def run(self, repo: Path, *args: str, **kwargs: Any) -> tuple[int, bytes]:
        name = next(arg for arg in args[1:] if not arg.startswith("-"))
        self.calls.append(name)
        if name == self.when and self.hook is not None:
            hook, self.hook = self.hook, None  # type: ignore[assignment]
            hook()
        return super().run(repo, *args, **kwargs)


def test_a_commit_of_the_users_before_the_files_move_is_kept_and_merged_onto(repo: Path) -> None:
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    (repo / "b.txt").write_text("b, mine\n")
    hooked = Hooked("read-tree", lambda: user_commit(repo, {"b.txt": "b, mine\n"}, "mine, meanwhile"))
    result = merge(repo, base=base, git_calls=hooked)
    assert result.status is MergeStatus.MERGED, result.reason
    mine = head(repo, "main^1")
    assert git(repo, "log", "-1", "--format=%s", mine) == "mine, meanwhile\n"
    assert git(repo, "status", "--porcelain").strip() == ""
    assert hooked.calls.count("merge-tree") == 2  # tried again from the start


def test_a_commit_of_the_users_between_the_files_and_the_branch_is_kept(repo: Path) -> None:
    """``git commit -- b.txt`` (its own file only) while the merge's files are staged: the
    swap fails, the files are put back, and the merge is made again on top of that commit."""
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    (repo / "b.txt").write_text("b, mine\n")
    hooked = Hooked("update-ref", lambda: git(repo, "commit", "-q", "-m", "mine, meanwhile", "--", "b.txt"))
    result = merge(repo, base=base, git_calls=hooked)
    assert result.status is MergeStatus.MERGED, result.reason
    assert git(repo, "log", "--format=%s", "--first-parent", "main").splitlines() == [
        "task t1: do it",
        "mine, meanwhile",
        "first",
    ]
    assert git(repo, "show", "main^1:b.txt") == "b, mine\n"
    assert git(repo, "show", "main^1:a.txt") == "a\n"  # the user's commit is as they made it
    assert git(repo, "status", "--porcelain").strip() == ""


def test_a_commit_of_the_users_that_takes_the_staged_merge_is_left_as_made(repo: Path) -> None:
    """``git commit -a`` in the moment the merge's files are staged takes them in: nothing is
    undone (that would revert the user's commit); the merge reports blocked, the branch kept."""
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    (repo / "b.txt").write_text("b, mine\n")
    hooked = Hooked("update-ref", lambda: git(repo, "commit", "-q", "-a", "-m", "mine, with everything"))
    result = merge(repo, base=base, git_calls=hooked)
    assert result.status is MergeStatus.BLOCKED
    assert "that commit changed a.txt too" in result.reason
    assert git(repo, "log", "-1", "--format=%s", "main") == "mine, with everything\n"
    assert git(repo, "show", "main:a.txt") == "a by the task\n"
    assert git(repo, "show", "main:b.txt") == "b, mine\n"
    assert git(repo, "status", "--porcelain").strip() == ""
    assert head(repo, BRANCH) != head(repo, "main")


@pytest.mark.parametrize("when", ["status", "symbolic-ref"])
def test_a_checkout_of_another_branch_while_merging_leaves_main_and_the_files_as_they_were(
    repo: Path, when: str
) -> None:
    """Before the files move (seen by the status) or after (seen before the branch moves)."""
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    user_work(repo)
    hooked = Hooked(when, lambda: git(repo, "checkout", "-q", "-b", "other"))
    result = merge(repo, base=base, git_calls=hooked)
    assert result.status is MergeStatus.BLOCKED
    assert "other" in result.reason
    assert head(repo, "main") == base
    assert (repo / "a.txt").read_text() == "a\n"
    assert git(repo, "status", "--porcelain", "--untracked-files=no").splitlines() == ["M  b.txt", " M src/x.py"]
    if when == "status":  # seen before anything was written
        assert "read-tree" not in hooked.calls


def test_a_file_touched_but_unchanged_does_not_block(repo: Path) -> None:
    """Its stat data is refreshed first: read-tree would otherwise take it for modified."""
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    os.utime(repo / "a.txt", (1_000_000_000, 1_000_000_000))
    result = merge(repo, base=base)
    assert result.status is MergeStatus.MERGED, result.reason


def test_a_branch_that_cannot_be_moved_leaves_everything_as_it_was(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mergeback, "LOCKED_WAIT_S", 0.05)  # a lock held for good (a crashed git's)
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    user_work(repo)
    before = state(repo)
    lock = Path(repo, git(repo, "rev-parse", "--git-path", "refs/heads/main.lock").strip())
    hooked = Hooked("update-ref", lambda: lock.write_text(""))  # another git holds main's lock
    result = merge(repo, base=base, git_calls=hooked)
    lock.unlink()
    assert result.status is MergeStatus.BLOCKED
    assert result.reason.startswith("main could not be moved")
    assert state(repo) == before


def test_a_put_back_that_fails_says_what_is_left_and_loses_nothing(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mergeback, "LOCKED_WAIT_S", 0.05)  # a lock held for good (a crashed git's)
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    lock = Path(repo, git(repo, "rev-parse", "--git-path", "refs/heads/main.lock").strip())

    def meanwhile() -> None:
        lock.write_text("")
        (repo / "a.txt").write_text("edited over the task's version\n")

    with pytest.raises(GitError, match=r"read-tree -m -u [0-9a-f]+ [0-9a-f]+` takes them out"):
        merge(repo, base=base, git_calls=Hooked("update-ref", meanwhile))
    lock.unlink()
    assert (repo / "a.txt").read_text() == "edited over the task's version\n"
    assert head(repo, "main") == base
    assert no_operation_under_way(repo)


def test_git_older_than_2_38_is_named(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class OldGit(GitCalls):
        def run(self, repo: Path, *args: str, **kwargs: Any) -> tuple[int, bytes]:
            if args[1:] == ("version",):
                return 0, b"git version 2.37.3\n"
            return super().run(repo, *args, **kwargs)

    monkeypatch.setattr(mergeplan, "_git_checked", threading.Event())
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n"})
    with pytest.raises(GitError, match=r"needs git 2\.38 or later .*2\.37\.3"):
        merge(repo, base=base, git_calls=OldGit())
    assert head(repo, "main") == base


def test_too_many_paths_for_one_command_are_all_looked_at(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past _PATHSPEC_MAX bytes of paths, git status looks at the whole checkout: same answers."""
    monkeypatch.setattr(mergeback, "_PATHSPEC_MAX", 1)
    base = head(repo)
    task_branch(repo, {"a.txt": "a by the task\n", "b.txt": "b by the task\n"})
    os.utime(repo / "a.txt", (1_000_000_000, 1_000_000_000))
    (repo / "b.txt").write_text("mine\n")
    before = state(repo)
    result = merge(repo, base=base, claims=("a.txt", "b.txt"))
    assert (result.status, result.blocking) == (MergeStatus.BLOCKED, ("b.txt",))
    assert state(repo) == before
    git(repo, "checkout", "--", "b.txt")
    assert merge(repo, base=base, claims=("a.txt", "b.txt")).status is MergeStatus.MERGED


def test_names_that_look_like_patterns_are_taken_literally(repo: Path) -> None:
    user_commit(repo, {"[ab].txt": "literal\n", "*.md": "star\n"})
    base = head(repo)
    task_branch(repo, {"[ab].txt": "by the task\n"})
    (repo / "*.md").write_text("mine\n")
    os.utime(repo / "[ab].txt", (1_000_000_000, 1_000_000_000))
    result = merge(repo, base=base, claims=("[ab].txt",))
    assert result.status is MergeStatus.MERGED, result.reason
    assert (repo / "[ab].txt").read_text() == "by the task\n"
    assert (repo / "*.md").read_text() == "mine\n"
