"""Scale: many queued tasks through the pure Scheduler in virtual time, and through TaskQueue.

1. Realistic mix at n = 1,000 / 10,000 / 100,000: 8 agent types; every task writes its own file
   (``src/pkg{k}/m{i}.py``), 10% also write one of 50 shared files, 1% claim a whole package
   directory (``src/pkg{k}/``). All n tasks are added at once (``add_batch``) and run to the end
   with the event loop of bench/makespan.py (durations 1-100 units, max_parallel 4). Time to
   build the AgentTasks is shown apart; "per task" is (add + run) / n. Memory: the tracemalloc
   peak of a second, traced pass of add + run over the same task objects (the scheduler's own
   memory; tracing would slow the timed pass), and the traced size of the built tasks at the
   sizes up to 10,000 (tracing the 100k build would cost another ~15 s).
2. Hot file: every task writes the same file (as every task that lists no files does: it
   claims its agent's owned paths, ``**`` for an unregistered agent), 8 agent types. Each
   finish starts exactly one task, so any cost growing with n is the scheduler's.
3. Cost of adding one task (``add`` and ``add_batch([task])``; ``TaskQueue.submit_task`` uses
   the latter) to a scheduler that already holds n tasks.
4. TaskQueue with no-op callables at n = 100,000 (the same task objects as in 1), submitted with
   one ``submit_tasks`` call (10,000 ``submit_task`` calls are timed in bench/overhead.py;
   100,000 would take minutes, see 3).
"""

from __future__ import annotations

import gc
import heapq
import random
import resource
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import wait

from queue_core import AgentTask, TaskQueue, TaskState
from queue_core.scheduler import Scheduler

from ._common import Check, Section, print_section, table

SIZES = (1_000, 10_000, 100_000)
TRACE_BUILD_MAX = 10_000
HOT_SIZES = (1_000, 10_000, 100_000)
ADD_PROBES = 200
AGENTS = 8
MAX_PARALLEL = 4
SEED = 7


def noop() -> None:
    return None


def realistic(n: int, rng: random.Random) -> tuple[list[AgentTask], list[int]]:
    tasks: list[AgentTask] = []
    durations: list[int] = []
    for i in range(n):
        pkg = rng.randrange(100)
        files = [f"src/pkg{pkg}/m{i}.py"]
        r = rng.random()
        if r < 0.10:
            files.append(f"shared/s{rng.randrange(50)}.py")
        elif r < 0.11:
            files = [f"src/pkg{pkg}/"]
        tasks.append(AgentTask(f"agent{rng.randrange(AGENTS)}", "scale", files, noop, id=f"t{i}"))
        durations.append(rng.randint(1, 100))
    return tasks, durations


def hot(n: int, rng: random.Random) -> tuple[list[AgentTask], list[int]]:
    tasks = [AgentTask(f"agent{i % AGENTS}", "hot", ["shared/hot.py"], noop, id=f"h{i}") for i in range(n)]
    return tasks, [rng.randint(1, 100) for _ in range(n)]


def simulate(tasks: list[AgentTask], durations: list[int]) -> tuple[float, float]:
    """Add all tasks, run them to completion in virtual time; returns (add seconds, run seconds)."""
    duration = {t.id: d for t, d in zip(tasks, durations, strict=True)}
    sched = Scheduler(MAX_PARALLEL)
    t0 = time.perf_counter()
    sched.add_batch(tasks, 0.0)
    t1 = time.perf_counter()
    heap: list[tuple[float, str]] = [(0.0 + duration[e.id], e.id) for e in sched.dispatch(0.0)]
    heapq.heapify(heap)
    while heap:
        now, task_id = heapq.heappop(heap)
        sched.finish(task_id, TaskState.SUCCEEDED, now)
        for entry in sched.dispatch(now):
            heapq.heappush(heap, (now + duration[entry.id], entry.id))
    t2 = time.perf_counter()
    assert sched.unfinished == 0, f"{sched.unfinished} tasks never ran"
    return t1 - t0, t2 - t1


