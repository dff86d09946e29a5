"""What a queue says of itself, typed: its status, its run's record on disk, its tasks' outcomes.

A run's status crosses a process boundary: the run writes it to ``runs/<run>.json`` (see
:meth:`queue_core.registry.Registry.write_run_record`) and ``status`` reads it in another
process, maybe of another version (:func:`queue_core.status.repo_status`). So every record is
a frozen dataclass with ``to_json`` and ``from_json``, and a record says which ``SCHEMA`` it
follows under ``"version"``:

* a reader takes a record of its own schema or an older one (a record without a version is
  version 1, as written before the version was this module's), and ignores keys it does not
  know, so that a newer writer may add some without a new schema;
* a change that an older reader would misread (a key renamed, removed, or meaning something
  else) is a new ``SCHEMA``; :func:`schema_of` lets a reader skip such a record, saying so.

Times: a live queue's status counts in its own clock (``elapsed_s``, ``resumes_in_s``); a
record, read later by another process, in wall-clock time (``started_at``, ``resumes_at``): see
:meth:`QueueStatus.recorded`.

The JSON is what the dicts of earlier versions were, key for key, so a record written before
these types is read, and an older ``status`` reads this version's records. For the same reason
a status still reads as that dict: ``status["running_agents"]`` (see :class:`ByKey`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._jsonread import (
    bool_at,
    counts_of,
    float_at,
    int_at,
    json_object,
    list_at,
    optional_float_at,
    optional_int_at,
    optional_str_at,
    str_at,
    strs_at,
)
from .holds import Owner
from .reports import AgentReport
from .task import TaskState

__all__ = [
    "FAILED_STATES",
    "SCHEMA",
    "ByKey",
    "MergeOutcome",
    "QueueStatus",
    "RunHistory",
    "RunRecord",
    "RunningTask",
    "TaskOutcome",
    "WaitingTask",
    "schema_of",
]

#: The schema of run records, history records and status JSON that this version writes and reads.
SCHEMA = 1
#: The keys of a status that the design note (seed US-043) reads from ``get_status()``: its contract.
CONTRACT_KEYS = frozenset({"running_agents", "running_files", "queued_tasks"})


def schema_of(data: object) -> int:
    """The schema a record (decoded JSON) follows: its ``version``, 1 if it has none.

    Raises ValueError if ``data`` is not a JSON object or its version is not a positive integer.
    """
    record = json_object(data, "a record")
    version = record.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version {version!r}: expected a positive integer")
    return version


class ByKey:
    """A status read as the dict it was in earlier versions: ``status["running_agents"]``.

    The design note's keys (``running_agents``, ``running_files``, ``queued_tasks``) are its
    contract and stay. Every other key of ``to_json()`` works too but is deprecated (a
    DeprecationWarning): read the typed attribute of the same name, which mypy checks.
    """

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        if key in CONTRACT_KEYS:
            return getattr(self, key)
        data = self.to_json()
        if key not in data:
            raise KeyError(key)
        warnings.warn(
            f"status[{key!r}] is deprecated: read the attribute status.{key}",
            DeprecationWarning,
            stacklevel=2,
        )
        return data[key]


@dataclass(frozen=True)
class RunningTask:
    """A running task, as a status shows it.

    ``elapsed_s`` is counted in the queue's clock when the status was taken; a record adds
    ``started_at``, in wall-clock time, from which a reader counts the time it has run since
    (a record is rewritten on a change, not as time passes). ``estimate_s``: the task's
    (AgentTask.estimate_s), None if it has none. ``run`` is set by views over several runs
    (``status --watch``), never by a queue.
    """

    id: str
    agent: str
    description: str = ""
    files: tuple[str, ...] = ()  # the paths it writes
    reads: tuple[str, ...] = ()
    attempt: int = 1
    elapsed_s: float = 0.0
    timed_out: bool = False
    pid: int | None = None  # its agent command's, once started (SubprocessAgent.pid)
    started_at: float | None = None
    run: str | None = None
    estimate_s: float | None = None
    #: The address of the Dask worker it runs on (a cluster task, queue_core.cluster), once known.
    worker: str | None = None
    #: Which of ``files`` and ``reads`` it claimed as it ran (``project-manager claim``).
    added: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "agent": self.agent,
            "description": self.description,
            "files": list(self.files),
            "reads": list(self.reads),
            "attempt": self.attempt,
            "elapsed_s": self.elapsed_s,
            "timed_out": self.timed_out,
            "pid": self.pid,
        }
        if self.started_at is not None:
            data["started_at"] = self.started_at
        if self.run is not None:
            data["run"] = self.run
        if self.estimate_s is not None:  # only then: a record without estimates is as it was
            data["estimate_s"] = self.estimate_s
        if self.worker is not None:
            data["worker"] = self.worker
        if self.added:
            data["added"] = list(self.added)
        return data

    @classmethod
    def from_json(cls, data: object) -> RunningTask:
        """Raises ValueError if ``data`` is not a running task's JSON."""
        task = json_object(data, "a running task")
        return cls(
            str_at(task, "id"),
            str_at(task, "agent"),
            str_at(task, "description", ""),
            strs_at(task, "files"),
            strs_at(task, "reads"),
            int_at(task, "attempt", 1),
            float_at(task, "elapsed_s", 0.0),
            bool_at(task, "timed_out", False),
            optional_int_at(task, "pid"),
            optional_float_at(task, "started_at"),
            optional_str_at(task, "run"),
            optional_float_at(task, "estimate_s"),
            optional_str_at(task, "worker"),
            strs_at(task, "added"),
        )


