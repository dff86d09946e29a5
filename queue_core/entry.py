"""TaskEntry: the scheduler's record of one task, which the queue and the wait groups read too,
and the claims a task is entered with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .claims import Access, Claim
from .errors import InvalidClaimError
from .ownership import FileOwnership
from .task import AgentTask, TaskState
from .waits import WaitReason, seconds_text

if TYPE_CHECKING:  # waitgroups and poolwaits import this module
    from .poolwaits import PoolWait
    from .waitgroups import WaitGroup

__all__ = ["TaskEntry", "claims_of"]


@dataclass(eq=False, slots=True)
class TaskEntry:
    """The scheduler's record of one task. Read it; only the scheduler changes it."""

    task: AgentTask
    key: tuple[int, int]  # (-priority, submission order): smaller runs first
    writes: tuple[Claim, ...]
    reads: tuple[Claim, ...]
    id: str = field(init=False)
    agent: str = field(init=False)
    claims: tuple[tuple[Claim, Access], ...] = field(init=False, repr=False)  # writes, reads, then added
    #: What its attempt that runs (or ran last) claimed as it ran, beyond ``writes`` and ``reads``.
    added: tuple[tuple[Claim, Access], ...] = ()
    pools: tuple[tuple[str, int], ...] = field(init=False, repr=False)  # (quota pool, units) it takes
    state: TaskState = TaskState.PENDING
    attempts: int = 0
    rate_limits: int = 0  # attempts that hit a rate limit: they spend no retry
    unmet: int = 0  # dependencies that have not succeeded yet
    dependents: list[str] = field(default_factory=list)
    # Held back by the reservation, parked in a group, or parked on a pool.
    blocker: WaitReason | WaitGroup | PoolWait | None = None
    retry_at: float | None = None
    deadline: float | None = None
    timed_out: bool = False  # ran past its deadline; claims held until it returns
    stop_requested: bool = False
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    ran_s: float = 0.0  # the time of every attempt that ended, back-offs left out
    outcome_reason: str | None = None  # why skipped, or the last error

    def __post_init__(self) -> None:
        # Plain attributes, not properties: the dispatch loop reads them for every task.
        self.id = self.task.id
        self.agent = self.task.agent_type
        self.claims = self.declared()
        self.pools = self.task.pool_units

    def declared(self) -> tuple[tuple[Claim, Access], ...]:
        """Its claims as entered: writes, then reads."""
        return (*((c, Access.WRITE) for c in self.writes), *((c, Access.READ) for c in self.reads))

    def held(self, access: Access) -> tuple[Claim, ...]:
        """The claims of ``access`` it holds while it runs, those it added included."""
        return tuple(claim for claim, how in self.claims if how is access)

    def timed_out_reason(self) -> str:
        """Why its attempt, past its deadline, ends: ``timed out after 1s (attempt 2 of 3)``.

        Attempts that hit a rate limit are not counted, as they spend no retry.
        """
        timeout = self.task.timeout or 0.0
        after = f"{timeout:g}s" if timeout < 60 else seconds_text(timeout)  # as set: 0.5s, not 0s
        return f"timed out after {after} (attempt {self.attempts - self.rate_limits} of {self.task.retries + 1})"


def claims_of(
    task: AgentTask, ownership: FileOwnership, resolve: Callable[[Claim], Sequence[Claim]] | None
) -> tuple[tuple[Claim, ...], tuple[Claim, ...]]:
    """``task``'s (writes, reads), each claim turned by ``resolve`` (if given) into the claims on
    real paths it stands for. A task that names nothing writes what its agent owns, so it is
    conservative rather than unsafe. Raises InvalidClaimError naming the task and field."""
    writes, reads = task.write_claims, task.read_claims
    if not writes and not reads:
        writes = ownership.owned_claims(task.agent_type)
    if resolve is None:
        return writes, reads
    return _resolved(resolve, writes, task.id, "files_to_modify"), _resolved(resolve, reads, task.id, "reads")


def _resolved(
    resolve: Callable[[Claim], Sequence[Claim]], claims: tuple[Claim, ...], task_id: str, field: str
) -> tuple[Claim, ...]:
    try:
        return tuple(dict.fromkeys(c for claim in claims for c in resolve(claim)))
    except InvalidClaimError as exc:
        raise InvalidClaimError(exc.claim, exc.reason, task_id=task_id, field=field) from None
