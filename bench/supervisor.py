"""The supervisor (issue 8): what it costs per task, and how soon a dead run's agents are stopped.

1. Cost per task: 1,000 trivial commands (``sh -c true``, four agent types, 4 at a time)
   through ``TaskQueue`` with ``SubprocessAgent``, which runs each under the supervisor, against
   the same queue running each command with a plain ``subprocess.Popen`` in a session of its
   own and waiting for it (what ``SubprocessAgent`` did before the supervisor). No registry,
   so only the way of running a command differs. Also the CPU time of the supervisor and its
   keepers per task. Target: < 2 ms per task.
2. Orphans stopped after a coordinator's SIGKILL: a coordinator process (this module, role
   ``hold``) runs one task on ``shared.py`` under ``TaskQueue(repo=...)``, whose agent is a
   shell that starts ``sleep`` in the background and waits for it. This process has a task
   on ``shared.py`` waiting in a queue of its own. Measured from the SIGKILL: when both agent
   processes are gone (watched with pidfds), and when the waiting task in this process starts.
   20 trials. Target: < 1 s.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from queue_core import AgentTask, SubprocessAgent, TaskQueue
from queue_core.supervisor import shared_supervisor

from ._common import Check, Section, median, percentile, print_section, table

N = 1_000
REPEATS = 3
TRIALS = 20


class _PlainPopen:
    """What SubprocessAgent did before the supervisor: Popen in a new session, log file, wait."""

    def __init__(self, argv: list[str], cwd: Path, log: Path):
        self.argv, self.cwd, self.log = argv, cwd, log

    def __call__(self) -> int:
        with open(self.log, "ab") as out:
            return subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ).wait()


def _batch(root: Path, *, supervised: bool) -> float:
    (root / "logs").mkdir(exist_ok=True)
    tasks = []
    for i in range(N):
        argv, log = ["sh", "-c", "true"], root / "logs" / f"t{i}.log"
        body = SubprocessAgent(argv, root, log) if supervised else _PlainPopen(argv, root, log)
        tasks.append(AgentTask(f"sh{i % 4}", "true", [f"f{i}.txt"], body, id=f"t{i}"))
    t0 = time.perf_counter()
    with TaskQueue(4) as queue:
        queue.submit_tasks(tasks)
        queue.join()
    return time.perf_counter() - t0


def _supervisor_cpu() -> float:
    """CPU seconds of this process's supervisor and its live keepers (reaped ones count in children)."""
    root = psutil.Process(shared_supervisor().pid)
    total = 0.0
    for proc in [root, *root.children()]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def cost() -> tuple[str, list[Check]]:
    shared_supervisor()  # started before the clock, as a run starts it with its queue
    plain: list[float] = []
    supervised: list[float] = []
    cpu: list[float] = []
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory() as repo:
            plain.append(_batch(Path(repo), supervised=False))
        with tempfile.TemporaryDirectory() as repo:
            before = _supervisor_cpu()
            supervised.append(_batch(Path(repo), supervised=True))
            cpu.append(_supervisor_cpu() - before)
    per_task = (median(supervised) - median(plain)) / N
    rows = [
        (f"plain Popen, {N:,} x sh -c true, 4 at a time", f"{median(plain):.2f} s", "1.00x"),
        ("under the supervisor", f"{median(supervised):.2f} s", f"{median(supervised) / median(plain):.2f}x"),
        ("added wall time per task", f"{per_task * 1e3:.2f} ms", ""),
        ("supervisor + keepers CPU per task", f"{median(cpu) / N * 1e3:.2f} ms", ""),
    ]
    body = f"Median of {REPEATS} runs; runs: plain {_list(plain)}, supervised {_list(supervised)}.\n\n"
    body += table(["what", "time", "vs plain"], rows)
    return body, [
        Check("supervisor cost per task (1,000 trivial tasks)", f"{per_task * 1e3:.2f} ms", "< 2 ms", per_task < 0.002)
    ]


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def hold(repo: str, fifo: str) -> None:
    """Role ``hold``: one task on shared.py whose agent leaves a background child; waits."""
    script = f"sleep 600 & echo $$ $! > {fifo}; wait"
    agent = SubprocessAgent(["sh", "-c", script], Path(repo), Path(repo) / "hold.log", grace_s=5.0)
    with TaskQueue(1, repo=repo) as queue:
        queue.submit_task(AgentTask("holder", "hold", ["shared.py"], agent)).result()


def _trial() -> tuple[float, float]:
    """Seconds from the SIGKILL of a coordinator to: its agents gone; a waiting task elsewhere started."""
    with tempfile.TemporaryDirectory() as repo:
        fifo = Path(repo) / "report.fifo"
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        coordinator = subprocess.Popen([sys.executable, "-m", "bench.supervisor", "hold", repo, str(fifo)])
        try:
            data = b""
            while not data.endswith(b"\n"):
                if not select.select([reader], [], [], 30)[0]:
                    raise RuntimeError("the agent never reported")
                data += os.read(reader, 64)
            pidfds = [os.pidfd_open(int(pid)) for pid in data.split()]
            started: list[int] = []
            with TaskQueue(1, repo=repo) as queue:
                waiting = queue.submit_task(
                    AgentTask("waiter", "wait", ["shared.py"], lambda: started.append(time.monotonic_ns()))
                )
                killed = time.monotonic_ns()
                coordinator.send_signal(signal.SIGKILL)
                open_fds = list(pidfds)
                while open_fds:  # a pidfd turns readable when its process exits
                    ready, _, _ = select.select(open_fds, [], [], 30)
                    if not ready:
                        raise RuntimeError("the agents outlived their run")
                    open_fds = [fd for fd in open_fds if fd not in ready]
                gone = time.monotonic_ns()
                waiting.result(timeout=30)
            for fd in pidfds:
                os.close(fd)
            return (gone - killed) / 1e9, (started[0] - killed) / 1e9
        finally:
            os.close(reader)
            if coordinator.poll() is None:
                coordinator.kill()
            coordinator.wait()


def orphans() -> tuple[str, list[Check]]:
    gone, start = zip(*(_trial() for _ in range(TRIALS)), strict=True)
    rows = [
        (
            "agents gone (both processes)",
            f"{median(gone) * 1e3:.1f} ms",
            f"{percentile(gone, 90) * 1e3:.1f} ms",
            f"{max(gone) * 1e3:.1f} ms",
        ),
        (
            "waiting task in another process starts",
            f"{median(start) * 1e3:.1f} ms",
            f"{percentile(start, 90) * 1e3:.1f} ms",
            f"{max(start) * 1e3:.1f} ms",
        ),
    ]
    body = f"{TRIALS} trials; times from the coordinator's SIGKILL.\n\n" + table(
        ["after SIGKILL", "p50", "p90", "max"], rows
    )
    return body, [
        Check(
            "orphans stopped after the coordinator's SIGKILL, max",
            f"{max(gone) * 1e3:.0f} ms",
            "< 1 s",
            max(gone) < 1.0,
        )
    ]


def run() -> Section:
    cost_body, cost_checks = cost()
    orphans_body, orphans_checks = orphans()
    body = "### Cost per task\n\n" + cost_body + "\n### A coordinator killed with SIGKILL\n\n" + orphans_body
    return Section("The supervisor", body, cost_checks + orphans_checks)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "hold":
        hold(sys.argv[2], sys.argv[3])
    else:
        print_section(run())
