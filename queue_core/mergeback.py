"""Merging a task's branch back into the user's branch, without ever touching their work.

``git merge`` in the user's checkout would stop mid-merge on a conflict and write into files
they are editing. :func:`merge_back` never does either:

1. it looks, changing nothing: the checkout is still on the branch the run started from, and
   no merge, rebase, cherry-pick, revert or bisect is under way;
2. it builds the new commit in the object store (:mod:`queue_core.mergeplan`): a conflict is
   found there, and leaves nothing to abort;
3. it lists the files that commit changes against the user's branch, and refuses
   (``blocked``) if any is one the user modified, staged, or has an untracked or ignored file
   in the way of;
4. only then it moves the checkout: ``git read-tree -m -u OLD NEW`` writes the files that
   differ and nothing else (and itself refuses, changing nothing, if a file was modified
   since 3), then ``git update-ref`` moves the branch from OLD to NEW, compare-and-swap.

Why the working tree before the branch: if the process dies between the two steps, the user
finds the task's changes staged and their branch where it was, which they can commit or undo
(``git read-tree -m -u NEW OLD``); the other order would leave their branch holding the merge
and a working tree that, committed, reverts it. If the branch moved meanwhile (a commit of
theirs), the swap fails: the files are put back (``read-tree -m -u NEW OLD``, which again
refuses to touch a file changed since) and the merge is tried once more from the start,
unless that commit took the task's changes in (a ``git commit -a`` in the few milliseconds
between the steps): then they are left as that commit has them. HEAD is looked at once more
between the two steps: a checkout of another branch then (which carries staged files along)
gets the files put back, and the target is not moved.

These are several git commands, and git's index lock cannot be held across them: a command of
the user's can fall between two. Each such window is milliseconds wide, and what falls in one
is found by the next step (the swap, the second look, read-tree's own refusals) and undone or
left as the user made it, never lost. The look, moving the branch and putting the files back
wait for another command's lock (a commit of yours holds the index's and the branch's a few
milliseconds), LOCKED_WAIT_S at most: given up at once, a lock met in the last two left the
task's changes staged in the checkout for that commit to take in.

One merge at a time per repository: hold :func:`queue_core.mergelock.merge_lock` around it.
"""

from __future__ import annotations

import enum
import os
import re
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .changes import GitCalls, parse_status
from .claims import Claim
from .errors import GitError, InvalidArgumentError, first_few
from .mergeplan import Conflict, MergeMode, check_git, plan

__all__ = ["ConflictCause", "MergeMode", "MergeResult", "MergeStatus", "merge_back"]

_git = GitCalls()

#: What, in the git directory, says an operation is under way in the checkout, and which.
_UNDER_WAY = (
    ("MERGE_HEAD", "a merge"),
    ("rebase-merge", "a rebase"),
    ("rebase-apply", "a rebase or git am"),
    ("CHERRY_PICK_HEAD", "a cherry-pick"),
    ("REVERT_HEAD", "a revert"),
    ("sequencer", "a cherry-pick or revert"),
    ("BISECT_LOG", "a bisect"),
    ("index.lock", "another git command (its index.lock exists)"),
)
_OID = re.compile(r"[0-9a-f]{4,64}")
#: How long the look, moving the branch or putting the files back waits for another git command's lock
#: (a commit of yours holds index.lock and the branch's lock for milliseconds) before it gives up.
LOCKED_WAIT_S = 2.0
_LOCKED_RETRY_S = 0.01
_PATHSPEC_MAX = 100_000  # bytes of paths given to one git status; past it, it looks at them all


class MergeStatus(enum.Enum):
    """How a merge-back ended."""

    MERGED = "merged"  # the user's branch holds the task's changes (or did already)
    CONFLICT = "conflict"  # the branch conflicts with the user's: nothing changed, branch kept
    BLOCKED = "blocked"  # the user's checkout stood in the way: nothing changed, branch kept
    NONE = "none"  # merge: none: nothing was to be merged


