"""What changed in a git repository while tasks ran, and what of it no claim covers.

Claims steer the scheduler and the agents' prompts; they do not sandbox an agent. This module
finds, after the fact, the paths a task changed outside the claims:

* :func:`take_snapshot` runs one ``git status`` (an argv, never a shell) and notes, for every
  path git lists as changed (tracked, or untracked and not ignored), its status and a cheap
  signature from ``lstat`` (size, times, inode; or missing), so that a file already changed
  before a task and changed again while it runs still shows;
* :func:`changed_paths` compares two snapshots (pure), and :func:`changes_between` adds what
  commits made meanwhile, when HEAD moved (one more git call, only then);
* :func:`uncovered` keeps the paths no claim covers (pure);
* :class:`StrayWrites` follows a run's tasks as they start and end, from any thread, and
  reports per task the paths changed while it ran that no task running beside it claims.

The working tree is shared, so a change cannot be pinned on one task when others ran beside
it: such a report names them. Anything else that changes the working tree meanwhile (you, a
build, a run whose task started and ended inside the window) shows up too. A file rewritten
with the same size within the file system's clock tick of a snapshot, having been changed
before it, is not seen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .claims import Claim
from .claimsfile import holds_in
from .clocks import REAL, Clocks
from .errors import GitError
from .statedir import read_regular, state_dir
from .taskclaims import claimed_in

if TYPE_CHECKING:  # its events' type only: queue imports what imports this module
    from .results import TaskEvent

__all__ = [
    "GitCalls",
    "SharedSnapshots",
    "Snapshot",
    "Stray",
    "StrayWrites",
    "changed_paths",
    "changes_between",
    "parse_status",
    "take_snapshot",
    "uncovered",
]

log = logging.getLogger("queue_core")

#: The longest one git call may take: a hung git (a network file system) must not hold a task for good.
GIT_TIMEOUT_S = 60.0
#: Porcelain v2 with the branch header, for HEAD's commit; --no-optional-locks: never write the
#: index (an agent's own ``git add`` must not meet our index.lock).
STATUS_ARGV = (
    "git",
    "--no-optional-locks",
    "status",
    "--porcelain=v2",
    "-z",
    "--branch",
    "--untracked-files=all",
    "--no-renames",
)


@dataclass(frozen=True)
class Snapshot:
    """The changed paths of a working tree at one moment, and HEAD's commit (None before the first)."""

    head: str | None
    #: Repo-relative path -> its status fields and lstat signature then.
    entries: Mapping[str, tuple[str, tuple[int, ...] | None]]


def parse_status(data: bytes, prefix: str = "") -> tuple[str | None, dict[str, str]]:
    """HEAD's commit and {path: status fields} from ``git status --porcelain=v2 -z --branch``.

    Paths are relative to the repository's top level in git's output; only those below
    ``prefix`` (``sub/dir/``, as ``git rev-parse --show-prefix`` says) are kept, relative to
    it. Names are decoded as the file system does (``os.fsdecode``): a name that is not UTF-8
    keeps its bytes. Ignored entries (``!``) are dropped. Raises GitError on an entry it
    cannot read.
    """
    head: str | None = None
    entries: dict[str, str] = {}
    fields = iter(data.split(b"\0"))
    for entry in fields:
        if entry.startswith(b"# branch.oid "):
            oid = entry.removeprefix(b"# branch.oid ").decode("ascii", "replace")
            head = None if oid == "(initial)" else oid
            continue
        if not entry or entry.startswith((b"# ", b"! ")):  # other headers; ignored files
            continue
        # Ordinary, renamed, unmerged, untracked: how many fields come before the path (which
        # may hold spaces, so it is whatever follows them).
        count = _FIELDS.get(entry[:2])
        parts = entry.split(b" ", count) if count is not None else []
        if count is None or len(parts) <= count:
            raise GitError(f"git status: an entry this version cannot read: {entry[:60]!r}")
        if entry.startswith(b"2 "):
            next(fields, None)  # a rename's original path, a field of its own (none with --no-renames)
        path = os.fsdecode(parts[count]).rstrip("/")  # "dir/": an untracked nested repository
        if path.startswith(prefix):
            entries[path[len(prefix) :]] = os.fsdecode(b" ".join(parts[:count]))
    return head, entries


