"""A run as its journal tells it: each task's attempts, waits and end, and the critical path.

The journal is ``logs/<run>/events.jsonl`` in the state directory, one JSON object a line,
written as the run goes (see the README's "The run journal"). It is read back for the
timeline picture (:mod:`queue_core.timeline_layout`), so reading forgives what a run that was
killed, or still runs, or a damaged file leaves: a half-written last line, unknown events and
keys, a line of the wrong shape (counted, skipped), attempts that never ended (drawn up to the
last known time). Nothing here reads a clock: every time comes from the journal.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import JournalError
from .runfiles import JournalLines, scan_journal
from .statedir import read_regular

__all__ = [
    "ENDINGS",
    "OUTCOMES",
    "AttemptSpan",
    "CriticalStep",
    "JournalRun",
    "TaskRun",
    "critical_path",
    "journal_lines",
    "run_from_events",
]

#: A task's end states, as its final line names them.
OUTCOMES = ("succeeded", "failed", "timed_out", "rate_limited", "skipped", "cancelled")
#: How an attempt ended: a final state, "retried" (it failed, a retry was due), "paused" (a rate
#: limit: it ran again later) or "unfinished" (no line ended it: the run was killed, or runs).
ENDINGS = ("succeeded", "failed", "timed_out", "rate_limited", "cancelled", "retried", "paused", "unfinished")
#: Times outside this range (unix seconds) are damage, not a run: they would stretch the picture to nothing.
_LATEST = 1e11


def journal_lines(path: Path) -> JournalLines:
    """The objects of the journal at ``path`` (see queue_core.runfiles.scan_journal). Raises
    JournalError if it is missing or cannot be read (a symlink or a FIFO there is refused,
    never followed or waited on)."""
    try:
        data = read_regular(path)
    except OSError as exc:
        raise JournalError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if data is None:
        raise JournalError(path, "no such file")
    return scan_journal(data)


@dataclass(frozen=True)
class AttemptSpan:
    """One attempt of a task, from its start to its end (wall-clock seconds); ``seconds`` is its
    duration as reported, else measured on the journal's times."""

    task: str
    agent: str
    number: int
    start: float
    end: float
    ending: str  # one of ENDINGS
    seconds: float
    exit_code: int | None = None
    error: str | None = None


@dataclass
class TaskRun:
    """A task as the journal tells it. ``outcome`` is its final line's state; None while it had none."""

    id: str
    agent: str
    description: str = ""
    depends_on: tuple[str, ...] = ()
    attempts: list[AttemptSpan] = field(default_factory=list)
    outcome: str | None = None
    ended_at: float | None = None
    error: str | None = None
    cost_usd: float | None = None
    reasons: list[tuple[float, str]] = field(default_factory=list)  # (time, why it waited), as sampled
    resumes: dict[int, str] = field(default_factory=dict)  # attempt number -> why the next one waited
    _open: tuple[int, float] | None = None  # the attempt running: (number, start)

    @property
    def first_start(self) -> float | None:
        return self.attempts[0].start if self.attempts else None


@dataclass(frozen=True)
class JournalRun:
    """A run as its journal tells it, tasks in the batch's order (then as first met)."""

    run: str
    started_at: float
    last_time: float  # the latest time of any line
    ended_at: float | None  # its run_ended line's; None: the run was killed, or still runs
    exit_code: int | None
    tasks: tuple[TaskRun, ...]
    unreadable: int = 0
    cut: bool = False

    @property
    def wall_s(self) -> float:
        """From the run's start to its end, or to the last line of one that did not end."""
        return max(0.0, (self.ended_at if self.ended_at is not None else self.last_time) - self.started_at)

    @property
    def task_s(self) -> float:
        """The task time: every attempt's duration, added up."""
        return sum(attempt.seconds for task in self.tasks for attempt in task.attempts)

    def task(self, task_id: str) -> TaskRun | None:
        return self._by_id.get(task_id)

    @cached_property
    def _by_id(self) -> dict[str, TaskRun]:
        return {task.id: task for task in self.tasks}

    def queued_at(self, task: TaskRun) -> float | None:
        """When ``task`` could first start: the run's start, or when the last of its dependencies
        ended; None if one never did (the run was killed first)."""
        ends = [self.started_at]
        by_id = self._by_id
        for dep in task.depends_on:
            known = by_id.get(dep)
            if known is None:
                continue  # not in the journal: nothing to wait for here
            end = _task_end(known)
            if end is None:
                return None
            ends.append(end)
        return max(ends)


def _task_end(task: TaskRun) -> float | None:
    """When a finished task ended: its last attempt's end, else its final line's time."""
    if task.outcome is None:
        return None
    return task.attempts[-1].end if task.attempts else task.ended_at


