"""The text of the CLI's output: event lines, the summary, JSON, plans, what ``clean`` did.

Only made here, as strings, and written by cli/terminal.py; the live panels are cli/panels.py's.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queue_core import TaskEvent, TaskOutcome, TaskState
from queue_core.changes import Stray
from queue_core.records import FAILED_STATES
from queue_core.reports import AgentReport
from queue_core.retention import RetentionReport
from queue_core.waits import seconds_text

_WORDS = {
    "started": "started",
    "succeeded": "finished",
    "failed": "FAILED",
    "timed_out": "TIMED OUT",
    "cancelled": "cancelled",
    "skipped": "skipped",
    "rate_limited": "RATE LIMITED",
    "retrying": "retrying",
    "paused": "paused",
}


@dataclass(frozen=True)
class SummaryRow:
    """One task's line in the summary and in --json: how it ended, and what it changed outside
    its claims while it ran (see queue_core.changes; None: unknown), which only the CLI watches."""

    outcome: TaskOutcome
    unclaimed: Stray | None = field(default_factory=Stray)

    @property
    def reason(self) -> str | None:
        """Why it did not succeed; a task that succeeded on a retry is not shown its earlier error."""
        return None if self.outcome.status is TaskState.SUCCEEDED else self.outcome.reason

    @property
    def report(self) -> AgentReport:
        return self.outcome.report or AgentReport()

    def to_json(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "id": o.id,
            "agent": o.agent,
            "description": o.description,
            "status": o.status.value,
            "exit_code": o.exit_code,
            "duration_s": None if o.duration_s is None else round(o.duration_s, 3),
            "log": o.log,
            "error": self.report.error,
            "cost_usd": self.report.cost_usd,
            "tokens": self.report.tokens,
            "unclaimed_writes": None if self.unclaimed is None else list(self.unclaimed.paths),
            "unclaimed_writes_also_running": None if self.unclaimed is None else list(self.unclaimed.beside),
        }


def total_cost(rows: list[SummaryRow]) -> float | None:
    """The run's cost in USD, as far as its agents reported one; None if none did."""
    return reported_cost(row.outcome.report for row in rows)


def reported_cost(reports: Iterable[AgentReport | None]) -> float | None:
    """The sum of the costs ``reports`` give; None if none gives one."""
    costs = [r.cost_usd for r in reports if r is not None and r.cost_usd is not None]
    return round(sum(costs), 6) if costs else None


def notice_line(text: str) -> str:
    """``12:00:01 notice    the registry lock held by pid 123 (stopped: ...)``."""
    return f"{time.strftime('%H:%M:%S')} {'notice':<9} {text}"


def unclaimed_line(event: TaskEvent, found: Stray) -> str:
    """``12:00:01 warning   t1 [dev] changed outside its claims: x.txt``, and the tasks beside it."""
    return f"{time.strftime('%H:%M:%S')} {'warning':<9} {event.task_id} [{event.agent_type}] {unclaimed_text(found)}"


#: Paths named in a line of text; --json has them all.
UNCLAIMED_SHOWN = 5


def unclaimed_text(found: Stray) -> str:
    """``changed outside its claims: a, b and 3 more (also running: t2; any of them may have)``."""
    shown = [path if path.isprintable() else repr(path) for path in found.paths[:UNCLAIMED_SHOWN]]
    more = len(found.paths) - len(shown)
    paths = ", ".join(shown) + (f" and {more} more" if more else "")
    if not found.beside:
        return f"changed outside its claims: {paths}"
    return f"changed outside the claims: {paths} (also running: {', '.join(found.beside)}; any of them may have)"


def event_line(event: TaskEvent) -> str:
    """``12:00:01 started   parser [code_developer]``, and the attempt or the error where it helps."""
    word = _WORDS.get(event.kind, event.kind)
    attempt = f" (attempt {event.attempt})" if event.attempt > 1 and event.kind == "started" else ""
    detail = f": {event.error}" if event.error and event.kind not in ("succeeded", "started") else ""
    return f"{time.strftime('%H:%M:%S')} {word:<9} {event.task_id} [{event.agent_type}]{attempt}{detail}"


def summary_text(rows: list[SummaryRow], wall_s: float, sum_s: float) -> str:
    """The end-of-run summary as plain text: a table, then wall time, task time and speedup."""
    cost = total_cost(rows)
    header = ("id", "agent", "outcome", "exit", "duration", *(("cost",) if cost is not None else ()), "log")
    cells = [
        (
            row.outcome.id,
            row.outcome.agent,
            _outcome_cell(row) + (" !" if _strayed(row) else ""),
            "" if row.outcome.exit_code is None else str(row.outcome.exit_code),
            "" if row.outcome.duration_s is None else f"{row.outcome.duration_s:.1f}s",
            *(() if cost is None else ("" if row.report.cost_usd is None else f"${row.report.cost_usd:.4f}",)),
            _short_path(row.outcome.log),
        )
        for row in rows
    ]
    widths = [max(len(str(r[i])) for r in (header, *cells)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *cells)]
    lines += [
        f"! {r.outcome.id} {unclaimed_text(r.unclaimed)}" for r in rows if r.unclaimed is not None and _strayed(r)
    ]
    speedup = sum_s / wall_s if wall_s > 0 else 1.0
    succeeded = sum(row.outcome.status is TaskState.SUCCEEDED for row in rows)
    lines.append("")
    spent = "" if cost is None else f", cost ${cost:.4f}"
    lines.append(
        f"{succeeded}/{len(rows)} succeeded; wall {wall_s:.1f}s, task time {sum_s:.1f}s, speedup {speedup:.2f}x{spent}"
    )
    return "\n".join(lines)


