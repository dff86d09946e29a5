"""The text of ``history``, ``show`` and ``logs --run``: plain tables, no escape codes.

Made here as strings (cli/render.py is the run's), written by cli/terminal.py. What the state
directory holds is user text (an agent's error, a description): each cell is one line, its
control characters shown as ``?``, cut with "…" rather than wrapped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.cells import cell_len, set_cell_size

from queue_core.logfiles import LogFile
from queue_core.records import MergeOutcome
from queue_core.runviews import RunSummary, TaskSummary
from queue_core.waits import seconds_text

from .render import DEFAULT_WIDTH

#: What a cell shows where the files do not say.
UNKNOWN = "—"
#: A width that cuts nothing: a cell is made one line, and only the line is cut; on a pipe, not at all.
NO_CUT = 1 << 30


def history_text(runs: Sequence[RunSummary], *, width: int = DEFAULT_WIDTH) -> str:
    """``history``: a line per run, newest first: id, start (to the minute: a run's id has the
    second), wall time, cost, tasks by outcome; and its state, if a run is not finished."""
    columns = {
        "run": [run.run for run in runs],
        "started": [local_time(run.started_at, "%Y-%m-%d %H:%M") for run in runs],
        "wall": [_seconds(run.wall_s) for run in runs],
        "cost": [cost_text(run.cost_usd) for run in runs],
        "state": [run.state for run in runs],
        "tasks": [counts_text(run) for run in runs],
    }
    if all(run.state == "finished" for run in runs):
        del columns["state"]
    return "\n".join(table(columns, width))


def show_text(run: RunSummary, logs: str | None, *, width: int = DEFAULT_WIDTH) -> str:
    """``show``: the run's header, then a line per task (the error last: it is cut first)."""
    ended = "" if run.ended_at is None else f", ended {local_time(run.ended_at)}"
    exit_code = "" if run.exit_code is None else f", exit {run.exit_code}"
    lines = [
        one_line(f"run {run.run} ({run.state}): {counts_text(run)}", width),
        one_line(
            f"started {local_time(run.started_at)}{ended}, wall {_seconds(run.wall_s)}{exit_code}, "
            f"cost {cost_text(run.cost_usd)}",
            width,
        ),
    ]
    if logs is not None:
        lines.append(f"logs: {logs}")  # whole: a path cut short cannot be used
    if not run.tasks:
        return "\n".join([*lines, "", "no task is recorded"])
    tasks = run.tasks
    columns = {
        "id": [task.id for task in tasks],
        "agent": [task.agent for task in tasks],
        "status": [task.status for task in tasks],
        "time": [_task_time(task) for task in tasks],
        "attempts": [str(task.attempts) for task in tasks],
        "cost": ["" if task.cost_usd is None else cost_text(task.cost_usd) for task in tasks],
        "merge": [merge_text(task.merge) for task in tasks],
        "error": [_error(task) for task in tasks],
    }
    return "\n".join([*lines, "", *table({k: v for k, v in columns.items() if any(v) or k == "id"}, width)])


def logs_text(folder: str, logs: Sequence[LogFile], statuses: dict[str, str], *, width: int = DEFAULT_WIDTH) -> str:
    """``logs --run``: the run's logs folder, then each task's log in it: task, size, status."""
    if not logs:
        return f"no task logs in {folder}"
    columns = {
        "task": [log.task for log in logs],
        "size": [size_text(log.size) for log in logs],
        "status": [statuses.get(log.task, UNKNOWN) for log in logs],
    }
    return "\n".join([f"logs: {folder}", "", *table(columns, width)])  # the path whole, as in show


def counts_text(run: RunSummary) -> str:
    """``3 succeeded, 1 failed``; ``no tasks`` for a run that lists none."""
    return ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in run.ordered_counts) or "no tasks"


def merge_text(merge: MergeOutcome | None) -> str:
    """``merged, 3 files +12 -1`` (as the run's summary says it); ``kept`` for a branch that did
    not get to its merge (the agent failed); empty for a task in the shared checkout."""
    if merge is None:
        return ""
    if merge.result is None:
        return "kept"
    return f"{merge.result}, {merge.files} file{'' if merge.files == 1 else 's'} +{merge.insertions} -{merge.deletions}"


def cost_text(cost: float | None) -> str:
    return UNKNOWN if cost is None else f"${cost:.4f}"


def size_text(size: int) -> str:
    """``812 B``, ``4.2 KiB``, ``3.0 MiB``."""
    value, unit = float(size), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def local_time(wall: float | None, form: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``2026-11-28 14:25:01``, local time; UNKNOWN if not known."""
    return UNKNOWN if wall is None else time.strftime(form, time.localtime(wall))


def _seconds(seconds: float | None) -> str:
    """``4.2s`` under a minute (a short run is not ``0s``), else ``14m 05s``, ``2h 00m``."""
    if seconds is None:
        return UNKNOWN
    return f"{seconds:.1f}s" if seconds < 59.95 else seconds_text(seconds)


def _error(task: TaskSummary) -> str:
    """Its error, unless its status says it already ("cancelled", not "cancelled  cancelled")."""
    return "" if task.error is None or task.error == task.status else task.error


def _task_time(task: TaskSummary) -> str:
    """All its attempts' time, as the run's summary says it; else its last attempt's."""
    seconds = task.total_s if task.total_s is not None else task.duration_s
    return "" if seconds is None else f"{seconds:.1f}s"


def one_line(text: str, width: int) -> str:
    """``text`` on one line: whitespace runs made one space, control characters ``?``, cut with
    "…" past ``width`` columns."""
    return cut("".join(c if c.isprintable() else "?" for c in " ".join(text.split())), width)


def cut(text: str, width: int) -> str:
    """``text``, its end cut with "…" if it is wider than ``width`` columns (a wide character takes two)."""
    return text if cell_len(text) <= width else set_cell_size(text, max(0, width - 1)) + "…"


def table(columns: dict[str, list[str]], width: int) -> list[str]:
    """The header and rows of ``columns`` (name: cells), each cell one line; a line wider than
    ``width`` is cut at its end, where the longest column (an error) is."""
    cells = {name: [one_line(cell, NO_CUT) for cell in values] for name, values in columns.items()}
    widths = {name: max(cell_len(text) for text in (name, *values)) for name, values in cells.items()}
    rows = [list(widths), *map(list, zip(*cells.values(), strict=True))]
    return [
        cut("  ".join(set_cell_size(text, w) for text, w in zip(row, widths.values(), strict=True)).rstrip(), width)
        for row in rows
    ]
