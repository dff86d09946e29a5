"""The Rich panels of the live views: a run's (``delegate-multiple`` on a terminal), built here
whole, and every run's (``status --watch``), which cli/status.py builds from the same panels.

Only built here; cli/terminal.py draws them. Importing Rich takes a tenth of a second, so a
command imports this module only once it knows it draws panels. User text (descriptions,
paths, reasons) goes in as ``Text``, never as Rich markup.

With ``by_run`` a table starts with the run of each task: status shows every run in the
repository, and each task given then carries its run id (``task.run``).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from queue_core import QueueStatus, TaskState
from queue_core.records import RunningTask, WaitingTask

QUEUE_ROWS = 20  # waiting tasks listed; the rest are counted


def run_view(status: QueueStatus, *, agents: tuple[float, int], cost: float | None, machine: str) -> RenderableType:
    """The live view of a run from its ``status``: ``agents`` is the CPU percent and resident
    memory of its agents, ``cost`` what they reported so far (None: nothing), ``machine`` the
    machine's CPU and memory line."""
    skipped = status.counts.get(TaskState.SKIPPED.value, 0)
    resources = (
        f"{machine}   agents: CPU {agents[0]:.0f}%, memory {agents[1] / 2**20:.0f} MiB   "
        f"done {status.finished_tasks} (failed {status.failed_tasks}, skipped {skipped})"
        + ("" if cost is None else f"   cost so far ${cost:.4f}")
    )
    waiting = status.waiting
    blocked = [Text(f"waiting for the registry: {status.registry_wait}")] if status.registry_wait else []
    return Group(
        *blocked,
        running_panel(f"Running agents ({len(status.running)}/{status.max_parallel})", status.running),
        files_panel(f"Active files ({len(status.running_files)})", status.running),
        queue_panel(f"Queue ({status.queued_tasks})", waiting[:QUEUE_ROWS], len(waiting) - QUEUE_ROWS),
        resources_panel(resources),
    )


def running_panel(title: str, tasks: Sequence[RunningTask], *, by_run: bool = False) -> Panel:
    """The running agents, one row each: task, agent, description, elapsed time and files."""
    table = Table(expand=True, box=None)
    for column in ("run",) * by_run + ("task", "agent", "description", "elapsed", "files"):
        table.add_column(column, no_wrap=True, overflow="ellipsis", ratio=3 if column == "description" else None)
    for task in tasks:
        elapsed = f"{task.elapsed_s:.0f}s" + (" (timed out)" if task.timed_out else "")
        cells = (task.id, task.agent, task.description, elapsed, ", ".join(task.files))
        table.add_row(*(Text(cell) for cell in _with_run(task, cells, by_run)))
    return Panel(table, title=title)


def files_panel(title: str, tasks: Sequence[RunningTask], *, by_run: bool = False) -> Panel:
    """Every file the running tasks write, and the task holding it."""
    table = Table(expand=True, box=None)
    for column in ("run",) * by_run + ("file", "held by"):
        table.add_column(column)
    for task in tasks:
        for path in task.files:
            table.add_row(*(Text(cell) for cell in _with_run(task, (path, f"{task.id} ({task.agent})"), by_run)))
    return Panel(table, title=title)


def queue_panel(title: str, waiting: Sequence[WaitingTask], more: int, *, by_run: bool = False) -> Panel:
    """The waiting tasks with the reason each waits, then how many ``more`` wait unlisted."""
    table = Table(expand=True, box=None)
    columns = ("run",) * by_run + ("task", "agent", "waits because")
    for column in columns:
        table.add_column(column)
    for task in waiting:
        table.add_row(*(Text(cell) for cell in _with_run(task, (task.id, task.agent, task.reason), by_run)))
    if more > 0:
        table.add_row("…", *[""] * (len(columns) - 2), f"and {more} more")
    return Panel(table, title=title)


def resources_panel(text: str) -> Panel:
    """CPU and memory, as ``text`` says them (see cli.usage)."""
    return Panel(Text(text), title="Resources")


def _with_run(task: RunningTask | WaitingTask, cells: tuple[str, ...], by_run: bool) -> tuple[str, ...]:
    return (task.run or "", *cells) if by_run else cells
