"""``project-manager status``: what runs in this repository, across every live run."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from queue_core import repo_status

from .delegate import EXIT_INTERRUPTED, EXIT_OK, find_repo


def status_text(status: dict[str, Any], repo: Path) -> str:
    if not status["runs"]:
        return f"Nothing runs in {repo}."
    lines = [
        f"{len(status['running_agents'])} agent(s) running, {status['queued_tasks']} task(s) queued, "
        f"{len(status['runs'])} run(s) in {repo}"
    ]
    for run in status["runs"]:
        lines.append(f"run {run['run']} (pid {run['pid']} on {run['host']})")
        lines.extend(
            f"  running  {task['id']} [{task['agent']}] {task['elapsed_s']:.0f}s  {', '.join(task['files']) or '-'}"
            for task in run["running"]
        )
        lines.extend(f"  waiting  {task['id']} [{task['agent']}]: {task['reason']}" for task in run["waiting"])
    if status["running_files"]:
        lines.append("active files: " + ", ".join(status["running_files"]))
    return "\n".join(lines)


def run(repo: Path | None, *, json_out: bool, watch: bool, interval: float = 1.0) -> int:
    root = find_repo(repo)
    stop = threading.Event()
    try:
        while True:
            status = repo_status(root)
            print(json.dumps(status, indent=2) if json_out else status_text(status, root), flush=True)
            if not watch or stop.wait(interval):  # refresh until Ctrl-C
                return EXIT_OK
            print()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
