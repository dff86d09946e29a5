"""What runs in a repository, across every live run of every process: what ``status`` shows.

Reads only, without the registry lock: each run's record (``runs/<run>.json``, written by the
run within 50 ms of a change) and the holds in ``claims.json``, which say which runs still
hold claims though their process died.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .processes import agent_processes, lock_holder, process_state
from .registry import STATE_DIR, Owner, live_holds, read_groups, read_holds

__all__ = ["live_run_records", "repo_status"]


def live_run_records(repo: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of every run in ``repo`` that still lives or holds claims, oldest first.

    A run holds claims after its process died while its supervisor, or an agent's process
    group, lives. A repository without state, or an unreadable record, gives fewer records,
    never an error.
    """
    held = {hold.owner.run for hold in live_holds(read_holds(repo), Path(repo) / STATE_DIR / "runs")[0]}
    records = []
    for path in sorted((Path(repo) / STATE_DIR / "runs").glob("*.json")):
        try:
            record = json.loads(path.read_text())
            owner = Owner.from_json(record["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or damaged: it is only a view
        if owner.run in held or owner.alive():
            records.append(record)
    return records


def repo_status(repo: str | os.PathLike[str]) -> dict[str, Any]:
    """What runs in ``repo`` right now, across every live run of every process.

    ``running_agents``, ``running_files`` and ``queued_tasks`` as in ``TaskQueue.get_status``,
    summed over the runs, and ``runs``: one entry per live run with its owner, its ``state``
    (``running``; ``stopped``: its process is stopped, and holds its claims until resumed or
    ended; ``orphaned``: its process died while its agents still run, stopped by its
    supervisor if that lives, listed in ``processes`` with pid and name; their claims stay
    held until they are gone), ``supervisor_pid``, ``registry_wait`` (who holds the registry
    lock it has waited more than a second for, else None), its running tasks, ``queued``
    (how many of its tasks wait) and ``waiting``: the best-ranked of them (at most
    ``queue.RECORD_WAITING_MAX``) with their reasons. ``stopped_lock_holder`` is the pid of a
    stopped process that holds the registry lock, which every run waits for; else None.
    """
    runs_dir = Path(repo) / STATE_DIR / "runs"
    runs = []
    for record in live_run_records(repo):
        status = record.get("status", {})
        owner = Owner.from_json(record["owner"])
        state = _state(owner)
        supervisor = None if owner.supervisor is None else owner.supervisor.pid
        groups = [g.pid for gs in read_groups(runs_dir / f"{owner.run}.groups").values() for g in gs]
        runs.append(
            {
                "run": owner.run,
                "pid": owner.pid,
                "host": owner.host,
                "state": state,
                "supervisor_pid": supervisor,
                "processes": agent_processes(supervisor or 0, groups) if state == "orphaned" else [],
                "registry_wait": status.get("registry_wait"),
                "started_at": record.get("started_at"),
                "updated_at": record.get("updated"),
                "running": status.get("running", []),
                "waiting": status.get("waiting", []),  # the best-ranked ones (see RECORD_WAITING_MAX)
                "queued": status.get("queued_tasks", 0),
                "counts": status.get("counts", {}),
            }
        )
    holder = lock_holder(Path(repo) / STATE_DIR / "registry.lock")
    return {
        "running_agents": [task["agent"] for run in runs for task in run["running"]],
        "running_files": sorted({path for run in runs for task in run["running"] for path in task["files"]}),
        "queued_tasks": sum(run["queued"] for run in runs),
        "runs": runs,
        "stopped_lock_holder": holder if holder is not None and process_state(holder) == "stopped" else None,
    }


def _state(owner: Owner) -> str:
    if not owner.is_local:
        return "running"  # another host's processes cannot be seen from here
    if owner.process.alive():
        return process_state(owner.pid) or "running"
    return "orphaned"
