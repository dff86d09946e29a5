"""A task's git worktree, from its birth to its removal: several instances of one agent type at once.

In worktree isolation each task works in a checkout of its own, so its changes are its own:

* :func:`create` adds a worktree on a new branch ``pm/<run>/<task>`` at the commit the run
  started from (:func:`base_commit`). By default it lies in the repository's state directory,
  ``<git common dir>/project-manager/worktrees/<run>/<task>``: outside the working tree, so the
  user's editor, ``git status`` and ``git clean`` never see it. A branch or folder that already
  exists is refused: someone's work is never reused.
* :func:`~queue_core.worktree_include.copy_included` copies in the ignored files that
  ``.worktreeinclude`` names; :class:`~queue_core.worktree_setup.Setup` runs the setup commands
  in it; :class:`~queue_core.ports.PortBlocks` gives it ports no other running task has.
* :func:`finish` commits what the agent left uncommitted and lists exactly the paths the branch
  changed since the base; :func:`check_claims` keeps those that no write claim covers.
* :func:`remove` removes the worktree and, if asked, the branch with ``git branch -d``: never the
  agent's uncommitted work, never a commit that no other branch has.
* :func:`~queue_core.worktree_leftovers.leftovers` finds the worktrees and branches of dead runs,
  and :func:`~queue_core.worktree_leftovers.prune` removes them.

Every git call goes through :class:`~queue_core.changes.GitCalls` (a timeout, interruptible,
never a shell), and no user text becomes a git option: names are checked, ``--`` precedes paths.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .changes import GitCalls, uncovered
from .claims import Claim
from .errors import GitError, InvalidArgumentError, UnmergedWorkError, WorktreeError, WorktreeLockError
from .mergelock import RepoLock
from .ports import PortBlock, PortBlocks
from .runid import check_run_id
from .statedir import ensure_private_dir, state_dir
from .task import check_task_id
from .worktree_include import INCLUDE_FILE, Included, copy_included
from .worktree_setup import Setup, run_setup

__all__ = [
    "BRANCH_PREFIX",
    "INCLUDE_FILE",
    "WORKTREE_LOCK_TIMEOUT_S",
    "Changes",
    "Included",
    "Listed",
    "PortBlock",
    "PortBlocks",
    "Removal",
    "Setup",
    "Worktree",
    "add_worktree",
    "base_commit",
    "branch_changes",
    "check_claims",
    "commit_message",
    "copy_included",
    "create",
    "default_root",
    "delete_merged_branch",
    "finish",
    "list_worktrees",
    "make_folder",
    "new_branch",
    "remove",
    "run_setup",
    "task_of_attempt",
    "uncommitted_paths",
    "unfinished",
    "unmerged_commits",
    "worktree_git",
]

#: Every task branch is ``pm/<run>/<task>``: what leftovers() looks for, and nothing else.
BRANCH_PREFIX = "pm/"
#: Who commits what the agent left, when the user has no identity configured (only then).
FALLBACK_IDENTITY = ("-c", "user.name=project-manager", "-c", "user.email=project-manager@localhost")
#: The longest first line of a commit message, as ``git log --oneline`` and most hosts show it.
SUBJECT_MAX = 72
#: What an operation that the agent left half-done leaves in a worktree's git directory.
_IN_PROGRESS = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply")

#: The calls of this module's functions, unless they are given others (to interrupt them).
GIT = GitCalls()


@dataclass(frozen=True)
class Worktree:
    """A task's worktree: where it is, its branch, the commit it started from, and whose it is."""

    path: Path
    branch: str  # pm/<run>/<task>
    base: str  # the commit it was created at
    task: str
    run: str
    repo: Path  # the working tree it was made from, where merges and branch deletions run

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.branch}"

    def env(self, ports: PortBlock | None = None) -> dict[str, str]:
        """What the task's commands get in their environment: ``PM_WORKTREE``, ``PM_PORT_BASE``."""
        env = {"PM_WORKTREE": str(self.path)}
        if ports is not None:
            env["PM_PORT_BASE"] = str(ports.first)
        return env


