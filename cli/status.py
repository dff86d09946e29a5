"""``project-manager status``: what runs in this repository, across every live run."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from queue_core import repo_status

from . import render
from .delegate import EXIT_INTERRUPTED, EXIT_OK, find_repo
from .signals import Signals


def status_text(status: dict[str, Any], repo: Path, *, now: float) -> str:
    """The plain status; ``now`` is the wall clock, from which running tasks' times are counted."""
    if not status["runs"]:
        return f"Nothing runs in {repo}."
    lines = [
        f"{len(status['running_agents'])} agent(s) running, {status['queued_tasks']} task(s) queued, "
        f"{len(status['runs'])} run(s) in {repo}"
    ]
    for run in status["runs"]:
        lines.append(f"run {run['run']} (pid {run['pid']} on {run['host']})")
        lines.extend(
            f"  running  {task['id']} [{task['agent']}] {_elapsed(task, now):.0f}s  {', '.join(task['files']) or '-'}"
            for task in run["running"]
        )
        lines.extend(f"  waiting  {task['id']} [{task['agent']}]: {task['reason']}" for task in run["waiting"])
        if run["queued"] > len(run["waiting"]):  # a record lists only the best-ranked waiting tasks
            lines.append(f"  and {run['queued'] - len(run['waiting'])} more waiting")
    if status["running_files"]:
        lines.append("active files: " + ", ".join(status["running_files"]))
    return "\n".join(lines)


def status_view(
    status: dict[str, Any], repo: Path, *, now: float, machine: str, usage: dict[str, tuple[float, int]]
) -> Any:
    """The panels of ``status --watch``, from a ``repo_status`` snapshot and what psutil measured.

    ``now`` is the wall clock, ``machine`` the machine's CPU and memory line, and ``usage`` the
    CPU percent and resident memory of each run's process tree by run id; a run missing from it
    runs on another host, whose processes cannot be seen from here.
    """
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    if not status["runs"]:
        return Text(f"Nothing runs in {repo}.")
    running = [
        {**task, "run": run["run"], "elapsed_s": _elapsed(task, now)}
        for run in status["runs"]
        for task in run["running"]
    ]
    waiting = [{**task, "run": run["run"]} for run in status["runs"] for task in run["waiting"]][: render.QUEUE_ROWS]
    resources = [machine, *(_run_usage(run, usage.get(run["run"])) for run in status["runs"])]
    return Group(
        Text(f"{len(status['runs'])} run(s) in {repo}"),
        render.running_panel(f"Running agents ({len(running)})", running, by_run=True),
        render.files_panel(f"Active files ({len(status['running_files'])})", running, by_run=True),
        render.queue_panel(
            f"Queue ({status['queued_tasks']})", waiting, status["queued_tasks"] - len(waiting), by_run=True
        ),
        Panel(Text("\n".join(resources)), title="Resources"),
    )


def _elapsed(task: dict[str, Any], now: float) -> float:
    """Seconds the task has run: a record is rewritten only on a change, so its ``elapsed_s`` ages."""
    return max(0.0, now - task["started_at"]) if "started_at" in task else float(task["elapsed_s"])


def _run_usage(run: dict[str, Any], usage: tuple[float, int] | None) -> str:
    where = f"run {run['run']} (pid {run['pid']} on {run['host']})"
    if usage is None:
        return f"{where}: on another host, not measured here"
    return f"{where}: CPU {usage[0]:.0f}%, memory {usage[1] / 2**20:.0f} MiB"


class _RunUsage:
    """CPU and memory of each local run's process tree: the run's process and its agents.

    The same psutil.Process objects are kept between refreshes: cpu_percent() measures the
    time since the previous call on the same object.
    """

    def __init__(self) -> None:
        self._procs: dict[int, Any] = {}

    def measure(self, runs: list[dict[str, Any]]) -> dict[str, tuple[float, int]]:
        import psutil

        host = socket.gethostname()
        procs: dict[int, Any] = {}
        usage = {}
        for run in runs:
            if run["host"] != host:
                continue
            try:
                root = self._procs.get(run["pid"]) or psutil.Process(run["pid"])
                found = [root, *root.children(recursive=True)]
            except psutil.Error:  # the run ended since its record was read
                found = []
            tree = [self._procs.get(proc.pid, proc) for proc in found]
            procs.update((proc.pid, proc) for proc in tree)
            usage[run["run"]] = render.processes_usage(tree)
        self._procs = procs
        return usage


def run(repo: Path | None, *, json_out: bool, watch: bool, interval: float = 1.0) -> int:
    root = find_repo(repo)
    if not watch:
        _print_status(root, json_out=json_out)
        return EXIT_OK
    with Signals() as signals:  # until Ctrl-C or SIGTERM, which leave through the with blocks
        if not json_out and sys.stdout.isatty():
            _watch_live(root, interval, signals)
        else:
            while True:  # plain blocks for pipes and CI: no escape codes
                _print_status(root, json_out=json_out)
                if signals.wait(interval):
                    break
                print()
    return EXIT_INTERRUPTED


def _watch_live(root: Path, interval: float, signals: Signals) -> None:
    """Rich Live panels, redrawn every ``interval`` seconds until a signal (terminals only)."""
    import psutil
    from rich.live import Live

    runs = _RunUsage()
    psutil.cpu_percent(interval=None)  # the first reading only starts the measurement

    def view() -> Any:
        status = repo_status(root)
        return status_view(
            status, root, now=time.time(), machine=render.machine_usage(), usage=runs.measure(status["runs"])
        )

    with Live(auto_refresh=False) as live:
        while True:
            live.update(view(), refresh=True)
            if signals.wait(interval):
                return


def _print_status(root: Path, *, json_out: bool) -> None:
    status = repo_status(root)
    print(json.dumps(status, indent=2) if json_out else status_text(status, root, now=time.time()), flush=True)
