"""The one exception tree of queue_core.

Every error the library raises on purpose derives from :class:`QueueError`. Errors that
are also a kind of builtin (bad values, timeouts, use after shutdown) subclass that builtin
too, so ``except ValueError`` keeps working for callers who do not know this module.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "AgentAlreadyRunningError",
    "AgentExitError",
    "AgentReportedError",
    "AmbiguousRunError",
    "CapacityError",
    "ClaimConflictError",
    "ClaimDeadlockError",
    "ClaimHeldError",
    "ClaimRefusedError",
    "ClusterError",
    "ConflictError",
    "DependencyCycleError",
    "DuplicateTaskError",
    "GitError",
    "InvalidArgumentError",
    "InvalidClaimError",
    "InvalidTaskError",
    "InvalidTaskIdError",
    "JournalError",
    "MachineBusyError",
    "MergeBackError",
    "MergeLockError",
    "NotATaskError",
    "NotRegularFileError",
    "PoolFullError",
    "PortsExhaustedError",
    "QueueBrokenError",
    "QueueError",
    "QueueShutdownError",
    "QueueUsageError",
    "RateLimitedError",
    "RemoteAttemptError",
    "RepoLockError",
    "RunAliveError",
    "RunNotFoundError",
    "SetupError",
    "StateError",
    "SupervisorError",
    "TaskSkippedError",
    "TaskTimeoutError",
    "UnknownDependencyError",
    "UnmergedWorkError",
    "WorkerLostError",
    "WorktreeError",
    "WorktreeLockError",
]


class QueueError(Exception):
    """Base class of every error raised by queue_core."""


class InvalidArgumentError(QueueError, ValueError, TypeError):
    """A constructor or method was given a value it cannot take (``max_parallel=0``, a run id
    with a slash, owned paths given as one string); the message says which and why."""


class QueueUsageError(QueueError, RuntimeError):
    """A queue was used in a way that cannot work (``join()`` from one of its own tasks)."""


class InvalidTaskError(QueueError, ValueError):
    """A task is malformed; ``task_id`` and ``field`` say where."""

    def __init__(self, message: str, *, task_id: str | None = None, field: str | None = None):
        self.task_id = task_id
        self.field = field
        where = ", ".join(
            part for part in (f"task {task_id!r}" if task_id else "", f"field {field!r}" if field else "") if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class InvalidTaskIdError(InvalidTaskError):
    """A task id is not a plain name; it names files (the task's log), so it must not be a path."""

    def __init__(self, task_id: str):
        self.reason = f"expected 1 to 100 letters, digits, '.', '_' or '-', not starting with '.', got {task_id!r}"
        super().__init__(self.reason, field="id")
        self.task_id = task_id  # after: the message names it once


class InvalidClaimError(InvalidTaskError):
    """A path claim is absolute, leaves the repository root, or is not a valid pattern."""

    def __init__(self, claim: str, reason: str, *, task_id: str | None = None, field: str | None = None):
        self.claim = claim
        self.reason = reason
        super().__init__(f"invalid path {claim!r}: {reason}", task_id=task_id, field=field)


class DuplicateTaskError(InvalidTaskError):
    """Two tasks share one id."""

    def __init__(self, task_id: str):
        super().__init__("a task with this id was already submitted", task_id=task_id, field="id")


class UnknownDependencyError(InvalidTaskError):
    """A task depends on an id that names no task."""

    def __init__(self, task_id: str, dependency: str):
        self.dependency = dependency
        super().__init__(f"depends on unknown task {dependency!r}", task_id=task_id, field="depends_on")


class DependencyCycleError(InvalidTaskError):
    """Dependencies form a cycle; ``cycle`` lists its ids in order, first id repeated last."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle), task_id=cycle[0], field="depends_on")


class NotATaskError(QueueError, TypeError):
    """A queue method was given something other than AgentTasks; ``method``, ``got`` and ``index`` say what."""

    def __init__(self, method: str, expected: str, value: object, index: int | None = None):
        self.method = method
        self.got = type(value).__name__
        self.index = index
        at = "" if index is None else f" at index {index}"
        super().__init__(f"{method}() expects {expected}, got {self.got}{at}")


class ConflictError(QueueError):
    """A task cannot start right now; raised only by ``TaskQueue.try_submit``."""


class AgentAlreadyRunningError(ConflictError):
    """The task's agent type already runs a task, or is reserved for the longest-waiting one."""

    def __init__(self, agent_type: str, holder: str, *, reserved: bool = False):
        self.agent_type = agent_type
        self.holder = holder
        self.reserved = reserved
        if reserved:
            super().__init__(f"agent {agent_type!r} is reserved for task {holder!r}, which has waited longest")
        else:
            super().__init__(f"agent {agent_type!r} is already running task {holder!r}")


class ClaimConflictError(ConflictError):
    """A path the task claims overlaps a path held (or reserved) by another task."""

    def __init__(self, claim: str, held_claim: str, holder: str, holder_agent: str, *, reserved: bool = False):
        self.claim = claim
        self.held_claim = held_claim
        self.holder = holder
        self.holder_agent = holder_agent
        self.reserved = reserved
        how = "reserved for" if reserved else "held by"
        super().__init__(f"{claim!r} overlaps {held_claim!r}, {how} task {holder!r} ({holder_agent})")


class CapacityError(ConflictError):
    """``max_parallel`` tasks already run."""

    def __init__(self, max_parallel: int):
        self.max_parallel = max_parallel
        super().__init__(f"max_parallel ({max_parallel}) tasks are already running")


class MachineBusyError(ConflictError):
    """The machine is above a limit, or has no room for a task's declared needs; the message says which."""


class PoolFullError(ConflictError):
    """A quota pool the task takes has no room for its units, or is reserved for the longest-waiting task."""

    def __init__(self, pool: str, used: int, capacity: int, units: int = 1, *, reserved_for: str | None = None):
        self.pool = pool
        self.used = used
        self.capacity = capacity
        self.units = units
        self.reserved_for = reserved_for
        if reserved_for is not None:
            super().__init__(f"pool {pool!r} is reserved for task {reserved_for!r}, which has waited longest")
        else:
            need = "" if units == 1 else f"; the task needs {units}"
            super().__init__(f"pool {pool!r} is full ({used} of {capacity} units in use{need})")


class TaskTimeoutError(QueueError, TimeoutError):
    """A task ran past its timeout."""

    def __init__(self, task_id: str, timeout: float):
        self.task_id = task_id
        self.timeout = timeout
        super().__init__(f"task {task_id!r} timed out after {timeout:g}s")


class RateLimitedError(QueueError):
    """Raised by a task's ``execute_fn`` when its attempt hit a rate limit.

    The attempt does not count against the task's ``retries``: its agent type pauses (see
    ``AgentTask.rate_limit_backoff``) and the task runs again. ``retry_after``: seconds until the
    limit lifts, if the agent said. A task still limited after ``rate_limit_max_wait`` ends in
    the state RATE_LIMITED, its future failing with this error.
    """

    def __init__(self, message: str = "rate limited", retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class TaskSkippedError(QueueError):
    """A task never ran because a task it depends on did not succeed."""

    def __init__(self, task_id: str, reason: str):
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"task {task_id!r} skipped: {reason}")


class QueueShutdownError(QueueError, RuntimeError):
    """The queue was shut down and takes no new tasks."""

    def __init__(self) -> None:
        super().__init__("cannot schedule new tasks after shutdown")


class QueueBrokenError(QueueError, RuntimeError):
    """A thread of the queue raised unexpectedly, so the queue stopped; ``thread`` names it."""

    def __init__(self, thread: str):
        self.thread = thread
        super().__init__(f"the queue stopped: its thread {thread} failed unexpectedly")


class StateError(QueueError, OSError):
    """The state directory or a file in it cannot be created, read or written; ``path`` says which."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NotRegularFileError(QueueError, OSError):
    """A path in the state directory that is not a regular file (a FIFO, a directory, a symlink):
    it is never read or followed. Raised as an OSError, ``OSError(errno, strerror, filename)``."""


class JournalError(StateError):
    """A run's journal (``logs/<run>/events.jsonl``) is missing, cannot be read, or holds no readable event."""


class RunAliveError(StateError):
    """A run cannot be released: its process, or one of its agents, provably lives; ``reason`` says which."""


class RunNotFoundError(QueueError, LookupError):
    """No run the state directory knows has this id, or one that starts or ends with it; ``run`` is what was asked."""

    def __init__(self, run: str, reason: str = ""):
        self.run = run
        super().__init__(reason or f"no run {run!r} in the state directory")


class AmbiguousRunError(QueueError, ValueError):
    """A run was named by a part of its id that several runs have; ``candidates`` are theirs, newest first."""

    def __init__(self, run: str, candidates: Sequence[str]):
        self.run = run
        self.candidates = tuple(candidates)
        named = first_few(self.candidates, 10)
        super().__init__(f"{run!r} names {len(self.candidates)} runs: {named}; give more of its id")


class RepoLockError(StateError):
    """One of a repository's locks was not free in time, or the wait was interrupted; ``holder``: its pid, if known."""

    def __init__(self, path: object, reason: str, holder: int | None = None):
        self.holder = holder
        super().__init__(path, reason)


class MergeLockError(RepoLockError):
    """The merge lock (one merge-back at a time): see queue_core.mergelock."""


class WorktreeLockError(RepoLockError):
    """The worktree lock (one ``git worktree add`` or ``remove`` at a time): see queue_core.worktrees."""


class SupervisorError(QueueError, RuntimeError):
    """The supervisor process that runs this process's agents cannot be started, or died."""


class AgentExitError(QueueError):
    """An agent command exited with a non-zero code; its output is in ``log``."""

    def __init__(self, exit_code: int, log: Path):
        self.exit_code = exit_code
        self.log = log
        super().__init__(f"the agent {exit_text(exit_code)}")


class AgentReportedError(QueueError):
    """An agent exited 0 but reported that it failed (a failed turn, a turn limit); see queue_core.reports."""

    def __init__(self, error: str, log: Path):
        self.error = error
        self.log = log
        super().__init__(f"the agent reported an error: {error}")


class GitError(QueueError):
    """A git call failed (git missing, not a repository, a timeout); the message says how."""


class WorktreeError(QueueError):
    """A task's worktree or branch cannot be made, committed or removed as asked; the message says why."""


class UnmergedWorkError(WorktreeError):
    """Removing a worktree or branch would lose work: ``commits`` on no other branch, ``uncommitted`` paths."""

    def __init__(self, what: str, commits: tuple[str, ...] = (), uncommitted: tuple[str, ...] = ()):
        self.commits = commits
        self.uncommitted = uncommitted
        parts = []
        if commits:
            parts.append(f"{len(commits)} commit(s) on no other branch ({first_few(commits)})")
        if uncommitted:
            parts.append(f"{len(uncommitted)} uncommitted path(s) ({first_few(uncommitted)})")
        super().__init__(f"{what}: would lose {' and '.join(parts)}; kept")


def first_few(items: Sequence[str], shown: int = 5) -> str:
    """``a, b and c``; past ``shown`` items, ``a, b, c, d, e and 3 more``: a message stays one line."""
    named = list(items[:shown])
    rest = len(items) - len(named)
    if not named:
        return "nothing"
    if rest:
        return ", ".join(named) + f" and {rest} more"
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


class SetupError(QueueError):
    """A worktree's setup command failed or could not run: ``command``, ``exit_code`` (None if it
    never ran) and the ``log`` holding its output."""

    def __init__(self, command: tuple[str, ...], exit_code: int | None, log: Path, reason: str):
        self.command = command
        self.exit_code = exit_code
        self.log = log
        super().__init__(f"setup command {' '.join(command)!r} {reason}; its output is in {log}")


class MergeBackError(QueueError):
    """A worktree task's branch did not come back: ``status`` "rejected" (it changed ``paths``
    outside its claims), "conflict" (``paths`` in conflict) or "blocked" (the user's ``paths``
    stood in the way, or their checkout moved); its branch and worktree are kept."""

    def __init__(self, status: str, reason: str, paths: tuple[str, ...] = ()):
        self.status = status
        self.paths = paths
        super().__init__(f"not merged ({status}): {reason}")


class ClusterError(QueueError):
    """No cluster to run on: Dask is not installed, or the scheduler cannot be reached."""


class WorkerLostError(QueueError):
    """The worker running an attempt died, or the cluster lost the attempt: it failed, and the
    task's own ``retries`` decide whether it runs again (Dask never re-runs an agent)."""


class RemoteAttemptError(QueueError):
    """An attempt failed on its worker outside the agent (its worktree, its setup); the message
    says why and where."""


class ClaimRefusedError(QueueError):
    """A claim asked from inside a task (queue_core.taskclaims) cannot be had, whoever lets go:
    not inside a running task, outside the repository, or beyond what its agent owns."""


class ClaimHeldError(QueueError):
    """A claim asked from inside a task is held by another running task (``holder``, a
    :class:`~queue_core.holds.Hold`), or the registry is being recovered (``holder`` None);
    the claim was not granted. The message names the holder."""

    def __init__(self, message: str, holder: object = None):
        self.holder = holder
        super().__init__(message)


class ClaimDeadlockError(QueueError):
    """Waiting for a claim asked from inside a task would close a cycle of tasks each waiting for
    the next: refused at once. ``cycle`` is the holds on it, the first holding what was asked."""

    def __init__(self, message: str, cycle: tuple[object, ...]):
        self.cycle = cycle
        super().__init__(message)


class PortsExhaustedError(QueueError, RuntimeError):
    """No block of ports is free for a task: every block in the range is held or has a port in use."""


def exit_text(returncode: int) -> str:
    """How a process ended, as ``Popen.returncode`` says it: ``exited with code 3``, or ``was
    killed by signal 9 (SIGKILL)`` (the number alone for a signal this system does not name).
    Not an error itself: AgentExitError says it, and so does the CLI of a command of its own."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by signal {-returncode} ({signal.Signals(-returncode).name})"
    except ValueError:
        return f"was killed by signal {-returncode}"
