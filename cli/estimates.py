"""The history behind estimates, for ``delegate-multiple``: each task's estimate from the
repository's history before the run, and each task that succeeds recorded as it ends.

The library keeps the history (queue_core.durations) and makes the estimates
(queue_core.estimates); this only wires them to a run. A history that cannot be read or
written costs a warning, never the run: estimates only order tasks and tell the time left.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

from queue_core import AgentTask, TaskEvent
from queue_core.durations import DurationHistory
from queue_core.errors import StateError
from queue_core.estimates import Estimate, Sample, task_fingerprint
from queue_core.registry import state_dir


class History:
    """The durations of the repository at ``repo_root``: read by :meth:`estimate`, appended by :meth:`event`."""

    def __init__(self, repo_root: Path) -> None:
        self._store = DurationHistory(state_dir(repo_root))
        #: Each task's estimate, by id; None while the repository has no history at all.
        self.found: dict[str, Estimate | None] | None = None
        self._fingerprints: dict[str, tuple[str, str]] = {}  # task id -> (agent, fingerprint)
        self._lock = threading.Lock()  # guards _failed: tasks end on several threads
        self._failed = False

    def estimate(self, tasks: list[AgentTask], warn: Callable[[str], None]) -> list[AgentTask]:
        """``tasks``, each with its ``estimate_s`` from the history (unchanged without history);
        a history that cannot be read is ``warn``ed of, and gives none."""
        self._fingerprints = {task.id: (task.agent_type, task_fingerprint(task)) for task in tasks}
        try:
            estimates = self._store.estimates()
        except StateError as exc:
            warn(f"{exc}; no estimates this run")
            return tasks
        if self._store.damaged:
            warn(f"{self._store.path}: {self._store.damaged} damaged line(s) skipped")
        found = {task.id: estimates.of(task.agent_type, task.id, self._fingerprints[task.id][1]) for task in tasks}
        if not any(found.values()):
            return tasks  # no history: the run is as it was before estimates
        self.found = found
        return [_with(task, found[task.id]) for task in tasks]

    def seconds(self) -> dict[str, float]:
        """Each estimate in seconds, by task id (for --json: a task without one is left out)."""
        return {tid: found.seconds for tid, found in (self.found or {}).items() if found is not None}

    def event(self, event: TaskEvent) -> str | None:
        """Record the duration of a task that succeeded; the warning to show if that failed,
        the first time only."""
        if event.kind != "succeeded" or event.duration_s is None or event.task_id not in self._fingerprints:
            return None
        agent, fingerprint = self._fingerprints[event.task_id]
        try:
            self._store.record(Sample(agent, event.task_id, fingerprint, event.duration_s, time.time()))
        except StateError as exc:
            with self._lock:
                first, self._failed = not self._failed, True
            return f"{exc}; durations are not recorded for estimates" if first else None
        return None


def _with(task: AgentTask, found: Estimate | None) -> AgentTask:
    return task if found is None else dataclasses.replace(task, estimate_s=found.seconds)