#: Porcelain v2 entries: the fields before the path.
_FIELDS = {b"1 ": 8, b"2 ": 9, b"u ": 10, b"? ": 1}


class GitCalls:
    """Runs git commands, each for GIT_TIMEOUT_S at most; :meth:`interrupt` cuts that short for
    every call, running or to come, so that a hung git cannot keep a stopped run from ending.
    ``clocks`` tell how much of the interrupt's grace is left."""

    def __init__(self, *, clocks: Clocks = REAL) -> None:
        self._clocks = clocks
        self._lock = threading.Lock()  # guards everything below
        self._running: set[subprocess.Popen[bytes]] = set()
        self._deadline: float | None = None  # monotonic time after which no call runs: interrupted

    def __call__(
        self, repo: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None
    ) -> bytes:
        """The output of ``git ARGS`` run in ``repo``; raises GitError if it cannot run or fails.

        ``input`` is written to its stdin (else it reads none: a message through ``-F -``, never
        ``-m``, can start with a dash); ``env`` is added to the environment it inherits.
        """
        return self.run(repo, *args, input=input, env=env)[1]

    def run(
        self,
        repo: Path,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        ok: Collection[int] = (0,),
    ) -> tuple[int, bytes]:
        """``git ARGS``'s exit code and output, for commands whose exit code is an answer
        (``merge-base --is-ancestor``, ``merge-tree``: 1 is "no", "conflicts"); raises GitError
        if it cannot run, or exits with a code not in ``ok``."""
        with self._lock:
            limit = GIT_TIMEOUT_S if self._deadline is None else self._deadline - self._clocks.monotonic()
            if limit <= 0:
                raise GitError("git was not run: the run was interrupted")
            try:
                process = subprocess.Popen(  # noqa: S603 - an argv of our own, no shell
                    args,
                    cwd=repo,
                    stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # a Ctrl-C is the command's to handle, not git's to die of
                    env=None if env is None else {**os.environ, **env},
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise GitError(f"{args[0]} could not run: {exc}") from exc
            self._running.add(process)
        try:
            try:
                out, err = process.communicate(input, timeout=limit)
            except subprocess.TimeoutExpired:
                _kill(process)
                process.wait()
                # Unread: what left its session may hold them.
                for pipe in (process.stdin, process.stdout, process.stderr):
                    if pipe is not None:
                        pipe.close()
                raise GitError(f"{' '.join(args[:3])} did not end within {limit:.0f} s") from None
        finally:
            with self._lock:
                self._running.discard(process)
                interrupted = self._deadline is not None
        if process.returncode not in ok:
            if interrupted and process.returncode < 0:
                raise GitError(f"{' '.join(args[:3])} was stopped: the run was interrupted")
            said = err.decode("utf-8", "replace").strip().splitlines()
            raise GitError(f"{' '.join(args[:3])} failed: {said[-1] if said else f'exit {process.returncode}'}")
        return process.returncode, out

    def interrupt(self, grace: float) -> None:
        """From now on, calls end within ``grace`` seconds: those running then are killed."""
        with self._lock:
            if self._deadline is not None:
                return
            self._deadline = self._clocks.monotonic() + grace
        timer = threading.Timer(grace, self._kill_running)
        timer.daemon = True
        timer.start()

    def _kill_running(self) -> None:
        """Kill the calls running: each caller, reading their output, sees it end and reaps them."""
        with self._lock:
            running = list(self._running)
        for process in running:
            if process.returncode is None:  # not reaped yet: its pid is still its own
                _kill(process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` and what it started in its session (a wrapper's children too)."""
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)  # its own session, so its own process group


#: The calls of the module's functions, unless they are given others.
_git = GitCalls()


def repo_prefix(repo: Path, git: GitCalls = _git) -> str:
    """Where ``repo`` lies in its git repository: "" at the top level, else ``sub/dir/``; raises GitError."""
    return os.fsdecode(git(repo, "git", "rev-parse", "--show-prefix").rstrip(b"\n"))


def take_snapshot(repo: Path, prefix: str = "", git: GitCalls = _git) -> Snapshot:
    """The changed paths of the working tree at ``repo`` now (one ``git status``); raises GitError.

    ``prefix`` is :func:`repo_prefix` of ``repo``: paths outside it are left out.
    """
    head, statuses = parse_status(git(repo, *STATUS_ARGV, "--", "."), prefix)
    base = os.path.join(repo, "")  # joined as strings: a Path per entry costs more than the lstat
    return Snapshot(head, {path: (status, _signature(base + path)) for path, status in statuses.items()})


def _signature(path: str) -> tuple[int, ...] | None:
    """What changes when a file is written, replaced or deleted; None if it is missing."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)


def changed_paths(before: Snapshot, after: Snapshot) -> set[str]:
    """The paths whose state differs between the two snapshots of the working tree (pure).

    A path listed in only one of them changed (made, deleted, or put back as committed); one in
    both changed if its status or signature did. Commits made in between are not seen here
    (see :func:`changes_between`).
    """
    return {
        path
        for path in before.entries.keys() | after.entries.keys()
        if before.entries.get(path) != after.entries.get(path)
    }


def changes_between(repo: Path, before: Snapshot, after: Snapshot, prefix: str = "", git: GitCalls = _git) -> set[str]:
    """:func:`changed_paths`, plus, when HEAD moved (a commit, a checkout), the paths that differ
    between the two commits (one more git call); raises GitError."""
    paths = changed_paths(before, after)
    if before.head == after.head:
        return paths
    if before.head is not None and after.head is not None:
        # Plumbing: no user configuration (diff.relative, renames) changes what it prints.
        raw = git(repo, "git", "diff-tree", "-r", "--name-only", "-z", "--no-renames", before.head, after.head)
    else:  # from or to an unborn branch: everything in the one commit there is
        commit = before.head or after.head
        assert commit is not None
        raw = git(repo, "git", "ls-tree", "-r", "--full-tree", "--name-only", "-z", commit)
    for name in raw.split(b"\0"):
        path = os.fsdecode(name)
        if path and path.startswith(prefix):
            paths.add(path[len(prefix) :])
    return paths


def uncovered(paths: Iterable[str], claims: Iterable[Claim]) -> list[str]:
    """The ``paths`` (repo-relative) that no claim in ``claims`` covers, sorted (pure)."""
    held = list(claims)
    return sorted(path for path in paths if not any(claim.covers(path) for claim in held))


class SharedSnapshots:
    """Snapshots for many threads, one ``take()`` at a time: each request is served by the first
    snapshot that begins after it, so requests that come while one is taken share the next.

    What a snapshot says is only ever needed "at some moment after I asked, before I go on";
    taking one per request would run a ``git status`` per task start and end, several at once,
    where one serves them all. ``take`` raising GitError fails every request it serves.
    """

    def __init__(self, take: Callable[[], Snapshot]):
        self._take = take
        self._changed = threading.Condition()  # guards everything below; notified when a snapshot is done
        self._begun = 0  # snapshots begun
        self._taking = False
        self._last: tuple[int, Snapshot | GitError] | None = None  # the newest done: its number, what it gave
        self.waiting = 0  # requests waiting for a snapshot that another thread takes

    def get(self) -> Snapshot:
        """A snapshot begun after this call; raises GitError if it failed."""
        with self._changed:
            wanted = self._begun + 1  # one that began already may have missed what came before us
            self.waiting += 1
            while (self._last is None or self._last[0] < wanted) and (self._taking or self._begun >= wanted):
                self._changed.wait()  # bounded: take() is (a git call with a timeout)
            self.waiting -= 1
            if self._last is not None and self._last[0] >= wanted:
                return _result(self._last[1])
            self._begun += 1
            self._taking = True
        result: Snapshot | GitError = GitError("the snapshot was not taken")
        try:
            result = self._take()
        except GitError as exc:
            result = exc
        except Exception as exc:  # noqa: BLE001 - a surprise here must not fail the run: the answer is unknown
            result = GitError(f"the snapshot failed: {exc!r}")
        finally:  # whatever happened, the next request may take one
            with self._changed:
                self._taking = False
                self._last = (wanted, result)
                self._changed.notify_all()
        return _result(result)


def _result(result: Snapshot | GitError) -> Snapshot:
    if isinstance(result, GitError):
        raise result
    return result


@dataclass(frozen=True)
class Stray:
    """What a task changed outside the claims: ``paths``, and the other tasks that ran while it
    did (``beside``), any of which may have made those changes (none when there are no paths)."""

    paths: tuple[str, ...] = ()
    beside: tuple[str, ...] = ()


@dataclass
class _Window:
    """One attempt of a task, from its start to its end."""

    before: Snapshot | None = None  # None until taken (or if it could not be)
    beside: set[str] = field(default_factory=set)  # this run's tasks that ran during it
    registry: list[bytes] = field(default_factory=list)  # claims.json at its start and end: other runs' holds


class StrayWrites:
    """The paths each task of a run changed, while it ran, outside the write claims of every
    task running then (itself included); fed with the run's :class:`TaskEvent` s, from any thread.

    ``writes`` maps each task of the run to the write claims it holds; with ``run``, what each
    claimed as it ran counts too (see queue_core.taskclaims). A snapshot is taken as a
    task starts (its "started" event comes before its agent is spawned) and as it ends (its
    "retrying" or terminal event), shared with other tasks' starts and ends that come while one
    is taken (:class:`SharedSnapshots`). With ``run``, this run's id, tasks of other runs that
    hold claims in the repository's registry at either moment count as running beside it too,
    named ``<run>/<task>``. ``ours`` are files the run itself writes while tasks run (its
    ``--events`` copy): where they lie in the working tree, no task changed them.

    If git fails (not a repository, git missing), nothing is reported from then on, and it is
    logged once (logger ``queue_core``, a warning); the run goes on. ``clocks`` are its git
    calls' (see :class:`GitCalls`).
    """

    def __init__(
        self,
        repo: str | os.PathLike[str],
        writes: Mapping[str, Sequence[Claim]],
        run: str | None = None,
        *,
        clocks: Clocks = REAL,
        ours: Iterable[str | os.PathLike[str]] = (),
    ):
        self.repo = Path(repo).resolve()
        self._ours = {Path(os.path.relpath(own, self.repo)).as_posix() for own in map(os.path.realpath, ours)}
        self._writes = {task: tuple(claims) for task, claims in writes.items()}
        self._run = run
        state = self._state_dir = state_dir(self.repo)
        self._registry = None if run is None else state / "claims.json"
        # The state directory, where it lies in the working tree (not in a git repository, whose
        # state is in the git directory): what the run itself writes there is never reported.
        self._state = os.path.relpath(state, self.repo) if state.is_relative_to(self.repo) else None
        self._git = GitCalls(clocks=clocks)
        self._snapshots = SharedSnapshots(self._take)
        self._prefix: str | None = None  # where the repository lies in git's; None until asked (by _take only)
        self._lock = threading.Lock()  # guards everything below
        self.failure: str | None = None  # why nothing is reported any more (git failed)
        self._open: dict[str, _Window] = {}  # task id -> its attempt that runs
        self._found: dict[str, Stray | None] = {}  # what each task's ended attempts found; None: unknown

    def event(self, event: TaskEvent) -> Stray | None:
        """Take ``event`` into account: a start opens the task's window, any other event closes it.

        Returns what the window that closed found outside the claims, if anything (None
        otherwise). Never raises for git's sake.
        """
        if event.kind == "started":
            self.started(event.task_id)
            return None
        found = self.ended(event.task_id)
        return found if found is not None and found.paths else None

    def started(self, task: str) -> None:
        """``task`` starts an attempt: its agent is not running yet. Takes a snapshot."""
        window = _Window()
        with self._lock:
            if self.failure is not None:
                self._found[task] = None  # it runs, and what it changes will not be known
                return
            # Registered before the snapshot, so any task ending meanwhile counts as beside it.
            window.beside.update(self._open)
            for other in self._open.values():
                other.beside.add(task)
            self._open[task] = window
        before = self._snapshot()
        window.registry.append(self._registry_now())
        with self._lock:
            window.before = before

    def ended(self, task: str) -> Stray | None:
        """``task``'s attempt is over (its agent is gone): what it changed outside the claims, this
        attempt; None if unknown (git failed) or it never started."""
        with self._lock:
            window = self._open.get(task)
            before = None if window is None else window.before
            if window is None or before is None or self.failure is not None:
                self._open.pop(task, None)
                if window is not None:  # it ran, but what it changed is unknown
                    self._found[task] = None
                return None
        after = self._snapshot()  # taken before the window closes: whatever starts meanwhile is beside it
        window.registry.append(self._registry_now())
        with self._lock:
            del self._open[task]
            beside = set(window.beside)
        if after is None:
            return self._record(task, None)
        try:
            changed = changes_between(self.repo, before, after, self._prefix or "", self._git)
        except GitError as exc:
            self._fail(str(exc))
            return self._record(task, None)
        added = {} if self._run is None else claimed_in(self._state_dir, self._run)  # claimed as they ran
        claims = [c for name in (task, *beside) for c in self._writes.get(name, ())]
        claims += [Claim.parse(text) for name in (task, *beside) for text in added.get(name, ((), ()))[0]]
        paths = [p for p in uncovered(changed, claims) if not self._is_state(p) and p not in self._ours]
        if paths:  # only now are other runs' holds worth reading
            others = self._other_runs(window.registry)
            paths = uncovered(paths, [c for held in others.values() for c in held])
            beside.update(others)
        return self._record(task, Stray(tuple(paths), tuple(sorted(beside))) if paths else Stray())

    def interrupt(self, grace: float = 2.0) -> None:
        """The run is being stopped: a git call still running ``grace`` seconds from now is killed,
        and none starts after then (what they would have found is unknown), so that a hung git
        (a network file system, a huge tree) cannot keep the run from ending."""
        self._git.interrupt(grace)

    def of(self, task: str) -> Stray | None:
        """Everything ``task`` changed outside the claims, over its attempts; None if unknown."""
        with self._lock:
            if task in self._open:
                return None  # still running (the run was cut short): unknown
            return self._found.get(task, Stray())

    def _record(self, task: str, found: Stray | None) -> Stray | None:
        """Add one attempt's ``found`` to ``task``'s; an attempt that is unknown makes the task unknown."""
        with self._lock:
            previous = self._found.get(task, Stray())
            if found is None or previous is None:
                self._found[task] = None
            else:
                paths = tuple(sorted({*previous.paths, *found.paths}))
                self._found[task] = Stray(paths, tuple(sorted({*previous.beside, *found.beside})))
        return found

    def _snapshot(self) -> Snapshot | None:
        """A snapshot taken after this call; None if git failed (then or before)."""
        try:
            return self._snapshots.get()
        except GitError as exc:
            self._fail(str(exc))
            return None

    def _take(self) -> Snapshot:
        """One snapshot (called by one thread at a time: see SharedSnapshots)."""
        if self._prefix is None:
            self._prefix = repo_prefix(self.repo, self._git)
        return take_snapshot(self.repo, self._prefix, self._git)

    def _fail(self, reason: str) -> None:
        with self._lock:
            first, self.failure = self.failure is None, self.failure or reason
        if first:
            log.warning("changes outside the claims are not reported in this run: %s", reason)

    def _registry_now(self) -> bytes:
        """The registry's claims.json now, unparsed (parsed only if needed); b"" without one."""
        if self._registry is None:
            return b""
        try:
            return read_regular(self._registry) or b""
        except OSError:  # not a regular file, unreadable: other runs are not seen
            return b""

    def _other_runs(self, registry: Iterable[bytes]) -> dict[str, tuple[Claim, ...]]:
        """The write claims of other runs' tasks in these copies of claims.json, by ``<run>/<task>``."""
        others: dict[str, tuple[Claim, ...]] = {}
        for hold in (hold for raw in registry if raw for hold in holds_in(raw)):
            if hold.owner.run != self._run:
                try:
                    others[hold.key] = tuple(Claim.parse(text) for text in hold.writes)
                except ValueError:  # a damaged record: its task counts, with no claims
                    others[hold.key] = ()
        return others

    def _is_state(self, path: str) -> bool:
        return self._state is not None and (path == self._state or path.startswith(self._state + "/"))