def _outcome_cell(row: SummaryRow) -> str:
    status = row.outcome.status.value
    return status if row.reason in (None, status) else f"{status} ({row.reason})"  # not "cancelled (cancelled)"


def _strayed(row: SummaryRow) -> bool:
    return row.unclaimed is not None and bool(row.unclaimed.paths)


def _short_path(path: str | None) -> str:
    """``path`` relative to the current directory when it lies below it, else as it is."""
    if path is None:
        return ""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def run_json(run_id: str, rows: list[SummaryRow], wall_s: float, sum_s: float) -> str:
    return json.dumps(
        {
            "run_id": run_id,
            "wall_s": round(wall_s, 3),
            "sum_s": round(sum_s, 3),
            "speedup": round(sum_s / wall_s, 3) if wall_s > 0 else 1.0,
            "cost_usd": total_cost(rows),
            "tasks": [row.to_json() for row in rows],
        },
        indent=2,
    )


def plan_json(
    tasks: list[tuple[str, str, list[str], tuple[str, ...], tuple[str, ...], tuple[str, ...]]],
    starts: list[tuple[str, str, str]],
    waits: list[tuple[str, str, str]],
    missing: list[str],
) -> str:
    """--dry-run --json: each task (id, agent, argv, files, reads, depends_on), what would start
    now, why the rest would wait, and the executables not on PATH."""
    keys = ("id", "agent", "argv", "files", "reads", "depends_on")
    plan = {
        "tasks": [
            dict(zip(keys, (tid, agent, argv, list(files), list(reads), list(deps)), strict=True))
            for tid, agent, argv, files, reads, deps in tasks
        ],
        "starts": [tid for tid, _, _ in starts],
        "waits": [{"id": tid, "reason": reason} for tid, _, reason in waits],
        "missing": missing,
    }
    return json.dumps(plan, indent=2)


def plan_text(
    starts: list[tuple[str, str, str]], waits: list[tuple[str, str, str]], argvs: dict[str, list[str]]
) -> str:
    """--dry-run: what would start together now, and why each other task would wait; under each,
    the command it would run, quoted for a POSIX shell."""
    lines = ["Would start now, together:"]
    for tid, agent, desc in starts:
        lines += [f"  {tid} [{agent}] {desc}", f"    $ {shlex.join(argvs[tid])}"]
    if not starts:
        lines.append("  (nothing)")
    if waits:
        lines.append("Would wait:")
        for tid, agent, reason in waits:
            lines += [f"  {tid} [{agent}]: {reason}", f"    $ {shlex.join(argvs[tid])}"]
    return "\n".join(lines)


def clean_text(report: RetentionReport) -> str:
    """``clean``: each run or file removed (or that would be, in a dry run) and why; each live run kept and why."""
    verb = "removed" if report.done else "would remove"
    lines = []
    for removal in report.removed:
        shown = [_in_state(report, path) for path in removal.paths]
        what = f"run {removal.run}" if removal.run is not None else shown[0]
        count = f": {removal.files} file(s), {_bytes(removal.size)}" if removal.files > 1 else ""
        where = f" ({', '.join(shown)}{count})" if removal.run is not None else ""
        lines.append(f"{verb} {what}: {removal.reason}{where}")
    lines += [f"kept run {kept.run}: {kept.reason}" for kept in report.live]
    if report.finished > report.finished_kept:
        lines.append(f"kept the newest {report.finished_kept} finished run(s) of {report.finished}")
    else:
        lines.append(f"kept {report.finished} finished run(s); at most {report.keep_runs} are kept")
    if report.removed:
        entries = len(report.removed)
        lines.append(f"{verb} {entries} item(s), {report.files} file(s), {_bytes(report.size)} in {report.directory}")
    else:
        lines.append(f"nothing to remove in {report.directory}")
    return "\n".join(lines)


def _in_state(report: RetentionReport, path: Path) -> str:
    """``path`` relative to the state directory."""
    return os.path.relpath(path, report.directory)


def _bytes(size: int) -> str:
    """``512 B``, ``12.3 kB``, ``4.0 MB``..."""
    units = ("B", "kB", "MB", "GB", "TB")
    value, index = float(size), 0
    while value >= 1000 and index < len(units) - 1:
        value /= 1000
        index += 1
    return f"{size} B" if index == 0 else f"{value:.1f} {units[index]}"


def progress_text(counts: Mapping[str, int], running: int, queued: int, elapsed_s: float | None) -> str:
    """``12/40 done, 3 running, 2 failed · elapsed 4m 12s``: a run's tasks finished (``counts``,
    by outcome) of all it has, the skipped and cancelled ones too where there are; the elapsed
    time if known."""
    done = sum(counts.values())
    failed = sum(counts.get(state.value, 0) for state in FAILED_STATES)
    parts = [f"{done}/{done + running + queued} done", f"{running} running", f"{failed} failed"]
    parts += [
        f"{n} {state.value}" for state in (TaskState.SKIPPED, TaskState.CANCELLED) if (n := counts.get(state.value))
    ]
    text = ", ".join(parts)
    return text if elapsed_s is None else f"{text} · elapsed {seconds_text(elapsed_s)}"
