"""A child process for tests/integration/test_cross_process.py: one TaskQueue on a shared repo.

Run as ``python _worker.py MODE ...``. Every mode reports on stdout, one line per event, and
synchronises with the test only through its stdin and stdout, never through sleeps:

* ``stress REPO SPEC LOG`` — build the queue, print ``ready``, wait for a line on stdin, then
  submit every task of the JSON file SPEC; each task body appends one line
  ``{"proc", "task", "start", "end"}`` (``time.monotonic_ns``) to LOG with a single O_APPEND
  write. A task marked ``rendezvous`` prints ``rendezvous ID`` and waits for a line on stdin
  before its work. Prints ``done`` once all succeeded. The spec's ``stale_after`` (if any) is
  the queue's.
* ``hold REPO AGENT PATH TASK [COUNT]`` — run one task writing PATH (or COUNT of them, ids
  ``TASK``, ``TASK-2``...) whose body prints ``running TASK <monotonic_ns>`` and then blocks on
  stdin until a line arrives. Prints ``done`` when all returned.
* ``wait REPO AGENT PATH TASK [STALE_AFTER]`` — submit one task writing PATH; print
  ``queued <reason>`` if it has to wait (the line comes after the queue's registry step, so the
  wait is real), and from the body ``started <monotonic_ns>``. Prints ``done`` when it returned.
* ``try REPO AGENT PATH TASK`` — ``try_submit`` one task writing PATH: print
  ``conflict <message>`` if it may not start, else ``ran`` once it returned.
* ``status REPO`` — a run with one task blocked on stdin and a second waiting for its file;
  prints ``running <run id>`` once both are in place, ``done`` after a line on stdin let the
  first return and the second ran.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from queue_core import AgentTask, ConflictError, TaskQueue

WAIT = 30.0  # every wait in a child is bounded too: a stuck child fails rather than hangs
_out = threading.Lock()


def say(line: str) -> None:
    with _out:  # lines come from the main thread and from worker threads
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def stress(repo: str, spec_path: str, log_path: str) -> None:
    with open(spec_path) as f:
        spec: dict[str, Any] = json.load(f)
    proc = spec["proc"]
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def body(task_id: str, work_s: float, rendezvous: bool) -> Any:
        def run() -> str:
            start = time.monotonic_ns()
            if rendezvous:  # runs until the test saw every process's rendezvous task running
                say(f"rendezvous {task_id}")
                if not sys.stdin.readline():
                    raise SystemExit("the test went away during the rendezvous")
            time.sleep(work_s)  # simulated work, not synchronisation
            end = time.monotonic_ns()
            line = json.dumps({"proc": proc, "task": task_id, "start": start, "end": end}) + "\n"
            os.write(log_fd, line.encode())  # one write on an O_APPEND fd: lines never interleave
            return task_id

        return run

    kw = {"stale_after": float(spec["stale_after"])} if "stale_after" in spec else {}
    queue = TaskQueue(max_parallel=spec["max_parallel"], repo=repo, **kw)
    say("ready")
    if not sys.stdin.readline():
        raise SystemExit("the test went away before the start signal")
    # The rendezvous task first: places in line that other processes' waiting tasks took must
    # not hold it back. One holds back only the runs it waited for, and this one holds nothing yet.
    tasks = sorted(spec["tasks"], key=lambda t: not t.get("rendezvous", False))
    futures = [
        queue.submit_task(
            AgentTask(
                t["agent"],
                f"stress task {t['id']}",
                t["writes"],
                body(t["id"], t["work_s"], t.get("rendezvous", False)),
                t.get("priority", 0),
                id=t["id"],
                reads=t["reads"],
            )
        )
        for t in tasks
    ]
    results = [f.result(timeout=WAIT * 2) for f in futures]
    assert results == [t["id"] for t in tasks]
    queue.shutdown(wait=True)
    os.close(log_fd)
    say("done")


def hold(repo: str, agent: str, path: str, task_id: str, count: str = "1") -> None:
    def body(name: str) -> Any:
        def run() -> None:
            say(f"running {name} {time.monotonic_ns()}")
            sys.stdin.readline()  # blocks until the test writes a line (or is killed meanwhile)

        return run

    names = [task_id, *(f"{task_id}-{n}" for n in range(2, int(count) + 1))]
    with TaskQueue(max_parallel=2, repo=repo) as queue:
        futures = queue.submit_tasks([AgentTask(agent, "holds its claim", [path], body(n), id=n) for n in names])
        for future in futures:
            future.result(timeout=WAIT)
    say("done")


def wait(repo: str, agent: str, path: str, task_id: str, stale_after: str = "15") -> None:
    def run() -> None:
        say(f"started {time.monotonic_ns()}")

    with TaskQueue(max_parallel=2, repo=repo, stale_after=float(stale_after)) as queue:
        future = queue.submit_task(AgentTask(agent, "waits for the claim", [path], run, id=task_id))
        waiting = queue.get_status().waiting
        if waiting:
            say(f"queued {waiting[0].reason}")
        future.result(timeout=WAIT)
    say("done")


def try_(repo: str, agent: str, path: str, task_id: str) -> None:
    with TaskQueue(max_parallel=2, repo=repo) as queue:
        try:
            future = queue.try_submit(AgentTask(agent, "tries once", [path], lambda: None, id=task_id))
        except ConflictError as exc:
            say(f"conflict {exc}")
            return
        future.result(timeout=WAIT)
    say("ran")


def status(repo: str) -> None:
    entered = threading.Event()

    def blocked() -> str:
        entered.set()
        sys.stdin.readline()
        return "first"

    with TaskQueue(max_parallel=2, repo=repo) as queue:
        first = queue.submit_task(AgentTask("code_developer", "edit the app", ["src/app.py"], blocked, id="edit-app"))
        assert entered.wait(WAIT), "the first task never started"
        second = queue.submit_task(AgentTask("tester", "test the app", ["src/app.py"], lambda: "second", id="test-app"))
        assert queue.get_status().queued_tasks == 1
        assert queue.registry is not None
        say(f"running {queue.registry.run}")
        assert first.result(timeout=WAIT) == "first"
        assert second.result(timeout=WAIT) == "second"
    say("done")


def main(argv: list[str]) -> None:
    mode, *args = argv
    modes = {"stress": stress, "hold": hold, "wait": wait, "try": try_, "status": status}
    modes[mode](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
