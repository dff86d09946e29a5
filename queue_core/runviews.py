"""A repository's runs as ``history`` and ``show`` tell them: pure views built from what the runs
left (their history records, journals and live records), which :mod:`queue_core.runfiles` reads.

Nothing here reads a file or the clock: each view is a function of the data it is given, so a
tool (a timeline, a resume) can build one from a journal it holds.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .records import MergeOutcome, RunHistory, RunRecord, TaskOutcome
from .task import TaskState, ended_error

__all__ = ["RUN_STATES", "RunList", "RunSummary", "TaskSummary", "from_history", "from_journal", "from_record", "stamp"]

#: What a run's ``state`` may be (see queue_core.runfiles).
RUN_STATES = ("running", "finished", "killed", "unfinished")
#: The order a run's tasks are counted in by outcome; any other after them, by name.
_COUNT_ORDER = (*(state.value for state in TaskState if state.is_terminal), "running", "queued", "unfinished")
# A run id as runid.new_run_id makes it: its start, local time, then the pid and a random part.
_STAMPED = re.compile(r"(\d{8}-\d{6})-")


@dataclass(frozen=True)
class TaskSummary:
    """One task of a run, as ``show`` lists it.

    ``status``: a finished task's outcome (a TaskState's value); else "running", "queued" (a
    live run's, not running now), "unfinished" (it started in a run that died) or
    "not_started" (a run that died before it started). ``error``: why it did not succeed, in
    the agent's own words where it reported one; ``duration_s`` its last attempt's time,
    ``total_s`` all its attempts'. None where the files do not say.
    """

    id: str
    agent: str
    status: str
    description: str = ""
    attempts: int = 0
    duration_s: float | None = None
    total_s: float | None = None
    exit_code: int | None = None
    error: str | None = None
    cost_usd: float | None = None
    tokens: Mapping[str, int] | None = None
    isolation: str | None = None
    merge: MergeOutcome | None = None

    @classmethod
    def of_outcome(cls, outcome: TaskOutcome) -> TaskSummary:
        report = outcome.report
        error = ended_error(outcome.status, outcome.reason, None if report is None else report.error)
        return cls(
            outcome.id,
            outcome.agent,
            outcome.status.value,
            outcome.description,
            outcome.attempts,
            outcome.duration_s,
            outcome.total_s,
            outcome.exit_code,
            error,
            None if report is None else report.cost_usd,
            None if report is None else report.tokens,
            outcome.isolation,
            outcome.merge,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "status": self.status,
            "description": self.description,
            "attempts": self.attempts,
            "duration_s": _rounded(self.duration_s),
            "total_s": _rounded(self.total_s),
            "exit_code": self.exit_code,
            "error": self.error,
            "cost_usd": self.cost_usd,
            "tokens": None if self.tokens is None else dict(self.tokens),
            "isolation": self.isolation,
            "merge": None if self.merge is None else self.merge.to_json(),
        }


@dataclass(frozen=True)
class RunSummary:
    """A run as its files tell it: its ``state`` (see the module), when it started and ended
    (wall clock; None where unknown), ``wall_s`` (a live run's so far, a killed one's to the
    last thing it wrote), its ``exit_code`` (from its journal; None if it has none), its
    ``tasks`` and how many ended how (``counts``, by :attr:`TaskSummary.status`).

    A live run without a journal lists only the tasks its record names (those running, and the
    best-ranked waiting); ``counts`` counts them all.
    """

    run: str
    state: str
    started_at: float | None = None
    ended_at: float | None = None
    wall_s: float | None = None
    exit_code: int | None = None
    tasks: tuple[TaskSummary, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float | None:
        """The sum of the costs its agents reported; None if none did."""
        costs = [task.cost_usd for task in self.tasks if task.cost_usd is not None]
        return round(sum(costs), 6) if costs else None

    @property
    def ordered_counts(self) -> list[tuple[str, int]]:
        """``counts`` in the order a person reads them: succeeded first, then the failures..."""
        rank = {name: i for i, name in enumerate(_COUNT_ORDER)}
        return sorted(((k, n) for k, n in self.counts.items() if n), key=lambda kn: (rank.get(kn[0], 99), kn[0]))

    def to_json(self, *, tasks: bool = True) -> dict[str, Any]:
        """Its JSON (``history --json`` has it without ``tasks`` and ``exit_code``); ``task_count``
        counts its tasks, every one of a live run's, where ``tasks`` may list only some."""
        data: dict[str, Any] = {
            "run": self.run,
            "state": self.state,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "wall_s": None if self.wall_s is None else round(self.wall_s, 3),
            "task_count": sum(self.counts.values()),
            "counts": dict(self.ordered_counts),
            "cost_usd": self.cost_usd,
        }
        if tasks:
            data["exit_code"] = self.exit_code
            data["tasks"] = [task.to_json() for task in self.tasks]
        return data


@dataclass(frozen=True)
class RunList:
    """The runs of a state directory, newest first, and what could not be read (one line each)."""

    runs: tuple[RunSummary, ...] = ()
    warnings: tuple[str, ...] = ()


# --- a run from each kind of file --------------------------------------------------------------


def from_history(history: RunHistory, lines: list[dict[str, Any]]) -> RunSummary:
    """A finished run: its tasks as its history keeps them, with what only its journal has
    (descriptions, exit codes) where it has one."""
    journaled = {task.id: task for task in _journal_tasks(lines, live=False)}
    tasks = []
    for outcome in history.tasks:
        task = TaskSummary.of_outcome(outcome)
        more = journaled.get(task.id)
        if more is not None:
            task = replace(
                task,
                description=task.description or more.description,
                exit_code=more.exit_code if task.exit_code is None else task.exit_code,
                total_s=more.total_s if task.total_s is None else task.total_s,
            )
        tasks.append(task)
    ended = _last(lines, "run_ended")
    return RunSummary(
        history.run,
        "finished",
        history.started_at,
        history.ended_at,
        max(0.0, history.ended_at - history.started_at),
        None if ended is None else _int(ended.get("exit_code")),
        tuple(tasks),
        Counter(task.status for task in tasks),
    )


def from_journal(run: str, state: str, lines: list[dict[str, Any]], now: float) -> RunSummary:
    """A run from its journal alone: a live one, one killed, or one whose history is missing."""
    first, ended = _last(lines, "run_started"), _last(lines, "run_ended")
    started = _float(first.get("time")) if first is not None else None
    started = stamp(run) if started is None else started
    times = [t for line in lines if (t := _float(line.get("time"))) is not None]
    end = None if ended is None else _float(ended.get("time"))
    until = now if state == "running" else end if end is not None else max(times, default=None)
    tasks = _journal_tasks(lines, live=state == "running")
    return RunSummary(
        run,
        state,
        started,
        end,
        None if started is None or until is None else max(0.0, until - started),
        None if ended is None else _int(ended.get("exit_code")),
        tasks,
        Counter(task.status for task in tasks),
    )


def from_record(record: RunRecord, now: float, *, live: bool) -> RunSummary:
    """A run from its record alone: what ran and waited when it last wrote it. ``live``: it
    still runs; else it died (killed) and those tasks never ended."""
    status = record.status
    assert status is not None  # read only for a record with one
    running = [
        TaskSummary(t.id, t.agent, "running" if live else "unfinished", t.description, t.attempt)
        for t in status.running
    ]
    waiting = [TaskSummary(t.id, t.agent, "queued" if live else "not_started", t.description) for t in status.waiting]
    counts = Counter(dict(status.counts))
    counts.update(
        {"running" if live else "unfinished": len(running), "queued" if live else "not_started": status.queued_tasks}
    )
    until = now if live else record.updated
    started = record.started_at
    return RunSummary(
        record.run,
        "running" if live else "killed",
        started,
        None,
        None if started is None else max(0.0, until - started),
        None,
        (*running, *waiting),
        counts,
    )


def _journal_tasks(lines: list[dict[str, Any]], *, live: bool) -> tuple[TaskSummary, ...]:
    """Each task of a journal, in the batch's order, as far as its lines go."""
    tasks: dict[str, dict[str, Any]] = {}
    first = _last(lines, "run_started")
    batch = first.get("batch") if first is not None else None
    listed = batch.get("tasks") if isinstance(batch, dict) else None
    for item in listed if isinstance(listed, list) else ():
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            tasks.setdefault(item["id"], {}).update(agent=item.get("agent"), description=item.get("description"))
    for line in lines:
        if isinstance(line.get("task"), str):
            _fold(tasks.setdefault(line["task"], {}), line)
    return tuple(_task_of(task_id, seen, live) for task_id, seen in tasks.items())


def _fold(seen: dict[str, Any], line: Mapping[str, Any]) -> None:
    """Add a journal ``line`` of a task to what is ``seen`` of it."""
    event = line["event"]
    seen["agent"] = seen.get("agent") or line.get("agent")
    if event == "started":
        seen.update(running=True, attempts=max(_int(line.get("attempt")) or 1, seen.get("attempts", 0)))
        seen["description"] = seen.get("description") or line.get("description")
    elif line.get("final") is True:
        seen.update(running=False, status=event, error=line.get("error"), exit_code=line.get("exit_code"))
        seen.update({key: line.get(key) for key in ("duration_s", "total_s", "cost_usd", "tokens")})
    elif event in ("retrying", "rate_limited"):
        seen.update(running=False, error=line.get("error"), exit_code=line.get("exit_code"))


def _task_of(task_id: str, seen: Mapping[str, Any], live: bool) -> TaskSummary:
    status = _str(seen.get("status"))
    if status is None:
        started = bool(seen.get("attempts"))
        if live:
            status = "running" if seen.get("running") else "queued"
        else:
            status = "unfinished" if started else "not_started"
    tokens = seen.get("tokens")
    good_tokens = isinstance(tokens, dict) and all(_int(n) is not None for n in tokens.values())
    return TaskSummary(
        task_id,
        _str(seen.get("agent")) or "",
        status,
        _str(seen.get("description")) or "",
        _int(seen.get("attempts")) or 0,
        _float(seen.get("duration_s")),
        _float(seen.get("total_s")),
        _int(seen.get("exit_code")),
        None if status == TaskState.SUCCEEDED.value else _str(seen.get("error")),
        _float(seen.get("cost_usd")),
        {str(k): int(n) for k, n in tokens.items()} if good_tokens and isinstance(tokens, dict) else None,
    )


def _rounded(seconds: float | None) -> float | None:
    """To the millisecond, as the run's summary gives them."""
    return None if seconds is None else round(seconds, 3)


def _last(lines: list[dict[str, Any]], event: str) -> dict[str, Any] | None:
    return next((line for line in reversed(lines) if line["event"] == event), None)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None  # a journal's JSON may say NaN or Infinity: no time
    return float(value)


def stamp(run: str) -> float | None:
    """When a run started, as its id says it (runid.new_run_id: local time, to the second); None
    for an id of another form."""
    match = _STAMPED.match(run)
    if match is None:
        return None
    with contextlib.suppress(ValueError, OverflowError):
        return time.mktime(time.strptime(match.group(1), "%Y%m%d-%H%M%S"))
    return None
