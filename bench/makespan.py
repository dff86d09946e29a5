"""Makespan on random conflict-heavy batches, in virtual time (no threads, no sleeping).

Each batch: 40 tasks, 5 agent types, a pool of 12 files (6 of them under ``dir1/`` and
``dir2/``); each task claims 1-3 items of the pool, and an item is sometimes a whole directory
(``dir1/``, overlapping every file below it); durations 1-30 units; about 10% of tasks depend on
one earlier task (so the graph is acyclic). max_parallel 4. The batches come from a fixed seed
and were not tuned to hit the target.

Ours: queue_core's Scheduler driven by an event loop (dispatch at t=0; pop the earliest
(finish_time, task_id), finish it, dispatch, push what started). FIFO: strict head-of-line
order with the same rules (a task starts only once every earlier task has started), conflicts
tested with ``queue_core.claims.overlaps``.

Lower bound per batch: max(total work / max_parallel, busiest agent type's work, busiest file's
work (every task whose claims overlap that file), longest dependency chain). It is a bound,
not the optimum, so makespan/bound overstates the distance to the best possible schedule.

Two references bracket the optimum, to tell a slow scheduler from a loose bound (extras, not
targets): a stronger lower bound, max(work / max_parallel, heaviest clique of the conflict
graph, longest chain), where a clique is a set of tasks that pairwise conflict (same agent or
overlapping claims) and so must run one after another; and the best schedule found by greedy
list scheduling (start every task that fits, in a priority order) over ORDERS orders: submission
order, longest first, most-conflicting first, and random ones. The optimum lies between them.

Ours with estimates: each task's ``estimate_s`` is its duration exactly, or its duration times a
factor drawn uniformly in [0.7, 1.3] (``NOISE_DRAWS`` draws per batch, from their own seeded
stream), so the batch is ranked by critical path (queue_core.graph.critical_order); the rules
and the reservation are the same. A reference shows what the reservation costs then: greedy
list scheduling in the same critical-path order, without it.

Every simulated schedule of ours is also checked: never more than max_parallel, never two tasks
of one agent type, never two overlapping claims, never a task before its dependencies.
"""

from __future__ import annotations

import heapq
import random
import sys
from collections import deque
from dataclasses import dataclass

from queue_core import AgentTask, TaskState
from queue_core.claims import Claim, overlaps
from queue_core.graph import critical_order
from queue_core.scheduler import Scheduler

from ._common import Check, Section, mean, percentile, print_section, table

SEED = 20251127
BATCHES = 100
TASKS = 40
AGENTS = 5
MAX_PARALLEL = 4
FILES = [
    "dir1/x.py",
    "dir1/y.py",
    "dir1/z.py",
    "dir2/x.py",
    "dir2/y.py",
    "dir2/z.py",
    "a.py",
    "b.py",
    "c.py",
    "d.py",
    "e.py",
    "f.py",
]
DIRS = ["dir1/", "dir2/"]
P_DIRECTORY = 0.1  # chance that one claim of a task is a whole directory
P_DEPENDENCY = 0.1  # chance that a task depends on one earlier task
ORDERS = 60  # priority orders tried by the best-found reference (3 fixed + random)
NOISE = 0.3  # noisy estimates: the duration times a factor in [1 - NOISE, 1 + NOISE]
NOISE_DRAWS = 5  # noisy estimates drawn per batch


@dataclass(frozen=True)
class SimTask:
    id: str
    agent: str
    claims: tuple[str, ...]
    duration: int
    depends_on: tuple[str, ...]


def noop() -> None:
    return None


def make_batch(rng: random.Random, index: int) -> list[SimTask]:
    tasks: list[SimTask] = []
    for i in range(TASKS):
        claims = rng.sample(FILES, rng.randint(1, 3))
        if rng.random() < P_DIRECTORY:
            claims[0] = rng.choice(DIRS)
        deps = (tasks[rng.randrange(i)].id,) if i > 0 and rng.random() < P_DEPENDENCY else ()
        tasks.append(
            SimTask(
                id=f"b{index:03d}-t{i:02d}",
                agent=f"agent{rng.randrange(AGENTS)}",
                claims=tuple(dict.fromkeys(claims)),
                duration=rng.randint(1, 30),
                depends_on=deps,
            )
        )
    return tasks


