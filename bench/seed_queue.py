"""The seed design of US-043, implemented faithfully: the anchor the benchmarks compare with.

Not part of queue_core. Exactly what the design note describes: a ``ThreadPoolExecutor`` of
``max_parallel`` workers, one ``threading.Lock``, ``running_agents`` / ``running_files`` sets,
exact-string file matching, and every task busy-waits on its worker thread with
``while not can_execute(): time.sleep(POLL)`` (POLL = 1 s, "simple busy-wait polling
(1-second intervals)") before it runs, releasing its agent and files in a ``finally`` block.

The one liberty taken: the check and the taking of the agent and files happen in the same
critical section (``_try_acquire``), as a correct reading of the note must do; checking and
taking in two steps would let two conflicting tasks start together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

POLL = 1.0  # seconds, as in the design note


@dataclass
class SeedAgentTask:
    """The note's AgentTask dataclass."""

    agent_type: str
    task_description: str
    files_to_modify: list[str]
    execute_fn: Callable[[], Any]
    priority: int = 0  # "future use" in the note: ignored


class SeedTaskQueue:
    """The note's TaskQueue: thread pool, lock, two sets, 1-second polling."""

    def __init__(self, max_parallel: int = 4, poll: float = POLL):
        self.max_parallel = max_parallel
        self.poll = poll
        self.executor = ThreadPoolExecutor(max_workers=max_parallel)
        self.lock = threading.Lock()
        self.running_agents: set[str] = set()
        self.running_files: set[str] = set()
        self.queued_tasks = 0

    def submit_task(self, task: SeedAgentTask) -> Future[Any]:
        with self.lock:
            self.queued_tasks += 1
        return self.executor.submit(self._execute_task, task)

    def _can_execute_now(self, task: SeedAgentTask) -> bool:
        """The note's three checks, verbatim (lock held)."""
        if task.agent_type in self.running_agents:
            return False  # singleton (US-035)
        for file_path in task.files_to_modify:
            if file_path in self.running_files:
                return False  # exact-string file match (US-038)
        return len(self.running_agents) < self.max_parallel

    def _try_acquire(self, task: SeedAgentTask) -> bool:
        with self.lock:
            if not self._can_execute_now(task):
                return False
            self.running_agents.add(task.agent_type)
            self.running_files.update(task.files_to_modify)
            self.queued_tasks -= 1
            return True

    def _execute_task(self, task: SeedAgentTask) -> Any:
        while not self._try_acquire(task):
            time.sleep(self.poll)  # the busy-wait the design note describes
        try:
            return task.execute_fn()
        finally:
            with self.lock:
                self.running_agents.discard(task.agent_type)
                self.running_files.difference_update(task.files_to_modify)

    def get_status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "running_agents": sorted(self.running_agents),
                "running_files": sorted(self.running_files),
                "queued_tasks": self.queued_tasks,
            }

    def shutdown(self, wait: bool = True) -> None:
        self.executor.shutdown(wait=wait)
