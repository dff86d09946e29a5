"""AgentTask, the states a task goes through, and the retry back-off."""

from __future__ import annotations

import enum
import itertools
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, TypeGuard, runtime_checkable

from .claims import Claim
from .errors import InvalidClaimError, InvalidTaskError, InvalidTaskIdError
from .pools import task_pools

__all__ = [
    "AgentTask",
    "Logged",
    "Stoppable",
    "Supervised",
    "TaskState",
    "check_task_id",
    "ended_error",
    "is_supervised",
]


class TaskState(enum.Enum):
    """Where a task is; the last six are terminal."""

    PENDING = "pending"  # waiting for its dependencies to succeed
    QUEUED = "queued"  # ready, waiting for its claims or a free slot
    RETRY_WAIT = "retry_wait"  # failed, waiting for its back-off to pass
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    RATE_LIMITED = "rate_limited"  # its agent stayed rate-limited beyond rate_limit_max_wait

    @property
    def is_terminal(self) -> bool:
        # A tuple, not a set: a set would hash the member, and Enum.__hash__ is Python code,
        # slow enough to show in a status of many tasks.
        return self not in _ACTIVE


_ACTIVE = (TaskState.PENDING, TaskState.QUEUED, TaskState.RETRY_WAIT, TaskState.RUNNING)


def ended_error(state: TaskState, reason: str | None, reported: str | None) -> str | None:
    """Why a task that ended in ``state`` did not succeed, as --json, the journal, ``show`` and
    the reports say it: the error its agent ``reported``, in its own words, else ``reason``;
    for a task skipped or cancelled, ``reason`` (why it was): an error an earlier attempt
    reported is not why it ended so. None for a task that succeeded."""
    if state is TaskState.SUCCEEDED:
        return None
    if state in (TaskState.SKIPPED, TaskState.CANCELLED):
        return reason or reported
    return reported or reason


@runtime_checkable
class Stoppable(Protocol):
    """An ``execute_fn`` that can be asked to stop early (on cancel or timeout).

    ``stop`` must return promptly and make the running call return or raise soon after;
    a plain function has no such hook, so it always runs to its end.
    """

    def __call__(self) -> Any: ...

    def stop(self) -> None: ...


@runtime_checkable
class Logged(Protocol):
    """An ``execute_fn`` that keeps a log of its attempts (``SubprocessAgent``): the queue notes
    there why it stops one (a timeout), since the log is where a reader looks."""

    def __call__(self) -> Any: ...

    def note(self, text: str) -> None: ...


@runtime_checkable
class Supervised(Protocol):
    """An ``execute_fn`` whose work runs in a process group of its own (``SubprocessAgent``).

    A queue with a registry sets ``record_group_in`` before each attempt to a file and the
    task's id: the group is appended there before the work runs (see queue_core.registry).
    """

    record_group_in: tuple[Path, str] | None

    def __call__(self) -> Any: ...


def is_supervised(fn: object) -> TypeGuard[Supervised]:
    """``isinstance(fn, Supervised)``, in a tenth of a microsecond rather than fourteen: it runs per task."""
    return hasattr(fn, "record_group_in")


# A task id names files (its agent's log), so it is a plain name, never a path.
_TASK_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def check_task_id(task_id: str) -> None:
    """Raise InvalidTaskIdError unless ``task_id`` is 1 to 100 ASCII letters, digits, ``._-``, not led by a dot."""
    if not _TASK_ID.fullmatch(task_id):
        raise InvalidTaskIdError(task_id)


#: The longest pause after a rate limit the agent did not name a reset for, unless the back-off is longer.
RATE_LIMIT_MAX_BACKOFF_S = 900.0

#: The ``pools`` of a task that takes none: one shared, read-only mapping, not a dict per task
#: (100,000 of them cost memory, and the garbage collector's time).
_NO_POOLS: Mapping[str, int] = MappingProxyType({})

# Process id in the prefix keeps generated ids unique across the processes sharing a repo.
_ids = itertools.count(1)


def _new_id() -> str:
    return f"task-{os.getpid()}-{next(_ids)}"