def run_from_events(events: Iterable[Mapping[str, Any]], *, unreadable: int = 0, cut: bool = False) -> JournalRun:
    """The run that ``events`` (a journal's objects, in order) tell of. Lines without an "event"
    name and a time are counted in ``unreadable`` and skipped; unknown events are passed over.
    Raises JournalError if no line is left to draw from.
    """
    builder = _Builder()
    for event in events:
        if not builder.feed(event):
            unreadable += 1
    return builder.finish(unreadable, cut)


class _Builder:
    """Folds journal lines into tasks, one at a time."""

    def __init__(self) -> None:
        self.run = ""
        self.started_at: float | None = None
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.ended_at: float | None = None
        self.exit_code: int | None = None
        self.tasks: dict[str, TaskRun] = {}

    def feed(self, event: Mapping[str, Any]) -> bool:
        """Take one line; False if it is unreadable."""
        kind, time = event.get("event"), _time(event.get("time"))
        if not isinstance(kind, str) or time is None:
            return False
        self.first_time = time if self.first_time is None else min(self.first_time, time)
        self.last_time = time if self.last_time is None else max(self.last_time, time)
        if not self.run and isinstance(event.get("run"), str):
            self.run = event["run"]
        if kind == "run_started":
            self._run_started(event, time)
        elif kind == "run_ended":
            self.ended_at, self.exit_code = time, _int(event.get("exit_code"))
        elif isinstance(event.get("task"), str):
            self._task_line(kind, event, time)
        return True

    def _run_started(self, event: Mapping[str, Any], time: float) -> None:
        self.started_at = time
        batch = event.get("batch")
        listed = batch.get("tasks") if isinstance(batch, dict) else None
        for item in listed if isinstance(listed, list) else ():
            if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"] not in self.tasks:
                task = self._task(item["id"], item.get("agent"))
                task.description = _str(item.get("description")) or ""
                deps = item.get("depends_on")
                task.depends_on = tuple(d for d in deps if isinstance(d, str)) if isinstance(deps, list) else ()

    def _task(self, task_id: str, agent: object) -> TaskRun:
        task = self.tasks.get(task_id)
        if task is None:
            task = self.tasks[task_id] = TaskRun(task_id, agent if isinstance(agent, str) else "?")
        return task

    def _task_line(self, kind: str, event: Mapping[str, Any], time: float) -> None:
        task = self._task(event["task"], event.get("agent"))
        if kind == "waiting":
            reason = _str(event.get("reason"))
            if reason is not None:
                task.reasons.append((time, reason))
        elif kind == "started":
            if task._open is not None:  # its end line was lost: it ran until this one started
                self._end_attempt(task, event, time, "unfinished")
            task._open = (_attempt(event, len(task.attempts) + 1), time)
            task.description = _str(event.get("description")) or task.description
        elif kind == "retrying":
            if self._end_attempt(task, event, time, "retried"):
                task.resumes[task.attempts[-1].number] = f"retry after: {_str(event.get('error')) or 'it failed'}"
        elif kind in OUTCOMES and _is_final(kind, event):
            self._final(task, kind, event, time)
        elif kind == "rate_limited" and self._end_attempt(task, event, time, "paused"):
            task.resumes[task.attempts[-1].number] = _resumes_text(event)

    def _final(self, task: TaskRun, kind: str, event: Mapping[str, Any], time: float) -> None:
        if task._open is not None or _attempt(event, 0) > len(task.attempts):
            self._end_attempt(task, event, time, "cancelled" if kind == "skipped" else kind)
        task.outcome, task.ended_at = kind, time
        task.error = _str(event.get("error"))
        task.cost_usd = _number(event.get("cost_usd"))

    def _end_attempt(self, task: TaskRun, event: Mapping[str, Any], time: float, ending: str) -> bool:
        """End the running attempt of ``task`` at ``time``; one whose start line was lost starts
        ``duration_s`` before (none is made up without it). Whether an attempt ended."""
        duration = _number(event.get("duration_s"))
        if task._open is not None:
            number, start = task._open
        elif duration is not None:
            number, start = _attempt(event, len(task.attempts) + 1), time - duration
        else:
            return False
        task._open = None
        end = max(time, start)
        seconds = duration if duration is not None and ending != "unfinished" else end - start
        error = _str(event.get("error")) if ending != "unfinished" else None
        exit_code = _int(event.get("exit_code")) if ending != "unfinished" else None
        task.attempts.append(AttemptSpan(task.id, task.agent, number, start, end, ending, seconds, exit_code, error))
        return True

    def finish(self, unreadable: int, cut: bool) -> JournalRun:
        if self.last_time is None or self.first_time is None:
            raise JournalError(self.run or "the journal", "holds no readable event")
        last = self.last_time
        for task in self.tasks.values():
            if task._open is not None:
                number, start = task._open
                task._open = None
                end = max(start, last)
                task.attempts.append(AttemptSpan(task.id, task.agent, number, start, end, "unfinished", end - start))
        started = self.started_at if self.started_at is not None else self.first_time
        return JournalRun(
            self.run,
            started,
            last,
            self.ended_at,
            self.exit_code,
            tuple(self.tasks.values()),
            unreadable,
            cut,
        )


