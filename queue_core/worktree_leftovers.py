"""The worktrees and branches that runs left behind: for ``project-manager status`` and ``clean``.

A run removes a merged task's worktree and branch itself; it keeps those of failed, rejected,
conflicting and blocked tasks for the user to look at, and a run killed with SIGKILL keeps
everything. :func:`leftovers` finds them all: every branch ``pm/<run>/<task>``, every worktree
on such a branch or in a ``<root>/<run>/<task>`` folder, with whether its run is alive (a
predicate the caller passes: the registry knows), and, for a dead run, what removing it would
lose. :func:`prune` removes a dead run's leftover, refusing to lose commits that no other branch
has, or uncommitted changes, unless forced.

A worktree of the pool (:mod:`~queue_core.worktree_pool`) is a leftover unless it is idle, or
held this moment without being a task's: one on a task's branch is that task's, one a task took
but left detached (killed while it was reset) is the task's its record names, and an idle one
that someone changed since is a leftover of no run (``run`` is ""). It is pruned under its lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .changes import GitCalls
from .errors import GitError, UnmergedWorkError, WorktreeError
from .flocks import held, try_lock
from .runid import RUN_ID_PATTERN
from .worktree_pool import POOL_FOLDER, PoolEntry, entries, is_idle, lock_of
from .worktrees import (
    BRANCH_PREFIX,
    GIT,
    Listed,
    default_root,
    list_worktrees,
    task_of_attempt,
    uncommitted_paths,
    unmerged_commits,
    worktree_git,
)

__all__ = ["Leftover", "Swept", "known_runs", "leftovers", "leftovers_and_idle", "prune", "sweep"]


@dataclass(frozen=True)
class Leftover:
    """A task's branch and/or worktree still there. ``unmerged`` (commits on no other branch) and
    ``uncommitted`` (paths changed in the worktree) are None while its run is alive: not looked at."""

    repo: Path
    run: str
    task: str
    branch: str | None  # pm/<run>/<task>; None if the branch is gone
    tip: str | None  # the branch's commit
    path: Path | None  # its worktree; None if there is none
    missing: bool  # the worktree's folder is gone (git still lists it)
    alive: bool
    unmerged: tuple[str, ...] | None = None
    uncommitted: tuple[str, ...] | None = None
    pooled: bool = False  # its worktree is one of the pool's


def leftovers(
    repo: str | os.PathLike[str],
    alive: Callable[[str], bool],
    *,
    root: str | os.PathLike[str] | None = None,
    known: Callable[[str], bool] | None = None,
    git: GitCalls = GIT,
) -> list[Leftover]:
    """Every task branch and worktree of ``repo``'s repository, by run and task; ``alive(run)`` says
    whether a run lives. ``root`` is the ``worktree_root`` the runs used, if not the default.
    With ``known`` (see :func:`known_runs`), a branch ``pm/<run>/<task>`` of a run it does not
    know, with no worktree in the worktree root or the pool, is left out: ``pm/alice/wip`` may be
    a user's own, not a dead run's to remove. Raises GitError if git fails."""
    return leftovers_and_idle(repo, alive, root=root, known=known, git=git)[0]


def leftovers_and_idle(
    repo: str | os.PathLike[str],
    alive: Callable[[str], bool],
    *,
    root: str | os.PathLike[str] | None = None,
    known: Callable[[str], bool] | None = None,
    git: GitCalls = GIT,
) -> tuple[list[Leftover], list[Path]]:
    """:func:`leftovers`, and the pool's idle worktrees, from one look (``status`` shows both:
    looking into a pool worktree is a ``git status`` of the whole checkout)."""
    top = Path(repo).resolve()
    folder = (default_root(top) if root is None else top / root).resolve()  # as git records paths
    found: dict[tuple[str, str], Leftover] = {}
    listed = list_worktrees(top, git=git)
    raw = git(top, "git", "for-each-ref", "--format=%(refname)%00%(objectname)", f"refs/heads/{BRANCH_PREFIX}")
    for line in os.fsdecode(raw).splitlines():
        ref, _, tip = line.partition("\0")
        key = _task_of_branch(ref)
        if key is not None:
            found[key] = Leftover(top, *key, ref.removeprefix("refs/heads/"), tip, None, False, False)
    pool = {entry.path: entry for entry in entries(top, root=root, listed=listed, git=git)}
    idle: list[Path] = []
    ours = set()  # with a worktree where ours are made: the worktree root, the pool
    for entry in listed:
        pooled = pool.get(entry.path)
        key = _task_of_worktree(entry, folder) if pooled is None else _task_of_pool_entry(pooled, idle, git)
        if key is None:
            continue
        if pooled is not None or entry.path.parent.parent == folder:
            ours.add(key)
        seen = found.get(key) or Leftover(top, *key, None, None, None, False, False)
        found[key] = replace(seen, path=entry.path, missing=entry.prunable, pooled=entry.path in pool)
    result = []
    for key in sorted(found):
        if known is not None and key not in ours and not known(key[0]):
            continue  # a branch pm/<x>/<y> of no run of ours
        leftover = replace(found[key], alive=alive(key[0]))
        result.append(leftover if leftover.alive else _inspect(leftover, listed, git))
    return result, idle


def prune(leftover: Leftover, *, force: bool = False, git: GitCalls = GIT) -> None:
    """Remove a dead run's leftover: its worktree, then its branch.

    Looks again first: raises UnmergedWorkError, removing nothing, if that would lose commits no
    other branch has or uncommitted changes, unless ``force``; WorktreeError if the run is alive
    or the branch moved meanwhile; GitError if git fails.
    """
    if leftover.alive:
        raise WorktreeError(f"run {leftover.run} is alive: task {leftover.task}'s worktree is in use")
    with _pool_lock_of(leftover):
        now = _inspect(leftover, list_worktrees(leftover.repo, git=git), git)
        if not force and (now.unmerged or now.uncommitted):
            where = now.branch or str(now.path)
            whose = f"dead run {now.run}" if now.run else "the pool"
            raise UnmergedWorkError(f"{where} of {whose}", now.unmerged or (), now.uncommitted or ())
        repo = leftover.repo
        if now.path is not None:
            worktree_git(
                repo, "worktree", "remove", *(["--force", "--force"] if force else []), "--", str(now.path), git=git
            )
            if not leftover.pooled:
                with contextlib.suppress(OSError):
                    now.path.parent.rmdir()  # the run's folder, once its last worktree is gone
    if now.branch is not None and now.tip is not None:
        # Deleted only if it still names the commit looked at: a branch that moved since is kept.
        git(repo, "git", "update-ref", "-d", f"refs/heads/{now.branch}", now.tip)


@contextlib.contextmanager
def _pool_lock_of(leftover: Leftover) -> Iterator[None]:
    """For a worktree of the pool, its lock held while it is looked at and removed: a task may
    be taking it this moment (it looked idle); raises WorktreeError if so."""
    if not leftover.pooled or leftover.path is None:
        yield
        return
    fd = try_lock(lock_of(leftover.path), "the pool worktree's lock")
    if fd is None:
        raise WorktreeError(f"pool worktree {leftover.path} is in use: kept")
    try:
        yield
    finally:
        os.close(fd)


def _inspect(leftover: Leftover, listed: list[Listed], git: GitCalls) -> Leftover:
    """``leftover`` as it is now (``listed``: the worktrees now), with what removing it would lose."""
    repo = leftover.repo
    tip = leftover.tip
    if leftover.branch is not None:
        out = git(repo, "git", "for-each-ref", "--format=%(objectname)", f"refs/heads/{leftover.branch}").strip()
        tip = out.decode("ascii") if out else None
    branch = leftover.branch if tip is not None else None
    path, head, missing = leftover.path, None, leftover.missing
    dirty: tuple[str, ...] = ()
    if path is not None:
        entry = next((e for e in listed if e.path == path), None)
        if entry is None:
            path = None
        else:
            head, missing = entry.head, entry.prunable
            dirty = () if missing else uncommitted_paths(path, git=git)
    tips = [t for t in (tip, head) if t is not None]
    exclude = [branch] if branch is not None else []
    lost = unmerged_commits(repo, tips, exclude=exclude, git=git) if tips else ()
    return replace(leftover, branch=branch, tip=tip, path=path, missing=missing, unmerged=lost, uncommitted=dirty)


def _task_of_branch(ref: str) -> tuple[str, str] | None:
    """(run, task) of ``refs/heads/pm/<run>/<task>``; None for any other ref."""
    parts = ref.removeprefix(f"refs/heads/{BRANCH_PREFIX}").split("/")
    if len(parts) == 2 and _names_a_task(*parts):
        return parts[0], parts[1]
    return None


def _names_a_task(run: str, task: str) -> bool:
    """Whether ``run`` and ``task`` can be a run id and the name of one of its task's attempts."""
    return bool(RUN_ID_PATTERN.fullmatch(run) and RUN_ID_PATTERN.fullmatch(task_of_attempt(task)))