@dataclass(frozen=True)
class Changes:
    """What a task's branch changed since its base, after :func:`finish`."""

    paths: tuple[str, ...]  # repo-relative, sorted; a rename is its two paths
    commit: str | None  # the commit finish() made of what the agent left uncommitted; None if nothing
    tip: str  # the branch's commit
    insertions: int = 0  # lines added and removed, as `git diff --shortstat` counts them (binary files: none)
    deletions: int = 0


@dataclass(frozen=True)
class Removal:
    """What :func:`remove` did with the branch: deleted, or kept and why (None: not asked, or gone)."""

    branch_deleted: bool
    kept_because: str | None = None


@dataclass(frozen=True)
class Listed:
    """One entry of ``git worktree list``."""

    path: Path
    head: str | None  # None for a bare repository
    ref: str | None  # refs/heads/...; None when detached
    prunable: bool  # its folder is gone


def base_commit(repo: str | os.PathLike[str], *, git: GitCalls = GIT) -> str:
    """The commit HEAD names in ``repo``: where a run's worktrees start.

    Raises WorktreeError for a repository without commits, GitError if ``repo`` is no repository.
    """
    top = Path(repo)
    try:
        return _rev(top, "HEAD", git)
    except GitError:
        git(top, "git", "rev-parse", "--git-dir")  # not a repository: that GitError says so
        raise WorktreeError(f"{top}: the repository has no commit yet; worktrees start from one") from None


def default_root(repo: str | os.PathLike[str]) -> Path:
    """Where worktrees live unless ``worktree_root`` says otherwise: in the state directory."""
    return state_dir(repo) / "worktrees"


def create(
    repo: str | os.PathLike[str],
    run: str,
    task: str,
    base: str,
    *,
    root: str | os.PathLike[str] | None = None,
    git: GitCalls = GIT,
) -> Worktree:
    """A new worktree for ``task`` of ``run`` at commit ``base``, on the new branch ``pm/<run>/<task>``,
    in ``<root>/<run>/<task>`` (``root`` relative to the repository; by default :func:`default_root`).

    Raises InvalidArgumentError (an InvalidTaskIdError for the task) for a name that cannot be a
    branch or a folder, WorktreeError if the branch or the folder exists (never reused) or
    ``base`` is no commit, GitError if git fails.
    """
    top = Path(repo).resolve()
    branch, commit = new_branch(top, run, task, base, git=git)
    parent = make_folder(top, root, run)
    path = parent.resolve() / task  # as git records it: leftovers() and remove() compare the two
    if os.path.lexists(path):
        raise WorktreeError(f"{path} already exists: a task's worktree is never reused")
    add_worktree(top, branch, path, commit, git=git)
    return Worktree(path, branch, commit, task, run, top)


def add_worktree(repo: Path, branch: str, path: Path, commit: str, *, git: GitCalls = GIT) -> None:
    """``git worktree add`` of ``path`` on the new ``branch`` at ``commit``: registered under the
    worktree lock (see :func:`worktree_git`), checked out after, outside it, since a checkout of a
    large tree takes seconds. -b fails if the branch appeared meanwhile: git's check is the atomic one."""
    worktree_git(
        repo,
        "worktree",
        "add",
        "--quiet",
        "--no-checkout",
        "--no-track",
        "-b",
        branch,
        "--",
        str(path),
        commit,
        git=git,
    )
    git(path, "git", "reset", "--quiet", "--hard")


_LIST_RETRIES_S = (0.01, 0.05, 0.2, None)  # the waits between tries of `git worktree list`; None: the last

#: How long a worktree command waits for another's: they take seconds, a stuck one is news.
WORKTREE_LOCK_TIMEOUT_S = 300.0


def worktree_git(repo: Path, *args: str, git: GitCalls = GIT) -> bytes:
    """``git args`` in ``repo``, a command that reads or changes the repository's list of
    worktrees, under the repository's worktree lock (``worktrees.lock`` in the state directory,
    see :class:`~queue_core.mergelock.RepoLock`): git reads every worktree's admin folder to add,
    remove or list one, or to delete a branch, and fails on one another ``git worktree add`` is
    writing ("failed to read .git/worktrees/t3/commondir"). Raises WorktreeLockError if the lock
    was not free in WORKTREE_LOCK_TIMEOUT_S."""
    lock = RepoLock(repo, "worktrees.lock", "the worktree lock", WorktreeLockError, timeout=WORKTREE_LOCK_TIMEOUT_S)
    with lock:
        return git(repo, "git", *args)


