"""The flocks on a repository's state directory: the registry's lock, and the beacon of live registries.

* :class:`RegistryLock`: the directory itself is the lock, an exclusive ``flock`` on it guards
  every step. A lock file can be deleted while held, and a second process then locks a new one;
  a step that locked a directory no longer at the path lets go and tries again. Waiting for it
  is never silent and never stuck: after ``LOCK_REPORT_S`` the waiter is told who holds it,
  stopped or not, and :meth:`RegistryLock.interrupt` ends the wait at once.
* :class:`Beacon`: every live registry holds a shared ``flock`` on the state directory's
  parent, which no cleaning removes, so that a step that finds claims.json lost can tell
  whether a live run may still hold claims.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from .clocks import Clocks
from .errors import StateError
from .processes import describe_lock_holder
from .statedir import make_state_dir

__all__ = ["LOCK_POLL_S", "LOCK_REPORT_S", "Beacon", "RegistryLock", "lock_if_current", "try_flock"]

log = logging.getLogger("queue_core")

#: After waiting this long for the registry lock, a waiter is told who holds it.
LOCK_REPORT_S = 1.0
#: How often a wait for the lock looks whether it was interrupted, or its holder changed.
LOCK_POLL_S = 0.1
#: How often a contended lock is tried again.
_LOCK_RETRY_S = 0.005


class RegistryLock:
    """The lock of the state directory ``directory``, for one Registry: first a thread lock, so
    that one step of it runs at a time whichever thread runs it, then the flock on the directory.

    A wait fails with StateError after ``timeout`` seconds, by ``clocks``' monotonic clock.
    """

    def __init__(self, directory: Path, *, timeout: float, clocks: Clocks):
        self._directory = directory
        self._timeout = timeout
        self._clocks = clocks
        self._interrupted = threading.Event()
        self._step = threading.Lock()  # held from acquire() to release(), by any thread
        self._fd: int | None = None  # the directory, flocked, while a step runs

    def acquire(self, on_wait: Callable[[str | None], None] | None = None) -> None:
        """Take the lock; raises StateError if interrupted, or not free within the timeout.

        ``on_wait`` is told who holds the lock once the wait has taken LOCK_REPORT_S (and again
        if that changes), then None once it is taken; not when the wait failed.
        """
        started = self._clocks.monotonic()
        reported: str | None = None
        while not self._step.acquire(timeout=self._poll(started)):
            self._waited(started)  # another step of this Registry waits for the flock, and says so
        try:
            next_look = started + LOCK_POLL_S
            while not self._try_take():
                now = self._clocks.monotonic()
                if now >= next_look:
                    next_look = now + LOCK_POLL_S
                    if self._waited(started) and on_wait is not None:
                        message = describe_lock_holder(self._directory, "the registry lock")
                        if message != reported:
                            on_wait(message)
                            reported = message
                if self._interrupted.wait(_LOCK_RETRY_S):
                    self._waited(started)
        except BaseException:
            self._step.release()
            raise
        if reported is not None and on_wait is not None:
            on_wait(None)

    def release(self) -> None:
        """Let go of the flock, then let the next step of this Registry in."""
        self._let_go()
        self._step.release()

    def interrupt(self) -> None:
        """Make every wait for the lock, now (within LOCK_POLL_S) and from now on, fail with StateError."""
        self._interrupted.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    @property
    def locked(self) -> bool:
        """Whether a step holds the lock."""
        return self._fd is not None

    def inode(self) -> int:
        """The inode of the directory the step has locked (or of the one at the path, unlocked)."""
        return os.fstat(self._fd).st_ino if self._fd is not None else os.lstat(self._directory).st_ino

    def _try_take(self) -> bool:
        """Take the flock on the directory if it is free; raises StateError if it cannot be opened."""
        try:
            fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:  # removed whole: made again (a live run's beacon tells the next step)
            make_state_dir(self._directory)
            return False
        except OSError as exc:
            raise StateError(self._directory, f"cannot open the state directory: {exc.strerror or exc}") from exc
        if not lock_if_current(fd, self._directory):  # removed meanwhile: the next try makes it again
            return False
        self._fd = fd
        return True

    def _let_go(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor of the open file lets go of the flock

    def _poll(self, started: float) -> float:
        return max(0.0, min(LOCK_POLL_S, started + self._timeout - self._clocks.monotonic()))

    def _waited(self, started: float) -> bool:
        """After one poll of a lock wait: raise if interrupted or timed out; whether to report it."""
        if self._interrupted.is_set():
            raise StateError(self._directory, "the wait for the registry lock was interrupted")
        waited = self._clocks.monotonic() - started
        if waited >= self._timeout:
            raise StateError(self._directory, f"the registry lock was not free for {waited:.1f} s")
        return waited >= LOCK_REPORT_S


class Beacon:
    """The shared flock of one live registry on ``directory`` (the state directory's parent).

    Opened at once; held from :meth:`hold` until :meth:`close`, or until the Beacon is dropped.
    """

    def __init__(self, directory: Path, *, clocks: Clocks):
        self._directory = directory
        self._clocks = clocks
        self._fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._closer = weakref.finalize(self, os.close, self._fd)  # a registry dropped unfinished
        # Not at exit: a step may still run then, and must not flock a closed, or reused, number.
        self._closer.atexit = False

    def others_live(self) -> bool:
        """Whether another live registry (of any process) holds the beacon."""
        if self._fd < 0:  # closed (finished, or at exit): look with a descriptor of its own
            fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                return not try_flock(fd, fcntl.LOCK_EX)
            finally:
                os.close(fd)  # and with it the lock, if it was had
        alone = try_flock(self._fd, fcntl.LOCK_EX)
        self.hold()  # a failed conversion may have let go of our own shared lock
        return not alone

    def hold(self) -> None:
        """Hold the beacon shared; another's look at it holds it exclusively for microseconds."""
        if self._fd < 0:
            return
        deadline = self._clocks.monotonic() + LOCK_REPORT_S
        while not try_flock(self._fd, fcntl.LOCK_SH):
            if self._clocks.monotonic() > deadline:  # a looker was stopped mid-look: go on unseen
                log.warning("could not hold %s shared: other runs may not see this one", self._directory)
                return
            time.sleep(_LOCK_RETRY_S)

    def close(self) -> None:
        """Let go of the beacon: its registry is no longer live."""
        self._closer()
        self._fd = -1


def lock_if_current(fd: int, path: Path) -> bool:
    """Take the exclusive flock on ``fd``, opened from ``path``, if it is free and ``path`` still
    names what was opened (removed or replaced since, it is not what others lock now); whether it
    was taken. Otherwise ``fd`` is closed; so it is if the flock raises, which propagates."""
    try:
        taken = try_flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    try:
        same = taken and os.path.samestat(os.fstat(fd), os.lstat(path))
    except OSError:  # removed meanwhile
        same = False
    if not same:
        os.close(fd)
    return same


def try_flock(fd: int, operation: int) -> bool:
    """Take ``operation`` (LOCK_SH, LOCK_EX) on ``fd`` if nobody stands in the way; whether it was taken."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
