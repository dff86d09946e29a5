"""What runs in a repository, across every live run of every process: what ``status`` shows.

Reads only, without the registry lock: each run's record (``runs/<run>.json``, written by the
run within 50 ms of a change; see :class:`~queue_core.records.RunRecord`) and the holds in
``claims.json``, which say which runs still hold claims though their process died. A record
of a newer schema than this version reads is skipped, and named in ``RepoStatus.skipped``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

from ._jsonread import (
    counts_of,
    int_at,
    json_object,
    list_at,
    optional_float_at,
    optional_int_at,
    optional_str_at,
    str_at,
    strs_at,
)
from .claimsfile import read_holds
from .clocks import REAL, Clocks
from .errors import NotRegularFileError
from .holds import Owner, live_holds, read_groups
from .processes import agent_processes, lock_holder, process_state
from .records import SCHEMA, ByKey, RunningTask, RunRecord, WaitingTask, schema_of
from .statedir import read_regular, state_dir
from .waits import WaitReason

__all__ = ["AgentProcess", "RepoStatus", "RunView", "live_run_records", "repo_status"]


@dataclass(frozen=True)
class AgentProcess:
    """A live process of an orphaned run's agents."""

    pid: int
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "name": self.name}

    @classmethod
    def from_json(cls, data: object) -> AgentProcess:
        process = json_object(data, "a process")
        return cls(int_at(process, "pid"), str_at(process, "name"))


@dataclass(frozen=True)
class RunView:
    """One live run, as ``status`` shows it.

    ``state``: ``running``; ``stopped``: its process is stopped, and holds its claims until
    resumed or ended; ``orphaned``: its process died while its agents still run, stopped by
    its supervisor if that lives (``supervisor_pid`` is None if it died too), listed in
    ``processes``; their claims stay held until they are gone. ``registry_wait``: who holds
    the registry lock it has waited more than a second for. ``running`` and ``waiting`` as its
    record has them (``started_at``, ``resumes_at`` in wall-clock time): ``waiting`` the
    best-ranked of its waiting tasks (at most
    ``queue.RECORD_WAITING_MAX``), each wait that ends at a set time told from now; ``queued``
    counts them all. ``counts``: its finished tasks by outcome. ``ends_at``: when its tasks
    are likely done, from their estimates, in wall-clock time (None: not known).
    ``max_parallel``: how many of its tasks may run at once now (``auto`` moves it; None from
    a record of a version that did not say).
    """

    run: str
    pid: int
    host: str
    state: str = "running"
    supervisor_pid: int | None = None
    processes: tuple[AgentProcess, ...] = ()
    registry_wait: str | None = None
    started_at: float | None = None
    updated_at: float | None = None
    running: tuple[RunningTask, ...] = ()
    waiting: tuple[WaitingTask, ...] = ()
    queued: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    ends_at: float | None = None
    max_parallel: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "pid": self.pid,
            "host": self.host,
            "state": self.state,
            "supervisor_pid": self.supervisor_pid,
            "processes": [process.to_json() for process in self.processes],
            "registry_wait": self.registry_wait,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "running": [task.to_json() for task in self.running],
            "waiting": [task.to_json(recorded=True) for task in self.waiting],
            "queued": self.queued,
            "counts": dict(self.counts),
            "ends_at": self.ends_at,
            "max_parallel": self.max_parallel,
        }

    @classmethod
    def from_json(cls, data: object) -> RunView:
        """Raises ValueError if ``data`` is not a run's JSON (as ``status --json`` writes it)."""
        run = json_object(data, "a run")
        return cls(
            str_at(run, "run"),
            int_at(run, "pid"),
            str_at(run, "host"),
            str_at(run, "state", "running"),
            optional_int_at(run, "supervisor_pid"),
            tuple(AgentProcess.from_json(process) for process in list_at(run, "processes")),
            optional_str_at(run, "registry_wait"),
            optional_float_at(run, "started_at"),
            optional_float_at(run, "updated_at"),
            tuple(RunningTask.from_json(task) for task in list_at(run, "running")),
            tuple(WaitingTask.from_json(task) for task in list_at(run, "waiting")),
            int_at(run, "queued", 0),
            counts_of(run.get("counts", {})),
            optional_float_at(run, "ends_at"),
            optional_int_at(run, "max_parallel"),
        )


@dataclass(frozen=True)
class RepoStatus(ByKey):
    """What runs in a repository (:func:`repo_status`): ``running_agents``, ``running_files`` and
    ``queued_tasks`` as in ``TaskQueue.get_status``, summed over its live ``runs``.

    ``stopped_lock_holder`` is the pid of a stopped process that holds the registry lock,
    which every run waits for; else None. ``skipped`` says what in the state directory was
    not read: not a regular file, or a record of a newer version.
    """

    runs: tuple[RunView, ...] = ()
    stopped_lock_holder: int | None = None
    skipped: tuple[str, ...] = ()

    @property
    def running_agents(self) -> list[str]:
        return [task.agent for run in self.runs for task in run.running]

    @property
    def running_files(self) -> list[str]:
        return sorted({path for run in self.runs for task in run.running for path in task.files})

    @property
    def queued_tasks(self) -> int:
        return sum(run.queued for run in self.runs)

    def to_json(self) -> dict[str, Any]:
        return {
            "running_agents": self.running_agents,
            "running_files": self.running_files,
            "queued_tasks": self.queued_tasks,
            "runs": [run.to_json() for run in self.runs],
            "stopped_lock_holder": self.stopped_lock_holder,
            "skipped": list(self.skipped),
        }

    @classmethod
    def from_json(cls, data: object) -> RepoStatus:
        """Raises ValueError if ``data`` is not what ``status --json`` writes."""
        status = json_object(data, "a status")
        return cls(
            tuple(RunView.from_json(run) for run in list_at(status, "runs")),
            optional_int_at(status, "stopped_lock_holder"),
            strs_at(status, "skipped"),
        )


