"""Exclusive ``flock`` locks on small files: what port blocks and pool worktrees are held by across processes.

The kernel drops a flock when its process dies, however it dies, so a killed holder's lock is
free at once and nothing needs cleaning. A lock is taken on an open file description: two
opens of one file, even in one process (two threads), exclude each other. The lock files stay
after use: removing one would let two processes lock two different files of the same name.
The descriptors are close-on-exec: agents and setup commands, started by exec, never inherit
a lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from .errors import StateError

__all__ = ["held", "try_lock"]


def try_lock(path: Path, what: str) -> int | None:
    """An fd holding an exclusive flock on ``path`` (made 0600 if missing), or None if another
    holder has it now; closing the fd releases it. Never through a symlink, never a FIFO's wait.

    Raises StateError, naming ``what`` ("the port lock"), if the file cannot be opened or locked.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise StateError(path, f"cannot open {what}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise StateError(path, f"cannot lock {what}: {exc.strerror or exc}") from exc
    return fd


def held(path: Path) -> bool:
    """Whether another holder has the flock on ``path`` now. A probe that makes no file and holds
    nothing (a shared lock, released at once), for views that write nothing, such as ``status``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False  # no lock file: nobody ever held it; one that cannot be opened: not ours to say
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False
