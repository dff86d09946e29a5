"""The run journal: what happened in a run, one JSON object a line, as it happened.

A run of the command line writes it to ``logs/<run>/events.jsonl`` in the state directory,
beside its tasks' logs (so it is pruned with them), and ``--events PATH`` writes the same lines
elsewhere. Version 1; every line has ``"event"``, ``"run"`` and ``"time"`` (wall-clock, unix
seconds); a task's lines add ``"task"``, ``"agent"`` and ``"attempt"``:

* ``run_started``, first: ``"version"``, ``"pid"``, ``"batch": {"tasks": [{"id", "agent",
  "description", "files", "reads", "depends_on", "priority"}]}``, claims normalised (``./a``
  is ``a``) as the registry holds them; the command line adds, under ``"batch"``, what a
  resume needs (``"source"``, ``"carried"``) and ``"resumes"`` (see cli/resume.py);
* ``waiting``: the ``"reason"`` a task waits changed;
* ``started``: an attempt starts (``"description"``);
* ``retrying``: an attempt failed and a retry is due (``"exit_code"``, ``"duration_s"``,
  ``"error"``, ``"resumes_at"``);
* ``rate_limited`` with ``"final": false``: an attempt hit a rate limit and runs again at
  ``"resumes_at"`` (``"error"``);
* one final line a task, ``"final": true``, named by its end state (``succeeded``, ``failed``,
  ``timed_out``, ``rate_limited``, ``skipped``, ``cancelled``): ``"exit_code"``,
  ``"duration_s"`` (its last attempt), ``"total_s"`` (all of them), ``"cost_usd"``, ``"tokens"``
  (``{"input", "output"}``), ``"error"`` (or why it was skipped or cancelled); null where unknown;
* ``run_ended``, last (absent when the run was killed): ``"exit_code"``, ``"counts"`` by end state.

Readers ignore keys they do not know: later versions add some. The lines are ASCII (anything
else escaped, ``\\u2028`` too), so no reader splits one in two; a number that is not finite
(an agent may report NaN) is null. Each line is written whole, in one write to a file opened
unbuffered: a run killed with SIGKILL leaves the lines it wrote. A last line without its
newline is a write cut short (a full disk), never a line to read.

The line builders are pure, the time given; :class:`JournalFile` appends them to a file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .claims import claim_texts
from .results import TaskEvent
from .task import AgentTask, TaskState, ended_error

__all__ = [
    "FINAL",
    "NAME",
    "VERSION",
    "JournalFile",
    "encode",
    "run_ended",
    "run_started",
    "task_line",
    "waiting_line",
]

#: The version of the format, in ``run_started``.
VERSION = 1
#: The journal's file name in ``logs/<run>/``.
NAME = "events.jsonl"
#: The event names of a task's final line: its end states.
FINAL = tuple(state.value for state in TaskState if state.is_terminal)


def run_started(
    run: str,
    time: float,
    pid: int,
    tasks: Sequence[AgentTask],
    more: Mapping[str, Any] | None = None,
    *,
    resumes: str | None = None,
) -> dict[str, Any]:
    """The first line: the run's batch as it was given, with ``more`` keys under ``"batch"`` (what
    a resume needs: the command line's cli/resume.py); ``"resumes"``: the run it resumes, if any."""
    batch = [
        {
            "id": t.id,
            "agent": t.agent_type,
            "description": t.task_description,
            "files": list(claim_texts(t.write_claims)),
            "reads": list(claim_texts(t.read_claims)),
            "depends_on": list(t.depends_on),
            "priority": t.priority,
        }
        for t in tasks
    ]
    line: dict[str, Any] = {"event": "run_started", "run": run, "time": time, "version": VERSION, "pid": pid}
    if resumes is not None:
        line["resumes"] = resumes
    return {**line, "batch": {"tasks": batch, **(more or {})}}