def new_branch(repo: Path, run: str, task: str, base: str, *, git: GitCalls = GIT) -> tuple[str, str]:
    """The name of the branch ``pm/<run>/<task>``, which does not exist yet, and the commit
    ``base`` names: what a task's worktree, new or reused, starts with.

    Raises InvalidArgumentError (an InvalidTaskIdError for the task) for a name that cannot be a
    branch or a folder, WorktreeError if the branch exists (never reused) or ``base`` is no commit.
    """
    check_run_id(run)
    check_task_id(task_of_attempt(task))
    branch = _branch_name(repo, f"{BRANCH_PREFIX}{run}/{task}", git)
    try:
        commit = _rev(repo, base, git)
    except GitError as exc:
        raise WorktreeError(f"{base!r} names no commit in {repo}: {exc}") from None
    if git(repo, "git", "for-each-ref", "--format=%(refname)", f"refs/heads/{branch}").strip():
        raise WorktreeError(f"branch {branch} already exists: a task's branch is never reused")
    return branch, commit


def task_of_attempt(name: str) -> str:
    """The task id in an attempt's name: ``a`` of ``a.2`` (a later attempt's name, longer than
    the longest task id may be), else the name as it is."""
    first, dot, number = name.rpartition(".")
    return first if dot and first and number.isdigit() else name


def make_folder(repo: Path, root: str | os.PathLike[str] | None, name: str) -> Path:
    """The folder ``name`` of the worktree root (``root`` relative to ``repo``, else
    :func:`default_root`), made if missing: in the state directory owner-only, never through a
    symlink."""
    folder = (default_root(repo) if root is None else repo / root) / name
    if root is None:
        ensure_private_dir(folder)
    else:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def finish(worktree: Worktree, description: str, *, git: GitCalls = GIT) -> Changes:
    """Commit what the agent left uncommitted on the task's branch, then list the paths the branch
    changed since the base (renames as a deletion and an addition, so both paths are checked).

    The commit's message is :func:`commit_message`; commit hooks are not run (it records what the
    agent did, it does not vet it). Raises WorktreeError if the worktree is not on its branch, an
    operation the agent began (a merge, a rebase) is unfinished, or the branch no longer descends
    from the base; GitError if git fails. Nothing is lost either way: the work stays in the worktree.
    """
    _check_on_branch(worktree, git)
    commit = None
    # Straight to add: a git status first would scan the whole tree once more (and, right after
    # the checkout, hash every file written within the index's second a second time).
    git(worktree.path, "git", "add", "--all")
    if git(worktree.path, "git", "diff-index", "--cached", "--name-only", "-z", "HEAD", "--"):
        commit = _commit(worktree, commit_message(worktree.task, description), git)
    return branch_changes(worktree, commit, git=git)


