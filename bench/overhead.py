"""In-process overhead: 10,000 no-op tasks on 4 workers, queue_core against a raw ThreadPoolExecutor.

Each run builds its tasks first (not timed; their construction cost is reported on its own),
creates a fresh queue or executor, then times from the first submit until every future is
done. Runs of the different variants are interleaved so that drift on the machine hits them
alike; each figure is the median of REPEATS runs.

Variants of queue_core:
* distinct: agent f"agent{i}", file f"f{i}.py": nothing ever conflicts (the headline figure);
* 4 agents: agent f"agent{i % 4}", distinct files: the one-task-per-agent rule is exercised;
* batch: as distinct, but submitted with one ``submit_tasks`` call instead of 10,000
  ``submit_task`` calls.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from queue_core import AgentTask, TaskQueue

from ._common import Check, Section, median, print_section, table

N = 10_000
WORKERS = 4
REPEATS = 5


def noop() -> None:
    return None


def build(n: int, agents: int | None) -> list[AgentTask]:
    """n no-op tasks with distinct files; agents=None gives each its own agent type."""
    return [
        AgentTask(f"agent{i if agents is None else i % agents}", "no-op", [f"f{i}.py"], noop, id=f"t{i}")
        for i in range(n)
    ]


def time_executor(n: int) -> float:
    with ThreadPoolExecutor(WORKERS) as executor:
        t0 = time.perf_counter()
        futures = [executor.submit(noop) for _ in range(n)]
        wait(futures)
        return time.perf_counter() - t0


def time_queue(tasks: list[AgentTask], *, batch: bool = False) -> float:
    queue = TaskQueue(max_parallel=WORKERS)
    try:
        t0 = time.perf_counter()
        futures: list[Future[Any]]
        futures = queue.submit_tasks(tasks) if batch else [queue.submit_task(t) for t in tasks]
        wait(futures)
        elapsed = time.perf_counter() - t0
        failed = [f for f in futures if f.exception() is not None]
        assert not failed, f"{len(failed)} no-op tasks failed"
        return elapsed
    finally:
        queue.shutdown(wait=True)


def run(n: int = N, repeats: int = REPEATS) -> Section:
    build_times: list[float] = []
    results: dict[str, list[float]] = {"executor": [], "distinct": [], "4 agents": [], "batch": []}
    variants: dict[str, Callable[[], float]] = {
        "executor": lambda: time_executor(n),
        "distinct": lambda: time_queue(timed_build(None)),
        "4 agents": lambda: time_queue(timed_build(4)),
        "batch": lambda: time_queue(timed_build(None), batch=True),
    }

    def timed_build(agents: int | None) -> list[AgentTask]:
        t0 = time.perf_counter()
        tasks = build(n, agents)
        build_times.append(time.perf_counter() - t0)
        return tasks

    for _ in range(repeats):
        for name, fn in variants.items():
            results[name].append(fn())

    base = median(results["executor"])
    labels = {
        "executor": "raw `ThreadPoolExecutor(4)`, `submit(noop)` ×10k",
        "distinct": "TaskQueue(4), `submit_task` ×10k, distinct agents and files",
        "4 agents": "TaskQueue(4), `submit_task` ×10k, 4 agent types round-robin",
        "batch": "TaskQueue(4), one `submit_tasks` of 10k, distinct agents and files",
    }
    rows = [
        (
            labels[name],
            f"{median(xs) * 1e3:,.1f}",
            f"{min(xs) * 1e3:,.1f}–{max(xs) * 1e3:,.1f}",
            f"{median(xs) / n * 1e6:,.1f}",
            f"{median(xs) / base:.2f}×",
        )
        for name, xs in results.items()
    ]
    body = (
        f"{n:,} no-op tasks, {WORKERS} workers, median of {repeats} runs (variants interleaved), "
        "timed from the first submit until every future is done.\n\n"
        + table(["variant", "median (ms)", "range (ms)", "per task (µs)", "vs executor"], rows)
        + f"\nBuilding the {n:,} `AgentTask`s (path parsing and validation), not timed above: "
        f"median {median(build_times) * 1e3:,.1f} ms ({median(build_times) / n * 1e6:,.1f} µs per task).\n"
    )
    ratio = median(results["distinct"]) / base
    ratio4 = median(results["4 agents"]) / base
    checks = [
        Check("overhead, 10k no-op, distinct agents (vs executor)", f"{ratio:.2f}×", "≤ 3×", ratio <= 3.0),
        Check("overhead, 10k no-op, 4 agent types (vs executor)", f"{ratio4:.2f}×", "≤ 3× (same target)", ratio4 <= 3),
    ]
    return Section("In-process overhead: 10k no-op tasks, 4 workers", body, checks)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N
    print_section(run(n))


if __name__ == "__main__":
    main()