def _task_of_pool_entry(entry: PoolEntry, idle: list[Path], git: GitCalls) -> tuple[str, str] | None:
    """(run, task) of a worktree of the pool that is a leftover: on a task's branch, or taken by
    the task its record names; ("", ".pool/<n>") for one changed since it was given back; None
    for an idle one (added to ``idle``), or one held this moment that no task's record names
    (being taken)."""
    if entry.listed.ref is not None and (key := _task_of_branch(entry.listed.ref)) is not None:
        return key
    if entry.task is not None and all(RUN_ID_PATTERN.fullmatch(part) for part in entry.task):
        return entry.task
    if held(entry.lock):
        return None
    if is_idle(entry, git=git):
        idle.append(entry.path)
        return None
    return "", f"{POOL_FOLDER}/{entry.path.name}"


def _task_of_worktree(entry: Listed, folder: Path) -> tuple[str, str] | None:
    """(run, task) of a worktree on a task branch, or in ``<folder>/<run>/<task>``; else None."""
    if entry.ref is not None:
        key = _task_of_branch(entry.ref)
        if key is not None:
            return key
    if entry.path.parent.parent == folder and _names_a_task(entry.path.parent.name, entry.path.name):
        return entry.path.parent.name, entry.path.name
    return None


@dataclass(frozen=True)
class Swept:
    """What :func:`sweep` did with one leftover: ``removed`` (or would have, in a dry run), or
    kept, and ``reason`` why."""

    leftover: Leftover
    removed: bool
    reason: str = ""

    @property
    def name(self) -> str:
        return self.leftover.branch or str(self.leftover.path)


