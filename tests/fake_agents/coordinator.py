"""A coordinator in a process of its own, for tests that kill it or its supervisor.

    python coordinator.py REPO REPORT MODE [STAMPS]

Runs one task, ``A`` on ``f.py``, whose agent is ``family.py REPORT MODE wait [STAMPS]``
(grace 0.3 s), under ``TaskQueue(repo=REPO)``; prints ``outcome: <time_ns> ...`` when it
ends.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from queue_core import AgentTask, SubprocessAgent, TaskQueue

FAMILY = Path(__file__).with_name("family.py")


def main() -> None:
    repo, report, mode, *stamps = sys.argv[1:]
    argv = [sys.executable, str(FAMILY), report, mode, "wait", *stamps]
    agent = SubprocessAgent(argv, Path(repo), Path(repo) / "a.log", grace_s=0.3)
    with TaskQueue(1, repo=repo) as queue:
        future = queue.submit_task(AgentTask("a", "family", ["f.py"], agent, id="A"))
        try:
            future.result()
            print(f"outcome: {time.time_ns()} succeeded", flush=True)
        except Exception as exc:  # noqa: BLE001 - the test reads whatever it was
            print(f"outcome: {time.time_ns()} {type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    main()