class ConflictCause(enum.Enum):
    """Where a conflict comes from, when claims were honoured otherwise none could occur."""

    STRAY_WRITES = "stray_writes"  # the task wrote outside its claims
    TARGET_COMMITS = "target_commits"  # commits on the user's branch since the run started


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_back` did, and why, in a sentence (``reason``)."""

    status: MergeStatus
    reason: str
    commit: str | None = None  # MERGED: the user's branch's new commit (None if nothing was to merge)
    changed: tuple[str, ...] = ()  # MERGED: the files the merge changed in the checkout
    conflicts: tuple[str, ...] = ()  # CONFLICT: the paths in conflict
    cause: ConflictCause | None = None  # CONFLICT: where it comes from, if that can be told
    blocking: tuple[str, ...] = ()  # BLOCKED: the user's paths that stood in the way


#: What a try returns when the user's branch moved under it: it is tried again from the start.
_MOVED = MergeResult(MergeStatus.BLOCKED, "the branch moved")


@dataclass(frozen=True)
class _Refs:
    top: Path
    old: str
    old_tree: str
    branch: str


def merge_back(
    repo: Path,
    *,
    target_branch: str,
    base: str,
    branch: str,
    mode: MergeMode,
    message: str,
    claims: Iterable[Claim],
    git: GitCalls = _git,
) -> MergeResult:
    """Merge ``branch`` into ``target_branch``, the branch checked out at ``repo``, as ``mode``
    says, without switching it and without touching a file the user changed.

    ``base`` is the commit the run started from (a full object id): the task's branch grew
    from it. ``message`` is the merge or squash commit's. ``claims``, the task's write claims,
    tell a conflict's cause. The caller holds the merge lock (:mod:`queue_core.mergelock`).

    Returns a MergeResult: ``merged``, or ``conflict``/``blocked`` with nothing changed and the
    branch kept, or ``none`` for MergeMode.NONE. Raises InvalidArgumentError for a ``base``
    that is not an object id or a branch merged into itself, and GitError if git fails
    otherwise: then too nothing was changed, unless the message says what is left (the
    task's changes staged, the branch unmoved: a put-back that failed).
    """
    if mode is MergeMode.NONE:
        return MergeResult(MergeStatus.NONE, f"merge: none: {branch} was left as it is, nothing merged")
    if not _OID.fullmatch(base):
        raise InvalidArgumentError(f"base must be a commit's object id, got {base!r}")
    if branch == target_branch:
        raise InvalidArgumentError(f"cannot merge {branch!r} into itself")
    held = tuple(claims)
    for _ in range(2):
        result = _attempt(repo, target_branch, base, branch, mode, message, held, git)
        if result is not _MOVED:
            return result
    return _blocked(f"{target_branch} moved twice while {branch} was being merged (commits of yours): nothing merged")


def _attempt(
    repo: Path,
    target: str,
    base: str,
    branch: str,
    mode: MergeMode,
    message: str,
    claims: Sequence[Claim],
    git: GitCalls,
) -> MergeResult:
    """One try: a MergeResult, or _MOVED if the user's branch moved meanwhile."""
    found = _look(repo, target, branch, git)
    if isinstance(found, MergeResult):
        return found
    top, old = found.top, found.old
    made = plan(git, top, mode, old=old, old_tree=found.old_tree, branch=found.branch, base=base, message=message)
    if isinstance(made, Conflict):
        return _conflict(git, top, made, target, branch, base, old, claims)
    if made.commit is None:
        return MergeResult(MergeStatus.MERGED, f"nothing to merge: {target} holds the changes of {branch} already")
    changes = _changes(git, top, found.old_tree, made.tree)
    modified = _modified(git, top, target, old, [path for _, path in changes])
    if modified is None:
        return _MOVED
    yours, occupied = _in_the_way(top, changes, modified)
    if yours or occupied:
        return _blocked(_refusal(yours, occupied), [*yours, *occupied])
    return _apply(git, top, target, branch, mode, old, made.commit, [path for _, path in changes])


def _look(repo: Path, target: str, branch: str, git: GitCalls) -> _Refs | MergeResult:
    """The checkout's top and the commits at stake, or why nothing may be merged; changes nothing."""
    args = [arg for name, _ in _UNDER_WAY for arg in ("--git-path", name)]
    out = git(repo, "git", "rev-parse", "--show-toplevel", *args, "--symbolic-full-name", "HEAD")
    lines = os.fsdecode(out).splitlines()
    if len(lines) != len(_UNDER_WAY) + 2:  # a path with a newline in it
        raise GitError(f"git rev-parse: unexpected output {out[:200]!r}")
    top, paths, head = Path(lines[0]), lines[1:-1], lines[-1]
    check_git(git, top)
    for path, (name, what) in zip(paths, _UNDER_WAY, strict=True):
        if os.path.lexists(Path(repo, path)) and not (name == "index.lock" and _let_go(Path(repo, path))):
            return _blocked(f"{what} is under way in your checkout: nothing was merged")
    if head != f"refs/heads/{target}":
        now = "a detached HEAD" if head == "HEAD" else head.removeprefix("refs/heads/")
        return _blocked(f"your checkout is on {now} now, not {target}: nothing was merged")
    code, out = git.run(
        top, "git", "rev-parse", f"refs/heads/{target}", f"refs/heads/{target}^{{tree}}",
        f"refs/heads/{branch}^{{commit}}", "--", ok=(0, 128),
    )  # fmt: skip
    oids = out.decode("ascii", "replace").split()
    if code != 0 or len(oids) != 4:
        return _blocked(f"branch {branch} or {target} was not found: nothing was merged")
    return _Refs(top, oids[0], oids[1], oids[2])


def _let_go(lock: Path) -> bool:
    """Whether another git command's ``lock`` goes within LOCKED_WAIT_S: a commit of yours holds
    index.lock for milliseconds; one left by a git that crashed stays."""
    deadline = time.monotonic() + LOCKED_WAIT_S
    while os.path.lexists(lock):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_LOCKED_RETRY_S)
    return True


def _changes(git: GitCalls, top: Path, old_tree: str, new_tree: str) -> list[tuple[str, str]]:
    """(status letter, path) of each file that differs between the two trees: what moving changes."""
    out = git(top, "git", "diff-tree", "-r", "-z", "--no-renames", "--name-status", old_tree, new_tree)
    fields = out.split(b"\0")
    return [(fields[at].decode("ascii", "replace"), os.fsdecode(fields[at + 1])) for at in range(0, len(fields) - 1, 2)]


def _modified(git: GitCalls, top: Path, target: str, old: str, paths: list[str]) -> set[str] | None:
    """The tracked ``paths`` (and paths below them) that the user changed or staged; None if
    HEAD is no longer ``target`` at ``old``. Untracked files are looked at on disk instead.

    Only ``paths`` are looked at (as literal paths), unless they would make too long a command;
    the index is not written (it would be, whole, for a few stat data: see :func:`_move_files`).
    """
    spec = ["--", *paths] if paths and sum(len(path) + 1 for path in paths) < _PATHSPEC_MAX else []
    out = git(
        top, "git", "--no-optional-locks", "--literal-pathspecs", "status", "--porcelain=v2", "-z", "--branch",
        "--untracked-files=no", "--no-renames", *spec,
    )  # fmt: skip
    head, entries = parse_status(out)
    if head != old or b"\0# branch.head " + os.fsencode(target) + b"\0" not in b"\0" + out:
        return None
    return set(entries)


def _in_the_way(top: Path, changes: list[tuple[str, str]], modified: set[str]) -> tuple[list[str], list[str]]:
    """The paths of ``changes`` that the user changed (or changed a path below or above), and
    those where something of theirs occupies the disk: an untracked or ignored file where the
    merge makes one (git would overwrite an ignored file without a word)."""
    within = {parent for path in modified for parent in _parents(path)}
    removed = {path for letter, path in changes if letter == "D"}
    yours, occupied = [], []
    for letter, path in changes:
        if path in modified or path in within or any(parent in modified for parent in _parents(path)):
            yours.append(path)
        elif letter == "A" and _occupied(top, path, removed):
            occupied.append(path)
    return yours, occupied


def _parents(path: str) -> list[str]:
    """``a/b/c`` -> ``a``, ``a/b``."""
    parts = path.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts))]


def _occupied(top: Path, path: str, removed: set[str]) -> bool:
    """Whether something stands where the merge creates ``path``: an entry there, or a file or
    symlink where it needs a directory (one the merge itself removes excepted)."""
    for parent in _parents(path):
        try:
            mode = os.lstat(top / parent).st_mode
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(mode):
            return parent not in removed
    return os.path.lexists(top / path)


def _refusal(yours: list[str], occupied: list[str]) -> str:
    """``the merge would change src/x.py, which you have modified: ...``."""
    parts = []
    if yours:
        parts.append(f"change {first_few(yours)}, which you have modified")
    if occupied:
        parts.append(f"write {first_few(occupied)}, where an untracked or ignored file of yours is in the way")
    return f"the merge would {' and '.join(parts)}: nothing was merged, the branch is kept"


def _apply(
    git: GitCalls, top: Path, target: str, branch: str, mode: MergeMode, old: str, new: str, paths: list[str]
) -> MergeResult:
    """Move the checkout from ``old`` to ``new``: its files, then its branch (see the module's docstring)."""
    try:
        _move_files(git, top, old, new)
    except GitError as exc:  # refused before writing: a file changed since it was looked at
        if _tip(git, top, target) != old:
            return _MOVED
        return _blocked(f"git would not update your working tree ({exc}): nothing was merged")
    # A checkout of another branch since the look (it waits for read-tree's index lock, then
    # carries the staged files along): moving the target would not move the user's checkout.
    code, out = git.run(top, "git", "symbolic-ref", "-q", "HEAD", ok=(0, 1))
    if code != 0 or os.fsdecode(out.strip()) != f"refs/heads/{target}":
        now = os.fsdecode(out.strip()).removeprefix("refs/heads/") if code == 0 else "a detached HEAD"
        return _put_back(git, top, target, old, new, paths, f"your checkout moved to {now} meanwhile")
    message = f"project-manager: {mode.value} {branch}"
    deadline = time.monotonic() + LOCKED_WAIT_S
    while True:  # a lock of another git command's (a commit of yours) may hold it off a moment
        try:
            git(top, "git", "update-ref", "-m", message, f"refs/heads/{target}", new, old)
            break
        except GitError as exc:
            if _tip(git, top, target) != old or time.monotonic() >= deadline:  # moved: never tried again
                return _put_back(git, top, target, old, new, paths, f"{target} could not be moved ({exc})")
        time.sleep(_LOCKED_RETRY_S)
    done = {MergeMode.MERGE: "merged", MergeMode.SQUASH: "squashed", MergeMode.REBASE: "rebased"}[mode]
    return MergeResult(MergeStatus.MERGED, f"{done} {branch} into {target}: {new[:12]}", new, tuple(paths))


def _move_files(git: GitCalls, top: Path, old: str, new: str) -> None:
    """The index and working tree from ``old`` to ``new`` (``read-tree -m -u``); raises GitError
    if git refuses, having changed nothing: a file differs from ``old``, or is in the way.

    read-tree judges a file by its stat data in the index: one touched but not changed (a
    formatter, an editor's save) looks modified until the index is refreshed. Refreshing
    writes the whole index, so it is done only when read-tree refuses, and read-tree tried again.
    """
    try:
        git(top, "git", "read-tree", "-m", "-u", old, new)
    except GitError:
        git.run(top, "git", "update-index", "-q", "--refresh", ok=(0, 1))
        git(top, "git", "read-tree", "-m", "-u", old, new)


def _put_back(git: GitCalls, top: Path, target: str, old: str, new: str, paths: list[str], why: str) -> MergeResult:
    """The branch could not be moved (``why``): undo the files' move, unless a commit made
    meanwhile took them in; _MOVED if the branch moved, to try again. Another git command's
    lock (a commit of yours) is waited for, LOCKED_WAIT_S at most."""
    deadline = time.monotonic() + LOCKED_WAIT_S
    while True:
        tip = _tip(git, top, target)
        if tip is not None and tip != old:
            taken = set(paths) & {path for _, path in _changes(git, top, old, tip)}
            if taken:
                return _blocked(
                    f"{target} moved to {tip[:12]} while the merge was being applied, and that commit changed "
                    f"{first_few(sorted(taken))} too: the task's changes were left in your checkout as they are; "
                    "nothing else was changed"
                )
        try:
            git(top, "git", "read-tree", "-m", "-u", new, old)
            break
        except GitError as exc:
            if time.monotonic() >= deadline:
                raise GitError(
                    f"{why}, and your working tree could not be put back ({exc}): the "
                    f"task's changes to {first_few(paths)} are in your index and working tree, uncommitted; "
                    f"`git read-tree -m -u {new} {old}` takes them out"
                ) from exc
        time.sleep(_LOCKED_RETRY_S)
    if tip != old:
        return _MOVED
    return _blocked(f"{why}: nothing was merged")


def _tip(git: GitCalls, top: Path, target: str) -> str | None:
    """The commit ``target`` is at now; None if it is gone."""
    code, out = git.run(top, "git", "rev-parse", "-q", "--verify", f"refs/heads/{target}^{{commit}}", ok=(0, 1))
    return out.decode("ascii").strip() if code == 0 else None


def _conflict(
    git: GitCalls, top: Path, conflict: Conflict, target: str, branch: str, base: str, old: str, claims: Sequence[Claim]
) -> MergeResult:
    """The conflict as a result: its paths, and whether the task's stray writes or commits on
    ``target`` since ``base`` caused it."""
    paths = conflict.paths
    stray = [path for path in paths if not any(claim.covers(path) for claim in claims)]
    on_target = {path for _, path in _changes(git, top, base, old)} if base != old else set()
    cause: ConflictCause | None = None
    if stray:
        cause, why = ConflictCause.STRAY_WRITES, f"the task wrote {first_few(stray)} outside its claims"
    elif any(path in on_target for path in paths):
        cause, why = ConflictCause.TARGET_COMMITS, f"{target} has commits since the run started that change them"
    else:
        why = "neither a write outside the task's claims nor a commit on the branch since the run started explains it"
    what = f"replaying {conflict.commit[:12]} of {branch}" if conflict.commit else f"merging {branch}"
    where = f" in {first_few(list(paths))}" if paths else f": {conflict.messages[0] if conflict.messages else ''}"
    reason = f"{what} onto {target} conflicts{where}; {why}; nothing was changed, the branch is kept"
    return MergeResult(MergeStatus.CONFLICT, reason, conflicts=paths, cause=cause)


def _blocked(reason: str, blocking: Sequence[str] = ()) -> MergeResult:
    return MergeResult(MergeStatus.BLOCKED, reason, blocking=tuple(blocking))