def sweep(
    repo: str | os.PathLike[str],
    alive: Callable[[str], bool],
    *,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    known: Callable[[str], bool] | None = None,
    git: GitCalls = GIT,
) -> list[Swept]:
    """Remove every dead run's leftover that holds no work (all of them with ``force``); keep a
    live run's, and one with commits on no other branch or uncommitted changes, saying why.
    ``alive`` is asked afresh for each run, so that a run that starts meanwhile is seen alive;
    ``known`` is as for :func:`leftovers`. Raises GitError if git fails to list them."""
    swept = []
    for leftover in leftovers(repo, alive, root=root, known=known, git=git):
        if leftover.alive:
            swept.append(Swept(leftover, False, "its run is alive"))
        elif not force and (leftover.unmerged or leftover.uncommitted):
            swept.append(Swept(leftover, False, _work(leftover)))
        elif dry_run:
            swept.append(Swept(leftover, True))
        else:
            try:
                prune(leftover, force=force, git=git)
            except (WorktreeError, GitError) as exc:  # it changed meanwhile, or git refused
                swept.append(Swept(leftover, False, str(exc)))
            else:
                swept.append(Swept(leftover, True))
    return swept


def _work(leftover: Leftover) -> str:
    """The work a dead run's leftover holds, in a phrase."""
    parts = []
    if leftover.unmerged:
        parts.append(f"{len(leftover.unmerged)} commit(s) on no other branch ({leftover.unmerged[0][:12]})")
    if leftover.uncommitted:
        parts.append(f"{len(leftover.uncommitted)} uncommitted path(s) in {leftover.path}")
    return " and ".join(parts)


def known_runs(repo: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None) -> Callable[[str], bool]:
    """The runs the repository's state directory knows now (a record, history or logs of theirs,
    or a folder of their worktrees), as ``known`` for :func:`leftovers`. Taken once: ask before
    pruning the state directory, which takes dead runs' records."""
    top = Path(repo).resolve()
    state = default_root(top).parent
    folders = [state / "runs", state / "history", state / "logs", default_root(top)]
    if root is not None:
        folders.append(top / root)
    names: set[str] = set()  # <run>.json in runs/ and history/, <run> in the others
    for folder in folders:
        with contextlib.suppress(OSError):
            names.update(os.listdir(folder))
    return lambda run: run in names or f"{run}.json" in names
