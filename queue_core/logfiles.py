"""A task's log in the state directory, ``logs/<run>/<task>.log``: found, read in part, followed.

The agent writes its log (every attempt appends to it, see :mod:`queue_core.runner`); here it
is only read, from any process, for ``project-manager logs``. A task id is a file name, so it is
checked before it makes a path: ``../x`` or ``/etc/passwd`` never leave the logs folder. A log
is opened without following a symlink and never waited on (a FIFO put there is refused), and
read by offsets: the tail of a huge log costs its tail, not the whole file.

:class:`LogFollower` follows a log by polling (a short interval costs a ``stat`` and a read; a
dependency for inotify is not worth it): each :meth:`~LogFollower.step` gives the bytes
written since the last one, and says when following is over: the task ended (its final line
in the run's journal), the run is no longer alive, or the log was removed or replaced.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .clocks import REAL, Clocks
from .errors import NotRegularFileError
from .holds import STALE_AFTER_S, judge_run
from .runfiles import JournalTail, journal_path
from .runid import RUN_ID_PATTERN, check_run_id
from .statedir import list_dir
from .task import check_task_id

__all__ = ["FOLLOW_ENDS", "FollowStep", "LogFile", "LogFollower", "log_path", "open_log", "run_logs", "tail_start"]

#: Why following a log ends: the task ended; the run finished (its history record is written);
#: the run died without one; the log was removed, replaced by another file, or cut shorter.
FOLLOW_ENDS = ("ended", "run_finished", "run_died", "removed", "replaced", "truncated")
#: How much is read at a time, and at most in one step of a follower: a log that grows faster
#: than it is printed is printed in steps, each of which lets a signal through.
BLOCK = 1 << 16
STEP_BYTES = 1 << 22
#: How often a follower asks whether the run lives (its record and processes): the journal, a
#: read of what was appended, is looked at every step.
RUN_CHECK_S = 0.5


def log_path(directory: Path, run: str, task: str) -> Path:
    """Where ``task`` of ``run`` writes its log, in the state directory ``directory``.

    Raises InvalidArgumentError for a run id, InvalidTaskIdError for a task id, that is no
    plain name: a path (``../x``, ``/x``, ``a/b``) would leave the run's logs folder.
    """
    check_run_id(run)
    check_task_id(task)
    return directory / "logs" / run / f"{task}.log"


@dataclass(frozen=True)
class LogFile:
    """A task's log in a run's logs folder, and its size in bytes."""

    task: str
    path: Path
    size: int


def run_logs(directory: Path, run: str) -> list[LogFile]:
    """The task logs of ``run``, by task id; none if it has no logs folder. What is not a
    regular ``<task>.log`` (the journal, a symlink, a FIFO) is left out. Raises
    InvalidArgumentError for a bad run id, OSError if the folder cannot be read."""
    check_run_id(run)
    found = []
    for path, entry in list_dir(directory / "logs" / run):
        task, dot, kind = entry.name.rpartition(".")
        if not dot or kind != "log" or not RUN_ID_PATTERN.fullmatch(task):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # removed since it was listed
        if stat.S_ISREG(st.st_mode):
            found.append(LogFile(task, path, st.st_size))
    return sorted(found, key=lambda log: log.task)


def open_log(path: Path) -> int | None:
    """A read-only descriptor of the log at ``path``; None if there is none.

    Raises NotRegularFileError for a symlink or anything but a regular file (never followed,
    never waited on), OSError if it cannot be opened.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFileError(errno.ELOOP, "a symlink, not a regular file", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFileError(errno.EINVAL, "not a regular file", str(path))
    return fd


def tail_start(fd: int, lines: int, size: int) -> int:
    """Where the last ``lines`` lines of the first ``size`` bytes of ``fd`` start.

    Read backwards a block at a time: a huge log costs its tail. A last line without its
    newline counts as a line; 0 lines start at ``size``.
    """
    if lines <= 0 or size <= 0:
        return size
    breaks = lines + (os.pread(fd, 1, size - 1) == b"\n")  # the newline that ends the file breaks no line
    end = size
    while end > 0:
        start = max(0, end - BLOCK)
        block = os.pread(fd, end - start, start)
        at = len(block)
        while (at := block.rfind(b"\n", 0, at)) >= 0:
            breaks -= 1
            if breaks == 0:
                return start + at + 1
        end = start
    return 0


@dataclass(frozen=True)
class FollowStep:
    """What one step of a :class:`LogFollower` read, and why following ends (one of
    FOLLOW_ENDS), or None while it goes on. ``more``: it stopped at STEP_BYTES with more
    written; the next step should come at once. ``status``: the task's end state, once its
    journal says it."""

    data: bytes
    end: str | None = None
    more: bool = False
    status: str | None = None


class LogFollower:
    """Follows the log of ``task`` of ``run`` from ``offset`` (a descriptor ``fd`` of it, if it
    is open; else it is opened once it appears), in another process than the run's.

    ``clocks`` pace the look at the run's record (every RUN_CHECK_S); ``stale_after`` is when a
    run of another host, silent, counts as dead. Use :meth:`close` (or ``with``) to close the log.
    """

    def __init__(
        self,
        directory: Path,
        run: str,
        task: str,
        *,
        fd: int | None = None,
        offset: int = 0,
        clocks: Clocks = REAL,
        stale_after: float = STALE_AFTER_S,
    ):
        self.path = log_path(directory, run, task)
        self.directory, self.run, self.task = directory, run, task
        self.fd, self.offset = fd, offset
        self.clocks, self.stale_after = clocks, stale_after
        self.status: str | None = None  # the task's end state, once its journal said it
        self._inode = None if fd is None else os.fstat(fd).st_ino
        self._journal = JournalTail(journal_path(directory, run))
        self._checked_at: float | None = None
        self._ending: str | None = None  # seen, and said once all that was written before it is read

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def step(self) -> FollowStep:
        """The bytes written since the last step, and whether following ends. Whether the task
        ended is looked at first: all it wrote before is read in this step, or the next ones.
        Raises NotRegularFileError if what appears at the log's path is no regular file."""
        self._ending = self._ending or self._ended()
        if self.fd is None:
            self.fd = open_log(self.path)
            self._inode = None if self.fd is None else os.fstat(self.fd).st_ino
        data = self._read()
        if len(data) >= STEP_BYTES:
            return FollowStep(data, more=True, status=self.status)
        return FollowStep(data, self._changed() or self._ending, status=self.status)

    def _ended(self) -> str | None:
        """Why following ends: the task's final line in the journal; else, looked at every
        RUN_CHECK_S, the run's own end: its history record, or its death."""
        for line in self._journal.read():
            if line.get("task") == self.task and line.get("final") is True:
                self.status = str(line["event"])
        if self.status is not None:
            return "ended"
        now = self.clocks.monotonic()
        if self._checked_at is not None and now - self._checked_at < RUN_CHECK_S:
            return None
        self._checked_at = now
        if (self.directory / "history" / f"{self.run}.json").exists():
            return "run_finished"
        alive, _ = judge_run(self.directory / "runs", self.run, stale_after=self.stale_after, clocks=self.clocks)
        return None if alive else "run_died"

    def _read(self) -> bytes:
        if self.fd is None:
            return b""
        chunks: list[bytes] = []
        size = 0
        while size < STEP_BYTES and (chunk := os.pread(self.fd, min(BLOCK, STEP_BYTES - size), self.offset)):
            chunks.append(chunk)
            size += len(chunk)
            self.offset += len(chunk)
        return b"".join(chunks)

    def _changed(self) -> str | None:
        """Whether the log followed is no longer the one at its path: removed, replaced, cut."""
        if self.fd is None:
            return None
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return "removed"
        if st.st_ino != self._inode:
            return "replaced"
        return "truncated" if st.st_size < self.offset else None
