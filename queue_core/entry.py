"""TaskEntry: the scheduler's record of one task, which the queue and the wait groups read too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .claims import Access, Claim
from .task import AgentTask, TaskState

if TYPE_CHECKING:  # both refer to entries
    from .waitgroups import WaitGroup
    from .waits import WaitReason

__all__ = ["TaskEntry"]


@dataclass(eq=False, slots=True)
class TaskEntry:
    """The scheduler's record of one task. Read it; only the scheduler changes it."""

    task: AgentTask
    key: tuple[int, int]  # (-priority, submission order): smaller runs first
    writes: tuple[Claim, ...]
    reads: tuple[Claim, ...]
    id: str = field(init=False)
    agent: str = field(init=False)
    claims: tuple[tuple[Claim, Access], ...] = field(init=False, repr=False)  # writes, then reads
    state: TaskState = TaskState.PENDING
    attempts: int = 0
    rate_limits: int = 0  # attempts that hit a rate limit: they spend no retry
    unmet: int = 0  # dependencies that have not succeeded yet
    dependents: list[str] = field(default_factory=list)
    blocker: WaitReason | WaitGroup | None = None  # held back by the reservation, or parked in a group
    retry_at: float | None = None
    deadline: float | None = None
    timed_out: bool = False  # ran past its deadline; claims held until it returns
    stop_requested: bool = False
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    outcome_reason: str | None = None  # why skipped, or the last error

    def __post_init__(self) -> None:
        # Plain attributes, not properties: the dispatch loop reads them for every task.
        self.id = self.task.id
        self.agent = self.task.agent_type
        self.claims = (*((c, Access.WRITE) for c in self.writes), *((c, Access.READ) for c in self.reads))
