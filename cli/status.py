"""``project-manager status``: what runs in this repository, across every live run."""

from __future__ import annotations

import functools
import json
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from queue_core import RepoStatus, repo_status
from queue_core.processes import STOPPED_HINT
from queue_core.records import RunningTask
from queue_core.status import RunView
from queue_core.worktree_leftovers import Leftover

from . import render, terminal
from .clean import worktree_views
from .exits import EXIT_OK, exit_code_for
from .render import agent_text, files_text, progress_text, task_left_text
from .repo import find_repo
from .signals import Signals

if TYPE_CHECKING:
    from .panels import Columns
    from .usage import Machine, Usage


def status_text(status: RepoStatus, repo: Path, *, now: float) -> str:
    """The plain status; ``now`` is the wall clock, from which running tasks' times are counted."""
    lock = _lock_line(status)
    if not status.runs:
        return "\n".join([*lock, f"Nothing runs in {repo}."])
    lines = [
        *lock,
        f"{len(status.running_agents)} agent(s) running, {status.queued_tasks} task(s) queued, "
        f"{len(status.runs)} run(s) in {repo}",
    ]
    for run in status.runs:
        lines.append(_run_line(run, now))
        if run.registry_wait:
            lines.append(f"  waiting for the registry: {run.registry_wait}")
        lines.extend(
            f"  running  {task.id} [{agent_text(task)}] {_elapsed(task, now):.0f}s  {files_text(task) or '-'}"
            + _left(task, now)
            for task in run.running
        )
        lines.extend(f"  waiting  {task.id} [{task.agent}]: {task.reason}" for task in run.waiting)
        if run.queued > len(run.waiting):  # a record lists only the best-ranked waiting tasks
            lines.append(f"  and {run.queued - len(run.waiting)} more waiting")
    if status.running_files:
        lines.append("active files: " + ", ".join(status.running_files))
    return "\n".join(lines)


def status_view(
    status: RepoStatus,
    repo: Path,
    *,
    now: float,
    columns: Columns,
    machine: Machine,
    usage: dict[str, Usage],
    fit: bool,
) -> Any:
    """The panels of ``status``, from a ``repo_status`` snapshot and what psutil measured.

    ``now`` is the wall clock; ``columns`` the name columns' widths, which grow with the names
    seen; ``machine`` and ``usage`` what the machine and each run's process tree use (by run id:
    a run missing from it runs on another host, whose processes cannot be seen from here).
    ``fit``: the view fits the terminal's height (``--watch``), else it is printed whole.
    """
    from rich.console import Group
    from rich.text import Text

    from . import panels
    from .usage import machine_text

    lock = [Text(line) for line in _lock_line(status)]
    if not status.runs:
        return Group(*lock, Text(f"Nothing runs in {repo}."))
    running = [replace(task, run=run.run, elapsed_s=_elapsed(task, now)) for run in status.runs for task in run.running]
    waiting = [replace(task, run=run.run) for run in status.runs for task in run.waiting][: panels.QUEUE_ROWS]
    columns.see((task.id, task.agent, task.run) for task in running)
    columns.see((task.id, task.agent, task.run) for task in waiting)
    head = [*lock, Text(f"{len(status.runs)} run(s) in {repo}"), *(Text(_run_line(run, now)) for run in status.runs)]
    parts = [
        panels.running_part(f"Running agents ({len(running)})", running),
        panels.files_part(f"Active files ({len(status.running_files)})", running),
        panels.queue_part(f"Queue ({status.queued_tasks})", waiting, status.queued_tasks - len(waiting)),
    ]
    resources = [machine_text(machine), *(_run_usage(run, usage.get(run.run), machine.cores) for run in status.runs)]
    return panels.Frame(head, parts, resources, columns, fit=fit)


def _run_line(run: RunView, now: float) -> str:
    """``run R (pid 1 on host): 3/10 done, 1 running, 0 failed · elapsed 2m 00s``, and what is
    wrong with it, if anything."""
    elapsed = None if run.started_at is None else max(0.0, now - run.started_at)
    eta = None if run.ends_at is None else run.ends_at - now
    progress = progress_text(run.counts, len(run.running), run.queued, elapsed, eta_s=eta)
    line = f"run {run.run} (pid {run.pid} on {run.host}): {progress}"
    if run.state == "stopped":
        return f"{line}; STOPPED, it holds its claims until resumed: {STOPPED_HINT}"
    if run.state == "orphaned":
        processes = ", ".join(f"{p.pid} ({p.name})" for p in run.processes) or "none left"
        if run.supervisor_pid is None:
            return (
                f"{line}; ORPHANED, its process and its supervisor died; nothing stops its agents, whose "
                f"claims stay held until they are gone (end them): {processes}"
            )
        return (
            f"{line}; ORPHANED, its process died; its supervisor (pid {run.supervisor_pid}) is stopping its "
            f"agents, whose claims stay held until they are gone: {processes}"
        )
    return line


def _lock_line(status: RepoStatus) -> list[str]:
    """What stands in every run's way, or is wrong with the state: the lock's stopped holder, junk files."""
    pid = status.stopped_lock_holder
    lines = list(status.skipped)
    if pid is not None:
        lines.append(
            f"The registry lock is held by pid {pid}, which is stopped; every run here waits for it: {STOPPED_HINT}"
        )
    return lines


def _left(task: RunningTask, now: float) -> str:
    """`` (~4 min left)``: a running task's estimate against the time it has run; empty without one."""
    left = task_left_text(task.estimate_s, _elapsed(task, now))
    return f" ({left})" if left else ""


