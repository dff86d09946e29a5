"""The history of task durations of a repository: ``durations.jsonl`` in its state directory.

One line per task that succeeded (a :class:`~queue_core.estimates.Sample` as JSON), appended
as the task ends, so a run killed later loses nothing already written. A failed or timed-out
attempt is not recorded: how long it took says how soon it failed or when its timeout fell, not
how long the work takes.

Every process on the repository appends to the one file, each line in one ``write`` under
the flock of ``durations.lock`` (which stays: see queue_core.flocks). When the file grows past
``max_bytes``, the writer that crossed it rewrites it (atomically, under the same lock) with
only what estimates read (each task's, id's and agent's recent runs), and if that is still
more than half of ``max_bytes``, the newest of it: the file never grows without bound.

Readers take no lock: a line is whole once written; a line that does not read as a sample (a
file damaged, or written by a newer version that changed it) is skipped and counted. A reader
reads the last ``2 x max_bytes`` of the file at most: a file far bigger was not written by
this version, which compacts it, and reading it whole would hold a run's start and a task's
end for seconds. A line cut short (a full disk) gets its newline from the next writer, so that
the next sample is not glued to it and lost.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from .clocks import REAL, Clocks
from .errors import NotRegularFileError, StateError
from .estimates import AGENT_RECENT, RECENT, Estimates, Sample
from .statedir import read_regular, remove_entry, write_private

__all__ = ["FILE", "MAX_BYTES", "DurationHistory"]

FILE = "durations.jsonl"
_LOCK = "durations.lock"
#: The size past which the file is compacted: about 1,500 runs.
MAX_BYTES = 256 * 1024
#: How much of the file's end a reader reads, in units of ``max_bytes``: a compacted file and
#: what was appended since fit in it.
READ_BOUND = 2
#: How long a write waits for another process's; past it, that one sample is given up.
LOCK_TIMEOUT_S = 2.0
_LOCK_RETRY_S = 0.005


class DurationHistory:
    """The durations file of the state directory ``directory`` (which must exist to record).

    ``clocks.monotonic`` times the wait for the lock, at most ``lock_timeout`` seconds.
    """

    def __init__(
        self,
        directory: Path,
        *,
        clocks: Clocks = REAL,
        max_bytes: int = MAX_BYTES,
        lock_timeout: float = LOCK_TIMEOUT_S,
    ):
        self.path = directory / FILE
        self._lock_path = directory / _LOCK
        self._clocks = clocks
        self._max_bytes = max_bytes
        self._lock_timeout = lock_timeout
        #: Lines the last read skipped: damaged, or not a sample.
        self.damaged = 0

    def samples(self) -> list[Sample]:
        """Every sample in the file, in file order; none if there is no file.

        Raises StateError if it is not a regular file (a symlink, a FIFO) or cannot be read.
        """
        bound = READ_BOUND * self._max_bytes
        try:
            data = read_regular(self.path, tail=bound + 1) or b""  # one more: more than bound is a cut
        except NotRegularFileError as exc:
            raise StateError(self.path, f"{exc.strerror}; not read") from None
        except OSError as exc:
            raise StateError(self.path, f"cannot read the durations: {exc.strerror or exc}") from exc
        if len(data) > bound:  # cut, maybe in a line: the part before the first newline is no damage
            data = data.partition(b"\n")[2]
        samples, self.damaged = _parse(data)
        return samples

    def estimates(self) -> Estimates:
        """The estimates the samples give (see queue_core.estimates); raises StateError as ``samples``."""
        return Estimates(self.samples())

    def record(self, sample: Sample) -> None:
        """Append ``sample``; compact the file if it grew past ``max_bytes``.

        Raises StateError if the file cannot be written, or another writer kept the lock past
        ``lock_timeout`` (a stopped process): then this sample is not recorded.
        """
        line = json.dumps(sample.to_json(), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        with self._locked():
            # Non-blocking: opening a FIFO put in the file's place would wait for a reader for ever.
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            try:
                fd = os.open(self.path, flags, 0o600)
            except OSError as exc:
                raise StateError(self.path, _why(exc, "cannot write the durations")) from exc
            try:
                size = _append(fd, line)
            except OSError as exc:
                raise StateError(self.path, _why(exc, "cannot write the durations")) from exc
            finally:
                os.close(fd)
            if size > self._max_bytes:
                self._compact()

    def clear(self) -> bool:
        """Forget every duration; whether there was anything in the file's place. Whatever is
        there goes as an entry (a symlink, not its target; a FIFO, a directory): nothing else
        belongs there. Raises StateError if it cannot be removed."""
        with self._locked():
            there = os.path.lexists(self.path)
            try:
                remove_entry(self.path)
            except OSError as exc:
                raise StateError(self.path, f"cannot remove the durations: {exc.strerror or exc}") from exc
        return there

    def _compact(self) -> None:
        """Rewrite the file with what estimates read, within half of ``max_bytes`` (lock held)."""
        kept = _needed(self.samples())
        lines = [json.dumps(s.to_json(), separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for s in kept]
        budget, size, start = self._max_bytes // 2, 0, len(lines)
        while start > 0 and size + len(lines[start - 1]) <= budget:  # the newest that fit
            start -= 1
            size += len(lines[start])
        try:
            write_private(self.path, b"".join(lines[start:]))
        except OSError as exc:
            raise StateError(self.path, f"cannot rewrite the durations: {exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the flock of ``durations.lock``, waiting at most ``lock_timeout``; raises StateError past it."""
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(self._lock_path, _why(exc, "cannot open the durations lock")) from exc
        try:
            started = self._clocks.monotonic()
            while not _try_lock(fd):
                if self._clocks.monotonic() - started >= self._lock_timeout:
                    raise StateError(self._lock_path, f"the durations lock was not free for {self._lock_timeout:g} s")
                time.sleep(_LOCK_RETRY_S)  # a write holds it for well under a millisecond
            yield
        finally:
            os.close(fd)  # lets go of the flock