def branch_changes(worktree: Worktree, commit: str | None = None, *, git: GitCalls = GIT) -> Changes:
    """What the task's branch changed since its base, in ``worktree.repo`` (see :func:`finish`,
    which calls it once it committed ``commit``; a cluster task's branch, fetched from its
    worker, is checked with it too). Raises WorktreeError as finish does."""
    tip = _rev(worktree.repo, worktree.ref, git)
    # Commits of the base that the tip lacks: none, unless the agent reset or rebased the branch.
    if git(worktree.repo, "git", "rev-list", "--max-count=1", worktree.base, "--not", tip).strip():
        raise WorktreeError(f"branch {worktree.branch} no longer descends from {worktree.base[:12]}: not merged")
    # Plumbing, not `git diff`: no user configuration (diff.relative, renames) changes what it lists.
    raw = git(worktree.repo, "git", "diff-tree", "-r", "-z", "--no-renames", worktree.base, tip)
    fields = raw.split(b"\0")
    paths, nested = set(), set()
    for at in range(0, len(fields) - 1, 2):  # ":<old mode> <new mode> <old> <new> <status>", then the path
        path = os.fsdecode(fields[at + 1])
        paths.add(path)
        if fields[at].split(b" ")[1:2] == [b"160000"] and not fields[at].startswith(b":160000"):
            nested.add(path)
    if nested:  # a repository the agent made inside: its commits are not in ours, merging it breaks the branch
        raise WorktreeError(
            f"the agent made a git repository inside its worktree ({', '.join(sorted(nested))}): branch "
            f"{worktree.branch} would hold a commit that is not in this repository; not merged"
        )
    if not paths:
        return Changes((), commit, tip)
    stat = os.fsdecode(git(worktree.repo, "git", "diff-tree", "-r", "--no-renames", "--shortstat", worktree.base, tip))
    return Changes(tuple(sorted(paths)), commit, tip, _count(stat, "insertion"), _count(stat, "deletion"))


def _count(shortstat: str, what: str) -> int:
    """From ``" 3 files changed, 12 insertions(+), 1 deletion(-)"``, the number of ``what``; 0 if not said."""
    found = re.search(rf"(\d+) {what}", shortstat)
    return int(found.group(1)) if found else 0


def check_claims(paths: Iterable[str], write_claims: Iterable[Claim]) -> list[str]:
    """The ``paths`` that none of ``write_claims`` covers, sorted (pure)."""
    return uncovered(paths, write_claims)


def commit_message(task: str, description: str) -> str:
    """``<task>: <description>``, its first line at most SUBJECT_MAX characters; the whole
    description in the body when the first line cannot hold it."""
    text = description.replace("\0", "").strip()
    first = text.splitlines()[0].strip() if text else ""
    subject = f"{task}: {first}" if first else task
    if len(subject) > SUBJECT_MAX:
        subject = subject[: SUBJECT_MAX - 3].rstrip() + "..."
    whole = subject == f"{task}: {text}" or not text
    return f"{subject}\n" if whole else f"{subject}\n\n{text}\n"


def remove(worktree: Worktree, *, delete_branch: bool, kept_at: str | None = None, git: GitCalls = GIT) -> Removal:
    """Remove the task's worktree (ignored files such as build output go with it), then, if
    ``delete_branch``, its branch with ``git branch -d``: a branch with commits that no other
    branch has, or that HEAD has not merged, is kept and the Removal says why.

    ``kept_at`` names a ref of ours that keeps the branch's last commit (a merged task's hidden
    tip, :mod:`queue_core.taskrefs`): then nothing is lost even if no branch has the branch's
    commits (a squash or a rebase merged copies of them), and the branch goes if it still names
    that commit and no worktree has it checked out.

    Raises UnmergedWorkError, removing nothing, if the worktree holds uncommitted changes or its
    HEAD a commit no branch has; WorktreeError if the folder is no worktree of the repository.
    """
    repo = worktree.repo
    listed = {entry.path: entry for entry in list_worktrees(repo, git=git)}
    entry = listed.get(worktree.path)
    if entry is None and os.path.lexists(worktree.path):
        raise WorktreeError(f"{worktree.path} is not a worktree of {repo}: left as it is")
    if entry is not None:
        _check_no_lost_commits(worktree.path, entry, repo, git)
        try:  # without --force, git refuses a worktree with changes or untracked files: its check
            worktree_git(repo, "worktree", "remove", "--", str(worktree.path), git=git)
        except GitError:
            dirty = () if entry.prunable else uncommitted_paths(worktree.path, git=git)
            if dirty:
                raise UnmergedWorkError(f"worktree {worktree.path}", uncommitted=dirty) from None
            raise
        with contextlib.suppress(OSError):
            worktree.path.parent.rmdir()  # the run's folder, once its last worktree is gone
    if not delete_branch:
        return Removal(False)
    others = [entry.path for entry in listed.values() if entry.ref == worktree.ref and entry.path != worktree.path]
    return delete_merged_branch(worktree, kept_at=kept_at, checked_out=others, git=git)