@dataclass(eq=False)
class AgentTask:
    """One unit of agent work: who does it, what it writes, and the function that does it.

    The first five fields are the design note's, in its order, so positional construction
    works. Paths are validated here, so a bad one fails when the task is built.
    """

    agent_type: str
    task_description: str
    files_to_modify: Sequence[str]
    execute_fn: Callable[[], Any]
    priority: int = 0
    _: KW_ONLY
    id: str = field(default_factory=_new_id)
    #: Paths read but not written: shared with other readers, exclusive against writers.
    reads: Sequence[str] = ()
    #: Ids of tasks that must succeed before this one starts.
    depends_on: Sequence[str] = ()
    #: Seconds the task may run; None for no limit.
    timeout: float | None = None
    #: How many times a failed (or timed-out) attempt is tried again.
    retries: int = 0
    #: Back-off before retry n: retry_delay * retry_backoff**(n-1), capped at retry_max_delay,
    #: then spread by +/- retry_jitter (a fraction) so retries of many tasks do not align.
    retry_delay: float = 1.0
    retry_backoff: float = 2.0
    retry_max_delay: float = 60.0
    retry_jitter: float = 0.1
    #: An attempt that hits a rate limit (raises RateLimitedError) pauses every task of its agent
    #: type, for the time the agent named or else for rate_limit_backoff * 2**(n-1) after the
    #: n-th limit in a row, at most RATE_LIMIT_MAX_BACKOFF_S (or rate_limit_backoff if larger);
    #: then the task runs again, its retries unspent. Once the agent has been limited for longer
    #: than rate_limit_max_wait in a row, a task limited again ends RATE_LIMITED.
    rate_limit_backoff: float = 30.0
    rate_limit_max_wait: float = 7200.0
    #: Seconds the task is expected to take (the CLI sets it from the repository's history; see
    #: queue_core.estimates), or None. Among tasks of one ``submit_tasks`` batch of equal
    #: priority, the one heading the longest chain of estimates starts first; it bounds nothing.
    estimate_s: float | None = None
    #: What the task needs of the machine while it runs: bytes of memory, and cores (1.5: one
    #: and a half). It starts only while the machine has that much beyond what the tasks running
    #: declared (see queue_core.machine_rule); None: nothing declared.
    memory: int | None = None
    cpus: float | None = None
    #: The quota pools it takes while it runs, and how many units of each: a mapping of pool
    #: names to units, or a list of names (one unit each); read back as a mapping. Each must be
    #: a pool of the queue, with that many units (see queue_core.pools).
    pools: Mapping[str, int] | Sequence[str] = ()
    #: ``pools`` as (name, units) pairs, in the order given: what the scheduler reads.
    pool_units: tuple[tuple[str, int], ...] = field(init=False, repr=False)
    write_claims: tuple[Claim, ...] = field(init=False, repr=False)
    read_claims: tuple[Claim, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise InvalidTaskError(f"the id must be a string, got {type(self.id).__name__}", field="id")
        check_task_id(self.id)
        if not isinstance(self.agent_type, str) or not self.agent_type.strip():
            raise InvalidTaskError("the agent type must be a non-empty string", task_id=self.id, field="agent_type")
        if not isinstance(self.task_description, str):
            raise InvalidTaskError("the description must be a string", task_id=self.id, field="task_description")
        if not callable(self.execute_fn):
            raise InvalidTaskError("execute_fn must be callable", task_id=self.id, field="execute_fn")
        self._check_int("priority", minimum=None)
        self._check_int("retries", minimum=0)
        for name in ("retry_delay", "retry_max_delay"):
            self._check_number(name, minimum=0.0)
        self._check_number("retry_backoff", minimum=1.0)
        self._check_number("retry_jitter", minimum=0.0, maximum=1.0)
        self._check_number("rate_limit_max_wait", minimum=0.0)
        self._check_number("rate_limit_backoff", minimum=0.0)
        if not 0 < self.rate_limit_backoff < math.inf:  # an endless pause would never end, nor say when
            raise InvalidTaskError("must be a positive number of seconds", task_id=self.id, field="rate_limit_backoff")
        if self.estimate_s is not None:
            self._check_number("estimate_s", minimum=0.0)
            if self.estimate_s == math.inf:
                raise InvalidTaskError("must be a finite number of seconds", task_id=self.id, field="estimate_s")
        if self.timeout is not None:
            self._check_number("timeout", minimum=0.0)
            if self.timeout <= 0:
                raise InvalidTaskError("must be a positive number of seconds", task_id=self.id, field="timeout")
        self._check_needs()
        self.files_to_modify = self._strings("files_to_modify")
        self.reads = self._strings("reads")
        self.depends_on = self._strings("depends_on")
        if self.id in self.depends_on:
            raise InvalidTaskError("a task cannot depend on itself", task_id=self.id, field="depends_on")
        if isinstance(self.pools, tuple) and not self.pools:  # the default: skip the checks, built per task
            self.pools, self.pool_units = _NO_POOLS, ()
        else:
            self.pools = task_pools(self.pools, self.id)
            self.pool_units = tuple(self.pools.items())
        self.write_claims = self._claims("files_to_modify")
        self.read_claims = self._claims("reads")

    def retry_delay_for(self, attempt: int, unit_random: float) -> float:
        """Seconds to wait before retry ``attempt`` (1-based); ``unit_random`` is in [0, 1)."""
        base = min(self.retry_delay, self.retry_max_delay)
        if 0 < base < self.retry_max_delay:  # grows; a zero delay stays zero (0 * inf is nan)
            try:
                base = min(self.retry_max_delay, base * self.retry_backoff ** (attempt - 1))
            except OverflowError:  # near attempt 1025 for a back-off of 2: long past the cap
                base = self.retry_max_delay
        return min(self.retry_max_delay, base * (1.0 + self.retry_jitter * (2.0 * unit_random - 1.0)))

    def rate_limit_delay_for(self, limits: int) -> float:
        """Seconds the agent pauses after the ``limits``-th rate limit in a row (1-based)."""
        cap = max(RATE_LIMIT_MAX_BACKOFF_S, self.rate_limit_backoff)
        return min(cap, self.rate_limit_backoff * 2.0 ** min(limits - 1, 64))

    def _strings(self, name: str) -> tuple[str, ...]:
        value = getattr(self, name)
        if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset):
            raise InvalidTaskError(
                f"must be a list of strings, got {type(value).__name__}", task_id=self.id, field=name
            )
        for item in value:
            if not isinstance(item, str):
                raise InvalidTaskError(f"must be a list of strings, got an item {item!r}", task_id=self.id, field=name)
        return tuple(value)

    def _claims(self, name: str) -> tuple[Claim, ...]:
        try:
            return tuple(Claim.parse(path) for path in getattr(self, name))
        except InvalidClaimError as exc:
            raise InvalidClaimError(exc.claim, exc.reason, task_id=self.id, field=name) from None

    def _check_needs(self) -> None:
        """``memory``, a positive whole number of bytes, and ``cpus``, a positive finite number."""
        if self.memory is not None:
            self._check_int("memory", minimum=1)
        if self.cpus is not None:
            self._check_number("cpus", minimum=0.0)
            if not 0 < self.cpus < math.inf:
                raise InvalidTaskError(f"must be more than 0 cores, got {self.cpus!r}", task_id=self.id, field="cpus")

    def _check_int(self, name: str, *, minimum: int | None) -> None:
        value = getattr(self, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidTaskError(f"must be an integer, got {value!r}", task_id=self.id, field=name)
        if minimum is not None and value < minimum:
            raise InvalidTaskError(f"must be at least {minimum}, got {value}", task_id=self.id, field=name)

    def _check_number(self, name: str, *, minimum: float, maximum: float | None = None) -> None:
        value = getattr(self, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
            raise InvalidTaskError(f"must be a number, got {value!r}", task_id=self.id, field=name)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
            raise InvalidTaskError(f"must be {bound}, got {value!r}", task_id=self.id, field=name)
