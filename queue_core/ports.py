"""Blocks of ports for running tasks: each gets ``PM_PORT_BASE``, ten ports no other running task has.

Two instances of one agent in two worktrees start the same dev server on the same port unless
told otherwise. :class:`PortBlocks` hands out blocks of ``size`` ports from ``base`` on, lowest
free first. A block is skipped while another holder has it, or while one of its ports is in use
(a bind on 127.0.0.1 fails: a server left over, or anything else on the machine).

Across processes (two runs on one machine), give it ``lock_dir``: a block is also held by an
exclusive ``flock`` on ``<lock_dir>/<first port>.lock`` for as long as its holder has it. The
kernel drops a flock when its process dies, however it dies, so a killed run's blocks are free
at once and nothing needs cleaning; the lock files stay (removing one would let two processes
lock two different files of the same name). The descriptors are close-on-exec: agents and setup
commands, started by exec, do not inherit the locks.

The probe is a check, not a reservation: a port taken between the probe and the server's own
bind is still taken. What the block promises is that no other *task* was given it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidArgumentError, PortsExhaustedError
from .flocks import try_lock
from .statedir import ensure_private_dir

__all__ = ["DEFAULT_BASE", "DEFAULT_SIZE", "PortBlock", "PortBlocks", "port_free"]

DEFAULT_BASE = 20000
DEFAULT_SIZE = 10
_LAST_PORT = 65535


@dataclass(frozen=True)
class PortBlock:
    """Ports ``first`` to ``first + size - 1``, held by ``holder`` (a task id) until released."""

    first: int
    size: int
    holder: str

    @property
    def ports(self) -> range:
        return range(self.first, self.first + self.size)


def port_free(port: int) -> bool:
    """Whether a TCP server could bind ``port`` on 127.0.0.1 now (SO_REUSEADDR, as servers set it,
    so a port whose last connection lingers in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortBlocks:
    """Hands out distinct blocks of ports to running tasks; thread-safe. See the module."""

    def __init__(
        self,
        base: int = DEFAULT_BASE,
        *,
        size: int = DEFAULT_SIZE,
        last: int = _LAST_PORT,
        lock_dir: Path | None = None,
        probe: Callable[[int], bool] = port_free,
    ):
        if not (1024 <= base <= last <= _LAST_PORT) or size < 1 or base + size - 1 > last:
            raise InvalidArgumentError(f"ports {base} to {last} in blocks of {size}: not a range of user ports")
        self.base, self.size, self.last = base, size, last
        self._lock_dir = lock_dir
        self._probe = probe
        self._lock = threading.Lock()  # guards _held
        self._held: dict[int, tuple[PortBlock, int | None]] = {}  # by first port: the block, its flock's fd

    def acquire(self, holder: str) -> PortBlock:
        """The lowest free block, now ``holder``'s; raises PortsExhaustedError if none is free."""
        if self._lock_dir is not None:
            ensure_private_dir(self._lock_dir)
        with self._lock:
            for first in range(self.base, self.last - self.size + 2, self.size):
                if first in self._held:
                    continue
                free, fd = self._lock_block(first)
                if not free:
                    continue  # another process holds it
                if all(self._probe(port) for port in range(first, first + self.size)):
                    block = PortBlock(first, self.size, holder)
                    self._held[first] = (block, fd)
                    return block
                if fd is not None:
                    os.close(fd)
        raise PortsExhaustedError(f"no block of {self.size} free ports between {self.base} and {self.last}")

    def release(self, block: PortBlock) -> None:
        """Free ``block`` for the next task; releasing a block not held (twice) does nothing."""
        with self._lock:
            held = self._held.get(block.first)
            if held is None or held[0] != block:
                return
            del self._held[block.first]
        if held[1] is not None:
            os.close(held[1])  # drops the flock

    def held(self) -> list[PortBlock]:
        """The blocks held now, lowest first."""
        with self._lock:
            return sorted((block for block, _ in self._held.values()), key=lambda b: b.first)

    def _lock_block(self, first: int) -> tuple[bool, int | None]:
        """Whether no other process holds the block, and the fd of the flock that now says so
        (None without ``lock_dir``). Raises StateError if the lock file cannot be opened."""
        if self._lock_dir is None:
            return True, None
        fd = try_lock(self._lock_dir / f"{first}.lock", "the port lock")
        return fd is not None, fd

    def close(self) -> None:
        """Release every block (the end of a run)."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for _, fd in held:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
