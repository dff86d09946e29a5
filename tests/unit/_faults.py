"""A TaskQueue over parts that fail on cue, for the race tests: no monkeypatching.

A registry step releases the queue's lock for its file I/O. These parts widen that window or
fail in it, through the queue's own seams (``TaskQueue._registry_type``, ``_scheduler_type``):

- :class:`FaultyRegistry`: run a hook at the next ``begin`` that a condition allows (as if
  another process held the lock meanwhile); fail reads or writes (a full disk); interrupt a
  write (as Ctrl-C would); count the writes made without the lock; act inside ``finish_run``.
- :class:`TellingScheduler`: set an event when a task's end is recorded, under the queue's
  lock, before the dispatch it asks for; note how many registry reads came before each start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from queue_core import TaskQueue
from queue_core.errors import StateError
from queue_core.records import RunHistory
from queue_core.registry import Registry, RegistrySession
from queue_core.scheduler import Scheduler, TaskEntry


class FaultyRegistry(Registry):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_begin: tuple[Callable[[], bool], Callable[[], None]] | None = None
        self.begins = 0  # every begin(): each is a read of the registry under its lock
        self.unreadable = False
        self.failing = threading.Event()  # every write fails while set
        self.failed = threading.Event()  # a write has failed
        self.write_attempts = 0  # writes tried while failing
        self.unlocked_writes = 0  # writes tried without the registry's lock: must stay 0
        self.interrupt_write_on: threading.Thread | None = None  # the next write there raises Interrupt
        self.in_finish_run: Callable[[], None] | None = None  # run inside finish_run, before it drops the holds

    def hold_next_begin(self, when: Callable[[], bool], inside: Callable[[], None]) -> None:
        """The next ``begin`` for which ``when()`` holds first runs ``inside()``."""
        self.before_begin = (when, inside)

    def begin(self) -> RegistrySession:
        self.begins += 1
        hook = self.before_begin
        if hook is not None and hook[0]():
            self.before_begin = None
            hook[1]()
        if self.unreadable:
            raise StateError(self.path, "cannot read the claim registry: Input/output error")
        return super().begin()

    def write(self, session: RegistrySession) -> None:
        if not self.locked:
            self.unlocked_writes += 1
        if self.interrupt_write_on is threading.current_thread():
            self.interrupt_write_on = None
            raise Interrupt
        if self.failing.is_set():
            self.write_attempts += 1
            self.failed.set()
            raise StateError(self.path, "cannot write: No space left on device")
        super().write(session)

    def finish_run(self, history: RunHistory | None) -> None:
        if self.in_finish_run is not None:
            self.in_finish_run()
        super().finish_run(history)

    def attempts_in(self, seconds: float) -> int:
        """How many writes were tried while failing, in the next ``seconds``."""
        before = self.write_attempts
        threading.Event().wait(seconds)  # never set: a measure of time, not a synchronisation
        return self.write_attempts - before


class Interrupt(BaseException):
    """Like KeyboardInterrupt: not an error the queue handles."""


class TellingScheduler(Scheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watched: dict[str, threading.Event] = {}
        self.batch_added = threading.Event()
        #: For each task started: how many registry reads ``reads()`` counted as it was started.
        self.started_after: dict[str, int] = {}
        self.reads: Callable[[], int] = lambda: 0

    def finished(self, task_id: str) -> threading.Event:
        """An event set once ``task_id``'s end is recorded (under the queue's lock)."""
        return self.watched.setdefault(task_id, threading.Event())

    def finish(self, task_id: str, *args: Any) -> list[TaskEntry]:
        try:
            return super().finish(task_id, *args)
        finally:
            if task_id in self.watched:
                self.watched[task_id].set()

    def dispatch(self, now: float) -> list[TaskEntry]:
        started = super().dispatch(now)
        for entry in started:
            self.started_after.setdefault(entry.id, self.reads())
        return started

    def add_batch(self, *args: Any) -> list[TaskEntry]:
        try:
            return super().add_batch(*args)
        finally:
            self.batch_added.set()  # still under the queue's lock: the dispatch request follows in it


class FaultyQueue(TaskQueue):
    _registry_type = FaultyRegistry
    _scheduler_type = TellingScheduler

    @property
    def faults(self) -> FaultyRegistry:
        registry = self.registry
        assert isinstance(registry, FaultyRegistry)
        return registry

    @property
    def sched(self) -> TellingScheduler:
        sched = self._engine.sched
        assert isinstance(sched, TellingScheduler)
        return sched
