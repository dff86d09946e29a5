"""Release -> start latency: how long after a task frees a file does the task waiting on it start.

Task A (agent "a") holds ``shared.py`` and waits on an Event; task B (agent "b", same file) is
queued behind it. A records ``t_release = perf_counter()`` as its very last action before
returning; B records ``t_start = perf_counter()`` as its first. latency = t_start - t_release.

Measured on queue_core's TaskQueue (thousands of trials, one queue reused) and on the seed
design (bench/seed_queue.py, 1-second polling; few trials, since each costs up to a second).
For the seed, A is released at a uniformly random moment of B's polling period, as releases
happen in real use; for ours the phase does not matter since nothing polls.

A second figure for ours: A holds two files, and B and C (different agents) each wait for one
of them. One starts on A's worker thread, the other must be handed to an idle worker, which
measures the wake-up of a sleeping thread. Reported: time until both have started.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from queue_core import AgentTask, TaskQueue

from ._common import Check, Section, percentile, print_section, table
from .seed_queue import POLL, SeedAgentTask, SeedTaskQueue

TRIALS = 2000
WARMUP = 50
SEED_TRIALS = 20


class _Pair:
    """The stamps and events of one trial."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.t_release = 0.0
        self.t_start: list[float] = []

    def holder(self) -> None:
        self.started.set()
        self.release.wait()
        self.t_release = time.perf_counter()  # the very last action before returning

    def waiter(self) -> None:
        self.t_start.append(time.perf_counter())  # the very first action


class _Submitter(Protocol):
    def __call__(self, agent: str, files: list[str], fn: Callable[[], None]) -> Future[Any]: ...


def _trial(submit: _Submitter, waiters: list[tuple[str, list[str]]], holder_files: list[str], delay: float) -> float:
    pair = _Pair()
    fa = submit("a", holder_files, pair.holder)
    pair.started.wait()
    fws = [submit(agent, files, pair.waiter) for agent, files in waiters]
    try:
        if delay:
            time.sleep(delay)
        assert not pair.t_start, "a waiter started before the release"
    finally:
        pair.release.set()  # never leave the holder blocked, or shutdown would hang
    for f in fws:
        f.result()
    fa.result()
    return max(pair.t_start) - pair.t_release


def measure_ours(trials: int, *, handoff: bool = False) -> list[float]:
    counter = iter(range(10**9))

    with TaskQueue(max_parallel=4) as queue:

        def submit(agent: str, files: list[str], fn: Callable[[], None]) -> Future[Any]:
            return queue.submit_task(AgentTask(agent, "latency", files, fn, id=f"lat-{next(counter)}"))

        if handoff:
            holder_files, waiters = ["x.py", "y.py"], [("b", ["x.py"]), ("c", ["y.py"])]
        else:
            holder_files, waiters = ["shared.py"], [("b", ["shared.py"])]
        for _ in range(WARMUP):
            _trial(submit, waiters, holder_files, 0.0)
        return [_trial(submit, waiters, holder_files, 0.0) for _ in range(trials)]


def measure_seed(trials: int, rng: random.Random) -> list[float]:
    queue = SeedTaskQueue(max_parallel=4, poll=POLL)

    def submit(agent: str, files: list[str], fn: Callable[[], None]) -> Future[Any]:
        return queue.submit_task(SeedAgentTask(agent, "latency", files, fn))

    try:
        return [_trial(submit, [("b", ["shared.py"])], ["shared.py"], rng.uniform(0.0, POLL)) for _ in range(trials)]
    finally:
        queue.shutdown(wait=True)


def run(trials: int = TRIALS, seed_trials: int = SEED_TRIALS) -> Section:
    ours = measure_ours(trials)
    handoff = measure_ours(trials, handoff=True)
    seed = measure_seed(seed_trials, random.Random(43))

    def row(name: str, n: int, xs: list[float]) -> tuple[str, int, str, str, str]:
        return (
            name,
            n,
            f"{percentile(xs, 50) * 1e6:,.1f}",
            f"{percentile(xs, 99) * 1e6:,.1f}",
            f"{max(xs) * 1e6:,.1f}",
        )

    ours_p50 = percentile(ours, 50)
    seed_p50 = percentile(seed, 50)
    body = (
        f"A (agent a) holds `shared.py`; B (agent b, same file) waits; latency = B's first "
        f"`perf_counter()` − A's last. {WARMUP} warm-up trials discarded for ours; seed design "
        f"released at a uniformly random phase of its {POLL:g} s poll.\n\n"
        + table(
            ["queue", "trials", "p50 (µs)", "p99 (µs)", "max (µs)"],
            [
                row("queue_core TaskQueue (B runs on A's worker)", trials, ours),
                row("queue_core TaskQueue, 2 unblocked, one handed to an idle worker (both started)", trials, handoff),
                row(f"seed design (ThreadPoolExecutor + {POLL:g} s polling)", seed_trials, seed),
            ],
        )
        + f"\nseed p50 / ours p50 = **{seed_p50 / ours_p50:,.0f}×**\n"
    )
    checks = [
        Check("release→start latency p50", f"{ours_p50 * 1e6:,.1f} µs", "< 1 ms", ours_p50 < 1e-3),
    ]
    return Section("Release → start latency", body, checks)


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else TRIALS
    print_section(run(trials))


if __name__ == "__main__":
    main()