def traced_peak(fn: Callable[[], object]) -> int:
    """Peak bytes allocated while ``fn`` runs, above what was allocated before."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def add_cost(tasks: list[AgentTask]) -> tuple[float, float]:
    """Seconds per ``add`` and per ``add_batch([t])`` on a scheduler already holding ``tasks``."""
    results: list[float] = []
    for single in (True, False):
        probes = [AgentTask("agent0", "probe", [f"probe/p{i}.py"], noop, id=f"p{i}") for i in range(ADD_PROBES)]
        sched = Scheduler(MAX_PARALLEL)
        sched.add_batch(tasks, 0.0)
        t0 = time.perf_counter()
        for probe in probes:
            if single:
                sched.add(probe, 0.0)
            else:
                sched.add_batch([probe], 0.0)
        results.append((time.perf_counter() - t0) / ADD_PROBES)
    return results[0], results[1]


def queue_run(tasks: list[AgentTask]) -> float:
    """Seconds from submit to all done for ``tasks`` (no-op callables) through TaskQueue."""
    queue = TaskQueue(max_parallel=MAX_PARALLEL)
    try:
        t0 = time.perf_counter()
        futures = queue.submit_tasks(tasks)
        wait(futures)
        elapsed = time.perf_counter() - t0
        assert all(f.exception() is None for f in futures)
    finally:
        queue.shutdown(wait=True)
    return elapsed


def run(sizes: tuple[int, ...] = SIZES) -> Section:
    rows = []
    add_rows = []
    per_task: dict[int, float] = {}
    tasks: list[AgentTask] = []
    for n in sizes:
        t0 = time.perf_counter()
        tasks, durations = realistic(n, random.Random(SEED))
        build = time.perf_counter() - t0
        add, run_s = simulate(tasks, durations)
        peak = traced_peak(lambda tasks=tasks, durations=durations: simulate(tasks, durations))
        task_bytes = traced_peak(lambda n=n: realistic(n, random.Random(SEED + 1))) if n <= TRACE_BUILD_MAX else None
        per_task[n] = (add + run_s) / n
        rows.append(
            (
                f"{n:,}",
                f"{build * 1e3:,.0f}",
                f"{add * 1e3:,.0f}",
                f"{run_s * 1e3:,.0f}",
                f"{(add + run_s) * 1e3:,.0f}",
                f"{per_task[n] * 1e6:,.1f}",
                f"{peak / 2**20:,.1f} ({peak / n / 1024:,.2f})",
                "not traced" if task_bytes is None else f"{task_bytes / 2**20:,.1f} ({task_bytes / n / 1024:,.2f})",
            )
        )
        single, batch_of_one = add_cost(tasks)
        add_rows.append((f"{n:,}", f"{single * 1e6:,.1f}", f"{batch_of_one * 1e6:,.1f}"))
    body = (
        "**Realistic mix** (8 agent types, own file each, 10% + one of 50 shared files, 1% a package "
        "directory; all added at once, run to completion in virtual time):\n\n"
        + table(
            [
                "n",
                "build tasks (ms)",
                "add_batch (ms)",
                "run (ms)",
                "add + run (ms)",
                "per task (µs)",
                "scheduler peak, traced: MiB (KiB/task)",
                "built tasks, traced: MiB (KiB/task)",
            ],
            rows,
        )
    )
    small, large = min(sizes), max(sizes)
    growth = per_task[large] / per_task[small]

    hot_rows = []
    hot_per: dict[int, float] = {}
    for n in HOT_SIZES:
        hot_tasks, hot_durations = hot(n, random.Random(SEED))
        add, run_s = simulate(hot_tasks, hot_durations)
        hot_per[n] = (add + run_s) / n
        hot_rows.append((f"{n:,}", f"{(add + run_s) * 1e3:,.0f}", f"{hot_per[n] * 1e6:,.0f}"))
    body += (
        "\n**Hot file** (every task writes `shared/hot.py`, 8 agent types; the schedule is forced: one "
        "task at a time):\n\n"
        + table(["n", "add + run (ms)", "per task (µs)"], hot_rows)
        + f"\nPer-task cost from n = {HOT_SIZES[0]:,} to {HOT_SIZES[-1]:,}: "
        f"×{hot_per[HOT_SIZES[-1]] / hot_per[HOT_SIZES[0]]:.1f} for ×{HOT_SIZES[-1] // HOT_SIZES[0]} tasks.\n"
    )

    body += f"\n**Adding one task** to a scheduler already holding n tasks (mean of {ADD_PROBES}):\n\n" + table(
        ["n held", "`add` (µs)", "`add_batch([task])` (µs)"], add_rows
    )

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q_run = queue_run(tasks)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    body += (
        f"\n**TaskQueue**, the {len(tasks):,} realistic-mix tasks above with no-op callables, one "
        f"`submit_tasks` call, max_parallel {MAX_PARALLEL}: {q_run:,.1f} s from submit to all done "
        f"({q_run / len(tasks) * 1e6:,.1f} µs per task). Process peak RSS (ru_maxrss) "
        f"{rss_before / 1024:,.0f} MiB before this run, {rss_after / 1024:,.0f} MiB after.\n"
    )
    checks = [
        Check(
            f"Scheduler per-task cost, n={large:,} vs n={small:,} (realistic mix)",
            f"×{growth:.2f} ({per_task[small] * 1e6:,.1f} → {per_task[large] * 1e6:,.1f} µs)",
            "flat, O(log n): ≤ ×2 over ×100 tasks (O(n) per dispatch would be ~×100)",
            growth <= 2.0,
        ),
        Check(
            f"Scheduler per-task cost, hot file, n={HOT_SIZES[-1]:,} vs n={HOT_SIZES[0]:,}",
            f"×{hot_per[HOT_SIZES[-1]] / hot_per[HOT_SIZES[0]]:.1f} "
            f"({hot_per[HOT_SIZES[0]] * 1e6:,.0f} → {hot_per[HOT_SIZES[-1]] * 1e6:,.0f} µs)",
            f"flat, O(log n): ≤ ×2 over ×{HOT_SIZES[-1] // HOT_SIZES[0]} tasks",
            hot_per[HOT_SIZES[-1]] / hot_per[HOT_SIZES[0]] <= 2.0,
        ),
    ]
    return Section("Scale: up to 100k queued tasks", body, checks)


def main() -> None:
    print_section(run())


if __name__ == "__main__":
    main()
