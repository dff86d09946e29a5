"""A coordinator in a process of its own, for tests that kill it or its supervisor.

    python coordinator.py REPO REPORT MODE [STAMPS] [--unaware]

Runs one task, ``A`` on ``f.py``, whose agent is ``family.py REPORT MODE wait [STAMPS]``
(grace 0.3 s), under ``TaskQueue(repo=REPO)``; prints ``outcome: <time_ns> ...`` when it
ends. With ``--unaware`` this process never hears that the agent started, as when its
supervisor dies before it could say so.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from queue_core import AgentTask, SubprocessAgent, TaskQueue
from queue_core.supervisor import Supervisor

FAMILY = Path(__file__).with_name("family.py")


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--unaware"]
    if "--unaware" in sys.argv:
        on_message = Supervisor._on_message
        Supervisor._on_message = lambda self, message: message[0] != "started" and on_message(self, message)  # type: ignore[method-assign]
    repo, report, mode, *stamps = args
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
