"""A 429-prone provider, in virtual time: a quota pool sized to its quota against unlimited parallelism.

The provider serves at most QUOTA requests at once; a request beyond that is refused with a 429
after REJECT_AFTER seconds. Each task is an agent session that holds one request slot at the
provider for its whole duration (60-600 s). A refused attempt ends rate-limited, as an agent
that reports a 429 does: the scheduler pauses its agent type for its back-off
(``rate_limit_backoff``, 30 s, doubling with each limit in a row; queue_core.pauses) and runs
the task again, no retry spent.

Each batch: TASKS tasks over AGENTS agent types (one task of a type at a time), each on a file
of its own, so nothing but the agents and the quota holds them back; max_parallel MAX_PARALLEL,
more than the quota. Three ways to run it, with queue_core's Scheduler driven by an event loop:

* unlimited: no pool; as many at once as max_parallel and the agents allow, and 429s;
* pools: every task takes a unit of ``pools={"api": QUOTA}``: never more requests than the quota;
* max_parallel = QUOTA: the same limit within one run, for reference; unlike a pool it does not
  hold across runs on the repository, nor leave other tasks (those that take no pool) free.

Lower bound per batch: max(provider work / QUOTA, total work / max_parallel, busiest agent
type's work). Reported: each makespan over the bound, unlimited over pools, and the 429s; for
batches where every task calls the provider, and where half of them do (the others run local
tools, which a pool leaves free and max_parallel = QUOTA does not).
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

from queue_core import AgentTask, TaskState
from queue_core.scheduler import Scheduler

from ._common import Check, Section, mean, percentile, print_section, table

SEED = 20261128
BATCHES = 50
TASKS = 48
AGENTS = 8
MAX_PARALLEL = 8
QUOTA = 3  # requests the provider serves at once
DURATION_S = (60, 600)  # an agent session: it holds one request slot throughout
REJECT_AFTER_S = 2.0  # until a request beyond the quota is refused with a 429
BACKOFF_S = 30.0  # the agents' rate_limit_backoff (the default), doubling with each limit in a row


@dataclass(frozen=True)
class SimTask:
    id: str
    agent: str
    duration: float
    calls: bool  # it calls the provider (and takes a unit of the pool, where there is one)


@dataclass
class Outcome:
    """One simulated run: when it ended, and how many attempts the provider refused."""

    makespan: float = 0.0
    refused: int = 0
    most_in_flight: int = 0
    starts: list[float] = field(default_factory=list)


def noop() -> None:
    return None


def make_batch(rng: random.Random, calling: float) -> list[SimTask]:
    """TASKS tasks, each calling the provider with probability ``calling``."""
    return [
        SimTask(f"t{i}", f"agent{rng.randrange(AGENTS)}", float(rng.randint(*DURATION_S)), rng.random() < calling)
        for i in range(TASKS)
    ]


def lower_bound(batch: list[SimTask]) -> float:
    by_agent: dict[str, float] = {}
    for task in batch:
        by_agent[task.agent] = by_agent.get(task.agent, 0.0) + task.duration
    provider = sum(t.duration for t in batch if t.calls) / QUOTA
    return max(provider, sum(t.duration for t in batch) / MAX_PARALLEL, max(by_agent.values()))


def simulate(batch: list[SimTask], *, max_parallel: int, pooled: bool) -> Outcome:
    """Run ``batch`` against the provider; with ``pooled``, each task takes a unit of a pool of QUOTA."""
    sched = Scheduler(max_parallel, rng=random.Random(0), pools={"api": QUOTA} if pooled else None)
    by_id = {t.id: t for t in batch}
    sched.add_batch(
        [
            AgentTask(
                t.agent,
                "a session",
                [f"{t.id}.py"],
                noop,
                id=t.id,
                pools=["api"] if pooled and t.calls else (),
                rate_limit_backoff=BACKOFF_S,
                rate_limit_max_wait=1e9,  # never give up: the figure is the time it takes
            )
            for t in batch
        ],
        0.0,
    )
    events: list[tuple[float, int, str, str]] = []  # (time, order, "done", "local" or "429", task id)
    order = itertools.count()
    outcome = Outcome()
    in_flight = 0
    now = 0.0
    while sched.unfinished:
        for entry in sched.dispatch(now):
            task = by_id[entry.id]
            if not task.calls:
                heapq.heappush(events, (now + task.duration, next(order), "local", entry.id))
            elif in_flight < QUOTA:
                in_flight += 1
                outcome.most_in_flight = max(outcome.most_in_flight, in_flight)
                heapq.heappush(events, (now + task.duration, next(order), "done", entry.id))
            else:
                outcome.refused += 1
                heapq.heappush(events, (now + REJECT_AFTER_S, next(order), "429", entry.id))
        wake = sched.next_wakeup()
        if events and (wake is None or events[0][0] <= wake):
            now, _, kind, task_id = heapq.heappop(events)
            if kind != "429":
                in_flight -= kind == "done"
                sched.finish(task_id, TaskState.SUCCEEDED, now)
            else:
                sched.finish(task_id, TaskState.RATE_LIMITED, now, "429 Too Many Requests")
        elif wake is not None:
            now = wake  # a pause ends: the dispatch above starts what it held
        else:
            raise AssertionError("nothing runs, nothing is due, and tasks are unfinished")
    outcome.makespan = now
    return outcome


def compare(batches: int, rng: random.Random, calling: float) -> tuple[str, float]:
    """The table of ``batches`` batches whose tasks call the provider with probability ``calling``,
    and the mean of unlimited / pools makespan."""
    ratios: dict[str, list[float]] = {"unlimited": [], "pools": [], "max_parallel": []}
    refused: dict[str, list[int]] = {name: [] for name in ratios}
    unlimited_over_pools: list[float] = []
    for _ in range(batches):
        batch = make_batch(rng, calling)
        bound = lower_bound(batch)
        runs = {
            "unlimited": simulate(batch, max_parallel=MAX_PARALLEL, pooled=False),
            "pools": simulate(batch, max_parallel=MAX_PARALLEL, pooled=True),
            "max_parallel": simulate(batch, max_parallel=QUOTA, pooled=False),
        }
        assert runs["pools"].refused == 0
        assert runs["pools"].most_in_flight <= QUOTA
        for name, outcome in runs.items():
            ratios[name].append(outcome.makespan / bound)
            refused[name].append(outcome.refused)
        unlimited_over_pools.append(runs["unlimited"].makespan / runs["pools"].makespan)

    def row(label: str, name: str) -> tuple[str, str, str, str, str]:
        xs = ratios[name]
        return (label, f"{mean(xs):.3f}", f"{percentile(xs, 95):.3f}", f"{max(xs):.3f}", f"{mean(refused[name]):.1f}")

    speedup = mean(unlimited_over_pools)
    text = (
        table(
            ["run", "mean", "p95", "max", "429s per batch"],
            [
                row("unlimited (no pool)", "unlimited"),
                row(f'pools={{"api": {QUOTA}}}', "pools"),
                row(f"(reference) max_parallel {QUOTA}, one run only", "max_parallel"),
            ],
        )
        + f"\nUnlimited / pools makespan per batch: mean **{speedup:.2f}x**, min {min(unlimited_over_pools):.2f}x, "
        f"max {max(unlimited_over_pools):.2f}x. With the pool, no request was refused.\n"
    )
    return text, speedup


def run(batches: int = BATCHES, seed: int = SEED) -> Section:
    rng = random.Random(seed)
    every, every_speedup = compare(batches, rng, 1.0)
    half, half_speedup = compare(batches, rng, 0.5)
    body = (
        f"{batches} batches each, from seed {seed}: {TASKS} tasks over {AGENTS} agent types, sessions of "
        f"{DURATION_S[0]}–{DURATION_S[1]} s, max_parallel {MAX_PARALLEL}; the provider serves {QUOTA} at once and "
        f"refuses more with a 429 after {REJECT_AFTER_S:g} s; back-off {BACKOFF_S:g} s, doubling. "
        "Ratio = makespan / lower bound (simulated time).\n\n**Every task calls the provider:**\n\n"
        + every
        + "\n**Half the tasks call it** (the others run local tools):\n\n"
        + half
    )
    checks = [
        Check(
            "429-prone provider: unlimited / pools makespan, mean (simulated)",
            f"{every_speedup:.2f}x; {half_speedup:.2f}x with half calling it",
            "> 1 (the pool is faster)",
            every_speedup > 1.0 and half_speedup > 1.0,
        )
    ]
    return Section("Quota pools against a 429-prone provider (simulated time)", body, checks)


def main() -> None:
    print_section(run())


if __name__ == "__main__":
    main()