@dataclass(frozen=True)
class WaitingTask:
    """A task that waits, and why: ``reason`` is the sentence a person reads, ``reason_kind``
    the kind of :class:`~queue_core.waits.WaitReason`, ``blocked_by`` the task holding what it
    needs, ``reserved`` whether what it needs is kept for it (it waited longest).

    A wait that ends at a set time (a retry, a rate limit) ends in ``resumes_in_s`` seconds of
    the queue's clock; in a record, at ``resumes_at``, wall-clock time.
    """

    id: str
    agent: str
    description: str = ""
    state: str = TaskState.QUEUED.value
    reason: str = ""
    reason_kind: str = ""
    blocked_by: str | None = None
    reserved: bool = False
    resumes_in_s: float | None = None
    resumes_at: float | None = None
    run: str | None = None  # as for RunningTask

    def to_json(self, *, recorded: bool = False) -> dict[str, Any]:
        """As a live status has it, or as a record does (``recorded``): with ``resumes_at``."""
        data: dict[str, Any] = {
            "id": self.id,
            "agent": self.agent,
            "description": self.description,
            "state": self.state,
            "reason": self.reason,
            "reason_kind": self.reason_kind,
        }
        if not recorded:
            data["resumes_in_s"] = self.resumes_in_s
        data["blocked_by"] = self.blocked_by
        data["reserved"] = self.reserved
        if recorded:
            data["resumes_at"] = self.resumes_at
        if self.run is not None:
            data["run"] = self.run
        return data

    @classmethod
    def from_json(cls, data: object) -> WaitingTask:
        """Raises ValueError if ``data`` is not a waiting task's JSON."""
        task = json_object(data, "a waiting task")
        return cls(
            str_at(task, "id"),
            str_at(task, "agent"),
            str_at(task, "description", ""),
            str_at(task, "state", TaskState.QUEUED.value),
            str_at(task, "reason", ""),
            str_at(task, "reason_kind", ""),
            optional_str_at(task, "blocked_by"),
            bool_at(task, "reserved", False),
            optional_float_at(task, "resumes_in_s"),
            optional_float_at(task, "resumes_at"),
            optional_str_at(task, "run"),
        )