def lower_bound(batch: list[SimTask], max_parallel: int) -> float:
    total = sum(t.duration for t in batch)
    per_agent: dict[str, int] = {}
    for t in batch:
        per_agent[t.agent] = per_agent.get(t.agent, 0) + t.duration
    parsed = {t.id: [Claim.parse(c) for c in t.claims] for t in batch}
    busiest_file = 0
    for path in FILES:
        claim = Claim.parse(path)
        work = sum(t.duration for t in batch if any(overlaps(claim, c) for c in parsed[t.id]))
        busiest_file = max(busiest_file, work)
    chain: dict[str, int] = {}
    for t in batch:  # dependencies point to earlier tasks, so submission order is topological
        chain[t.id] = t.duration + max((chain[d] for d in t.depends_on), default=0)
    return max(total / max_parallel, max(per_agent.values()), busiest_file, max(chain.values()))


class ScheduleViolationError(AssertionError):
    pass


@dataclass
class IdleStats:
    """Dispatch moments where a slot stayed free although a waiting task could have started."""

    moments: int = 0
    idle_moments: int = 0
    reasons: dict[str, int] | None = None


def simulate_ours(
    batch: list[SimTask],
    max_parallel: int,
    stats: IdleStats | None = None,
    estimates: dict[str, float] | None = None,
) -> float:
    """Our makespan; with ``estimates`` (by task id), each task's ``estimate_s``."""
    sched = Scheduler(max_parallel)
    by_id = {t.id: t for t in batch}
    parsed = {t.id: [Claim.parse(c) for c in t.claims] for t in batch}
    estimate = (estimates or {}).get
    sched.add_batch(
        [
            AgentTask(
                t.agent, "sim", list(t.claims), noop, id=t.id, depends_on=list(t.depends_on), estimate_s=estimate(t.id)
            )
            for t in batch
        ],
        0.0,
    )
    running: dict[str, SimTask] = {}
    done: set[str] = set()
    heap: list[tuple[float, str]] = []

    def start(now: float) -> None:
        for entry in sched.dispatch(now):
            task = by_id[entry.id]
            _check_start(task, running, parsed, done, max_parallel)
            running[task.id] = task
            heapq.heappush(heap, (now + task.duration, task.id))
        if stats is not None:
            _tally_idle(sched, batch, running, parsed, done, max_parallel, stats)

    start(0.0)
    now = 0.0
    while heap:
        now, task_id = heapq.heappop(heap)
        sched.finish(task_id, TaskState.SUCCEEDED, now)
        del running[task_id]
        done.add(task_id)
        start(now)
    if sched.unfinished or len(done) != len(batch):
        raise ScheduleViolationError(f"{len(batch) - len(done)} tasks never ran")
    return now


def _tally_idle(
    sched: Scheduler,
    batch: list[SimTask],
    running: dict[str, SimTask],
    parsed: dict[str, list[Claim]],
    done: set[str],
    max_parallel: int,
    stats: IdleStats,
) -> None:
    """After a dispatch: could a waiting task have started (by the rules alone)? If so, why did it not?"""
    stats.moments += 1
    if len(running) >= max_parallel:
        return
    reasons = stats.reasons if stats.reasons is not None else {}
    stats.reasons = reasons
    idle = False
    for task in batch:
        if task.id in running or task.id in done or any(d not in done for d in task.depends_on):
            continue
        if any(
            other.agent == task.agent or any(overlaps(a, b) for a in parsed[task.id] for b in parsed[other.id])
            for other in running.values()
        ):
            continue
        idle = True
        reason = sched.wait_reason(sched.entry(task.id))
        kind = "none" if reason is None else reason.kind
        reasons[kind] = reasons.get(kind, 0) + 1
    stats.idle_moments += idle


def _check_start(
    task: SimTask, running: dict[str, SimTask], parsed: dict[str, list[Claim]], done: set[str], max_parallel: int
) -> None:
    if len(running) >= max_parallel:
        raise ScheduleViolationError(f"{task.id} started beyond max_parallel")
    if any(dep not in done for dep in task.depends_on):
        raise ScheduleViolationError(f"{task.id} started before its dependencies")
    for other in running.values():
        if other.agent == task.agent:
            raise ScheduleViolationError(f"{task.id} and {other.id} share agent {task.agent}")
        if any(overlaps(a, b) for a in parsed[task.id] for b in parsed[other.id]):
            raise ScheduleViolationError(f"{task.id} and {other.id} have overlapping claims")


