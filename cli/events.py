"""The run journal and ``--events``: every event of a run as a JSON line (see queue_core.journal).

Every run writes its journal, ``logs/<run>/events.jsonl`` in the state directory, from its
start; ``--events PATH`` writes the same lines to PATH too, and ``--events -`` to stdout (then
the event lines for people and the summary go to stderr). The journal and a PATH are written as
each event comes, a line at a time: a second process reads them as they grow, and a run killed
with SIGKILL leaves every line it wrote. stdout is written by a thread of terminal.py's, so that
a slow reader of it never holds up a task.

The reason each waiting task waits is sampled once a second (the 50 best-ranked tasks, as the
live view shows its queue) and written when it changes: a countdown ("retry in 2.1s") or a new
machine reading alone is no change.
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from queue_core import AgentTask, TaskEvent, TaskOutcome
from queue_core.journal import FINAL, NAME, JournalFile, encode, run_ended, run_started, task_line, waiting_line
from queue_core.records import QueueStatus, WaitingTask
from queue_core.statedir import is_inside

from . import terminal
from .config import ConfigError

#: How often the waiting tasks' reasons are looked at, and how many of them (best-ranked first).
WAIT_SAMPLE_S = 1.0
WAIT_SAMPLE_TASKS = 50
#: The kinds of wait whose sentence changes by itself (a countdown, a machine reading): a line
#: is written when their kind or holder changes, not their text.
_TICKING = frozenset({"retry", "rate_limit", "machine", "need"})

#: A wait as compared from one sample to the next: the attempt it waits after, its kind, holder and text.
_WaitKey = tuple[int, str, str | None, str | None]


def check_copy(target: str, state: Path) -> None:
    """Raise ConfigError if ``--events TARGET`` is in the state directory ``state``: the file it
    names (a log, a run's record, the registry) would be cut to nothing and written over."""
    if target != "-" and is_inside(target, state):
        inside = f"{target}: is inside the state directory {state}; write it elsewhere"
        raise ConfigError("--events", None, None, inside)


def open_copy(target: str) -> JournalFile | None:
    """Where ``--events TARGET`` goes: a file opened (truncated) now, or None for ``-`` (stdout).
    Raises OSError if it cannot be opened; a FIFO that nobody reads is refused at once (ENXIO)."""
    if target == "-":
        return None
    return _Copy.create(Path(target), private=False, on_error=_warn)


class _Copy(JournalFile):
    """The copy ``--events PATH`` writes. To a FIFO, a pipe or a device, whose reader may be slow
    or stopped, it is written by a thread of its own, as stdout's lines are (terminal.PlainEvents):
    a reader that does not read then holds up no task, nor a stop signal. :meth:`close` waits
    for the lines still queued, however long the reader takes (a stop signal bounds the run's
    end: see cli.signals). A regular file is written at once, as the journal is."""

    def __init__(self, fd: int, name: str, on_error: Callable[[str], None] | None = None):
        super().__init__(fd, name, on_error)
        self._queued: queue.SimpleQueue[bytes | None] | None = None  # None: written at once
        self._written = threading.Event()  # the queue's thread wrote its last line
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            self._queued = queue.SimpleQueue()
            threading.Thread(target=self._write_queued, name="pm-events-copy", daemon=True).start()

    def write_bytes(self, data: bytes) -> bool:
        if self._queued is None:
            return super().write_bytes(data)
        self._queued.put(data)
        return True

    def close(self) -> None:
        if self._queued is not None:
            self._queued.put(None)
            self._written.wait()
        super().close()

    def _write_queued(self) -> None:
        """Write the lines queued, in order, until :meth:`close` queues None."""
        assert self._queued is not None
        while True:
            parts = [self._queued.get()]
            while not self._queued.empty():  # whatever queued meanwhile goes out in the same write
                parts.append(self._queued.get())
            data = b"".join(part for part in parts if part is not None)
            if data:
                super().write_bytes(data)
            if None in parts:
                self._written.set()
                return


class RunEvents:
    """The journal of one run, and its copy for ``--events``; thread-safe.

    ``start`` writes the first line, ``event`` each task event (the queue's ``on_event``),
    ``watch`` samples the waits once the batch is queued, ``end`` writes what the queue never
    told (a task a signal kept from it) and the last line. Nothing here raises into the run: a
    journal that cannot be written is a warning, once.
    """

    def __init__(
        self,
        run_id: str,
        log_dir: Path,
        copy: JournalFile | None = None,
        *,
        to_stdout: bool = False,
        batch: Mapping[str, Any] | None = None,
        resumes: str | None = None,
        defuse: Callable[[str], str] | None = None,
    ):
        self.run_id = run_id
        #: More of the first line: what a resume needs under ``"batch"`` (see cli/resume.py).
        self._batch = dict(batch or {})
        self._resumes = resumes
        self._log_dir = log_dir
        self._copy = copy
        self._stdout = terminal.PlainEvents(sys.stdout, defuse) if to_stdout else None  # defuse: on GitHub
        # _lock guards the files' order of lines, and everything below.
        self._lock = threading.Lock()
        self._journal: JournalFile | None = None
        self._attempts: dict[str, int] = {}  # task id -> its attempts started so far
        self._final: set[str] = set()  # tasks whose final line is written
        self._waits: dict[str, _WaitKey] = {}  # the waiting tasks' last wait written
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self, tasks: Sequence[AgentTask]) -> None:
        """Open the journal (the run's log folder exists) and write the run's first line."""
        if self._stdout is not None:
            self._stdout.__enter__()
        try:
            self._journal = JournalFile.create(self._log_dir / NAME, private=True, on_error=_warn)
        except OSError as exc:
            _warn(f"{self._log_dir / NAME} could not be created ({exc.strerror or exc}): this run has no journal")
        self._write(run_started(self.run_id, time.time(), os.getpid(), tasks, self._batch, resumes=self._resumes))

    def event(self, event: TaskEvent) -> None:
        """A task event, as the queue sends it (on its threads)."""
        with self._lock:
            if event.kind == "started":
                self._attempts[event.task_id] = event.attempt
            elif event.kind in FINAL:
                self._final.add(event.task_id)
            self._waits.pop(event.task_id, None)  # a wait after this is a new one
            self._write_locked(task_line(self.run_id, time.time(), event))

    def watch(self, status: Callable[[], QueueStatus]) -> None:
        """Sample the waits now, then every WAIT_SAMPLE_S until :meth:`end`."""
        self._sampler = threading.Thread(target=self._sample_loop, args=(status,), name="pm-journal", daemon=True)
        self._sampler.start()

    @property
    def copy_path(self) -> str | None:
        """The file ``--events PATH`` writes, if it writes one: the run's own change, if in the repository."""
        return None if self._copy is None else self._copy.name

    @property
    def to_stdout(self) -> bool:
        """Whether the lines go to stdout (``--events -``), which the event lines for people and the summary leave."""
        return self._stdout is not None

    def end(self, outcomes: Iterable[TaskOutcome], exit_code: int) -> None:
        """The run ended with ``exit_code``: a final line for each task the queue never had (it
        ended as ``outcomes`` say), then the last line; every file is closed, and what stdout
        still has to take is written (however long its reader takes)."""
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        counts: dict[str, int] = {}
        with self._lock:
            for outcome in outcomes:
                counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
                if outcome.id not in self._final:
                    self._write_locked(task_line(self.run_id, time.time(), _event_of(outcome)))
            self._write_locked(run_ended(self.run_id, time.time(), exit_code, counts))
            journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()
        if self._stdout is not None:
            self._stdout.close()
        if self._copy is not None:
            self._copy.close()

    # --- waits ---------------------------------------------------------------------------------

    def _sample_loop(self, status: Callable[[], QueueStatus]) -> None:
        failed = False
        while True:
            try:
                self.sample(status)
            except Exception as exc:  # noqa: BLE001 - a sample that fails must not end the run: tried again later
                if not failed:
                    _warn(f"the waits could not be read: {exc}")
                failed = True
            if self._stop.wait(WAIT_SAMPLE_S):
                return

    def sample(self, status: Callable[[], QueueStatus]) -> None:
        """Write a line for each waiting task whose wait changed since the last sample."""
        with self._lock:
            before = dict(self._attempts)  # a task that starts after this is not written waiting
        waiting = status().waiting
        with self._lock:
            now = time.time()  # under the lock: the lines' times go up, as their order does
            seen = {}
            for wait in waiting:
                attempt = before.get(wait.id, 0)
                if wait.id in self._final or self._attempts.get(wait.id, 0) != attempt:
                    continue  # it started or ended meanwhile: its lines are written already
                key = _key(wait, attempt)
                seen[wait.id] = key
                if self._waits.get(wait.id) != key:
                    self._write_locked(waiting_line(self.run_id, now, wait.id, wait.agent, attempt, wait.reason))
            self._waits = seen

    # --- lines ---------------------------------------------------------------------------------

    def _write(self, line: dict[str, Any]) -> None:
        with self._lock:
            self._write_locked(line)

    def _write_locked(self, line: dict[str, Any]) -> None:
        data = encode(line)
        for target in (self._journal, self._copy):
            if target is not None:
                target.write_bytes(data)
        if self._stdout is not None:
            self._stdout.note(data.decode("ascii").removesuffix("\n"))


def _key(wait: WaitingTask, attempt: int) -> _WaitKey:
    """What must change for a new waiting line: a countdown alone is no change."""
    return attempt, wait.reason_kind, wait.blocked_by, None if wait.reason_kind in _TICKING else wait.reason


def _event_of(outcome: TaskOutcome) -> TaskEvent:
    """The final event of a task the queue never had (a signal came before it was queued)."""
    return TaskEvent(
        outcome.status.value,
        outcome.id,
        outcome.agent,
        0.0,
        outcome.attempts,
        outcome.reason,
        outcome.description,
        outcome.duration_s,
        outcome.log,
        outcome.exit_code,
        outcome.report,
        outcome.total_s,
    )


def _warn(message: str) -> None:
    with contextlib.suppress(Exception):  # a warning must not fail the run
        terminal.warning(f"event journal: {message}")