def _append(fd: int, line: bytes) -> int:
    """Append ``line`` to the file open as ``fd`` in one write, so that readers see it whole or
    not at all, after a newline if the last line was cut short; the file's size after it.
    Raises OSError (EINVAL) if ``fd`` is not a regular file."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EINVAL, "not a regular file; not written")
    if info.st_size > 0 and os.pread(fd, 1, info.st_size - 1) != b"\n":
        line = b"\n" + line
    if os.write(fd, line) != len(line):
        raise OSError(errno.ENOSPC, "a short write")
    return os.fstat(fd).st_size


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _parse(data: bytes) -> tuple[list[Sample], int]:
    """The samples of the file's ``data``, and how many lines were not one."""
    lines = [line for line in data.splitlines() if line.strip()]
    try:  # the whole file in one call of the C decoder: a run reads it before it starts
        decoded = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:  # some line is damaged: each on its own (UnicodeDecodeError is a ValueError)
        decoded = None
    if not isinstance(decoded, list) or len(decoded) != len(lines):  # a line of "1, 2": one value a line no more
        decoded = None
    read = [_sample(line if decoded is None else decoded[index]) for index, line in enumerate(lines)]
    samples = [sample for sample in read if sample is not None]
    return samples, len(read) - len(samples)


def _sample(line: object) -> Sample | None:
    """The sample a line holds (as bytes, or decoded already); None if it holds none."""
    try:
        return Sample.from_json(json.loads(line) if isinstance(line, bytes) else line)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None


def _needed(samples: list[Sample]) -> list[Sample]:
    """What of ``samples`` an estimate may read, oldest first: each fingerprint's and each id's
    last RECENT runs, each agent's and everyone's last AGENT_RECENT."""
    ordered = sorted(samples, key=lambda s: s.at)
    counts: dict[object, int] = {}
    kept: list[Sample] = []
    for sample in reversed(ordered):  # newest first
        needed = False
        for key, limit in (
            (("fingerprint", sample.fingerprint), RECENT),
            (("id", sample.agent, sample.task_id), RECENT),
            (("agent", sample.agent), AGENT_RECENT),
            (("all",), AGENT_RECENT),
        ):
            counts[key] = counts.get(key, 0) + 1
            needed = needed or counts[key] <= limit
        if needed:
            kept.append(sample)
    kept.reverse()
    return kept


def _why(exc: OSError, what: str) -> str:
    if exc.errno == errno.ELOOP:
        return f"{what}: a symlink is in its place; refusing to write through it"
    return f"{what}: {exc.strerror or exc}"
