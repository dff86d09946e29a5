"""SIGINT, SIGTERM and SIGHUP for the commands that wait: caught without raising in the main thread.

An exception raised by a signal handler can land anywhere, for instance between a lock's
acquire and the ``try`` that would release it (leaving a queue locked for good), or in the
middle of Rich drawing a frame (leaving the terminal's cursor hidden). So the handlers do
nothing, and the signal reaches the main thread through a pipe that it waits on in select().

The pipe is the interpreter's wakeup fd: its C-level handler writes the signal's number there
whichever thread the kernel delivers the signal to. A Python handler writing to the pipe would
not do: it runs only in the main thread, and only once that thread wakes up.

From the first moment of the ``project-manager`` process (:func:`note_early`, before the heavy
imports) to the end, no stop signal is ever fatal or lost: one that comes before a command
waits is noted, and the command sees it as soon as it starts waiting; once one came, the
others are ignored, so a second Ctrl-C cannot cut the summary short or change the exit code.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["STOPS", "Signals", "note_early"]

#: Ctrl-C; ``kill`` (and CI runners cancelling a job); a closed terminal or a dropped ssh session.
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_early: list[int] = []  # stop signals noted before a command waited


def note_early() -> None:
    """From now on, a stop signal is noted for the next :class:`Signals`, never fatal (main thread only)."""
    for sig in STOPS:
        signal.signal(sig, _note)


class Signals:
    """While entered, SIGINT, SIGTERM and SIGHUP are only noted; :meth:`wait` and :meth:`wait_for` see them.

    ``caught`` is the first that came (also before it was entered, see :func:`note_early`).
    """

    def __init__(self) -> None:
        self.caught: int | None = None

    def __enter__(self) -> Signals:
        self._signal_r, self._signal_w = os.pipe()
        os.set_blocking(self._signal_w, False)
        # The pipe first: a signal between the two lines is then noted, not lost.
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
        self._previous = {s: signal.signal(s, _ignore) for s in STOPS}
        if _early:
            self.caught = _early[0]
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        for sig, handler in self._previous.items():
            # Once stopping, stay so: a second signal in the summary or the exit changes nothing.
            signal.signal(sig, signal.SIG_IGN if self.caught is not None else handler)
        os.close(self._signal_r)
        os.close(self._signal_w)

    def wait(self, seconds: float) -> int | None:
        """Wait up to ``seconds``; the signal's number as soon as one of STOPS comes (or came), else None."""
        if self.caught is None:
            self._select([], seconds)
        return self.caught

    def wait_for(self, finish: Callable[[], object]) -> int | None:
        """Run ``finish`` in a thread; the number of a signal of STOPS that came first (or earlier), or None.

        If one came before, ``finish`` is not run at all.
        """
        if self.caught is not None:
            return self.caught
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
            self._select([done_r], None)
            return self.caught
        finally:
            os.close(done_r)

    def write(self, fd: int, data: bytes, *, patience: float) -> bool:
        """Write ``data`` to ``fd`` however long its reader takes, but once a stop signal came
        (or comes meanwhile), for at most ``patience`` more seconds; False if it was cut short.

        So a reader that went away (a CI log pipe nobody empties) cannot keep the command from
        ending when it is told to.
        """
        deadline: float | None = None
        blocking = True
        try:
            blocking = os.get_blocking(fd)
            os.set_blocking(fd, False)
            while data:
                if self.caught is not None and deadline is None:
                    deadline = time.monotonic() + patience
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                ready = self._select([], left, writable=[fd])
                if fd in ready:
                    with contextlib.suppress(BlockingIOError):
                        data = data[os.write(fd, data) :]
            return True
        except OSError:  # the reader is gone (a closed pipe, a hung-up terminal)
            return False
        finally:
            with contextlib.suppress(OSError):
                os.set_blocking(fd, blocking)

    def _select(self, fds: list[int], timeout: float | None, *, writable: list[int] | None = None) -> list[int]:
        """The ready ``fds`` and ``writable`` (empty on timeout); returns early, noting it, when a
        signal of STOPS comes."""
        while True:
            ready, ready_to_write, _ = select.select([self._signal_r, *fds], writable or [], [], timeout)
            if self._signal_r not in ready:
                return ready + ready_to_write
            # The wakeup fd gets every signal that has a Python handler: only ours count.
            for signum in os.read(self._signal_r, 512):
                if signum in STOPS and self.caught is None:
                    self.caught = signum
            if self.caught is not None:
                return []


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Nothing to do here: the wakeup fd has the signal already (see the module)."""


def _note(signum: int, frame: FrameType | None) -> None:
    if not _early:
        _early.append(signum)