def _is_final(kind: str, event: Mapping[str, Any]) -> bool:
    """Whether a line named for an end state ends its task: ``final`` says so; without it, every
    such line but a rate limit does (one that the task ran again after is not final)."""
    final = event.get("final")
    return final if isinstance(final, bool) else kind != "rate_limited"


def _resumes_text(event: Mapping[str, Any]) -> str:
    error = _str(event.get("error")) or "a rate limit"
    resumes = _time(event.get("resumes_at"))
    return f"rate-limited: {error}" + ("" if resumes is None else f" (resumes at {resumes:.0f})")


def _time(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and 0 <= number <= _LATEST else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _attempt(event: Mapping[str, Any], default: int) -> int:
    number = _int(event.get("attempt"))
    return number if number is not None and number >= 1 else default


@dataclass(frozen=True)
class CriticalStep:
    """A task on the critical path, up to ``until`` (the end of its part in it); ``then`` is how it let
    the next step's task start: "dependency" or "release"; None for the last step."""

    task: str
    until: float
    then: str | None


def tolerance(run: JournalRun) -> float:
    """How far apart two times may be and still count as one moment (a release and the start it
    allowed are stamped by different threads): 2% of the run, between 0.05 s and 1 s."""
    return min(1.0, max(0.05, 0.02 * run.wall_s))


def critical_path(run: JournalRun) -> tuple[CriticalStep, ...]:
    """The chain of tasks that set the run's wall time, first to last.

    It starts at the task that ended last and goes back, one task at a time, to what let it
    start: its dependency that ended last, or, when an attempt of another task ended later, at
    most :func:`tolerance` before it started, that task (its end released what it waited for:
    its agent, its files, a slot; see :func:`_last_release`). It stops at a task that started
    with the run (within 0.05 s of it), or whose start nothing explains (it waited for the
    machine, or a rate limit). Only tasks that ran are on it.
    """
    ran = [task for task in run.tasks if task.attempts]
    if not ran:
        return ()
    slack = tolerance(run)
    after = min(slack, 0.05)
    ends = sorted((attempt.end, index) for index, task in enumerate(ran) for attempt in task.attempts)
    end_times = [end for end, _ in ends]
    index_of = {task.id: index for index, task in enumerate(ran)}
    last = max(ran, key=lambda task: task.attempts[-1].end)
    steps = [CriticalStep(last.id, last.attempts[-1].end, None)]
    seen = {last.id}
    current = last
    while True:
        start = current.attempts[0].start
        if start - run.started_at <= after:  # started with the run
            break
        dependency = _last_dependency(run, current, start + slack, index_of, ran)
        release = _last_release(ends, end_times, ran, current, slack, after, seen | {current.id})
        if (
            dependency is not None
            and dependency[1] not in seen
            and (release is None or dependency[0] >= release[0] - after)
        ):
            until, then, previous = dependency[0], "dependency", ran[index_of[dependency[1]]]
        elif release is not None:
            until, then, previous = release[0], "release", ran[release[1]]
        else:
            break
        steps.append(CriticalStep(previous.id, until, then))
        seen.add(previous.id)
        current = previous
    return tuple(reversed(steps))


def _last_dependency(
    run: JournalRun, task: TaskRun, before: float, index_of: Mapping[str, int], ran: list[TaskRun]
) -> tuple[float, str] | None:
    """The end and id of ``task``'s dependency that ran and ended last, no later than ``before``."""
    found: tuple[float, str] | None = None
    for dep in task.depends_on:
        if dep not in index_of:
            continue
        end = ran[index_of[dep]].attempts[-1].end
        if end <= before and (found is None or end > found[0]):
            found = (end, dep)
    return found


def _last_release(
    ends: list[tuple[float, int]],
    end_times: list[float],
    ran: list[TaskRun],
    task: TaskRun,
    slack: float,
    after: float,
    excluded: set[str],
) -> tuple[float, int] | None:
    """The attempt end of another task, within ``slack`` before ``task`` started (``after`` past it at
    most: clocks of two threads), that let it start, as (end, index in ``ran``): the latest of a
    task its wait reasons name as the holder ("... held by dev (a)") or of its own agent, else the
    latest of any. In a busy run something else often ended just before; the holder is the one."""
    start = task.attempts[0].start
    named = {name for at, reason in task.reasons if at <= start for name in _HOLDER.findall(reason)}
    position = bisect.bisect_right(end_times, start + after) - 1
    latest: tuple[float, int] | None = None
    while position >= 0 and end_times[position] >= start - slack:
        end, index = ends[position]
        other = ran[index]
        if other.id not in excluded:
            if other.id in named or other.agent == task.agent:
                return end, index
            latest = latest or (end, index)
        position -= 1
    return latest


#: A holder named in a wait reason: "docs/x.md overlaps docs/ held by architect (spec)", "dev busy (a)".
_HOLDER = re.compile(r"\(([A-Za-z0-9_.-]+)\)")