def delete_merged_branch(
    worktree: Worktree,
    *,
    kept_at: str | None = None,
    checked_out: list[Path] | None = None,
    git: GitCalls = GIT,
) -> Removal:
    """Delete the task's branch once its worktree left it: with ``git branch -d``, a branch with
    commits that no other branch has, or that HEAD has not merged, is kept and the Removal says
    why; with ``kept_at`` (see :func:`remove`), if it still names the commit kept there and no
    worktree has it checked out (``checked_out``: those that have; None: looked up). Gone
    already: nothing to do."""
    repo = worktree.repo
    if kept_at is not None:
        if checked_out is None:
            checked_out = [entry.path for entry in list_worktrees(repo, git=git) if entry.ref == worktree.ref]
        return _delete_kept(worktree, kept_at, checked_out, git)
    if not git(repo, "git", "for-each-ref", "--format=%(refname)", worktree.ref).strip():
        return Removal(False)
    lost = unmerged_commits(repo, [worktree.ref], exclude=[worktree.branch], git=git)
    if lost:
        return Removal(False, f"{len(lost)} commit(s) of {worktree.branch} are on no other branch")
    try:
        worktree_git(
            repo, "branch", "--delete", "--", worktree.branch, git=git
        )  # -d: git's own check, merged into HEAD
    except GitError as exc:
        return Removal(False, str(exc))
    return Removal(True)


def _delete_kept(worktree: Worktree, kept_at: str, checked_out: list[Path], git: GitCalls) -> Removal:
    """Delete the branch if it names the commit ``kept_at`` keeps, compare-and-swap: a commit
    made on it since stays; so does a branch some worktree has checked out."""
    out = git(worktree.repo, "git", "for-each-ref", "--format=%(refname)%00%(objectname)", worktree.ref, kept_at)
    found = dict(line.split("\0", 1) for line in os.fsdecode(out).splitlines())
    if worktree.ref not in found:
        return Removal(False)  # gone already
    if checked_out:
        return Removal(False, f"{worktree.branch} is checked out in {checked_out[0]}")
    kept = found.get(kept_at)
    if kept is None:
        return Removal(False, f"{kept_at} names no commit: nothing else keeps the branch's")
    try:
        git(worktree.repo, "git", "update-ref", "-d", worktree.ref, kept)
    except GitError:
        return Removal(False, f"{worktree.branch} moved since {kept_at} kept its commit {kept[:12]}")
    return Removal(True)


def _check_no_lost_commits(path: Path, entry: Listed, repo: Path, git: GitCalls) -> None:
    """Raise UnmergedWorkError if the worktree's HEAD has commits no branch has (a detached
    HEAD's work), which removing it would lose; its folder may be gone already."""
    if entry.head is not None:
        lost = unmerged_commits(repo, [entry.head], exclude=(), git=git)
        if lost:
            raise UnmergedWorkError(f"worktree {path} (its HEAD is on no branch)", commits=lost)


def uncommitted_paths(path: Path, *, git: GitCalls = GIT) -> tuple[str, ...]:
    """The paths with changes not committed in the worktree at ``path``: modified, staged or
    untracked (ignored files are not work), sorted."""
    raw = git(path, "git", "status", "--porcelain", "-z", "--untracked-files=all", "--no-renames")
    return tuple(sorted({os.fsdecode(entry[3:]) for entry in raw.split(b"\0") if len(entry) > 3}))


def unmerged_commits(
    repo: Path,
    tips: Iterable[str],
    *,
    exclude: Iterable[str],
    git: GitCalls = GIT,
) -> tuple[str, ...]:
    """The commits reachable from ``tips`` (commits or our own refs) but from no branch outside
    ``exclude`` (branch names, ``pm/<run>/<task>``): what deleting those would lose; newest first."""
    # --exclude takes a glob, relative to refs/heads/ before --branches: our names hold no glob
    # character (run and task ids are plain names).
    hide = [f"--exclude={branch}" for branch in exclude]
    argv = ["git", "rev-list", *tips, "--not", *hide, "--branches"]
    return tuple(git(repo, *argv).decode("ascii").split())


