"""The queue's one timer: a thread that calls the engine's ``tick`` when it is due.

``tick`` does whatever has fallen due (deadlines, retries, looks at other processes, the
registry lease, records, heartbeats) and returns the seconds until it is due again (inf if
nothing is timed now), or None once the queue is done. Whoever changes what is timed calls
``wake``: the thread looks again at once, or starts if none runs. Once started it lives until
the queue is done, so that what falls due later never needs a new thread: at interpreter exit
(Python 3.12+) none can start. Tests call ``tick`` themselves instead (see :class:`Timer`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from .executor import start_thread

__all__ = ["MAX_WAIT_S", "Timer", "TimerThread"]

#: The longest the timer sleeps at once: a wait of years (a huge timeout) would overflow, and
#: looking again costs nothing.
MAX_WAIT_S = 3600.0


class Timer(Protocol):
    def wake(self) -> bool:
        """Have ``tick`` called again soon (engine's lock may be held); False if it cannot be."""

    def join(self) -> None:
        """Wait until the timer's thread, if any, has ended."""


class TimerThread:
    def __init__(self, tick: Callable[[], float | None]) -> None:
        self._tick = tick
        self._lock = threading.Lock()
        self._woken = threading.Condition(self._lock)
        self._poked = False  # wake() was called since the last tick began
        self._thread: threading.Thread | None = None

    def wake(self) -> bool:
        with self._lock:
            self._poked = True
            if self._thread is not None:
                self._woken.notify()
                return True
            thread = threading.Thread(target=self._loop, name="TaskQueue-timer", daemon=True)
            if not start_thread(thread):
                return False
            self._thread = thread
            return True

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._poked = False
            delay = self._tick()
            with self._lock:
                if self._poked:
                    continue
                if delay is None:
                    self._thread = None  # done; a wake() for a lease left over starts another
                    return
                if delay > 0:
                    self._woken.wait(min(delay, MAX_WAIT_S))

    def join(self) -> None:
        while True:
            with self._lock:
                thread = self._thread
            if thread is None or thread is threading.current_thread():
                return
            thread.join()
            with self._lock:
                if self._thread is thread:  # it died without saying so: nothing to wait for
                    return
