"""queue_core: run agent tasks in parallel on one repository, as many at once as is safe.

    from queue_core import TaskQueue, AgentTask

    with TaskQueue(max_parallel=4) as queue:
        future = queue.submit_task(AgentTask("code_developer", "Implement X", ["src/x.py"], run_x))
        print(future.result())

The library never prints and never imports a user-interface package.

``__all__`` names what a user calls. Every exception is in :mod:`queue_core.errors` (the
common ones are here too); the parts the queue is built of (``scheduler``, ``claims``,
``registry``, ``waits``...) are importable by their full path, for tests and tools, and may
change between versions.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from . import errors

# Every other exception stays importable here, as before; queue_core.errors is their home.
from .errors import (
    AgentAlreadyRunningError as AgentAlreadyRunningError,
)
from .errors import AgentExitError, ConflictError, QueueError, RateLimitedError, TaskSkippedError, TaskTimeoutError
from .errors import (
    AgentReportedError as AgentReportedError,
)
from .errors import (
    AmbiguousRunError as AmbiguousRunError,
)
from .errors import (
    CapacityError as CapacityError,
)
from .errors import (
    ClaimConflictError as ClaimConflictError,
)
from .errors import (
    ClaimDeadlockError as ClaimDeadlockError,
)
from .errors import (
    ClaimHeldError as ClaimHeldError,
)
from .errors import (
    ClaimRefusedError as ClaimRefusedError,
)
from .errors import (
    ClusterError as ClusterError,
)
from .errors import (
    DependencyCycleError as DependencyCycleError,
)
from .errors import (
    DuplicateTaskError as DuplicateTaskError,
)
from .errors import (
    GitError as GitError,
)
from .errors import (
    InvalidArgumentError as InvalidArgumentError,
)
from .errors import (
    InvalidClaimError as InvalidClaimError,
)
from .errors import (
    InvalidTaskError as InvalidTaskError,
)
from .errors import (
    InvalidTaskIdError as InvalidTaskIdError,
)
from .errors import (
    JournalError as JournalError,
)
from .errors import (
    MachineBusyError as MachineBusyError,
)
from .errors import (
    MergeBackError as MergeBackError,
)
from .errors import (
    MergeLockError as MergeLockError,
)
from .errors import (
    NotATaskError as NotATaskError,
)
from .errors import (
    NotRegularFileError as NotRegularFileError,
)
from .errors import (
    PoolFullError as PoolFullError,
)
from .errors import (
    PortsExhaustedError as PortsExhaustedError,
)
from .errors import (
    QueueBrokenError as QueueBrokenError,
)
from .errors import (
    QueueShutdownError as QueueShutdownError,
)
from .errors import (
    QueueUsageError as QueueUsageError,
)
from .errors import (
    RemoteAttemptError as RemoteAttemptError,
)
from .errors import (
    RepoLockError as RepoLockError,
)
from .errors import (
    RunAliveError as RunAliveError,
)
from .errors import (
    RunNotFoundError as RunNotFoundError,
)
from .errors import (
    SetupError as SetupError,
)
from .errors import (
    StateError as StateError,
)
from .errors import (
    SupervisorError as SupervisorError,
)
from .errors import (
    UnknownDependencyError as UnknownDependencyError,
)
from .errors import (
    UnmergedWorkError as UnmergedWorkError,
)
from .errors import (
    WorkerLostError as WorkerLostError,
)
from .errors import (
    WorktreeError as WorktreeError,
)
from .errors import (
    WorktreeLockError as WorktreeLockError,
)

# The rest is imported when first asked for (``from queue_core import TaskQueue``), so that what
# needs only a part (``project-manager claim``, run inside a task at each edit the claim hook
# cannot decide alone) does not pay for the whole library.
_LAZY = {
    "Limits": "machine",  # TaskQueue(limits=...); the sampler's types are in queue_core.machine
    "FileOwnership": "ownership",
    "TaskEvent": "queue",
    "TaskQueue": "queue",
    "QueueStatus": "records",  # what get_status() returns: for annotations, not called
    "TaskOutcome": "records",  # what outcomes() gives
    "SubprocessAgent": "runner",
    "RepoStatus": "status",  # what repo_status() returns
    "repo_status": "status",
    "AgentTask": "task",
    "TaskState": "task",
    "check_task_id": "task",
}

if TYPE_CHECKING:
    from .machine import Limits as Limits
    from .ownership import FileOwnership
    from .queue import TaskEvent, TaskQueue
    from .records import QueueStatus as QueueStatus
    from .records import TaskOutcome as TaskOutcome
    from .runner import SubprocessAgent
    from .status import RepoStatus as RepoStatus
    from .status import repo_status
    from .task import AgentTask, TaskState, check_task_id


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f".{name}", __name__)  # a part, as the eager package had it
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # asked once
    return value


__all__ = [
    "AgentExitError",
    "AgentTask",
    "ConflictError",
    "FileOwnership",
    "QueueError",
    "RateLimitedError",
    "SubprocessAgent",
    "TaskEvent",
    "TaskQueue",
    "TaskSkippedError",
    "TaskState",
    "TaskTimeoutError",
    "check_task_id",
    "errors",
    "repo_status",
]
