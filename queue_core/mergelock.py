"""One merge-back at a time per repository, across processes and threads; and the other locks of
a repository that work the same way (:class:`RepoLock`: the worktree lock of queue_core.worktrees).

The lock is an exclusive ``flock`` on a file (``merge.lock``) in the repository's state directory,
which every worktree of it shares. The kernel lets go of a flock when its process dies, so a
lock of a dead process (SIGKILL, a crash) is free, and the file itself says nothing: it is
never deleted, and never trusted if replaced (a lock taken on a file that is no longer at the
path is let go and taken again). Each :class:`MergeLock` opens the file anew, so two of them
exclude each other in one process too.

A wait is bounded, tells who holds the lock (``on_wait``, as for the registry lock), and
:meth:`MergeLock.interrupt` ends it at once, from any thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from .clocks import REAL, Clocks
from .errors import MergeLockError, RepoLockError, StateError
from .processes import describe_lock_holder, lock_holder
from .statedir import make_state_dir, state_dir
from .statelock import LOCK_POLL_S, LOCK_REPORT_S, lock_if_current

__all__ = ["MERGE_LOCK_TIMEOUT_S", "MergeLock", "RepoLock", "merge_lock"]

#: How long a merge waits for another's by default: merges take seconds, a stuck one is news.
MERGE_LOCK_TIMEOUT_S = 300.0
_NAME = "merge.lock"
_RETRY_S = 0.005  # how often a contended lock is tried again


class RepoLock:
    """The lock ``name`` of the repository at ``repo`` (``what`` says it in messages, ``error`` is
    what a wait that fails raises); a context manager. One holder per instance."""

    def __init__(
        self,
        repo: str | os.PathLike[str],
        name: str,
        what: str,
        error: type[RepoLockError],
        *,
        timeout: float,
        clocks: Clocks = REAL,
        on_wait: Callable[[str | None], None] | None = None,
    ):
        self.path = state_dir(repo) / name
        self._what = what
        self._error = error
        self._timeout = timeout
        self._clocks = clocks
        self._on_wait = on_wait
        self._interrupted = threading.Event()
        self._fd: int | None = None  # the lock file, flocked, while held

    def acquire(self) -> None:
        """Take the lock, waiting for it at most the timeout. Raises its ``error`` if it was not
        free in time or the wait was interrupted (naming its holder's pid when it can be
        told), and StateError if the state directory or the file cannot be made."""
        if self._fd is not None:
            raise StateError(self.path, f"{self._what} is held already by this object: make one per holder")
        make_state_dir(self.path.parent)
        started = self._clocks.monotonic()
        next_look = started + LOCK_REPORT_S
        reported: str | None = None
        while not self._try_take():
            now = self._clocks.monotonic()
            if self._interrupted.is_set():
                raise self._error(self.path, f"the wait for {self._what} was interrupted", lock_holder(self.path))
            if now - started >= self._timeout:
                said = describe_lock_holder(self.path, self._what)
                raise self._error(self.path, f"{said} for {now - started:.1f} s", lock_holder(self.path))
            if self._on_wait is not None and now >= next_look:
                next_look = now + LOCK_POLL_S
                message = describe_lock_holder(self.path, self._what)
                if message != reported:
                    self._on_wait(message)
                    reported = message
            self._interrupted.wait(_RETRY_S)
        if reported is not None and self._on_wait is not None:
            self._on_wait(None)

    def release(self) -> None:
        """Let go of the lock (closing the file lets go of its flock); nothing if not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def interrupt(self) -> None:
        """Make a wait for the lock, now or to come, fail with its ``error`` within a few ms."""
        self._interrupted.set()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RepoLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

    def _try_take(self) -> bool:
        """Flock the file at the path if it is free; raises StateError if it cannot be opened."""
        try:  # never through a symlink: the state directory is private, a planted link is not ours
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(self.path, f"cannot open {self._what}: {exc.strerror or exc}") from exc
        if not lock_if_current(fd, self.path):
            return False
        self._fd = fd
        return True


class MergeLock(RepoLock):
    """The merge lock of the repository at ``repo``: make one per merge (:func:`merge_lock`)."""

    def __init__(
        self,
        repo: str | os.PathLike[str],
        *,
        timeout: float = MERGE_LOCK_TIMEOUT_S,
        clocks: Clocks = REAL,
        on_wait: Callable[[str | None], None] | None = None,
    ):
        super().__init__(repo, _NAME, "the merge lock", MergeLockError, timeout=timeout, clocks=clocks, on_wait=on_wait)


def merge_lock(
    repo: str | os.PathLike[str],
    *,
    timeout: float = MERGE_LOCK_TIMEOUT_S,
    clocks: Clocks = REAL,
    on_wait: Callable[[str | None], None] | None = None,
) -> MergeLock:
    """The merge lock of ``repo``, not yet taken: ``with merge_lock(repo): merge_back(...)``.

    Keep the object to :meth:`~MergeLock.interrupt` its wait from another thread. ``on_wait``
    is told who holds it once the wait has taken LOCK_REPORT_S (and again if that changes),
    then None once it is taken.
    """
    return MergeLock(Path(repo), timeout=timeout, clocks=clocks, on_wait=on_wait)
