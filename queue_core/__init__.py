"""queue_core: run agent tasks in parallel on one repository, as many at once as is safe.

    from queue_core import TaskQueue, AgentTask

    with TaskQueue(max_parallel=4) as queue:
        future = queue.submit_task(AgentTask("code_developer", "Implement X", ["src/x.py"], run_x))
        print(future.result())

The library never prints and never imports a user-interface package.
"""

from __future__ import annotations

from .claims import Access, Claim, ClaimIndex, normalise_path, overlap_witness, overlaps
from .errors import (
    AgentAlreadyRunningError,
    CapacityError,
    ClaimConflictError,
    ConflictError,
    DependencyCycleError,
    DuplicateTaskError,
    InvalidClaimError,
    InvalidTaskError,
    InvalidTaskIdError,
    NotATaskError,
    QueueBrokenError,
    QueueError,
    QueueShutdownError,
    RateLimitedError,
    RunAliveError,
    StateError,
    SupervisorError,
    TaskSkippedError,
    TaskTimeoutError,
    UnknownDependencyError,
)
from .ownership import FileOwnership
from .queue import TaskEvent, TaskQueue
from .realpaths import ClaimResolver
from .registry import Registry
from .runner import AgentExitError, AgentReportedError, SubprocessAgent, render_argv
from .scheduler import Scheduler, TaskEntry
from .status import repo_status
from .task import AgentTask, Stoppable, TaskState, check_task_id
from .waits import WaitGroup, WaitReason

__all__ = [
    "Access",
    "AgentAlreadyRunningError",
    "AgentExitError",
    "AgentReportedError",
    "AgentTask",
    "CapacityError",
    "Claim",
    "ClaimConflictError",
    "ClaimIndex",
    "ClaimResolver",
    "ConflictError",
    "DependencyCycleError",
    "DuplicateTaskError",
    "FileOwnership",
    "InvalidClaimError",
    "InvalidTaskError",
    "InvalidTaskIdError",
    "NotATaskError",
    "QueueBrokenError",
    "QueueError",
    "QueueShutdownError",
    "RateLimitedError",
    "Registry",
    "RunAliveError",
    "Scheduler",
    "StateError",
    "Stoppable",
    "SubprocessAgent",
    "SupervisorError",
    "TaskEntry",
    "TaskEvent",
    "TaskQueue",
    "TaskSkippedError",
    "TaskState",
    "TaskTimeoutError",
    "UnknownDependencyError",
    "WaitGroup",
    "WaitReason",
    "check_task_id",
    "normalise_path",
    "overlap_witness",
    "overlaps",
    "render_argv",
    "repo_status",
]
