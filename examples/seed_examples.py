"""The design note's three usage examples, run through queue_core.

Each task simulates one second of agent work. Two different agents on different files run
together (about 1 s); two tasks of one agent type, or two agents on one file, run one after
the other (about 2 s), and the status shows why the second one waits.
"""

from __future__ import annotations

import threading
import time

from queue_core import AgentTask, TaskQueue

WORK_S = 1.0


def run_example(title: str, specs: list[tuple[str, str, str]]) -> None:
    print(f"\n== {title}")
    with TaskQueue(max_parallel=4) as queue:
        first_started = threading.Event()

        def work() -> None:
            first_started.set()
            time.sleep(WORK_S)  # simulated agent work

        start = time.monotonic()
        futures = [queue.submit_task(AgentTask(agent, desc, [path], work)) for agent, desc, path in specs]
        first_started.wait(timeout=5)
        status = queue.get_status()
        print(f"   running: {', '.join(status['running_agents'])}")  # the design note's dict keys still read
        for waiting in status.waiting:  # the details: typed attributes
            print(f"   waiting: {waiting.agent} ({waiting.description}) - {waiting.reason}")
        for future in futures:
            future.result(timeout=30)
        elapsed = time.monotonic() - start
    sequential = WORK_S * len(specs)
    print(f"   completed in {elapsed:.2f}s; sequential {sequential:.0f}s; speedup {sequential / elapsed:.2f}x")


def main() -> None:
    run_example(
        "Example 1: two different agents, different files -> parallel",
        [
            ("code_developer", "Implement feature A", "coffee_maker/a.py"),
            ("project_manager", "Update ROADMAP", "docs/roadmap/ROADMAP.md"),
        ],
    )
    run_example(
        "Example 2: same agent type twice -> the second waits (singleton)",
        [
            ("code_developer", "Task 1", "coffee_maker/a.py"),
            ("code_developer", "Task 2", "coffee_maker/b.py"),
        ],
    )
    run_example(
        "Example 3: two agents, same file -> the second waits (file conflict)",
        [
            ("code_developer", "Update file X", "coffee_maker/shared.py"),
            ("architect", "Also update file X", "coffee_maker/shared.py"),
        ],
    )


if __name__ == "__main__":
    main()
