"""Claims that a running task adds as it works, asked from inside it (``project-manager claim``).

An agent finds what it must touch as it works: a test, an import, a changelog. From inside its
task (the runner puts ``PM_RUN_ID``, ``PM_TASK_ID``, ``PM_REPO`` and ``PM_STATE_DIR`` in its
environment) it asks :class:`TaskClaims` for more, and every answer is one step under the
registry's lock (:class:`~queue_core.statelock.RegistryLock`), like any claim:

* The task's hold must live in claims.json (its run may be of another process); a claim must lie
  in the repository and inside what the task's agent owns (``Hold.owns``), or it is refused.
* A claim no other live hold overlaps (writes exclusive, reads shared; this run's other tasks
  count like any) is granted: the hold lists it, marked ``added``, in claims.json and in the
  run's ``.holds`` file before the lock is let go, and in ``runs/<run>.claimed``, which outlives
  the hold for the checks that come after the task (stray writes, a worktree's merge-back). The
  run adopts it at its next step, before it decides anything (RegistrySync._adopt), so no task
  of it starts over the claim; it goes with the task's hold. Places in line do not hold a
  running task back: it is further along than anything waiting.
* A claim held by another task waits up to ``wait`` seconds, looking again every ``POLL_S``.
  While it waits it is in ``claim-waits.json`` (with the asking process, so that one killed
  leaves nothing behind), which makes the wait-for graph: a task waits for the holders of what
  it asked. A wait that would close a cycle in it (A holds x and waits for y, B holds y and now
  asks for x), across runs too, is refused at once, naming the tasks on the cycle. Since every
  wait is entered under the lock, of two tasks asking for each other's files at once the second
  is refused, and the first waits for a task that does not wait.
* While claims.json is missing, damaged or being recovered, nothing is granted: a run rebuilds
  it (see queue_core.registry) and the claim is asked again until ``wait`` is over.

:func:`may_write` answers ``project-manager check`` without the lock: a view, for an agent that
wants to ask before it edits, never the grant itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .claims import Access, Claim, overlaps
from .claimsfile import contents, parse
from .clocks import REAL, Clocks
from .errors import ClaimDeadlockError, ClaimHeldError, ClaimRefusedError, InvalidClaimError, NotRegularFileError
from .holds import STALE_AFTER_S, Hold, live_holds
from .line import parse_claims
from .processes import ProcessId
from .realpaths import literal_claim
from .statedir import encode_json, open_append, read_regular, write_private
from .statelock import RegistryLock

__all__ = [
    "POLL_S",
    "Granted",
    "TaskClaims",
    "claimed_by",
    "claimed_in",
    "holder_text",
    "holders",
    "may_write",
    "task_path",
]

#: How often a claim that waits asks again.
POLL_S = 0.05
#: The file of the claims that wait, in the state directory.
WAITS_FILE = "claim-waits.json"


@dataclass(frozen=True)
class Granted:
    """What a claim came to: ``added``, the claims the task holds from now on; ``had``, those it held already."""

    added: tuple[str, ...]
    had: tuple[str, ...]


@dataclass(frozen=True)
class _Wait:
    """A claim that waits: the task's hold key, what it asked, and the process that asks."""

    key: str
    claims: tuple[str, ...]
    access: Access
    process: ProcessId

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "claims": list(self.claims), "access": self.access.value, **self.process.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> _Wait:
        return cls(
            str(data["key"]),
            tuple(str(c) for c in data["claims"]),
            Access(data["access"]),
            ProcessId.from_json(data),
        )


