"""What a merge-back would make, computed in git's object store alone: no working tree, no index.

A task's branch is merged into the user's branch by building the new commit first
(:func:`plan`), and only then, if nothing of the user's stands in the way, moving their
checkout to it (see :mod:`queue_core.mergeback`). Building it touches nothing the user sees:
``git merge-tree --write-tree`` merges trees in the object store, ``git commit-tree`` makes
commits there, and a conflict leaves nothing to abort: a few unreachable objects that ``git gc``
drops.

A rebase replays each commit of the branch the way ``git cherry-pick`` does: a three-way merge
whose base is the commit's parent. ``merge-tree --merge-base`` would say that, but only from
git 2.40; on 2.38 and 2.39 the same merge is had by merging the commit with a throw-away commit
whose parents are the new tip and the commit's parent, so that the parent is the best common
ancestor (:func:`_pick`).
"""

from __future__ import annotations

import enum
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from .changes import GitCalls
from .errors import GitError, InvalidArgumentError

__all__ = ["GIT_MIN", "Conflict", "MergeMode", "Plan", "check_git", "merge_trees", "plan"]

#: The oldest git that merges trees without a working tree (``merge-tree --write-tree``).
GIT_MIN = (2, 38)


class MergeMode(enum.Enum):
    """How a task's branch is merged back into the user's branch."""

    MERGE = "merge"  # a merge commit, as ``git merge --no-ff``: the default
    SQUASH = "squash"  # one commit holding all of the branch's changes, parent: the user's branch
    REBASE = "rebase"  # the branch's commits replayed onto the user's branch: linear history
    NONE = "none"  # nothing merged: the branch is left as it is


@dataclass(frozen=True)
class Plan:
    """The commit the user's branch would move to (None: nothing to merge), and its tree."""

    commit: str | None
    tree: str


@dataclass(frozen=True)
class Conflict:
    """Why the merge cannot be made: the ``paths`` in conflict, git's CONFLICT ``messages``, and,
    for a rebase, the branch's ``commit`` whose replay conflicted."""

    paths: tuple[str, ...]
    messages: tuple[str, ...]
    commit: str | None = None


_git_checked = threading.Event()  # set once git was found recent enough: asked once per process


def check_git(git: GitCalls, top: Path) -> None:
    """Raise GitError unless git is at least GIT_MIN (asked once per process)."""
    if _git_checked.is_set():
        return
    said = git(top, "git", "version").decode("ascii", "replace").strip()
    found = re.search(r"(\d+)\.(\d+)", said)
    if found is None or (int(found[1]), int(found[2])) < GIT_MIN:
        need = ".".join(map(str, GIT_MIN))
        raise GitError(f"merging a task's branch back needs git {need} or later (merge-tree --write-tree); {said}")
    _git_checked.set()


def plan(
    git: GitCalls, top: Path, mode: MergeMode, *, old: str, old_tree: str, branch: str, base: str, message: str
) -> Plan | Conflict:
    """The commit that merges ``branch`` into ``old`` (all full object ids) as ``mode`` says,
    made in the object store; or the conflict that prevents it. Raises GitError.

    Nothing to merge (the branch is in ``old`` already; a squash or rebase that changes
    nothing) is a Plan whose commit is None. ``base`` is where the branch started: a rebase
    replays ``base..branch``. ``message`` is the merge or squash commit's; a rebase keeps each
    commit's own message and author.
    """
    if mode is MergeMode.NONE:
        raise InvalidArgumentError("MergeMode.NONE merges nothing: there is no plan to make")
    if _is_ancestor(git, top, branch, old):
        return Plan(None, old_tree)
    if mode is MergeMode.REBASE:
        if _is_ancestor(git, top, old, branch):  # nothing new on the user's side: take the commits as they are
            return Plan(branch, _tree_of(git, top, branch))
        return _replay(git, top, old=old, old_tree=old_tree, branch=branch, base=base)
    tree, conflict = merge_trees(git, top, old, branch)
    if conflict is not None:
        return conflict
    if mode is MergeMode.SQUASH:
        if tree == old_tree:  # its changes are all there already
            return Plan(None, tree)
        return Plan(_commit(git, top, tree, [old], message), tree)
    return Plan(_commit(git, top, tree, [old, branch], message), tree)


def merge_trees(git: GitCalls, top: Path, ours: str, theirs: str) -> tuple[str, Conflict | None]:
    """The tree of merging commit ``theirs`` into ``ours`` (``merge-tree --write-tree``), and the
    conflict if there is one (git's exit code says so: a conflict may list no file). Raises GitError."""
    code, out = git.run(
        top, "git", "merge-tree", "--write-tree", "--messages", "--name-only", "-z", ours, theirs, ok=(0, 1)
    )
    fields = out.split(b"\0")
    tree = fields[0].decode("ascii", "replace")
    if code == 0:
        return tree, None
    paths: dict[str, None] = {}  # ordered, without repeats
    at = 1
    while at < len(fields) and fields[at]:  # conflicted file info, up to an empty field
        paths[os.fsdecode(fields[at])] = None
        at += 1
    messages: list[str] = []
    at += 1
    try:  # messages: <count> NUL <path>... NUL <type> NUL <message> NUL, each
        while at < len(fields) and fields[at]:
            count = int(fields[at])
            involved, kind = fields[at + 1 : at + 1 + count], fields[at + 1 + count]
            text = fields[at + 2 + count].decode("utf-8", "replace").strip()
            at += count + 3
            if kind.startswith(b"CONFLICT"):
                messages.append(text)
                paths.update(dict.fromkeys(map(os.fsdecode, involved)))
    except (ValueError, IndexError):  # a format this version cannot read: the paths above still hold
        messages.append("(git's messages could not be read)")
    return tree, Conflict(tuple(paths), tuple(messages))


