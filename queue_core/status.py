"""What runs in a repository, across every live run of every process: what ``status`` shows.

Reads only, without the registry lock: each run's record (``runs/<run>.json``, written by the
run within 50 ms of a change) and the holds in ``claims.json``, which say which runs still
hold claims though their process died.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from .errors import NotRegularFileError
from .holds import Owner, live_holds, read_groups
from .processes import agent_processes, lock_holder, process_state
from .registry import read_holds, state_dir
from .statedir import read_regular
from .waits import WaitReason

__all__ = ["live_run_records", "repo_status"]


def live_run_records(repo: str | os.PathLike[str], skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """The records of every run in ``repo`` that still lives or holds claims, oldest first.

    A run holds claims after its process died while its supervisor, or an agent's process
    group, lives. A repository without state, or an unreadable record, gives fewer records,
    never an error; what is not a regular file is named in ``skipped``, if given, and never
    read (a FIFO would make the reader wait).
    """
    runs_dir = state_dir(repo) / "runs"
    held = {hold.owner.run for hold in live_holds(read_holds(repo), runs_dir)[0]}
    records = []
    for path in sorted(runs_dir.glob("*.json")):
        try:
            record = json.loads(read_regular(path) or b"")
            owner = Owner.from_json(record["owner"])
        except NotRegularFileError:
            if skipped is not None:
                skipped.append(f"{path}: not a regular file; skipped")
            continue
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or damaged: it is only a view
        if "status" not in record:
            continue  # a registry that runs no queue (yet): nothing to show
        if owner.run in held or owner.alive(runs_dir):
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
    ``skipped`` names what in the state directory is not a regular file, and was not read.
    """
    directory = state_dir(repo)
    runs_dir = directory / "runs"
    runs = []
    skipped: list[str] = []
    for record in live_run_records(repo, skipped):
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
                "waiting": _now_told(status.get("waiting", [])),  # the best-ranked ones (see RECORD_WAITING_MAX)
                "queued": status.get("queued_tasks", 0),
                "counts": status.get("counts", {}),
            }
        )
    holder = lock_holder(directory)
    return {
        "running_agents": [task["agent"] for run in runs for task in run["running"]],
        "running_files": sorted({path for run in runs for task in run["running"] for path in task["files"]}),
        "queued_tasks": sum(run["queued"] for run in runs),
        "runs": runs,
        "stopped_lock_holder": holder if holder is not None and process_state(holder) == "stopped" else None,
        "skipped": skipped,
    }


def _now_told(waiting: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``waiting``, each wait that ends at a set time (a retry, a rate limit) told from now, not
    from when its run wrote it: a run writes its record when something changes, not as time passes."""
    now = time.time()
    for task in waiting:
        until = task.get("resumes_at")
        if isinstance(until, (int, float)):
            task["reason"] = WaitReason(task["reason_kind"], holder_agent=task["agent"], until=until).describe(now)
    return waiting


def _state(owner: Owner) -> str:
    if not owner.is_local:
        return "running"  # another host's processes cannot be seen from here
    if owner.process.alive():
        return process_state(owner.pid) or "running"
    return "orphaned"
