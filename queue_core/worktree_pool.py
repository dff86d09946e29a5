"""A pool of reusable worktrees (``worktree_pool: N``): a task's checkout without writing every file again.

A new worktree writes the whole tree, and the first ``git add`` in it hashes again every file
written within the index's second; a worktree that the last merged task gave back only changes
the files that differ. The pool is the folder ``<worktree root>/.pool`` (a name no run id can
take), where each entry is a pair:

* ``<n>/``, a worktree registered with git, detached while idle;
* ``<n>.lock``, its lock and its record. A task holds an exclusive flock on it from :func:`take`
  to :meth:`Lease.give_back` or :meth:`Lease.release` (see :mod:`queue_core.flocks`: a killed
  holder's lock is free at once); the record says ``idle <commit>`` (given back clean, HEAD
  there) or ``task <run> <task>`` (taken by that task, or kept for it).

An entry is reused only if its record says idle at the commit its HEAD is on, its HEAD is
detached, nothing in it is modified, staged or untracked (ignored files are not work: build
caches, ``node_modules``, ``.env``) and no merge or rebase is half-done: an entry that anyone
changed is left alone, a leftover for ``status`` and ``clean``, and another is used, or a new
one made. Reuse resets it with ``git checkout --detach --force BASE`` and ``git clean -fd``
(ignored files stay), then makes the task's branch there.

Only a task whose branch was merged (or kept, with ``merge: none``) gives its entry back:
detached, its branch deleted as :func:`~queue_core.worktrees.remove` would, checked clean, then
idle if fewer than ``keep`` others are, else removed with ``git worktree remove`` (never forced).
A task that fails keeps its entry as it is, on its branch, as it would keep its own worktree.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .changes import GitCalls
from .clocks import REAL
from .errors import GitError, NotRegularFileError, UnmergedWorkError, WorktreeError
from .flocks import try_lock
from .statedir import read_regular
from .worktrees import (
    GIT,
    Listed,
    Removal,
    Worktree,
    add_worktree,
    default_root,
    delete_merged_branch,
    list_worktrees,
    make_folder,
    new_branch,
    uncommitted_paths,
    unfinished,
    worktree_git,
)

__all__ = [
    "POOL_FOLDER",
    "Lease",
    "PoolEntry",
    "PoolRemoval",
    "entries",
    "idle",
    "is_idle",
    "lock_of",
    "pool_dir",
    "remove_idle",
    "take",
]

#: The pool's folder in the worktree root: a leading dot, which no run id has.
POOL_FOLDER = ".pool"
_IDLE, _TASK = "idle", "task"
_ENTRY = re.compile(r"[0-9]+")
_WHAT = "the pool worktree's lock"
#: How long giving back waits for the pool's own lock, held only to read the records.
_POOL_LOCK_S = 10.0


def pool_dir(repo: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """Where the pool's worktrees are, as git records their paths: ``<worktree root>/.pool``."""
    top = Path(repo).resolve()
    return ((default_root(top) if root is None else top / root) / POOL_FOLDER).resolve()


@dataclass(frozen=True)
class PoolEntry:
    """A worktree of the pool as git lists it, and what its record says: ``("idle", commit)``,
    ``("task", run, task)``, or ``()`` for none."""

    path: Path
    listed: Listed
    record: tuple[str, ...]

    @property
    def lock(self) -> Path:
        return lock_of(self.path)

    @property
    def task(self) -> tuple[str, str] | None:
        """(run, task) of the task that took it and has not given it back."""
        return (self.record[1], self.record[2]) if self.record[:1] == (_TASK,) else None

    def looks_idle(self) -> bool:
        """Given back at the commit its HEAD is on, detached, its folder there; :func:`is_idle`
        looks inside too."""
        listed = self.listed
        return self.record == (_IDLE, listed.head) and listed.ref is None and not listed.prunable