def _replay(git: GitCalls, top: Path, *, old: str, old_tree: str, branch: str, base: str) -> Plan | Conflict:
    """``base..branch`` (merges left out, as ``git rebase`` does) replayed onto ``old``, keeping each
    commit's author and message; a commit that the replay leaves empty is dropped, as by rebase."""
    tip, tip_tree = old, old_tree
    for commit in _commits(git, top, base, branch):
        if commit.parent == tip:  # nothing to replay it onto: kept as it is, as rebase keeps it
            tip, tip_tree = commit.oid, commit.tree
            continue
        tree, conflict = _pick(git, top, tip, tip_tree, commit)
        if conflict is not None:
            return Conflict(conflict.paths, conflict.messages, commit.oid)
        if tree == tip_tree and commit.tree != _tree_of(git, top, commit.parent):
            continue  # its change is on the user's branch already
        env = {"GIT_AUTHOR_NAME": commit.name, "GIT_AUTHOR_EMAIL": commit.email, "GIT_AUTHOR_DATE": commit.date}
        tip, tip_tree = _commit(git, top, tree, [tip], commit.message, env), tree
    return Plan(None if tip == old else tip, tip_tree)


@dataclass(frozen=True)
class _Commit:
    oid: str
    tree: str
    parent: str
    name: str
    email: str
    date: str  # git's raw format: seconds and zone, as GIT_AUTHOR_DATE takes it
    message: str


_LOG_FIELDS = ("%H", "%T", "%P", "%an", "%ae", "%ad", "%B")


def _commits(git: GitCalls, top: Path, base: str, branch: str) -> list[_Commit]:
    """The commits of ``base..branch`` without merges, oldest first: what a rebase replays."""
    out = git(
        top,
        "git",
        "-c",
        "log.showSignature=false",  # its lines would come between the fields
        "log",
        "-z",
        "--reverse",
        "--topo-order",
        "--no-merges",
        "--date=raw",
        "--format=" + "%x00".join(_LOG_FIELDS),
        f"{base}..{branch}",
        "--",
    )
    fields = [os.fsdecode(f) for f in out.split(b"\0")]
    size = len(_LOG_FIELDS)
    commits = []
    for at in range(0, len(fields) - size + 1, size):  # a commit message never holds a NUL
        oid, tree, parents, name, email, date, message = fields[at : at + size]
        if " " in parents or not parents:
            raise GitError(f"cannot replay commit {oid[:12]}: it has {len(parents.split())} parents")
        commits.append(_Commit(oid, tree, parents, name, email, date, message))
    return commits


def _pick(git: GitCalls, top: Path, tip: str, tip_tree: str, commit: _Commit) -> tuple[str, Conflict | None]:
    """``commit``'s change merged onto ``tip``, as cherry-pick merges it: base, its parent."""
    # Its parents make commit.parent the best common ancestor of it and ``commit``: every
    # other common one (the branch's base, older) is an ancestor of commit.parent.
    ours = _commit(git, top, tip_tree, [tip, commit.parent], "project-manager: replay base\n", sign=False)
    return merge_trees(git, top, ours, commit.oid)


def _commit(
    git: GitCalls,
    top: Path,
    tree: str,
    parents: list[str],
    message: str,
    env: dict[str, str] | None = None,
    *,
    sign: bool = True,
) -> str:
    """A new commit of ``tree`` with ``parents``; the message goes through stdin, never an option.

    Signed if the user's commit.gpgSign says so, unless ``sign`` is False (a throw-away commit).
    """
    argv = ["git", "commit-tree", tree, *([] if sign else ["--no-gpg-sign"])]
    for parent in parents:
        argv += ["-p", parent]
    text = message if message.endswith("\n") else message + "\n"
    out = git(top, *argv, "-F", "-", input=os.fsencode(text), env=env)
    return out.decode("ascii").strip()


def _tree_of(git: GitCalls, top: Path, commit: str) -> str:
    return git(top, "git", "rev-parse", "--verify", "-q", f"{commit}^{{tree}}").decode("ascii").strip()


def _is_ancestor(git: GitCalls, top: Path, ancestor: str, descendant: str) -> bool:
    code, _ = git.run(top, "git", "merge-base", "--is-ancestor", ancestor, descendant, ok=(0, 1))
    return code == 0