def simulate_fifo(batch: list[SimTask], max_parallel: int) -> float:
    """Strict FIFO: the head of the queue starts when nothing blocks it; nothing passes it."""
    parsed = {t.id: [Claim.parse(c) for c in t.claims] for t in batch}
    pending = deque(batch)
    running: dict[str, SimTask] = {}
    done: set[str] = set()
    heap: list[tuple[float, str]] = []

    def blocked(task: SimTask) -> bool:
        if len(running) >= max_parallel or any(dep not in done for dep in task.depends_on):
            return True
        return any(
            other.agent == task.agent or any(overlaps(a, b) for a in parsed[task.id] for b in parsed[other.id])
            for other in running.values()
        )

    def start(now: float) -> None:
        while pending and not blocked(pending[0]):
            task = pending.popleft()
            running[task.id] = task
            heapq.heappush(heap, (now + task.duration, task.id))

    start(0.0)
    now = 0.0
    while heap:
        now, task_id = heapq.heappop(heap)
        del running[task_id]
        done.add(task_id)
        start(now)
    assert not pending, "FIFO left tasks behind"
    return now


def conflict_graph(batch: list[SimTask]) -> list[set[int]]:
    """adj[i]: indices of the tasks that may not run together with task i."""
    parsed = [[Claim.parse(c) for c in t.claims] for t in batch]
    adj: list[set[int]] = [set() for _ in batch]
    for i, a in enumerate(batch):
        for j in range(i + 1, len(batch)):
            b = batch[j]
            if a.agent == b.agent or any(overlaps(x, y) for x in parsed[i] for y in parsed[j]):
                adj[i].add(j)
                adj[j].add(i)
    return adj


def heaviest_clique(weights: list[int], adj: list[set[int]]) -> int:
    """Weight of the heaviest set of pairwise-conflicting tasks (exact branch and bound)."""
    best = 0

    def expand(cands: list[int], weight: int) -> None:
        nonlocal best
        remaining = sum(weights[v] for v in cands)
        for i, v in enumerate(cands):
            if weight + remaining <= best:
                return
            remaining -= weights[v]
            nxt = [u for u in cands[i + 1 :] if u in adj[v]]
            if nxt:
                expand(nxt, weight + weights[v])
            else:
                best = max(best, weight + weights[v])

    expand(sorted(range(len(weights)), key=lambda v: -weights[v]), 0)
    return best


def stronger_bound(batch: list[SimTask], adj: list[set[int]], max_parallel: int) -> float:
    weights = [t.duration for t in batch]
    index = {t.id: i for i, t in enumerate(batch)}
    chain: list[int] = []
    for t in batch:
        chain.append(t.duration + max((chain[index[d]] for d in t.depends_on), default=0))
    return max(sum(weights) / max_parallel, heaviest_clique(weights, adj), max(chain))


def simulate_list(batch: list[SimTask], adj: list[set[int]], order: list[int], max_parallel: int) -> float:
    """Greedy list scheduling: at each event start every waiting task that fits, in ``order``."""
    index = {t.id: i for i, t in enumerate(batch)}
    deps = [[index[d] for d in t.depends_on] for t in batch]
    waiting = list(order)
    running: set[int] = set()
    done: set[int] = set()
    heap: list[tuple[float, int]] = []

    def start(now: float) -> None:
        for i in list(waiting):
            if len(running) >= max_parallel:
                return
            if all(d in done for d in deps[i]) and not (adj[i] & running):
                waiting.remove(i)
                running.add(i)
                heapq.heappush(heap, (now + batch[i].duration, i))

    start(0.0)
    now = 0.0
    while heap:
        now, i = heapq.heappop(heap)
        running.discard(i)
        done.add(i)
        start(now)
    assert not waiting, "list scheduling left tasks behind"
    return now