@dataclass(frozen=True)
class PoolRemoval:
    """What :func:`remove_idle` did with an idle worktree: ``removed`` (or would have), or kept and why."""

    path: Path
    removed: bool
    reason: str = ""


def lock_of(path: Path) -> Path:
    """The lock file of the pool worktree at ``path``."""
    return path.with_name(f"{path.name}.lock")


def entries(
    repo: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    listed: list[Listed] | None = None,
    git: GitCalls = GIT,
) -> list[PoolEntry]:
    """Every worktree git lists in the pool's folder (``listed``: the worktrees, if already
    listed), by number. Raises GitError if git fails."""
    folder = pool_dir(repo, root)
    listed = list_worktrees(Path(repo).resolve(), git=git) if listed is None else listed
    found = [
        PoolEntry(entry.path, entry, _read(lock_of(entry.path)))
        for entry in listed
        if entry.path.parent == folder and _ENTRY.fullmatch(entry.path.name)
    ]
    return sorted(found, key=lambda entry: int(entry.path.name))


def is_idle(entry: PoolEntry, *, git: GitCalls = GIT) -> bool:
    """Whether ``entry`` may be reset for a task: it looks idle, and holds no change, no
    untracked file and no half-done operation. Raises GitError if git fails."""
    return entry.looks_idle() and _clean(entry.path, git)


def idle(
    repo: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None, git: GitCalls = GIT
) -> list[Path]:
    """The pool's idle worktrees, by number (for ``status``). Raises GitError if git fails."""
    return [entry.path for entry in entries(repo, root=root, git=git) if is_idle(entry, git=git)]


def take(
    repo: str | os.PathLike[str],
    run: str,
    task: str,
    base: str,
    *,
    root: str | os.PathLike[str] | None = None,
    git: GitCalls = GIT,
) -> Lease:
    """A worktree of the pool for ``task`` of ``run``, on the new branch ``pm/<run>/<task>`` at
    commit ``base``: an idle one reset, else a new one in the pool's folder; held until given back.

    Raises what :func:`~queue_core.worktrees.create` raises, before any worktree is touched, for
    a bad name, an existing branch or a base that is no commit; GitError if git fails (an entry
    being reset is then left idle if it is still clean, else with the task's record).
    """
    top = Path(repo).resolve()
    branch, commit = new_branch(top, run, task, base, git=git)
    folder = make_folder(top, root, POOL_FOLDER).resolve()
    listed = list_worktrees(top, git=git)
    for entry in entries(top, root=root, listed=listed, git=git):
        if entry.looks_idle() and (fd := try_lock(entry.lock, _WHAT)) is not None:
            with _settled_on_failure(fd, entry.path, git) as settle:
                if _still_idle(top, entry.path, git):
                    _write(fd, (_TASK, run, task))
                    # --force: the checks above found nothing to lose; ignored files stay.
                    git(entry.path, "git", "checkout", "--quiet", "--detach", "--force", commit)
                    git(entry.path, "git", "clean", "--quiet", "-f", "-d")
                    _switch_to_new(entry.path, branch, commit, git)
                    return Lease(Worktree(entry.path, branch, commit, task, run, top), fd, reused=True, git=git)
                settle.release_only()
    registered = {entry.path for entry in listed}
    for number in itertools.count():
        path = folder / str(number)
        if path in registered or os.path.lexists(path) or (fd := try_lock(lock_of(path), _WHAT)) is None:
            continue
        if os.path.lexists(path):  # made meanwhile, by a task that has let go of it since
            os.close(fd)
            continue
        with _settled_on_failure(fd, path, git):
            _write(fd, (_TASK, run, task))
            add_worktree(top, branch, path, commit, git=git)
        return Lease(Worktree(path, branch, commit, task, run, top), fd, reused=False, git=git)
    raise AssertionError("unreachable: itertools.count() does not end")


