"""How long a task will take, from how long its earlier runs took; and how long a run has left.

Pure functions: the samples come from the caller (queue_core.durations reads them from the
state directory), the time from the caller too, so each is tested alone.

* A task's **identity** is its fingerprint (agent, description, the paths it writes and
  reads, sorted: the same work) and, failing that, its id within its agent (the same slot of a
  batch file, maybe with its description edited).
* Its **estimate** is the median of the last ``RECENT`` runs that match. A median of five
  ignores up to two outliers (a run stalled by a rate limit, one that found nothing to do),
  where a mean is moved by any; a trimmed mean would need more runs before it trims anything.
  The last five only: a task that changed is estimated as it runs now after three runs.
* A task with no run of its own gets its agent's default, the median of the agent's last
  ``AGENT_RECENT`` runs, whatever the task; an agent with none, the median of the last
  ``AGENT_RECENT`` runs of any agent; with no history at all, no estimate (None).
* The **time left** of a run is a lower bound from the estimates: the work left shared among
  the slots, the busiest agent's work left (its tasks run one after another, or on its
  instances), and the longest chain of dependants left; whichever is longest.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._jsonread import float_at, json_object, str_at
from .claims import claim_texts
from .task import AgentTask

__all__ = [
    "AGENT_RECENT",
    "LONGEST_S",
    "RECENT",
    "Estimate",
    "Estimates",
    "Remaining",
    "Sample",
    "fingerprint",
    "robust_average",
    "run_eta",
    "task_fingerprint",
]

#: Runs of one task that its estimate is the median of.
RECENT = 5
#: Runs of an agent (or of all agents) that a default estimate is the median of.
AGENT_RECENT = 20
#: The longest duration a sample may say: a longer one is damage (1e308 s is a float, and two
#: such estimates summed are infinite).
LONGEST_S = 366 * 86400.0


def robust_average(durations: Sequence[float]) -> float | None:
    """The median of the last ``RECENT`` of ``durations`` (oldest first); None if there are none."""
    recent = durations[-RECENT:]
    return statistics.median(recent) if recent else None


def fingerprint(agent: str, description: str, writes: Iterable[str], reads: Iterable[str]) -> str:
    """What identifies a task's work across runs: its agent, description and claims, the order
    the claims were given in left out. 16 hex digits of a SHA-256 of them, encoded as a JSON
    list, so that no two different tasks can be made to look alike by their separators."""
    text = json.dumps([agent, description, sorted(writes), sorted(reads)], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def task_fingerprint(task: AgentTask) -> str:
    """The fingerprint of ``task``: its agent, description and claims as normalised (``./a.py``
    is ``a.py``)."""
    writes, reads = claim_texts(task.write_claims), claim_texts(task.read_claims)
    return fingerprint(task.agent_type, task.task_description, writes, reads)


@dataclass(frozen=True)
class Sample:
    """One finished run of a task: its agent, id and fingerprint, how long it took, and when it
    ended (wall clock: the history is shared by every process on the repository)."""

    agent: str
    task_id: str
    fingerprint: str
    duration_s: float
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "task": self.task_id,
            "fingerprint": self.fingerprint,
            "duration_s": self.duration_s,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: object) -> Sample:
        """Raises ValueError if ``data`` is not a sample's JSON, its duration is negative or
        longer than LONGEST_S, or its time is not finite."""
        record = json_object(data, "a duration sample")
        sample = cls(
            str_at(record, "agent"),
            str_at(record, "task"),
            str_at(record, "fingerprint"),
            float_at(record, "duration_s"),
            float_at(record, "at"),
        )
        if not 0.0 <= sample.duration_s <= LONGEST_S:
            raise ValueError(f"'duration_s': expected a number of seconds, not {sample.duration_s!r}")
        if not math.isfinite(sample.at):
            raise ValueError(f"'at': expected a time, not {sample.at!r}")
        return sample


@dataclass(frozen=True)
class Estimate:
    """An estimate in ``seconds``, and what it is made from: ``basis`` is "task" (runs with the
    same fingerprint), "id" (of the same id and agent), "agent" (the agent's recent runs) or
    "all" (every agent's); ``runs``, how many runs."""

    seconds: float
    basis: str
    runs: int


class Estimates:
    """The recent runs of ``samples``, indexed for :meth:`of`; each index keeps only what it uses."""

    def __init__(self, samples: Iterable[Sample]):
        self._by_fingerprint: dict[str, deque[float]] = {}
        self._by_id: dict[tuple[str, str], deque[float]] = {}
        self._by_agent: dict[str, deque[float]] = {}
        self._all: deque[float] = deque(maxlen=AGENT_RECENT)
        # By when each run ended: two runs appending to one file may interleave their lines.
        for sample in sorted(samples, key=lambda s: s.at):
            seconds = sample.duration_s
            self._by_fingerprint.setdefault(sample.fingerprint, deque(maxlen=RECENT)).append(seconds)
            self._by_id.setdefault((sample.agent, sample.task_id), deque(maxlen=RECENT)).append(seconds)
            self._by_agent.setdefault(sample.agent, deque(maxlen=AGENT_RECENT)).append(seconds)
            self._all.append(seconds)

    def of(self, agent: str, task_id: str, fingerprint: str) -> Estimate | None:
        """The estimate of a task of ``agent`` with ``task_id`` and ``fingerprint``: from its own
        runs (by fingerprint, else by id), else its agent's, else anyone's; None without history."""
        for basis, runs in (
            ("task", self._by_fingerprint.get(fingerprint)),
            ("id", self._by_id.get((agent, task_id))),
            ("agent", self._by_agent.get(agent)),
            ("all", self._all),
        ):
            if runs:
                return Estimate(statistics.median(runs), basis, len(runs))
        return None


@dataclass(frozen=True)
class Remaining:
    """A task not finished yet, for :func:`run_eta`: its ``seconds`` left (None: no estimate), and
    the ids of the tasks that wait for it."""

    id: str
    agent: str
    seconds: float | None
    dependents: Sequence[str] = ()

    @classmethod
    def of(
        cls, task_id: str, agent: str, estimate: float | None, *, elapsed_s: float = 0.0, dependents: Sequence[str] = ()
    ) -> Remaining:
        """A task estimated at ``estimate`` that has run ``elapsed_s``: past its estimate, nothing is left."""
        return cls(task_id, agent, None if estimate is None else max(0.0, estimate - elapsed_s), dependents)


def run_eta(left: Sequence[Remaining], max_parallel: int, capacity: Callable[[str], int]) -> float | None:
    """Seconds until the tasks ``left`` are likely done, at the least; None if one has no
    estimate, or their sum is past what a float holds.

    ``left`` lists each task after the tasks it depends on (as a queue holds them);
    ``capacity(agent)`` is how many tasks of an agent may run at once. The bound: the work left
    shared by ``max_parallel`` slots, each agent's work left shared by its instances, and the
    longest chain of a task and its dependants left. Conflicts between claims are not counted,
    so a run of tasks on one file takes longer than this says.
    """
    if any(task.seconds is None for task in left):
        return None
    seconds = {task.id: task.seconds or 0.0 for task in left}
    per_agent: dict[str, float] = {}
    for task in left:
        per_agent[task.agent] = per_agent.get(task.agent, 0.0) + seconds[task.id]
    chain: dict[str, float] = {}
    for task in reversed(left):  # dependants first
        chain[task.id] = seconds[task.id] + max((chain.get(d, 0.0) for d in task.dependents), default=0.0)
    eta = max(
        sum(seconds.values()) / max_parallel,
        max((work / capacity(agent) for agent, work in per_agent.items()), default=0.0),
        max(chain.values(), default=0.0),
    )
    return eta if math.isfinite(eta) else None  # "Infinity" is no JSON: a record would be unreadable