def _elapsed(task: RunningTask, now: float) -> float:
    """Seconds the task has run: a record is rewritten only on a change, so its ``elapsed_s`` ages."""
    return task.elapsed_s if task.started_at is None else max(0.0, now - task.started_at)


def _run_usage(run: RunView, usage: Usage | None, cores: int) -> str:
    from .usage import usage_text

    if usage is None:
        return f"run {run.run}: on another host, not measured here"
    return f"run {run.run}: {usage_text(usage, cores)}"


def _root_pid(run: RunView) -> int:
    """The process whose tree is the run's: its own; once it died (orphaned), its supervisor's,
    below which its agents still are."""
    return run.supervisor_pid if run.state == "orphaned" and run.supervisor_pid is not None else run.pid


def run(repo: Path | None, *, json_out: bool, watch: bool, live: bool, interval: float = 1.0) -> int:
    """Show what runs in ``repo``, once or (``watch``) every ``interval`` seconds until a signal;
    ``live``: as panels (stdout is a terminal, and no ``--no-live``), unless ``json_out``."""
    root = find_repo(repo)
    live = live and not json_out
    if not watch:
        if live:
            terminal.print_panels(_Panels(root).view(fit=False))
        else:
            terminal.out(_status_text(root, json_out=json_out))
        if not json_out:
            found, folder, idle = worktree_views(root)
            if found:
                terminal.out(render.leftovers_text(found))
            if idle:
                terminal.out(render.idle_pool_text(folder, idle))
        return EXIT_OK
    with Signals() as signals:  # until Ctrl-C, SIGTERM or SIGHUP, which leave through the with blocks
        if live:
            return _watch_live(_Panels(root), interval, signals)
        return _watch_plain(root, interval, signals, json_out=json_out)


class _Panels:
    """The panels of ``status`` for one view: one sampler, whose CPU figures run from one frame
    to the next, and one set of column widths, which grow with the names seen."""

    def __init__(self, root: Path):
        from .panels import Columns
        from .usage import UsageSampler

        self.root = root
        self.sampler = UsageSampler()
        self.columns = Columns()
        self.host = socket.gethostname()

    def view(self, *, fit: bool) -> Any:
        """The panels now; ``fit``: to the terminal's height, else whole."""
        status = repo_status(self.root)
        usage = self.sampler.trees({run.run: _root_pid(run) for run in status.runs if run.host == self.host})
        machine = self.sampler.machine()
        return status_view(
            status, self.root, now=time.time(), columns=self.columns, machine=machine, usage=usage, fit=fit
        )


def _watch_plain(root: Path, interval: float, signals: Signals, *, json_out: bool) -> int:
    """Plain blocks, or JSON objects one a line (NDJSON), for pipes and CI, no escape codes, until
    a signal: 128 + its number. Also until the reader goes away (``status --watch | head``): 141,
    as for SIGPIPE."""
    written: list[bool] = [True]
    separator = ""
    while written[-1]:
        text = separator + _status_text(root, json_out=json_out, one_line=True)
        _finish_or_exit(signals, functools.partial(_append, written, terminal.write_out, text))
        if written[-1] and (signum := signals.wait(interval)) is not None:
            return exit_code_for(signum)
        separator = "" if json_out else "\n"  # a blank line between blocks of text
    return exit_code_for(signal.SIGPIPE)


def _append(results: list[bool], write: Callable[[str], bool], text: str) -> None:
    results.append(write(text))


def _watch_live(panels: _Panels, interval: float, signals: Signals) -> int:
    """Rich Live panels, redrawn every ``interval`` seconds until a signal: 128 + its number; or
    the terminal goes away: 129, as for SIGHUP (which comes then)."""
    screen = terminal.Screen()
    drawn: list[bool] = []

    def draw(step: Callable[[], object]) -> None:
        try:
            step()
            drawn.append(True)
        except OSError:  # the terminal is gone
            drawn.append(False)

    _finish_or_exit(signals, lambda: draw(screen.start))
    try:
        while drawn[-1]:
            _finish_or_exit(signals, lambda: draw(lambda: screen.show(panels.view(fit=True))))
            if drawn[-1] and (signum := signals.wait(interval)) is not None:
                return exit_code_for(signum)
        return exit_code_for(signals.caught or signal.SIGHUP)
    finally:
        _finish_or_exit(signals, lambda: draw(screen.stop))


def _finish_or_exit(signals: Signals, work: Callable[[], object]) -> None:
    """Do ``work`` (a write); if a signal came and it cannot be done in time, end the command now."""
    if not signals.finish(work):
        terminal.exit_now(exit_code_for(signals.caught or signal.SIGPIPE))


def _status_text(root: Path, *, json_out: bool, one_line: bool = False) -> str:
    """What runs in ``root``, as plain text or JSON (on ``one_line``, for NDJSON)."""
    status = repo_status(root)
    if json_out:
        left, _, idle = worktree_views(root)
        found = {
            "leftover_worktrees": [_leftover_json(leftover) for leftover in left],
            "idle_pool_worktrees": [str(path) for path in idle],
        }
        return json.dumps({**status.to_json(), **found}, indent=None if one_line else 2)
    return status_text(status, root, now=time.time())


def _leftover_json(leftover: Leftover) -> dict[str, Any]:
    """A dead run's task worktree or branch, for ``status --json``."""
    return {
        "run": leftover.run or None,  # None: a pool worktree changed since it was idle
        "task": leftover.task,
        "branch": leftover.branch,
        "path": None if leftover.path is None else str(leftover.path),
        "unmerged_commits": list(leftover.unmerged or ()),
        "uncommitted_paths": list(leftover.uncommitted or ()),
    }
