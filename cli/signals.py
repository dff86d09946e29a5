"""SIGINT, SIGTERM and SIGHUP for the commands that wait: caught without raising in the main thread.

An exception raised by a signal handler can land anywhere, for instance between a lock's
acquire and the ``try`` that would release it (leaving a queue locked for good), or in the
middle of Rich drawing a frame (leaving the terminal's cursor hidden). So the handlers only
note the signal (for a wait to come: one may come after the last wait of a Signals, and the
next must see it), and it reaches the main thread through a pipe that it waits on in select().

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

from ._early import STOPS, note, note_early
from ._early import noted as _early

__all__ = ["STOPS", "Signals", "note_early", "noted"]


def noted() -> int | None:
    """The stop signal noted since the command started (see :func:`note_early`), if any."""
    return _early[0] if _early else None


class Signals:
    """While entered, SIGINT, SIGTERM and SIGHUP are only noted; :meth:`wait`, :meth:`wait_for`
    and :meth:`finish` see them.

    ``caught`` is the first that came (also before it was entered, see :func:`note_early`).
    Once one came, whatever :meth:`finish` waits for gets ``patience`` seconds in all, counted
    from that signal: a reader that went away (a CI log pipe nobody empties, a terminal held
    with Ctrl-S) cannot keep the command from ending when it is told to.
    """

    def __init__(self, patience: float = 2.0) -> None:
        self.caught: int | None = None
        self.patience = patience
        self._caught_at = 0.0

    def __enter__(self) -> Signals:
        self._signal_r, self._signal_w = os.pipe()
        os.set_blocking(self._signal_w, False)
        # The pipe first: a signal between the two lines is then noted, not lost.
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
        self._previous = {s: signal.signal(s, note) for s in STOPS}
        if _early:
            self._catch(_early[0])
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        if _early:  # one that came after the last wait: its handler noted it, for whoever waits next
            self._catch(_early[0])
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
        threading.Thread(target=_then_write, args=(finish, done_w), name="project-manager-wait", daemon=True).start()
        try:
            self._select([done_r], None)
            return self.caught
        finally:
            os.close(done_r)

    def finish(self, work: Callable[[], object]) -> bool:
        """Run ``work`` in a thread until it returns; but once a stop signal came (or comes
        meanwhile), only until ``patience`` seconds after it. True if it returned.

        Work left unfinished goes on in its (daemon) thread: it must hold no lock that the
        rest of the command, or its exit, needs.
        """
        done_r, done_w = os.pipe()
        threading.Thread(target=_then_write, args=(work, done_w), name="project-manager-finish", daemon=True).start()
        try:
            while True:
                left = None if self.caught is None else self._caught_at + self.patience - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if done_r in self._select([done_r], left):
                    return True
        finally:
            os.close(done_r)

    def _catch(self, signum: int) -> None:
        if self.caught is None:
            self.caught = signum
            self._caught_at = time.monotonic()

    def _select(self, fds: list[int], timeout: float | None) -> list[int]:
        """The ready ``fds`` (empty on timeout); returns early, noting it, when a signal of STOPS comes."""
        while True:
            ready, _, _ = select.select([self._signal_r, *fds], [], [], timeout)
            if self._signal_r not in ready:
                return ready
            # The wakeup fd gets every signal that has a Python handler: only ours count.
            for signum in os.read(self._signal_r, 512):
                if signum in STOPS:
                    self._catch(signum)
            if self.caught is not None:
                return []


def _then_write(work: Callable[[], object], done: int) -> None:
    """Run ``work``, then say so on ``done`` (which it closes); it may outlive its waiter."""
    try:
        work()
    finally:
        with contextlib.suppress(BrokenPipeError):
            os.write(done, b".")
        os.close(done)