def list_worktrees(repo: Path, *, git: GitCalls = GIT) -> list[Listed]:
    """Every worktree of ``repo``'s repository, its main one included (``git worktree list``)."""
    # Not under the worktree lock, which a look (status, clean --dry-run) must not create: a list
    # that met another's half-written worktree folder is asked again, a few ms later.
    for wait in _LIST_RETRIES_S:
        try:
            raw = git(repo, "git", "worktree", "list", "--porcelain", "-z")
            break
        except GitError:
            if wait is None:
                raise
            threading.Event().wait(wait)
    found: list[Listed] = []
    fields: dict[str, str] = {}
    for item in raw.split(b"\0"):
        if item:
            key, _, value = os.fsdecode(item).partition(" ")
            fields[key] = value
            continue
        if "worktree" in fields:  # an empty field ends a record
            head, ref = fields.get("HEAD"), fields.get("branch")
            found.append(Listed(Path(fields["worktree"]), head, ref, "prunable" in fields))
        fields = {}
    return found


def _branch_name(repo: Path, branch: str, git: GitCalls) -> str:
    """``branch`` if git takes it as a branch name as it is; raises InvalidArgumentError otherwise."""
    try:
        checked = git(repo, "git", "check-ref-format", "--branch", branch).decode("utf-8", "replace").strip()
    except GitError:
        checked = ""
    if checked != branch:
        raise InvalidArgumentError(f"{branch!r} cannot name a branch (git check-ref-format)")
    return branch


def _rev(repo: Path, name: str, git: GitCalls) -> str:
    """The commit ``name`` names (``--end-of-options``: a name is never an option); raises GitError."""
    out = git(repo, "git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}")
    return out.decode("ascii").strip()


def _check_on_branch(worktree: Worktree, git: GitCalls) -> None:
    """Raise WorktreeError unless the worktree is on its branch with no operation left half-done."""
    if not worktree.path.is_dir():  # git could not even start in it: say what happened, not that
        raise WorktreeError(f"worktree {worktree.path} is gone (removed while the task ran): nothing was merged")
    out = git(worktree.path, "git", "rev-parse", "--absolute-git-dir", "--symbolic-full-name", "HEAD")
    git_dir, _, head = os.fsdecode(out).rstrip("\n").rpartition("\n")
    if head != worktree.ref:
        where = "a detached HEAD" if head == "HEAD" else head
        raise WorktreeError(f"worktree {worktree.path} left its branch {worktree.branch} for {where}: not committed")
    if (name := unfinished(git_dir)) is not None:
        raise WorktreeError(f"worktree {worktree.path}: the agent left an unfinished operation ({name})")


def unfinished(git_dir: str) -> str | None:
    """The operation (``MERGE_HEAD``, ``rebase-merge``...) left half-done in a worktree whose git
    directory is ``git_dir``; None if there is none."""
    return next((name for name in _IN_PROGRESS if os.path.lexists(os.path.join(git_dir, name))), None)


def _commit(worktree: Worktree, message: str, git: GitCalls) -> str:
    """Commit the index of the worktree with ``message``; its commit. An identity of our own
    only if the user has none (``git var`` fails as the commit did)."""
    fd, name = tempfile.mkstemp(prefix="pm-commit-", suffix=".txt")  # a file: any length, any first character
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(message)
        argv = ("commit", "--quiet", "--no-verify", "--cleanup=whitespace", f"--file={name}")
        try:
            git(worktree.path, "git", *argv)
        except GitError:
            if _has_identity(worktree.path, git):
                raise
            git(worktree.path, "git", *FALLBACK_IDENTITY, *argv)
    finally:
        os.unlink(name)
    return _rev(worktree.path, "HEAD", git)


def _has_identity(path: Path, git: GitCalls) -> bool:
    """Whether git finds an author and a committer for a commit in ``path``, as strictly as commit does."""
    try:
        git(path, "git", "var", "GIT_AUTHOR_IDENT")
        git(path, "git", "var", "GIT_COMMITTER_IDENT")
    except GitError:
        return False
    return True