def best_found(batch: list[SimTask], adj: list[set[int]], rng: random.Random, max_parallel: int) -> float:
    n = len(batch)
    orders = [
        list(range(n)),
        sorted(range(n), key=lambda i: -batch[i].duration),
        sorted(range(n), key=lambda i: -sum(batch[j].duration for j in adj[i])),
    ]
    while len(orders) < ORDERS:
        orders.append(rng.sample(range(n), n))
    return min(simulate_list(batch, adj, order, max_parallel) for order in orders)


def noisy_estimates(batch: list[SimTask], rng: random.Random) -> dict[str, float]:
    return {t.id: t.duration * rng.uniform(1 - NOISE, 1 + NOISE) for t in batch}


def critical_path_order(batch: list[SimTask], estimates: dict[str, float]) -> list[int]:
    """The indices of ``batch`` in the order the scheduler ranks them with ``estimates``."""
    index = {t.id: i for i, t in enumerate(batch)}
    return [index[tid] for tid in critical_order({t.id: t.depends_on for t in batch}, estimates)]


def run(batches: int = BATCHES, seed: int = SEED) -> Section:
    rng = random.Random(seed)
    ref_rng = random.Random(seed + 1)  # its own stream, so the batches do not depend on ORDERS
    noise_rng = random.Random(seed + 2)  # and one for the noisy estimates
    exact: list[float] = []
    noisy: list[float] = []
    noisy_better = noisy_worse = 0
    cp_list: list[float] = []
    exact_vs_best: list[float] = []
    ours: list[float] = []
    fifo: list[float] = []
    ours_vs_strong: list[float] = []
    ours_vs_best: list[float] = []
    best_vs_strong: list[float] = []
    best_vs_bound: list[float] = []
    greedy: list[float] = []
    bound_kinds = {"work / max_parallel": 0, "busiest agent": 0, "busiest file": 0, "dependency chain": 0}
    worse = better = equal = 0
    idle = IdleStats()
    for index in range(batches):
        batch = make_batch(rng, index)
        bound = lower_bound(batch, MAX_PARALLEL)
        m_ours = simulate_ours(batch, MAX_PARALLEL, idle)
        m_fifo = simulate_fifo(batch, MAX_PARALLEL)
        ours.append(m_ours / bound)
        fifo.append(m_fifo / bound)
        adj = conflict_graph(batch)
        strong = stronger_bound(batch, adj, MAX_PARALLEL)
        best = min(best_found(batch, adj, ref_rng, MAX_PARALLEL), m_ours)
        ours_vs_strong.append(m_ours / strong)
        ours_vs_best.append(m_ours / best)
        best_vs_strong.append(best / strong)
        best_vs_bound.append(best / bound)
        greedy.append(simulate_list(batch, adj, list(range(len(batch))), MAX_PARALLEL) / bound)
        worse += m_ours > m_fifo
        better += m_ours < m_fifo
        equal += m_ours == m_fifo
        durations = {t.id: float(t.duration) for t in batch}
        m_exact = simulate_ours(batch, MAX_PARALLEL, estimates=durations)
        exact.append(m_exact / bound)
        exact_vs_best.append(m_exact / min(best, m_exact))
        cp_list.append(simulate_list(batch, adj, critical_path_order(batch, durations), MAX_PARALLEL) / bound)
        for _ in range(NOISE_DRAWS):
            m_noisy = simulate_ours(batch, MAX_PARALLEL, estimates=noisy_estimates(batch, noise_rng))
            noisy.append(m_noisy / bound)
            noisy_better += m_noisy < m_ours
            noisy_worse += m_noisy > m_ours
        _count_bound_kind(batch, bound, bound_kinds)

    def row(name: str, xs: list[float]) -> tuple[str, str, str, str, str]:
        return (name, f"{mean(xs):.3f}", f"{percentile(xs, 95):.3f}", f"{max(xs):.3f}", f"{min(xs):.3f}")

    speedup = [f / o for o, f in zip(ours, fifo, strict=True)]
    body = (
        f"{batches} batches from seed {seed}: {TASKS} tasks, {AGENTS} agent types, {len(FILES)} files "
        f"(+ directory claims {', '.join(DIRS)}), durations 1–30, max_parallel {MAX_PARALLEL}, "
        f"~{P_DEPENDENCY:.0%} of tasks depend on an earlier one. Ratio = makespan / lower bound.\n\n"
        + table(
            ["scheduler", "mean", "p95", "max", "min"],
            [
                row("queue_core Scheduler", ours),
                row("queue_core Scheduler, exact estimates", exact),
                row(f"queue_core Scheduler, estimates ±{NOISE:.0%} ({NOISE_DRAWS} draws per batch)", noisy),
                row("strict FIFO", fifo),
                row("(reference) greedy backfill in submission order, no reservation", greedy),
                row("(reference) greedy backfill in critical-path order (exact), no reservation", cp_list),
            ],
        )
        + f"\nWith estimates ±{NOISE:.0%}, per simulated batch against ours without: better in {noisy_better}, "
        f"worse in {noisy_worse} of {len(noisy)}. Ours with exact estimates / the best found (below): "
        f"mean {mean(exact_vs_best):.3f}.\n"
        + f"\nOurs vs FIFO per batch: better in {better}, equal in {equal}, **worse in {worse}** of {batches}; "
        f"mean FIFO/ours makespan {mean(speedup):.3f}, max {max(speedup):.3f}, min {min(speedup):.3f}.\n\n"
        "Which term sets the lower bound (ties count for each): "
        + ", ".join(f"{k} {v}" for k, v in bound_kinds.items())
        + ".\n\nWhere the optimum lies (extras, not targets): the stronger lower bound (heaviest clique of "
        f"the conflict graph) and the best of {ORDERS} greedy list schedules (or ours, if shorter).\n\n"
        + table(
            ["ratio", "mean", "p95", "max", "min"],
            [
                row("stronger bound / brief's bound", [o / s for o, s in zip(ours, ours_vs_strong, strict=True)]),
                row("best found / stronger bound (upper limit on optimum's gap)", best_vs_strong),
                row("best found / brief's bound", best_vs_bound),
                row("ours / stronger bound", ours_vs_strong),
                row("ours / best found", ours_vs_best),
            ],
        )
        + f"\nWhy ours leaves slots idle: after {idle.moments:,} dispatches, {idle.idle_moments:,} left a slot "
        "free while some waiting task could have started by the rules alone (its agent and claims free, its "
        "dependencies done); the scheduler's wait reasons for those tasks: "
        + (", ".join(f"{k} ×{v:,}" for k, v in sorted((idle.reasons or {}).items())) or "none")
        + '. ("reserved": held back by the anti-starvation reservation of an older blocked task.)\n'
        + "\nSafety check of every simulated schedule of ours (cap, one task per agent, no overlapping "
        "claims, dependencies first): no violation.\n"
    )
    checks = [
        Check("makespan / lower bound, mean (ours)", f"{mean(ours):.3f}", "≤ 1.10", mean(ours) <= 1.10),
        Check("makespan / lower bound, mean, exact estimates", f"{mean(exact):.3f}", "≤ 1.05", mean(exact) <= 1.05),
        Check(
            f"makespan / lower bound, mean, estimates ±{NOISE:.0%}",
            f"{mean(noisy):.3f}",
            f"< {mean(ours):.3f} (without estimates)",
            mean(noisy) < mean(ours),
        ),
    ]
    return Section("Makespan on random conflict-heavy batches (simulated time)", body, checks)


def _count_bound_kind(batch: list[SimTask], bound: float, kinds: dict[str, int]) -> None:
    total = sum(t.duration for t in batch) / MAX_PARALLEL
    agents: dict[str, int] = {}
    for t in batch:
        agents[t.agent] = agents.get(t.agent, 0) + t.duration
    parsed = {t.id: [Claim.parse(c) for c in t.claims] for t in batch}
    files = max(sum(t.duration for t in batch if any(overlaps(Claim.parse(p), c) for c in parsed[t.id])) for p in FILES)
    chain: dict[str, int] = {}
    for t in batch:
        chain[t.id] = t.duration + max((chain[d] for d in t.depends_on), default=0)
    for name, value in (
        ("work / max_parallel", total),
        ("busiest agent", max(agents.values())),
        ("busiest file", files),
        ("dependency chain", max(chain.values())),
    ):
        if value == bound:
            kinds[name] += 1


def main() -> None:
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else BATCHES
    print_section(run(batches))


if __name__ == "__main__":
    main()
