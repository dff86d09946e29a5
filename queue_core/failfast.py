"""Fail fast: once a task fails for good, start nothing new (``TaskQueue(fail_fast=...)``).

The decision is the engine's, under its lock, in the same section that records the failure and
before the dispatch that follows it: no task starts once the failure is decided, not even in
that step. Every task that has not started (queued, waiting for a dependency, a claim, a retry
or a rate-limit pause) ends CANCELLED, its reason naming the failure ("not started: fail-fast
after t3 failed"). Tasks already running finish; with ``"cancel"`` they are stopped, as
``abort`` stops them, and end CANCELLED ("stopped: fail-fast after t3 failed").

A failure is a task that ends FAILED, TIMED_OUT or RATE_LIMITED: an attempt that fails with a
retry due, or is paused by a rate limit, is not one yet. A task skipped or cancelled is none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .errors import InvalidArgumentError
from .graph import topological
from .scheduler import Scheduler, TaskEntry
from .task import TaskState

__all__ = ["FAILURES", "FailFast", "FailFastMode"]

#: What ``TaskQueue(fail_fast=...)`` takes: False (off); True (running tasks finish); "cancel"
#: (running tasks are stopped).
FailFastMode = bool | Literal["cancel"]

#: The end states that stop a queue that fails fast, as its reasons word them.
FAILURES = {TaskState.FAILED: "failed", TaskState.TIMED_OUT: "timed out", TaskState.RATE_LIMITED: "stayed rate-limited"}


@dataclass
class FailFast:
    """A queue's fail-fast rule and, once it tripped, why. Not thread-safe: the engine's lock guards it."""

    stop_running: bool = False
    #: "fail-fast after t3 failed", once a task failed for good; None before.
    reason: str | None = None
    #: The running tasks it stopped ("cancel"), whose end is then told as its doing.
    stopped: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, mode: object) -> FailFast | None:
        """The rule for ``TaskQueue(fail_fast=mode)``; None when off. Raises InvalidArgumentError
        for anything but False, True or "cancel"."""
        if mode is False:
            return None
        if mode is True or mode == "cancel":
            return cls(stop_running=mode == "cancel")
        raise InvalidArgumentError(f'fail_fast must be False, True or "cancel", got {mode!r}')

    def trip(self, changed: Iterable[TaskEntry]) -> bool:
        """Whether one of the ``changed`` entries just failed for good, and is the first to: then
        ``reason`` names it."""
        if self.reason is not None:
            return False
        failed = next((e for e in changed if e.state in FAILURES), None)
        if failed is None:
            return False
        self.reason = f"fail-fast after {failed.id} {FAILURES[failed.state]}"
        return True

    def cancel_waiting(self, sched: Scheduler, now: float) -> list[TaskEntry]:
        """Cancel every task of ``sched`` that is not running, each told why; returns what changed.

        Dependents first: a task whose dependency is cancelled before it would end SKIPPED
        ("dependency t4 cancelled") rather than say that the queue failed fast.
        """
        waiting = {e.id: e for e in sched.entries() if not e.state.is_terminal and e.state is not TaskState.RUNNING}
        order = topological({task_id: e.task.depends_on for task_id, e in waiting.items()})
        changed: list[TaskEntry] = []
        for task_id in reversed(order):
            again = "not retried" if waiting[task_id].attempts else "not started"
            changed.extend(sched.cancel(task_id, now, reason=f"{again}: {self.reason}"))
        return changed

    def stopped_reason(self, task_id: str) -> str | None:
        """Why ``task_id``, a running task this rule stopped, ended cancelled; None if it did not stop it."""
        return f"stopped: {self.reason}" if task_id in self.stopped else None
