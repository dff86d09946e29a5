"""SIGINT, SIGTERM and SIGHUP for the commands that wait: caught without raising in the main thread.

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

#: Ctrl-C; ``kill`` (and CI runners cancelling a job); a closed terminal or a dropped ssh session.
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Signals:
    """While entered, SIGINT, SIGTERM and SIGHUP are only noted; :meth:`wait` and :meth:`wait_for` see them."""

    def __enter__(self) -> Signals:
        self._signal_r, self._signal_w = os.pipe()
        os.set_blocking(self._signal_w, False)
        self._previous = {s: signal.signal(s, _ignore) for s in STOPS}
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self._signal_r)
        os.close(self._signal_w)

    def wait(self, seconds: float) -> int | None:
        """Wait up to ``seconds``; the signal's number as soon as one of STOPS comes, else None."""
        ready = self._select([], seconds)
        return ready if isinstance(ready, int) else None

    def wait_for(self, finish: Callable[[], object]) -> int | None:
        """Run ``finish`` in a thread; the number of a signal of STOPS that came first, or None."""
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
            ready = self._select([done_r], None)
            return ready if isinstance(ready, int) else None
        finally:
            os.close(done_r)

    def _select(self, fds: list[int], timeout: float | None) -> list[int] | int:
        """The ready ``fds`` (empty on timeout), or the number of a signal of STOPS that came first."""
        while True:
            ready, _, _ = select.select([self._signal_r, *fds], [], [], timeout)
            if self._signal_r not in ready:
                return ready
            # The wakeup fd gets every signal that has a Python handler: only ours count.
            for signum in os.read(self._signal_r, 512):
                if signum in STOPS:
                    return signum


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Nothing to do here: the wakeup fd has the signal already (see the module)."""