class TaskClaims:
    """The claims of task ``task`` of run ``run``, in the registry of the state directory ``state``.

    ``stale_after`` as for the Registry: how old a heartbeat of a run of another host may be;
    ``lock_timeout``, how long one step waits for the registry's lock (StateError after it).
    """

    def __init__(
        self,
        state: str | os.PathLike[str],
        run: str,
        task: str,
        *,
        stale_after: float = STALE_AFTER_S,
        lock_timeout: float = 30.0,
        clocks: Clocks = REAL,
    ) -> None:
        self.dir = Path(state)
        self.key = f"{run}/{task}"
        self.run, self.task = run, task
        self.stale_after = stale_after
        self.clocks = clocks
        self._lock = RegistryLock(self.dir, timeout=lock_timeout, clocks=clocks)
        self._me = ProcessId.of(os.getpid())
        self._waiting = False  # this process's wait is in the waits file

    def claim(
        self,
        claims: Sequence[Claim],
        access: Access = Access.WRITE,
        *,
        wait: float = 0.0,
        stop: threading.Event | None = None,
    ) -> Granted:
        """Add ``claims`` to the task's, all or none; wait up to ``wait`` seconds while one is held.

        Raises ClaimRefusedError (not a running task, beyond what its agent owns),
        ClaimHeldError (still held when the wait is over, or the registry being recovered),
        ClaimDeadlockError (waiting would close a cycle), StateError (the lock not had).
        ``stop`` set ends a wait as if it were over.
        """
        stop = stop or threading.Event()
        deadline = self.clocks.monotonic() + wait
        try:
            while True:
                answer = self._step(claims, access, waits=self.clocks.monotonic() < deadline)
                if isinstance(answer, Granted):
                    return answer
                left = deadline - self.clocks.monotonic()
                if left <= 0 or stop.wait(min(POLL_S, left)) or self.clocks.monotonic() >= deadline:
                    waited = f" (waited up to {wait:g} s)" if wait > 0 else ""
                    raise ClaimHeldError(answer[0] + waited, answer[1])
        finally:
            if self._waiting:
                self._forget_wait()

    # --- one step under the lock ----------------------------------------------------------

    def _step(self, claims: Sequence[Claim], access: Access, *, waits: bool) -> Granted | tuple[str, Hold | None]:
        """Grant ``claims`` if free; else say why not, (message, holder), entering this wait if
        ``waits`` (a deadlock refused)."""
        if not self.dir.is_dir():  # never made again from here: it is the runs' to make
            return f"the claim registry {self.dir} is missing (or on another machine)", None
        self._lock.acquire()
        try:
            try:
                holds, line, written_in = self._read()
            except ClaimHeldError as exc:  # the registry cannot be trusted now
                return str(exc), None
            mine = next((h for h in holds if h.key == self.key), None)
            if mine is None:
                raise ClaimRefusedError(f"task {self.task} of run {self.run} is not running: its claims are gone")
            _check_owns(mine, claims)
            had = tuple(c.text for c in claims if _holds(mine, c, access))
            wanted = [c for c in claims if c.text not in had]
            if not wanted:
                self._set_wait(holds, None)
                return Granted((), had)
            blockers = [(c, h) for c in wanted for h in holds if h.key != self.key and _clash(h, c, access)]
            if not blockers:
                self._grant(mine, holds, line, written_in, wanted, access)
                self._set_wait(holds, None)
                return Granted(tuple(c.text for c in wanted), had)
            claim, holder = blockers[0]
            message = f"{claim.text} is held by {holder_text(holder, self.run)}"
            if not waits:
                self._set_wait(holds, None)
                return message, holder
            me = _Wait(self.key, tuple(c.text for c in wanted), access, self._me)
            waits_now = [w for w in self._read_waits(holds) if not self._mine(w)]
            cycle = _cycle(self.key, [h for _, h in blockers], waits_now, holds)
            if cycle:
                self._set_wait(holds, None)
                claim = next(c for c, h in blockers if h.key == cycle[0].key)  # what that holder holds
                raise ClaimDeadlockError(_deadlock_text(claim, cycle, waits_now, self.run), tuple(cycle))
            self._set_wait(holds, me)
            return message, holder
        finally:
            self._lock.release()

    def _read(self) -> tuple[list[Hold], list[Any], int]:
        """The live holds and the line in claims.json, and the state directory's inode to write it
        with; raises ClaimHeldError (no holder) if it cannot be trusted now: a run rebuilds it, and
        nothing is granted meanwhile."""
        path = self.dir / "claims.json"
        try:
            raw = read_regular(path)
        except (NotRegularFileError, OSError) as exc:
            raise ClaimHeldError(f"the claim registry {path} cannot be read: {exc}") from exc
        if raw is None:
            raise ClaimHeldError(f"the claim registry {path} is missing: a run is rebuilding it")
        try:
            holds, line, recovering, written_in = parse(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ClaimHeldError(f"the claim registry {path} is damaged: a run is rebuilding it") from exc
        inode = self._lock.inode()
        if written_in not in (None, inode):
            raise ClaimHeldError(f"the claim registry {path} was written in another state directory")
        if recovering > self.clocks.wall():
            raise ClaimHeldError(f"the claim registry {path} is being recovered: nothing is granted meanwhile")
        live, _ = _live(holds, self.dir, self.stale_after, self.clocks)
        return live, line, inode

    def _grant(
        self, mine: Hold, holds: list[Hold], line: list[Any], inode: int, wanted: list[Claim], access: Access
    ) -> None:
        """Write ``mine`` holding ``wanted`` too: claims.json, the run's holds, its ``.claimed``."""
        texts = tuple(c.text for c in wanted)
        if access is Access.WRITE:
            grown = replace(mine, writes=(*mine.writes, *texts), added=(*mine.added, *texts))
        else:
            grown = replace(mine, reads=(*mine.reads, *texts), added=(*mine.added, *texts))
        holds = [grown if h.key == self.key else h for h in holds]
        runs = self.dir / "runs"
        record = json.dumps({"task": self.task, access.value + "s": list(texts)}) + "\n"
        # Opened first: one that cannot be (a FIFO, a link) refuses the claim before anything is written.
        with open_append(runs / f"{self.run}.claimed") as claimed:
            # The run's own copy first: were this process killed between the two writes, a rebuild
            # would hold too much, never too little.
            ours = [h.to_json() for h in holds if h.owner.run == self.run]
            write_private(runs / f"{self.run}.holds", encode_json({"holds": ours}))
            write_private(self.dir / "claims.json", encode_json(contents(holds, line, 0.0, inode, self.clocks.wall())))
            os.write(claimed, record.encode())

    # --- the waits --------------------------------------------------------------------------

    def _read_waits(self, holds: Iterable[Hold]) -> list[_Wait]:
        """The waits whose process lives and whose task still holds its claims."""
        try:
            data = json.loads(read_regular(self.dir / WAITS_FILE) or b'{"waits": []}')
            waits = [_Wait.from_json(item) for item in data["waits"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # damaged: rewritten at the next wait; its waiters enter again within POLL_S
        keys = {h.key for h in holds}
        return [w for w in waits if w.key in keys and w.process.alive()]

    def _set_wait(self, holds: list[Hold], wait: _Wait | None) -> None:
        """Make this process's wait ``wait`` (None: none) in the waits file (the lock held)."""
        if wait is None and not self._waiting:
            return
        others = [w for w in self._read_waits(holds) if not self._mine(w)]
        waits = [*others, *(() if wait is None else (wait,))]
        write_private(self.dir / WAITS_FILE, encode_json({"waits": [w.to_json() for w in waits]}))
        self._waiting = wait is not None

    def _mine(self, wait: _Wait) -> bool:
        return wait.key == self.key and wait.process == self._me

    def _forget_wait(self) -> None:
        """Take this process's wait out of the waits file; left to the next writer if that fails
        (its process, gone, makes it void anyway)."""
        with contextlib.suppress(OSError):
            self._lock.acquire()
            try:
                try:
                    holds, _, _ = self._read()
                except ClaimHeldError:
                    holds = []
                self._set_wait(holds, None)
            finally:
                self._lock.release()


def _live(holds: Iterable[Hold], state: Path, stale_after: float, clocks: Clocks) -> tuple[list[Hold], list[Hold]]:
    return live_holds(holds, state / "runs", None, stale_after, clocks=clocks)


def _view(state: Path, stale_after: float = STALE_AFTER_S, clocks: Clocks = REAL) -> list[Hold]:
    """The live holds in claims.json, read without the lock: for a view, never for a grant."""
    try:
        holds = parse(read_regular(state / "claims.json") or b"")[0]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return _live(holds, state, stale_after, clocks)[0]


def _held(hold: Hold) -> Iterable[tuple[Claim, Access]]:
    """``hold``'s claims; one that does not parse (another version's) claims everything."""
    for claim in parse_claims(hold.writes):
        yield claim, Access.WRITE
    for claim in parse_claims(hold.reads):
        yield claim, Access.READ


def _clash(hold: Hold, claim: Claim, access: Access) -> bool:
    """Whether ``claim`` taken with ``access`` overlaps a claim of ``hold`` (two reads never do)."""
    return any(access.conflicts_with(how) and overlaps(claim, theirs) for theirs, how in _held(hold))


def _holds(hold: Hold, claim: Claim, access: Access) -> bool:
    """Whether ``hold`` has ``claim`` already, with an access that allows ``access``."""
    return any((how is Access.WRITE or access is Access.READ) and _within(claim, theirs) for theirs, how in _held(hold))


def _within(claim: Claim, outer: Claim) -> bool:
    """Whether every path ``claim`` covers, ``outer`` covers: decided for a literal ``claim`` (its
    path and what is below it) inside a claim that covers whole subtrees; False otherwise, which
    makes a claim be asked anew, never granted unseen."""
    return claim.is_literal and outer.subtree and outer.covers("/".join(claim.literal_prefix))


def _check_owns(hold: Hold, claims: Sequence[Claim]) -> None:
    if hold.owns is None:
        return
    try:
        owned = [Claim.parse(text) for text in hold.owns]
    except InvalidClaimError as exc:  # written by another version: nothing is known to be owned
        raise ClaimRefusedError(f"what agent {hold.agent} owns cannot be read ({exc})") from None
    for claim in claims:
        if not any(_within(claim, own) for own in owned):
            raise ClaimRefusedError(
                f"{claim.text} is not among what agent {hold.agent} owns ({', '.join(hold.owns) or 'nothing'})"
            )


def holder_text(hold: Hold, run: str) -> str:
    """``task spec (architect)``, and ``of run R`` if ``hold`` is not of ``run``."""
    where = "" if hold.owner.run == run else f" of run {hold.owner.run}"
    return f"task {hold.task} ({hold.agent}){where}"


def _cycle(me: str, holders: list[Hold], waits: list[_Wait], holds: list[Hold]) -> list[Hold]:
    """The holds on a cycle that ``me`` waiting for ``holders`` would close, from the holder of
    what it asked back to the last one before it; empty if none. A task waits for every live
    hold that overlaps what it waits for."""
    waits_of: dict[str, list[_Wait]] = {}
    for wait in waits:
        waits_of.setdefault(wait.key, []).append(wait)

    def next_holders(key: str) -> list[Hold]:
        found: dict[str, Hold] = {}
        for wait in waits_of.get(key, ()):
            for claim in parse_claims(wait.claims):
                for hold in holds:
                    if hold.key != key and _clash(hold, claim, wait.access):
                        found[hold.key] = hold
        return list(found.values())

    seen: set[str] = set()
    path: list[Hold] = []

    def reaches(hold: Hold) -> bool:
        if hold.key == me:
            return True
        if hold.key in seen:
            return False
        seen.add(hold.key)
        path.append(hold)
        if any(reaches(h) for h in next_holders(hold.key)):
            return True
        path.pop()
        return False

    for holder in holders:
        if reaches(holder):
            return path
    return []


def _deadlock_text(claim: Claim, cycle: list[Hold], waits: list[_Wait], run: str) -> str:
    """``waiting for x would deadlock: it is held by task b (coder), which waits for y, which this task holds``."""
    text = f"waiting for {claim.text} would deadlock: it is held by {holder_text(cycle[0], run)}"
    for i, hold in enumerate(cycle):
        text += f", which waits for {', '.join(t for w in waits if w.key == hold.key for t in w.claims)}"
        text += f", held by {holder_text(cycle[i + 1], run)}" if i + 1 < len(cycle) else ", which this task holds"
    return text


# --- paths, and views -------------------------------------------------------------------------


def task_path(
    raw: str, cwd: str | os.PathLike[str], top: str | os.PathLike[str], state: str | os.PathLike[str] | None = None
) -> Claim:
    """The path ``raw`` (relative to ``cwd``, or absolute) as a claim of exactly that file or
    directory in the work tree at ``top``, its symlinks resolved; raises ClaimRefusedError if it
    lies outside, is the top itself, or lies in the state directory ``state`` (which is in the
    work tree outside a git repository)."""
    if not raw or "\0" in raw:
        raise ClaimRefusedError(f"{raw!r} is no path")
    real_top = os.path.realpath(top)
    real = os.path.realpath(os.path.join(cwd, raw))
    # The state directory, where it lies in the work tree (outside git: <repo>/.project-manager).
    # Not where the work tree lies in it: a task's worktree is there by default.
    real_state = None if state is None else os.path.realpath(state)
    if real_state is not None and Path(real_state).is_relative_to(real_top) and Path(real).is_relative_to(real_state):
        raise ClaimRefusedError(f"{raw} lies in project-manager's state directory {state}")
    rel = os.path.relpath(real, real_top)
    if rel == os.curdir:
        raise ClaimRefusedError(f"{raw} is the repository itself: claim the files or folders in it")
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        raise ClaimRefusedError(f"{raw} lies outside the repository {real_top}")
    parts = Path(rel).parts
    if parts[0] == ".git":
        raise ClaimRefusedError(f"{raw} lies in the repository's .git directory")
    if real_state is not None and _in_worktree(real, real_top, os.path.dirname(real_state)):
        raise ClaimRefusedError(f"{raw} lies in another worktree of the repository, not this task's")
    try:
        return literal_claim(parts)
    except InvalidClaimError as exc:
        raise ClaimRefusedError(f"{raw}: {exc.reason}") from None


def _in_worktree(real: str, top: str, common: str) -> bool:
    """Whether the path ``real``, below the work tree ``top``, lies in a worktree of the repository
    whose git directory is ``common`` (a ``worktree_root`` inside the repository): a ``.git`` file
    naming ``<common>/worktrees/...`` at or above its folder, below ``top``."""
    worktrees = Path(common, "worktrees")
    directory = Path(real).parent
    while directory != Path(top) and directory != directory.parent:
        dot_git = directory / ".git"
        if dot_git.is_dir():
            return False  # another repository's (a nested clone)
        if os.path.lexists(dot_git):
            try:
                text = (read_regular(dot_git, head=4096) or b"").decode("utf-8", "replace").strip()
            except OSError:
                return True  # cannot tell: not granted
            git_dir = Path(os.path.realpath(directory / text.removeprefix("gitdir:").strip()))
            return git_dir.is_relative_to(worktrees)
        directory = directory.parent
    return False


def may_write(state: str | os.PathLike[str], run: str, task: str, path: Claim) -> tuple[bool, Hold | None]:
    """Whether task ``task`` of run ``run`` holds a write claim covering ``path`` now, and if not,
    the live hold of another task that overlaps it (None: free). Read without the lock: a view."""
    key = f"{run}/{task}"
    live = _view(Path(state))
    mine = next((h for h in live if h.key == key), None)
    if mine is not None and _holds(mine, path, Access.WRITE):
        return True, None
    return False, next((h for h in live if h.key != key and _clash(h, path, Access.WRITE)), None)


def holders(state: str | os.PathLike[str], path: Claim) -> list[Hold]:
    """The live holds with a claim, to write or to read, that overlaps ``path``. Read without the lock: a view."""
    return [h for h in _view(Path(state)) if any(overlaps(path, theirs) for theirs, _ in _held(h))]


def claimed_by(state: str | os.PathLike[str], run: str, task: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The write and read claims task ``task`` of run ``run`` added as it ran, over its attempts."""
    return claimed_in(state, run).get(task, ((), ()))


def claimed_in(state: str | os.PathLike[str], run: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Task -> the write and read claims it added as it ran, of each task of run ``run`` that did
    (``runs/<run>.claimed``); none if the file cannot be read."""
    try:
        raw = read_regular(Path(state) / "runs" / f"{run}.claimed") or b""
    except OSError:
        return {}
    found: dict[str, tuple[dict[str, None], dict[str, None]]] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # cut short by a kill: skipped, so a check after the task holds it to less, never more
        if isinstance(record, dict) and isinstance(record.get("task"), str):
            writes, reads = found.setdefault(record["task"], ({}, {}))
            writes.update(dict.fromkeys(str(t) for t in record.get("writes", ())))
            reads.update(dict.fromkeys(str(t) for t in record.get("reads", ())))
    return {task: (tuple(writes), tuple(reads)) for task, (writes, reads) in found.items()}
