"""SIGINT and SIGTERM for the commands that wait: caught without raising in the main thread.

An exception raised by a signal handler can land anywhere, for instance between a lock's
acquire and the ``try`` that would release it (leaving a queue locked for good), or in the
middle of Rich drawing a frame (leaving the terminal's cursor hidden). So the handlers do
nothing, and the signal reaches the main thread through a pipe that it waits on in select().

The pipe is the interpreter's wakeup fd: its C-level handler writes the signal's number there
whichever thread the kernel delivers the signal to. A Python handler writing to the pipe would
not do: it runs only in the main thread, and only once that thread wakes up.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["Signals"]

_STOPS = frozenset({signal.SIGINT, signal.SIGTERM})


class Signals:
    """While entered, SIGINT and SIGTERM are only noted; :meth:`wait` and :meth:`wait_for` see them."""

    def __enter__(self) -> Signals:
        self._signal_r, self._signal_w = os.pipe()
        os.set_blocking(self._signal_w, False)
        self._previous = {s: signal.signal(s, _ignore) for s in _STOPS}
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self._signal_r)
        os.close(self._signal_w)

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as SIGINT or SIGTERM comes."""
        return self._select([], seconds) is None

    def wait_for(self, finish: Callable[[], object]) -> bool:
        """Run ``finish`` in a thread; True if SIGINT or SIGTERM came first, False if it returned."""
        done_r, done_w = os.pipe()

        def run() -> None:  # owns done_w: it may still write after wait_for has returned
            try:
                finish()
            finally:
                with contextlib.suppress(BrokenPipeError):
                    os.write(done_w, b".")
                os.close(done_w)

        threading.Thread(target=run, name="project-manager-wait", daemon=True).start()
        try:
            return self._select([done_r], None) is None
        finally:
            os.close(done_r)

    def _select(self, fds: list[int], timeout: float | None) -> list[int] | None:
        """The ready ``fds`` (empty on timeout), or None if SIGINT or SIGTERM came first."""
        while True:
            ready, _, _ = select.select([self._signal_r, *fds], [], [], timeout)
            if self._signal_r not in ready:
                return ready
            # The wakeup fd gets every signal that has a Python handler: only ours count.
            if _STOPS & set(os.read(self._signal_r, 512)):
                return None


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Nothing to do here: the wakeup fd has the signal already (see the module)."""