def live_run_records(
    repo: str | os.PathLike[str], skipped: list[str] | None = None, *, clocks: Clocks = REAL
) -> list[RunRecord]:
    """The records of every run in ``repo`` that still lives or holds claims, oldest first.

    A run holds claims after its process died while its supervisor, or an agent's process
    group, lives; ``clocks`` tell a heartbeat's age. A repository without state, or an
    unreadable record, gives fewer records, never an error; what is not a regular file, and a
    record of a newer schema, is named in ``skipped``, if given, and not read (a FIFO would
    make the reader wait).
    """
    runs_dir = state_dir(repo) / "runs"
    held = {hold.owner.run for hold in live_holds(read_holds(repo), runs_dir, clocks=clocks)[0]}
    records = []
    for path in sorted(runs_dir.glob("*.json")):
        try:
            data = json.loads(read_regular(path) or b"")
            if (version := schema_of(data)) > SCHEMA:
                if skipped is not None:
                    skipped.append(
                        f"{path}: a run record of version {version}, written by a newer project-manager "
                        f"(this one reads up to {SCHEMA}); skipped"
                    )
                continue
            record = RunRecord.from_json(data)
        except NotRegularFileError:
            if skipped is not None:
                skipped.append(f"{path}: not a regular file; skipped")
            continue
        except (OSError, ValueError):
            continue  # being replaced, or damaged: it is only a view
        if record.status is None:
            continue  # a registry that runs no queue (yet): nothing to show
        if record.owner.run in held or record.owner.alive(runs_dir, clocks=clocks):
            records.append(record)
    return records


def repo_status(repo: str | os.PathLike[str], *, clocks: Clocks = REAL) -> RepoStatus:
    """What runs in ``repo`` right now, by ``clocks``, across every live run of every process (see RepoStatus)."""
    directory = state_dir(repo)
    runs_dir = directory / "runs"
    runs = []
    skipped: list[str] = []
    for record in live_run_records(repo, skipped, clocks=clocks):
        assert record.status is not None  # live_run_records gives only records with a status
        owner = record.owner
        state = _state(owner)
        supervisor = None if owner.supervisor is None else owner.supervisor.pid
        if state == "orphaned" and not owner.supervisor_alive():
            supervisor = None  # dead too: nothing stops the agents (and its pid may be another's now)
        groups = [g.pid for gs in read_groups(runs_dir / f"{owner.run}.groups").values() for g in gs]
        processes = agent_processes(supervisor or 0, groups) if state == "orphaned" else []
        runs.append(
            RunView(
                owner.run,
                owner.pid,
                owner.host,
                state,
                supervisor,
                tuple(AgentProcess(int(p["pid"]), str(p["name"])) for p in processes),
                record.status.registry_wait,
                record.started_at,
                record.updated,
                _run_until_now(record.status.running, clocks),
                _now_told(record.status.waiting, clocks),  # the best-ranked ones (see RECORD_WAITING_MAX)
                record.status.queued_tasks,
                dict(record.status.counts),
                record.status.ends_at,
                record.status.max_parallel or None,  # 0: a record that did not say
            )
        )
    holder = lock_holder(directory)
    stopped = holder if holder is not None and process_state(holder) == "stopped" else None
    return RepoStatus(tuple(runs), stopped, tuple(skipped))


def _run_until_now(running: tuple[RunningTask, ...], clocks: Clocks) -> tuple[RunningTask, ...]:
    """``running``, each task's ``elapsed_s`` counted until now from when it started, not until
    its run last wrote the record (a change, not time passing, writes it)."""
    now = clocks.wall()
    return tuple(
        task if task.started_at is None else replace(task, elapsed_s=max(0.0, now - task.started_at))
        for task in running
    )


def _now_told(waiting: tuple[WaitingTask, ...], clocks: Clocks) -> tuple[WaitingTask, ...]:
    """``waiting``, each wait that ends at a set time (a retry, a rate limit) told from now, not
    from when its run wrote it: a run writes its record when something changes, not as time passes.
    Such a wait is the reason's first part; what follows its "; " (other blockers) stays as written."""
    now = clocks.wall()
    return tuple(
        task if task.resumes_at is None else replace(task, reason=_retold(task, task.resumes_at, now))
        for task in waiting
    )


def _retold(task: WaitingTask, resumes_at: float, now: float) -> str:
    first = WaitReason(task.reason_kind, holder_agent=task.agent, until=resumes_at).describe(now)
    _, separator, others = task.reason.partition("; ")
    return first + separator + others


def _state(owner: Owner) -> str:
    if not owner.is_local:
        return "running"  # another host's processes cannot be seen from here
    if owner.process.alive():
        return process_state(owner.pid) or "running"
    return "orphaned"