def task_line(run: str, time: float, event: TaskEvent) -> dict[str, Any]:
    """The line of a queue's ``event``, at wall-clock ``time`` (the event's own time is the
    queue's clock, which only tells how far off its ``resumes_at`` is)."""
    line: dict[str, Any] = {
        "event": "rate_limited" if event.kind == "paused" else event.kind,
        "run": run,
        "time": time,
        "task": event.task_id,
        "agent": event.agent_type,
        "attempt": event.attempt,
    }
    resumes_at = None if event.resumes_at is None else time + (event.resumes_at - event.time)
    report = event.report
    error = (report.error if report is not None else None) or event.error
    if event.kind == "started":
        line["description"] = event.description
    elif event.kind == "retrying":
        line.update(exit_code=event.exit_code, duration_s=event.duration_s, error=error, resumes_at=resumes_at)
    elif event.kind == "paused":
        line.update(final=False, error=error, resumes_at=resumes_at)
    else:
        line.update(
            final=True,
            exit_code=event.exit_code,
            duration_s=event.duration_s,
            total_s=event.total_s,
            cost_usd=None if report is None else report.cost_usd,
            tokens=None if report is None else report.tokens,
            error=ended_error(TaskState(event.kind), event.error, None if report is None else report.error),
        )
    return line


def waiting_line(run: str, time: float, task: str, agent: str, attempt: int, reason: str) -> dict[str, Any]:
    """A task's reason to wait changed: now ``reason``."""
    return {
        "event": "waiting",
        "run": run,
        "time": time,
        "task": task,
        "agent": agent,
        "attempt": attempt,
        "reason": reason,
    }


def run_ended(run: str, time: float, exit_code: int, counts: Mapping[str, int]) -> dict[str, Any]:
    """The last line: the run's exit code and its tasks by end state (every state, 0 included)."""
    return {
        "event": "run_ended",
        "run": run,
        "time": time,
        "exit_code": exit_code,
        "counts": {state: counts.get(state, 0) for state in FINAL},
    }


def encode(line: Mapping[str, Any]) -> bytes:
    """``line`` as one line of ASCII JSON, newline included; a number that is not finite as null."""
    return json.dumps(_finite(line), ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode() + b"\n"


def _finite(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class JournalFile:
    """Appends lines to a file, each whole in one write, unbuffered; thread-safe.

    Never raises into the run: the first write that fails (a full disk, a file gone read-only)
    is told to ``on_error`` once, what it wrote of its line is cut off again (a regular file),
    and no more lines go there, so the file holds whole lines only. A reader that went away (a
    pipe, a FIFO) is no error: its lines are dropped quietly.
    """

    def __init__(self, fd: int, name: str, on_error: Callable[[str], None] | None = None):
        self.name = name
        self._on_error = on_error
        # _lock guards _fd and _size.
        self._lock = threading.Lock()
        self._fd: int | None = fd
        info = os.fstat(fd)
        self._size: int | None = info.st_size if stat.S_ISREG(info.st_mode) else None  # None: not a regular file

    @classmethod
    def create(cls, path: Path, *, private: bool, on_error: Callable[[str], None] | None = None) -> JournalFile:
        """Open ``path`` afresh (truncated, created if need be); ``private``: owner-only and never
        through a symlink, as every file of the state directory. Raises OSError if it cannot."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        if private:
            flags |= os.O_NOFOLLOW | os.O_EXCL
        # Non-blocking to open: a FIFO nobody reads fails at once (ENXIO) instead of hanging.
        fd = os.open(path, flags | os.O_NONBLOCK, 0o600 if private else 0o666)
        try:
            os.set_blocking(fd, True)
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.ftruncate(fd, 0)
        except OSError:
            os.close(fd)
            raise
        return cls(fd, str(path), on_error)

    def write(self, line: Mapping[str, Any]) -> bool:
        """Append ``line``; False if it could not be (and no later line will be)."""
        return self.write_bytes(encode(line))

    def write_bytes(self, data: bytes) -> bool:
        """Append ``data``, lines already encoded; see :meth:`write`."""
        with self._lock:
            if self._fd is None:
                return False
            try:
                done = 0
                while done < len(data):
                    done += os.write(self._fd, data[done:])
            except OSError as exc:
                failure = self._give_up(exc)
            else:
                if self._size is not None:
                    self._size += len(data)
                return True
        if failure is not None and self._on_error is not None:  # outside the lock: it may print
            self._on_error(failure)
        return False

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _give_up(self, exc: OSError) -> str | None:
        """Stop writing after ``exc`` (lock held): cut a torn line off; what to tell, None for a
        reader that went away."""
        fd, self._fd = self._fd, None
        assert fd is not None
        if self._size is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
        with contextlib.suppress(OSError):
            os.close(fd)
        if exc.errno == errno.EPIPE:
            return None
        return f"{self.name} could not be written ({exc.strerror or exc}): no more events go there"
