"""What a merged task leaves to review: two hidden refs per attempt, and finding a task's changes.

A worktree task's branch ``pm/<run>/<task>`` is deleted once merged, yet a user reviewing a run
the morning after wants to see what each task changed. Before the branch goes, :func:`keep`
writes, in one ``git update-ref --stdin`` transaction:

* ``refs/pm/<run>/<task>/base``: the commit the attempt started from;
* ``refs/pm/<run>/<task>/tip``: the branch's last commit.

They keep those commits alive (after a squash or a rebase nothing else reaches the branch's
own commits, and ``git gc`` would drop them), and are outside ``refs/heads/``: ``git branch``
never lists them, and no leftover search (:mod:`queue_core.worktree_leftovers`) looks there.
``git diff BASE TIP`` is then exactly what the task changed, whatever the user committed on
their branch meanwhile. They go with their run's records when retention prunes those
(:mod:`queue_core.retention`), through :func:`drop`.

:func:`newest` finds what ``project-manager diff`` shows of a task: its newest attempt in the
newest run (or in the run asked), from a kept branch or from these refs; when none is left,
:func:`last_ran` says what the runs' history records tell of the task (it ran in the shared
checkout, say), to explain why.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .changes import GitCalls
from .errors import InvalidArgumentError
from .runid import RUN_ID_PATTERN
from .statedir import list_dir, read_regular, state_dir
from .worktrees import BRANCH_PREFIX, GIT

__all__ = ["HIDDEN_PREFIX", "Found", "Ran", "by_run", "drop", "keep", "last_ran", "may_have_any", "newest", "refs_of"]

#: Where the hidden refs live: ``refs/pm/<run>/<task>/base`` and ``.../tip``.
HIDDEN_PREFIX = "refs/pm/"
_ENDS = ("base", "tip")
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class Found:
    """An attempt of a task that left something to show: its kept ``branch`` (None once merged
    and deleted), else its hidden ``base`` and ``tip`` refs."""

    run: str
    name: str  # the attempt's name: <task>, <task>.2 ...
    attempt: int
    branch: str | None = None  # pm/<run>/<name>, kept because it was not merged
    merged: bool = False  # the hidden refs are there (the attempt was merged), branch or not

    @property
    def label(self) -> str:
        """``pm/<run>/<name>``: the branch the attempt worked on, whether it is left or not."""
        return f"{BRANCH_PREFIX}{self.run}/{self.name}"

    @property
    def base_ref(self) -> str:
        return f"{HIDDEN_PREFIX}{self.run}/{self.name}/base"

    @property
    def tip_ref(self) -> str:
        return f"{HIDDEN_PREFIX}{self.run}/{self.name}/tip"

    def revisions(self) -> tuple[str, ...]:
        """What ``git diff`` compares: a merged attempt's hidden refs, exactly its changes (its
        branch, if one is left, is in HEAD's history: ``HEAD...BRANCH`` would show nothing);
        else the kept branch from where it and HEAD part."""
        if self.merged or self.branch is None:
            return (self.base_ref, self.tip_ref)
        return (f"HEAD...refs/heads/{self.branch}",)


def refs_of(run: str, name: str) -> tuple[str, str]:
    """The hidden refs of attempt ``name`` of ``run``: base, tip. Raises InvalidArgumentError for
    a name that is not a plain run or task id (it would be a path, or break the transaction)."""
    for part in (run, name):
        if not RUN_ID_PATTERN.fullmatch(part) or ".." in part or part.endswith((".", ".lock")):
            raise InvalidArgumentError(f"{part!r} cannot name a hidden ref of a task")
    return f"{HIDDEN_PREFIX}{run}/{name}/base", f"{HIDDEN_PREFIX}{run}/{name}/tip"


def keep(repo: Path, run: str, name: str, *, base: str, tip: str, git: GitCalls = GIT) -> None:
    """Write attempt ``name`` of ``run``'s hidden refs at ``base`` and ``tip`` (full object ids of
    commits), both or neither. Raises InvalidArgumentError for a hostile name or id, GitError if
    git fails or either ref exists already (a task's refs are never reused)."""
    base_ref, tip_ref = refs_of(run, name)
    for oid in (base, tip):
        if not _OID.fullmatch(oid):
            raise InvalidArgumentError(f"{oid!r} is not a commit's full object id")
    commands = f"create {base_ref}\0{base}\0create {tip_ref}\0{tip}\0"
    git(repo, "git", "update-ref", "-z", "--stdin", input=commands.encode("ascii"))


def by_run(repo: Path, *, git: GitCalls = GIT) -> dict[str, tuple[tuple[str, str], ...]]:
    """Every hidden ref of ``repo``'s repository, with the commit it names, by run. Raises GitError."""
    raw = git(repo, "git", "for-each-ref", "--format=%(refname)%00%(objectname)", HIDDEN_PREFIX)
    found: dict[str, list[tuple[str, str]]] = {}
    for line in os.fsdecode(raw).splitlines():
        ref, _, oid = line.partition("\0")
        run = ref.removeprefix(HIDDEN_PREFIX).split("/")[0]
        found.setdefault(run, []).append((ref, oid))
    return {run: tuple(refs) for run, refs in found.items()}


def may_have_any(git_dir: Path) -> bool:
    """Whether the repository whose common git directory is ``git_dir`` may hold hidden refs;
    False only when it surely holds none (no ``refs/pm/`` folder, none in ``packed-refs``, no
    reftable): that saves a git process (5 to 7 ms) at the end of every run. A false True
    costs only that process."""
    if (git_dir / "reftable").exists() or (git_dir / HIDDEN_PREFIX).exists():
        return True
    try:
        with open(git_dir / "packed-refs", "rb") as packed:
            return any(f" {HIDDEN_PREFIX}".encode() in line for line in packed)
    except FileNotFoundError:
        return False
    except OSError:
        return True


def drop(repo: Path, refs: Iterable[tuple[str, str]], *, git: GitCalls = GIT) -> None:
    """Delete hidden ``refs`` (name, the commit it named when listed) in one transaction: all, or
    none if one moved since. Raises InvalidArgumentError for a ref outside refs/pm/, GitError."""
    commands = []
    for ref, oid in refs:
        if not ref.startswith(HIDDEN_PREFIX) or any(c in ref for c in "\0\n") or not _OID.fullmatch(oid):
            raise InvalidArgumentError(f"{ref!r} at {oid!r} is no hidden ref of a task")
        commands.append(f"delete {ref}\0{oid}\0")
    if commands:
        git(repo, "git", "update-ref", "-z", "--stdin", input="".join(commands).encode("ascii"))


def newest(
    repo: Path,
    task: str,
    *,
    run: str | None = None,
    known: Callable[[str], bool] | None = None,
    git: GitCalls = GIT,
) -> Found | None:
    """The newest attempt of ``task`` in ``run`` (else in the newest run: run ids sort by time)
    that left a branch or hidden refs; None if none did. With ``known`` (see
    :func:`~queue_core.worktree_leftovers.known_runs`), a branch ``pm/<run>/<task>`` of a run it
    does not know is the user's own and passed over. Raises GitError if git fails."""
    raw = git(
        repo, "git", "for-each-ref", "--format=%(refname)", f"refs/heads/{BRANCH_PREFIX}", HIDDEN_PREFIX
    )  # fmt: skip
    branches: dict[tuple[str, str], str] = {}
    ends: dict[tuple[str, str], set[str]] = {}
    for ref in os.fsdecode(raw).split():
        parts = ref.split("/")
        if ref.startswith(f"refs/heads/{BRANCH_PREFIX}") and len(parts) == 5 and (known is None or known(parts[3])):
            branches[parts[3], parts[4]] = ref.removeprefix("refs/heads/")
        elif ref.startswith(HIDDEN_PREFIX) and len(parts) == 5 and parts[4] in _ENDS:
            ends.setdefault((parts[2], parts[3]), set()).add(parts[4])
    merged = {key for key, have in ends.items() if have == set(_ENDS)}
    found = []
    for key in branches.keys() | merged:
        attempt = _attempt(task, key[1])
        if attempt is not None and (run is None or key[0] == run):
            found.append(Found(key[0], key[1], attempt, branches.get(key), key in merged))
    return max(found, key=lambda f: (f.run, f.attempt)) if found else None


def _attempt(task: str, name: str) -> int | None:
    """Which attempt of ``task`` the branch or refs ``name`` are: ``x`` 1, ``x.2`` 2; None if not
    ``task``'s (a task id may hold dots: ``x.2`` is x's second attempt only when x is asked)."""
    if name == task:
        return 1
    number = name.removeprefix(f"{task}.")
    return int(number) if number != name and number.isascii() and number.isdigit() else None


@dataclass(frozen=True)
class Ran:
    """What a run's history record says of a task: ``isolation`` "shared" or "worktree" (None:
    a Python callable, or a record older than that key), and how many ``attempts`` started."""

    run: str
    isolation: str | None
    attempts: int


def last_ran(repo: Path, task: str, *, run: str | None = None) -> Ran | None:
    """What the newest history record that lists ``task`` says of it (only ``run``'s, if given);
    None if none does. A record that cannot be read, or is no regular file, is passed over."""
    directory = state_dir(repo) / "history"
    try:
        names = sorted((entry.name for _, entry in list_dir(directory)), reverse=True)  # newest run first
    except OSError:
        return None
    for name in names:
        found, _, kind = name.rpartition(".")
        if kind != "json" or (run is not None and found != run) or not RUN_ID_PATTERN.fullmatch(found):
            continue
        ran = _in_record(directory / name, found, task)
        if ran is not None:
            return ran
    return None


def _in_record(path: Path, run: str, task: str) -> Ran | None:
    """``task``'s entry in the history record at ``path``, if it has one and can be read."""
    try:
        data = json.loads(read_regular(path) or b"null")
    except (OSError, ValueError):  # a FIFO, a symlink, a damaged record: not a record to trust
        return None
    tasks = data.get("tasks") if isinstance(data, dict) else None
    for entry in tasks if isinstance(tasks, list) else ():
        if isinstance(entry, dict) and entry.get("id") == task:
            isolation, attempts = entry.get("isolation"), entry.get("attempts")
            return Ran(
                run,
                isolation if isinstance(isolation, str) else None,
                attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0,
            )
    return None
