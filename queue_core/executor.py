"""Where attempts run: the Executor seam, and ThreadExecutor, the queue's worker threads.

The engine decides what starts; an executor only runs it. ``start`` is called with the
engine's lock held, so it must neither block nor call the engine; it passes each started entry,
later and on a thread of its own, to the ``work`` function it was made with (the engine's:
it runs the attempt, and often the next one that attempt's end unblocked, on the same thread).
A Dask executor (issue 16) will be a second implementation.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from .scheduler import TaskEntry

__all__ = ["Executor", "ThreadExecutor", "start_thread"]

log = logging.getLogger("queue_core")


class Executor(Protocol):
    def start(self, entries: Sequence[TaskEntry]) -> None:
        """Run each of ``entries`` soon (engine's lock held: never block, never call the engine)."""

    def close(self) -> None:
        """No work comes any more: threads end once idle."""

    def join(self) -> None:
        """Wait until the threads have ended (after ``close``)."""


class ThreadExecutor:
    """Up to ``max_workers`` daemon threads, started as work comes and kept while the queue
    lives: a thread idle between tasks sleeps on a condition, it never polls."""

    def __init__(self, work: Callable[[TaskEntry], None], max_workers: int) -> None:
        self._work = work
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # runnable got an entry, or closing
        self._runnable: deque[TaskEntry] = deque()  # started by the scheduler, no thread yet
        self._idle = 0
        self._closed = False
        self.workers: list[threading.Thread] = []

    def start(self, entries: Sequence[TaskEntry]) -> None:
        with self._lock:
            self._runnable.extend(entries)
            self._ready.notify(len(entries))
            missing = min(len(self._runnable) - self._idle, self._max_workers - len(self.workers))
            for _ in range(missing):
                thread = threading.Thread(target=self._loop, name=f"TaskQueue-worker-{len(self.workers)}", daemon=True)
                if not start_thread(thread):
                    break  # the workers there are will drain the work
                self.workers.append(thread)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._runnable:
                    if self._closed:
                        self.workers.remove(threading.current_thread())  # start() counts the live ones
                        return
                    self._idle += 1
                    self._ready.wait()
                    self._idle -= 1
                entry = self._runnable.popleft()
            self._work(entry)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._ready.notify_all()

    def join(self) -> None:
        joined: set[threading.Thread] = set()
        while True:  # a worker may start another worker while we join
            with self._lock:
                threads = [t for t in self.workers if t not in joined]
            if not threads:
                return
            for thread in threads:
                thread.join()
                joined.add(thread)


def start_thread(thread: threading.Thread) -> bool:
    """Start ``thread``; False if no thread can start (e.g. at interpreter shutdown, 3.12+)."""
    try:
        thread.start()
    except RuntimeError:
        log.warning("could not start %s", thread.name, exc_info=True)
        return False
    return True