class Lease:
    """A worktree of the pool that a task holds (see :func:`take`): ``worktree``, ``reused``.

    Its lock is held until :meth:`give_back` or :meth:`release`; used from the task's thread.
    """

    def __init__(self, worktree: Worktree, fd: int, *, reused: bool, git: GitCalls = GIT):
        self.worktree = worktree
        self.reused = reused
        self._fd: int | None = fd
        self._git = git

    def give_back(self, *, delete_branch: bool, keep: int, kept_at: str | None = None) -> Removal:
        """After the task's branch was merged (or kept): detach the worktree (the branch stays),
        delete the branch if ``delete_branch`` (as remove() would, ``kept_at`` included: never
        commits nothing else keeps), check nothing is left in it, then keep it idle if fewer
        than ``keep`` others are, else remove it (``git worktree remove``, never forced).
        Released either way.

        Raises UnmergedWorkError if it holds changes or a half-done operation: kept as it is,
        with the task's record, never reused; GitError if git fails.
        """
        tree, git = self.worktree, self._git
        try:
            # Detached first: git deletes no branch a worktree is on. HEAD alone moves, as with
            # `git checkout --detach`, without its walk over every file of the index.
            head = git(tree.path, "git", "rev-parse", "--verify", "HEAD").decode("ascii").strip()
            git(tree.path, "git", "update-ref", "--no-deref", "-m", "project-manager: given back", "HEAD", head)
            removal = delete_merged_branch(tree, kept_at=kept_at, git=git) if delete_branch else Removal(False)
            dirty, operation = _left_in(tree.path, git)
            if dirty:
                raise UnmergedWorkError(f"pool worktree {tree.path}", uncommitted=dirty)
            if operation is not None:
                raise WorktreeError(f"pool worktree {tree.path}: an operation is half-done ({operation}); kept")
            if not self._keep_idle(keep, head):
                worktree_git(tree.repo, "worktree", "remove", "--", str(tree.path), git=git)
                self._record(())
        finally:
            self.release()
        return removal

    def release(self) -> None:
        """Let go of the worktree as it is (a task that failed keeps it so); twice does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _keep_idle(self, keep: int, head: str) -> bool:
        """Record the worktree idle at ``head`` if fewer than ``keep`` others are; whether it was.
        The pool's lock makes the count and the record one step: two tasks giving back at once
        never both take the last place."""
        if keep < 1:
            return False
        folder = self.worktree.path.parent
        with _pool_lock(folder) as locked:
            if not locked:
                return False
            others = 0
            for name in os.listdir(folder):
                entry = name.removesuffix(".lock")
                if name.endswith(".lock") and _ENTRY.fullmatch(entry) and entry != self.worktree.path.name:
                    others += _read(folder / name)[:1] == (_IDLE,) and (folder / entry).is_dir()
            if others >= keep:
                return False
            self._record((_IDLE, head))
            return True

    def _record(self, record: tuple[str, ...]) -> None:
        if self._fd is not None:
            _write(self._fd, record)


def remove_idle(
    repo: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    git: GitCalls = GIT,
) -> list[PoolRemoval]:
    """Remove the pool's idle worktrees (``clean --pool``), each under its lock and looked at
    again there: one a task holds is kept ("in use"); one that holds anything is no idle one
    (a leftover, see :mod:`~queue_core.worktree_leftovers`). Raises GitError if git fails to list them."""
    top = Path(repo).resolve()
    done = []
    for entry in entries(top, root=root, git=git):
        if not entry.looks_idle():
            continue
        fd = try_lock(entry.lock, _WHAT)
        if fd is None:
            done.append(PoolRemoval(entry.path, False, "in use"))
            continue
        try:
            if not _still_idle(top, entry.path, git):
                continue
            if not dry_run:
                worktree_git(top, "worktree", "remove", "--", str(entry.path), git=git)
                _write(fd, ())
            done.append(PoolRemoval(entry.path, True))
        except GitError as exc:
            done.append(PoolRemoval(entry.path, False, str(exc)))
        finally:
            os.close(fd)
    return done


def _switch_to_new(path: Path, branch: str, commit: str, git: GitCalls) -> None:
    """Make ``branch`` at ``commit`` and put the worktree at ``path`` (detached there) on it, as
    ``git checkout -b`` would, without its walk over every file of the index. The empty old value
    makes git refuse a branch that exists: its check is the atomic one."""
    message = f"project-manager: branch {branch} for a pool worktree"
    git(path, "git", "update-ref", "-m", message, f"refs/heads/{branch}", commit, "")
    git(path, "git", "symbolic-ref", "-m", message, "HEAD", f"refs/heads/{branch}")


def _still_idle(top: Path, path: Path, git: GitCalls) -> bool:
    """Whether the worktree at ``path`` is idle, looked at afresh (its lock held: it cannot change
    now): between the first look and the lock, another task may have taken and given it back.
    One git cannot look into (a damaged index) is not: left alone, not a failure of the task."""
    listed = next((entry for entry in list_worktrees(top, git=git) if entry.path == path), None)
    try:
        return listed is not None and is_idle(PoolEntry(path, listed, _read(lock_of(path))), git=git)
    except GitError:
        return False


def _clean(path: Path, git: GitCalls) -> bool:
    """No change, no untracked file (ignored ones are no work) and no half-done operation in ``path``."""
    return _left_in(path, git) == ((), None)


def _left_in(path: Path, git: GitCalls) -> tuple[tuple[str, ...], str | None]:
    """The paths changed or untracked in the worktree ``path``, and the operation left half-done."""
    git_dir = os.fsdecode(git(path, "git", "rev-parse", "--absolute-git-dir")).strip()
    return uncommitted_paths(path, git=git), unfinished(git_dir)


class _Settle:
    """What a failed take does with the entry it locked; ``release_only`` when it took nothing."""

    def __init__(self, fd: int):
        self.fd: int | None = fd

    def release_only(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def _settled_on_failure(fd: int, path: Path, git: GitCalls) -> Iterator[_Settle]:
    """On an exception, the entry at ``path`` recorded idle again if it is a clean detached
    worktree (a branch that appeared meanwhile), else left with the task's record; unlocked."""
    settle = _Settle(fd)
    try:
        yield settle
    except BaseException:
        if settle.fd is not None:
            with contextlib.suppress(Exception):
                out = git(path, "git", "rev-parse", "--symbolic-full-name", "HEAD", "HEAD").decode().split()
                if out[:1] == ["HEAD"] and _clean(path, git):
                    _write(settle.fd, (_IDLE, out[1]))
            settle.release_only()
        raise


@contextlib.contextmanager
def _pool_lock(folder: Path) -> Iterator[bool]:
    """The pool's own lock, waited for _POOL_LOCK_S at most (it is held for a few reads): whether
    it is held."""
    deadline = REAL.monotonic() + _POOL_LOCK_S
    while (fd := try_lock(folder / "pool.lock", "the pool's lock")) is None and REAL.monotonic() < deadline:
        threading.Event().wait(0.002)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def _read(path: Path) -> tuple[str, ...]:
    """The record in the lock file ``path``: ``("idle", commit)``, ``("task", run, task)``; ``()``
    if none, or if it cannot be read (then the entry is never taken for idle)."""
    try:
        words = tuple((read_regular(path) or b"").decode("utf-8", "replace").split())
    except (NotRegularFileError, OSError):
        return ()
    valid = (words[:1] == (_IDLE,) and len(words) == 2) or (words[:1] == (_TASK,) and len(words) == 3)
    return words if valid else ()


def _write(fd: int, record: tuple[str, ...]) -> None:
    """Write ``record`` in the lock file held by ``fd`` (its holder's alone to write)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, (" ".join(record) + "\n").encode() if record else b"", 0)