@dataclass(frozen=True)
class QueueStatus(ByKey):
    """A snapshot of one queue (``TaskQueue.get_status()``), and what its run's record holds.

    ``running_agents``, ``running_files`` and ``queued_tasks`` are the design note's; then
    the details: ``running``; ``waiting``, best-ranked first (a record lists at most
    ``queue.RECORD_WAITING_MAX`` of them, while ``queued_tasks`` counts them all); ``counts``
    of finished tasks by outcome (a TaskState's value); ``registry_error``, the last failure of
    the repository's registry until a step works again; ``registry_wait``, who holds the
    registry lock a step has waited more than a second for. ``eta_s``: seconds the queue's
    tasks are likely to take yet, from their estimates (see queue_core.estimates.run_eta);
    None if a task not finished has none. A record has ``ends_at`` instead, wall-clock time.
    """

    queued_tasks: int  # waiting tasks: not yet started, or waiting to run again
    max_parallel: int
    running: tuple[RunningTask, ...] = ()
    waiting: tuple[WaitingTask, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    registry_error: str | None = None
    registry_wait: str | None = None
    eta_s: float | None = None
    ends_at: float | None = None

    @property
    def running_agents(self) -> list[str]:
        """The agent type of each running task."""
        return [task.agent for task in self.running]

    @property
    def running_files(self) -> list[str]:
        """The paths the running tasks write, sorted."""
        return sorted({path for task in self.running for path in task.files})

    @property
    def finished_tasks(self) -> int:
        return sum(self.counts.values())

    @property
    def failed_tasks(self) -> int:
        """Finished tasks that failed, timed out or stayed rate-limited."""
        return sum(self.counts.get(state.value, 0) for state in FAILED_STATES)

    def recorded(self, wall: float) -> QueueStatus:
        """This status in wall-clock time, as a record has it, if it was taken at ``wall``."""
        return replace(
            self,
            running=tuple(replace(task, started_at=wall - task.elapsed_s) for task in self.running),
            waiting=tuple(replace(t, resumes_in_s=None, resumes_at=_after(wall, t.resumes_in_s)) for t in self.waiting),
            eta_s=None,
            ends_at=_after(wall, self.eta_s),
        )

    def to_json(self, *, recorded: bool = False) -> dict[str, Any]:
        """The status as JSON; ``recorded``: as a run's record holds it (see WaitingTask.to_json).
        ``eta_s`` and ``ends_at`` only when known: a status without estimates is as it was."""
        data = {
            "running_agents": self.running_agents,
            "running_files": self.running_files,
            "queued_tasks": self.queued_tasks,
            "max_parallel": self.max_parallel,
            "running": [task.to_json() for task in self.running],
            "waiting": [task.to_json(recorded=recorded) for task in self.waiting],
            "counts": dict(self.counts),
            "registry_error": self.registry_error,
            "registry_wait": self.registry_wait,
            "finished_tasks": self.finished_tasks,
            "failed_tasks": self.failed_tasks,
        }
        data.update(
            {key: value for key, value in (("eta_s", self.eta_s), ("ends_at", self.ends_at)) if value is not None}
        )
        return data

    @classmethod
    def from_json(cls, data: object) -> QueueStatus:
        """Raises ValueError if ``data`` is not a status's JSON. Derived keys (``running_agents``,
        ``finished_tasks``...) are computed again, not read."""
        status = json_object(data, "a status")
        return cls(
            int_at(status, "queued_tasks", 0),
            int_at(status, "max_parallel", 0),
            tuple(RunningTask.from_json(task) for task in list_at(status, "running")),
            tuple(WaitingTask.from_json(task) for task in list_at(status, "waiting")),
            counts_of(status.get("counts", {})),
            optional_str_at(status, "registry_error"),
            optional_str_at(status, "registry_wait"),
            optional_float_at(status, "eta_s"),
            optional_float_at(status, "ends_at"),
        )


#: The outcomes a status counts as failed.
FAILED_STATES = (TaskState.FAILED, TaskState.TIMED_OUT, TaskState.RATE_LIMITED)


def _after(wall: float, seconds: float | None) -> float | None:
    return None if seconds is None else wall + seconds


@dataclass(frozen=True)
class RunRecord:
    """A live run's record, ``runs/<run>.json``, which ``status`` reads from any process.

    A run that has only taken its id has no ``status`` yet (nor ``repo``, ``started_at``).
    ``updated`` is when it was written (wall clock); the file's modification time is the run's
    heartbeat.
    """

    run: str
    owner: Owner
    updated: float
    repo: str | None = None
    started_at: float | None = None
    status: QueueStatus | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"run": self.run}
        if self.repo is not None:
            data["repo"] = self.repo
        if self.started_at is not None:
            data["started_at"] = self.started_at
        if self.status is not None:
            data["status"] = self.status.to_json(recorded=True)
        data.update(owner=self.owner.to_json(), updated=self.updated, version=SCHEMA)
        return data

    @classmethod
    def from_json(cls, data: object) -> RunRecord:
        """A record of this schema or an older one; raises ValueError if ``data`` is damaged or
        of a newer schema (see :func:`schema_of`)."""
        record = json_object(data, "a run record")
        if (version := schema_of(record)) > SCHEMA:
            raise ValueError(f"a record of version {version}; this version reads up to {SCHEMA}")
        try:
            owner = Owner.from_json(json_object(record.get("owner"), "an owner"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a damaged owner: {exc!r}") from exc
        status = record.get("status")
        return cls(
            str_at(record, "run"),
            owner,
            float_at(record, "updated", 0.0),
            optional_str_at(record, "repo"),
            optional_float_at(record, "started_at"),
            None if status is None else QueueStatus.from_json(status),
        )


@dataclass(frozen=True)
class MergeOutcome:
    """What came of a worktree task's branch (its last attempt's), as the run's history keeps it.

    ``result`` is "merged", "conflict", "blocked", "none" (``merge: none``) or "rejected" (it
    changed paths outside its claims); None if the attempt did not get that far (the agent
    failed): its branch and worktree are kept. ``files`` counts the paths the branch changed,
    ``insertions`` and ``deletions`` their lines; ``reason`` says why it was or was not merged.
    """

    branch: str
    result: str | None = None
    files: int = 0
    insertions: int = 0
    deletions: int = 0
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "result": self.result,
            "files": self.files,
            "insertions": self.insertions,
            "deletions": self.deletions,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: object) -> MergeOutcome:
        """Raises ValueError if ``data`` is not a merge outcome's JSON."""
        merge = json_object(data, "a merge outcome")
        return cls(
            str_at(merge, "branch"),
            optional_str_at(merge, "result"),
            int_at(merge, "files", 0),
            int_at(merge, "insertions", 0),
            int_at(merge, "deletions", 0),
            optional_str_at(merge, "reason"),
        )


@dataclass(frozen=True)
class TaskOutcome:
    """How a finished task ended (``TaskQueue.outcomes()``): what a summary of a run needs.

    ``attempts`` counts its starts; ``duration_s`` is its last attempt's and ``total_s`` that of
    all its attempts, the waits between them left out (both None if it never ran); ``reason``
    is its last error, or why it was skipped or cancelled (a task that succeeded on a retry
    keeps its earlier error). For an agent command (a SubprocessAgent):
    ``exit_code`` (negative: the signal that ended it; None if it never ended), its ``log``
    once it ran, ``report``, what the agent reported (an error, cost and tokens of every
    attempt; empty if it reported nothing), and ``isolation``, where its attempts ran: "shared"
    (the checkout) or "worktree" (a worktree each); all None for a Python callable. ``merge``:
    what came of a worktree task's branch, once it had one.
    """

    id: str
    agent: str
    description: str
    status: TaskState
    attempts: int = 0
    duration_s: float | None = None
    reason: str | None = None
    exit_code: int | None = None
    log: str | None = None
    report: AgentReport | None = None
    total_s: float | None = None
    isolation: str | None = None
    merge: MergeOutcome | None = None

    def history_json(self) -> dict[str, Any]:
        """Its entry in the run's history record (``history/<run>.json``): the keys it always had;
        then, only where they say something, ``total_s`` (a task of several attempts: else it is
        ``duration_s``) and ``merge`` (a worktree task that had a branch)."""
        data: dict[str, Any] = {
            "id": self.id,
            "agent": self.agent,
            "status": self.status.value,
            "attempts": self.attempts,
            "duration_s": self.duration_s,
            "reason": self.reason,
        }
        if self.report is not None:
            data.update(error=self.report.error, cost_usd=self.report.cost_usd, tokens=self.report.tokens)
        if self.isolation is not None:  # `diff` tells a task in the shared checkout by it: it has no branch
            data["isolation"] = self.isolation
        if self.attempts > 1:
            data["total_s"] = self.total_s
        if self.merge is not None:
            data["merge"] = self.merge.to_json()
        return data

    @classmethod
    def from_history_json(cls, data: object) -> TaskOutcome:
        """A task's entry in a history record, as :meth:`history_json` writes it (a record has no
        description, exit code or log: they stay empty). Raises ValueError if it is damaged."""
        entry = json_object(data, "a task of a history record")
        try:
            status = TaskState(str_at(entry, "status"))
        except ValueError as exc:
            raise ValueError(f"'status': {entry.get('status')!r} is no task's outcome") from exc
        attempts = int_at(entry, "attempts", 0)
        duration_s = optional_float_at(entry, "duration_s")
        merge = entry.get("merge")
        return cls(
            str_at(entry, "id"),
            str_at(entry, "agent"),
            "",
            status,
            attempts,
            duration_s,
            optional_str_at(entry, "reason"),
            report=_history_report(entry),
            total_s=optional_float_at(entry, "total_s") if attempts > 1 else duration_s,
            isolation=optional_str_at(entry, "isolation"),
            merge=None if merge is None else MergeOutcome.from_json(merge),
        )


def _history_report(entry: Mapping[str, Any]) -> AgentReport | None:
    """What the agent reported, as a history entry keeps it; None for a Python callable's."""
    if not {"error", "cost_usd", "tokens"} & entry.keys():
        return None
    tokens = entry.get("tokens")
    counts = None if tokens is None else counts_of(tokens)
    return AgentReport(
        optional_str_at(entry, "error"),
        optional_float_at(entry, "cost_usd"),
        None if counts is None else counts.get("input"),
        None if counts is None else counts.get("output"),
    )


@dataclass(frozen=True)
class RunHistory:
    """What a finished run leaves: ``history/<run>.json``, which the state directory keeps for the
    newest runs (:mod:`queue_core.retention` reads ``started_at`` and ``ended_at`` at its head)."""

    run: str
    started_at: float
    ended_at: float
    tasks: Sequence[TaskOutcome] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "tasks": [task.history_json() for task in self.tasks],
            "version": SCHEMA,
        }

    @classmethod
    def from_json(cls, data: object) -> RunHistory:
        """A history record of this schema or an older one; raises ValueError if ``data`` is
        damaged or of a newer schema (see :func:`schema_of`)."""
        record = json_object(data, "a history record")
        if (version := schema_of(record)) > SCHEMA:
            raise ValueError(f"a record of version {version}; this version reads up to {SCHEMA}")
        return cls(
            str_at(record, "run"),
            float_at(record, "started_at"),
            float_at(record, "ended_at"),
            tuple(TaskOutcome.from_history_json(task) for task in list_at(record, "tasks")),
        )
