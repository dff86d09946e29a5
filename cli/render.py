"""The text of the CLI's output: event lines, the summary, JSON, plans, what ``clean`` did.

Only made here, as strings, and written by cli/terminal.py; the live panels are cli/panels.py's.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.cells import cell_len, set_cell_size

from queue_core import TaskEvent, TaskOutcome, TaskState
from queue_core.changes import Stray
from queue_core.durations import FILE as DURATIONS
from queue_core.estimates import Estimate
from queue_core.isolated import WorktreeReport
from queue_core.machine import Limits
from queue_core.machine_rule import AutoParallel
from queue_core.records import FAILED_STATES, RunningTask
from queue_core.reports import AgentReport
from queue_core.retention import RetentionReport
from queue_core.task import ended_error
from queue_core.waits import seconds_text
from queue_core.worktree_leftovers import Leftover, Swept
from queue_core.worktree_pool import PoolRemoval

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
    #: A worktree task's branch and what came of it (see queue_core.isolated); None in the shared checkout.
    worktree: WorktreeReport | None = None
    #: The run a resumed run took it from as succeeded, not running it again (see cli/resume.py).
    resumed_from: str | None = None
    #: The Dask worker its last attempt ran on (a cluster task); None here.
    worker: str | None = None

    @property
    def reason(self) -> str | None:
        """Why it did not succeed; a task that succeeded on a retry is not shown its earlier error."""
        return None if self.outcome.status is TaskState.SUCCEEDED else self.outcome.reason

    @property
    def report(self) -> AgentReport:
        return self.outcome.report or AgentReport()

    @property
    def error(self) -> str | None:
        """Why it did not succeed, for --json: in the agent's own words where it reported an error
        (but for a task skipped or cancelled: see queue_core.task.ended_error)."""
        return None if self.reason is None else ended_error(self.outcome.status, self.reason, self.report.error)

    def to_json(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "id": o.id,
            "agent": o.agent,
            "description": o.description,
            "status": o.status.value,
            "exit_code": o.exit_code,
            "attempts": o.attempts,
            "duration_s": _rounded(o.duration_s),
            "total_s": _rounded(o.total_s),
            "log": o.log,
            "error": self.error,
            "cost_usd": self.report.cost_usd,
            "tokens": self.report.tokens,
            "unclaimed_writes": self._unclaimed_writes(),
            "unclaimed_writes_also_running": None if self.unclaimed is None else list(self.unclaimed.beside),
            "branch": None if self.worktree is None else self.worktree.branch,
            "merge": None if self.worktree is None else self.worktree.merge,
            "changed_files": None if self.worktree is None else list(self.worktree.changed),
            "insertions": None if self.worktree is None else self.worktree.insertions,
            "deletions": None if self.worktree is None else self.worktree.deletions,
            "worker": self.worker,
        }

    def _unclaimed_writes(self) -> list[str] | None:
        """What it changed outside its claims: exactly, from its branch, for a worktree task."""
        if self.worktree is not None:
            return list(self.worktree.unclaimed)
        return None if self.unclaimed is None else list(self.unclaimed.paths)


@dataclass(frozen=True)
class MachineUse:
    """What a run made of the machine: ``auto``, what max_parallel="auto" came to (None: not
    auto), and the ``limits`` it kept to."""

    auto: AutoParallel | None = None
    limits: Limits = field(default_factory=Limits)

    def text(self) -> str | None:
        """``max_parallel auto: 2 at the start, 1-3 during the run (up to 4 if the machine is free);
        limits: CPU 85%, memory 90%``; None if neither."""
        parts = []
        if self.auto is not None:
            auto = self.auto
            text = f"max_parallel auto: {auto.start}"
            text += "" if auto.least == auto.most else f" at the start, {auto.least}-{auto.most} during the run"
            text += "" if auto.most_allowed <= auto.most else f" (up to {auto.most_allowed} if the machine is free)"
            parts.append(text)
        if self.limits:
            parts.append(f"limits: {limits_text(self.limits)}")
        return "; ".join(parts) or None

    def to_json(self) -> dict[str, Any]:
        """``max_parallel`` (what auto started at) and ``max_parallel_auto``, and ``limits``: each only when set."""
        data: dict[str, Any] = {}
        if self.auto is not None:
            auto = self.auto
            data["max_parallel"] = auto.start
            data["max_parallel_auto"] = {"least": auto.least, "most": auto.most, "most_allowed": auto.most_allowed}
        if self.limits:
            data["limits"] = {"cpu": self.limits.cpu, "memory": self.limits.memory}
        return data


def limits_text(limits: Limits) -> str:
    """``CPU 85%, memory 90%``: the limits set."""
    return ", ".join(f"{'CPU' if name == 'cpu' else name} {value:g}%" for name, value in limits.items())


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
    """``12:00:01 started   parser [code_developer]``, and the attempt or the error where it helps,
    with the agent's log in the form the summary names it."""
    word = _WORDS.get(event.kind, event.kind)
    attempt = f" (attempt {event.attempt})" if event.attempt > 1 and event.kind == "started" else ""
    detail = ""
    if event.error and event.kind not in ("succeeded", "started", event.error):  # not "cancelled ...: cancelled"
        detail = f": {event.error}" + (f" (log: {_short_path(event.log)})" if event.log else "")
    return f"{time.strftime('%H:%M:%S')} {word:<9} {event.task_id} [{event.agent_type}]{attempt}{detail}"


#: The columns the summary has when its output is no terminal (a pipe, a CI log).
DEFAULT_WIDTH = 100

#: The summary's columns that give way, in turn, while a line is too wide: each cut down to a
#: width (or its own, if smaller), the description left out rather than cut to nothing. The
#: others are short and never cut.
_GIVE_WAY = (("description", 12), ("description", 0), ("reason", 24), ("agent", 10), ("id", 10), ("log", 12))


def summary_text(
    rows: list[SummaryRow],
    wall_s: float,
    sum_s: float,
    *,
    width: int = DEFAULT_WIDTH,
    logs: str | None = None,
    interrupted: bool = False,
    machine: MachineUse | None = None,
) -> str:
    """The end-of-run summary as plain text: the run's log folder ``logs``, once; a table, each
    task's log by its file name; then wall time, task time and the speedup (none for an
    ``interrupted`` run, which did not do all its work), and what ``machine`` says, if anything.
    No line is wider than ``width``: a long description or reason is cut with "…", never wrapped."""
    cost = total_cost(rows)
    columns = {
        "id": [row.outcome.id for row in rows],
        "agent": [row.outcome.agent for row in rows],
        "outcome": [row.outcome.status.value + (" !" if _strayed(row) else "") for row in rows],
        "merge": [_merge_cell(row) for row in rows],
        "time": ["" if row.outcome.total_s is None else f"{row.outcome.total_s:.1f}s" for row in rows],
        "cost": ["" if row.report.cost_usd is None else f"${row.report.cost_usd:.4f}" for row in rows],
        "log": ["" if row.outcome.log is None or row.resumed_from else Path(row.outcome.log).name for row in rows],
        "reason": [_shown_reason(row) for row in rows],
        "description": [" ".join(row.outcome.description.split()) for row in rows],
    }
    table = _table({name: cells for name, cells in columns.items() if any(cells)}, width)  # no empty column
    lines = [] if logs is None else [_cut_middle(f"logs: {_short_path(logs)}{os.sep}", width)]
    lines += table
    lines += [
        _cut(f"! {r.outcome.id} {unclaimed_text(r.unclaimed)}", width)
        for r in rows
        if r.unclaimed is not None and _strayed(r)
    ]
    succeeded = sum(row.outcome.status is TaskState.SUCCEEDED for row in rows)
    carried = sum(row.resumed_from is not None for row in rows)
    speedup = _speedup(wall_s, sum_s, interrupted=interrupted)
    totals = f"{succeeded}/{len(rows)} succeeded" + (f" ({carried} in an earlier run)" if carried else "")
    totals += f"; wall {wall_s:.1f}s, task time {sum_s:.1f}s"
    totals += ("" if speedup is None else f", speedup {speedup:.2f}x") + ("" if cost is None else f", cost ${cost:.4f}")
    used = None if machine is None else machine.text()
    return "\n".join([*lines, "", _cut(totals, width), *(() if used is None else (_cut(used, width),))])


def _merge_cell(row: SummaryRow) -> str:
    """A worktree task's merge and its branch's diff stat: ``merged, 3 files +12 -1``."""
    tree = row.worktree
    if tree is None or tree.merge is None:
        return ""
    count = len(tree.changed)
    return f"{tree.merge}, {count} file{'' if count == 1 else 's'} +{tree.insertions} -{tree.deletions}"


def _table(columns: dict[str, list[str]], width: int) -> list[str]:
    """The header and rows of ``columns`` (name: cells), at most ``width`` wide: the columns of
    _GIVE_WAY give way in turn as far as needed, then each line (a terminal too narrow for the rest)."""
    widths = {name: max(cell_len(text) for text in (name, *cells)) for name, cells in columns.items()}
    over = sum(widths.values()) + 2 * (len(widths) - 1) - width
    for name, floor in _GIVE_WAY:
        if over <= 0 or name not in widths:
            continue
        if floor == 0:
            over -= widths.pop(name) + 2  # and the two spaces before it
        else:
            cut = min(over, max(0, widths[name] - floor))
            widths[name] -= cut
            over -= cut
    lines = [(*widths,), *zip(*(columns[name] for name in widths), strict=True)]
    return [_cut("  ".join(map(_cell, line, widths.values())).rstrip(), width) for line in lines]


def _cell(text: str, width: int) -> str:
    """``text`` padded, or cut with "…", to exactly ``width`` columns."""
    return set_cell_size(_cut(text, width), width)


def _cut(text: str, width: int) -> str:
    """``text``, its end cut with "…" if it is wider than ``width`` columns (a wide character takes two)."""
    return text if cell_len(text) <= width else set_cell_size(text, max(0, width - 1)) + "…"


def _cut_middle(text: str, width: int) -> str:
    """``text``, its middle cut with "…" if it is too wide: a path keeps its head and its last part."""
    if cell_len(text) <= width:
        return text
    head = text[: width // 3]
    return _cut(head + "…" + text[len(text) - (width - len(head) - 1) :], width)


def _shown_reason(row: SummaryRow) -> str:
    """Its reason, unless the outcome says it already ("cancelled", not "cancelled (cancelled)");
    for a task a resumed run took as succeeded, the run it succeeded in."""
    if row.resumed_from is not None:
        return f"in run {row.resumed_from}, not run again"
    reason = row.reason
    return "" if reason is None or reason == row.outcome.status.value else " ".join(reason.split())


def _speedup(wall_s: float, sum_s: float, *, interrupted: bool) -> float | None:
    """How many times faster than one task after another; None for a run interrupted before its end."""
    if interrupted:
        return None
    return sum_s / wall_s if wall_s > 0 else 1.0


def _strayed(row: SummaryRow) -> bool:
    return row.unclaimed is not None and bool(row.unclaimed.paths)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _short_path(path: str) -> str:
    """``path`` relative to the current directory when it lies below it, else as it is: the one
    form the event lines and the summary name logs in."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def run_json(
    run_id: str,
    rows: list[SummaryRow],
    wall_s: float,
    sum_s: float,
    *,
    interrupted: bool = False,
    estimates: Mapping[str, float] | None = None,
    machine: MachineUse | None = None,
    resumes: str | None = None,
) -> str:
    """--json: the run, each task as SummaryRow.to_json gives it with its ``estimate_s`` (from
    ``estimates``, by id; null if it had none); ``speedup`` null if ``interrupted``; before the
    tasks, what ``machine`` says (MachineUse.to_json). A run that ``resumes`` another says so,
    and each of its tasks its ``resumed_from`` (null: run in this run)."""
    speedup = _speedup(wall_s, sum_s, interrupted=interrupted)
    estimate = (estimates or {}).get
    tasks = [task_json(row, None if row.resumed_from else estimate(row.outcome.id)) for row in rows]
    if resumes is not None:
        tasks = [{**task, "resumed_from": row.resumed_from} for task, row in zip(tasks, rows, strict=True)]
    return json.dumps(
        {
            "run_id": run_id,
            **({} if resumes is None else {"resumes": resumes}),
            "wall_s": round(wall_s, 3),
            "sum_s": round(sum_s, 3),
            "speedup": None if speedup is None else round(speedup, 3),
            "cost_usd": total_cost(rows),
            **({} if machine is None else machine.to_json()),
            "tasks": tasks,
        },
        indent=2,
    )


def task_json(row: SummaryRow, estimate_s: float | None) -> dict[str, Any]:
    """A task's object in --json (and on a task_end hook's stdin): SummaryRow.to_json with its ``estimate_s``."""
    return {**row.to_json(), "estimate_s": _rounded(estimate_s)}


def plan_json(
    tasks: list[tuple[str, str, list[str], tuple[str, ...], tuple[str, ...], tuple[str, ...]]],
    starts: list[tuple[str, str, str]],
    waits: list[tuple[str, str, str]],
    missing: list[str],
    estimates: Mapping[str, float] | None = None,
) -> str:
    """--dry-run --json: each task (id, agent, argv, files, reads, depends_on, and its
    ``estimate_s`` from ``estimates``, null if none), what would start now, why the rest would
    wait, and the executables not on PATH."""
    keys = ("id", "agent", "argv", "files", "reads", "depends_on", "estimate_s")
    estimate = (estimates or {}).get
    plan = {
        "tasks": [
            dict(zip(keys, (tid, agent, argv, list(files), list(reads), list(deps), estimate(tid)), strict=True))
            for tid, agent, argv, files, reads, deps in tasks
        ],
        "starts": [tid for tid, _, _ in starts],
        "waits": [{"id": tid, "reason": reason} for tid, _, reason in waits],
        "missing": missing,
    }
    return json.dumps(plan, indent=2)


def plan_text(
    starts: list[tuple[str, str, str]],
    waits: list[tuple[str, str, str]],
    argvs: dict[str, list[str]],
    estimates: Mapping[str, Estimate | None] | None = None,
) -> str:
    """--dry-run: what would start together now, and why each other task would wait; under each,
    the command it would run, quoted for a POSIX shell. With ``estimates`` (the repository has
    a history), each task's estimate below that, or that it has none."""

    def under(tid: str) -> list[str]:
        lines = [f"    $ {shlex.join(argvs[tid])}"]
        if estimates is not None:
            found = estimates.get(tid)
            lines.append("    no estimate" if found is None else f"    estimate {estimate_text(found)}")
        return lines

    lines = ["Would start now, together:"]
    for tid, agent, desc in starts:
        lines += [f"  {tid} [{agent}] {desc}", *under(tid)]
    if not starts:
        lines.append("  (nothing)")
    if waits:
        lines.append("Would wait:")
        for tid, agent, reason in waits:
            lines += [f"  {tid} [{agent}]: {reason}", *under(tid)]
    return "\n".join(lines)


def about(seconds: float) -> str:
    """A duration told roughly, as estimates are: ``~42 s``, ``~12 min``, ``~2.5 h``, ``~3.0 days``."""
    if seconds < 59.5:
        return f"~{max(1, math.ceil(seconds))} s"
    if seconds < 90 * 60:
        return f"~{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"~{seconds / 3600:.1f} h"
    return f"~{seconds / 86400:.1f} days"


def left_text(seconds: float) -> str:
    """``~12 min left``; ``over estimate`` once nothing is left of the estimate."""
    return "over estimate" if seconds <= 0 else f"{about(seconds)} left"


def agent_text(task: RunningTask) -> str:
    """``claude``, or ``claude on 10.0.0.2:40123`` for a task on a cluster's worker."""
    if task.worker is None:
        return task.agent
    return f"{task.agent} on {task.worker.partition('://')[2] or task.worker}"


def files_text(task: RunningTask) -> str:
    """The paths a running task writes, those it claimed as it ran marked: ``a.py, tests/ (added)``."""
    return ", ".join(f"{path} (added)" if path in task.added else path for path in task.files)


def task_left_text(estimate_s: float | None, elapsed_s: float) -> str:
    """A running task's time left, its estimate minus what it ran; empty without an estimate."""
    return "" if estimate_s is None else left_text(estimate_s - elapsed_s)


_BASES = {
    "id": "the median of the last {runs} runs of its id",
    "agent": "its agent's median",
    "all": "the median of every agent's runs",
}


def estimate_text(estimate: Estimate) -> str:
    """``~4 min, the median of its last 3 runs``: the estimate and what it is made from."""
    if estimate.basis == "task":
        basis = "as its last run" if estimate.runs == 1 else f"the median of its last {estimate.runs} runs"
    else:
        basis = _BASES[estimate.basis].format(runs=estimate.runs)
    return f"{about(estimate.seconds)}, {basis}"


def clean_text(report: RetentionReport) -> str:
    """``clean``: each run or file removed (or that would be, in a dry run) and why; each live run kept and why."""
    verb = "removed" if report.done else "would remove"
    lines = []
    for removal in report.removed:
        shown = [_in_state(report, path) for path in removal.paths]
        what = f"run {removal.run}" if removal.run is not None else shown[0]
        count = f": {removal.files} file(s), {_bytes(removal.size)}" if removal.files > 1 else ""
        parts = [f"{', '.join(shown)}{count}"] if shown else []
        if removal.refs:  # merged tasks' base and tip, kept for project-manager diff
            parts.append(f"{len(removal.refs)} hidden ref(s) refs/pm/{removal.run}/")
        where = f" ({'; '.join(parts)})" if removal.run is not None else ""
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


def durations_text(runs: int, *, done: bool, junk: str | None = None) -> str:
    """``clean --history``: the durations removed (or that would be), with ``junk``, what else
    was in the file's place (``3 damaged line(s)``, ``a FIFO``); or that there were none."""
    if not runs and junk is None:
        return "no durations to remove: estimates have no history"
    verb = "removed" if done else "would remove"
    if not runs:
        return f"{verb} {DURATIONS}: {junk}, no durations"
    also = "" if junk is None else f", and {junk}"
    return f"{verb} {DURATIONS}: the durations of {runs} task run(s), which estimates are made from{also}"


def swept_text(swept: list[Swept], *, done: bool) -> str:
    """``clean``: each task worktree and branch of a dead run removed (or that would be), and each kept and why."""
    verb = "removed" if done else "would remove"
    lines = []
    for item in swept:
        if item.removed:
            what = (
                "the worktree and branch"
                if item.leftover.path and item.leftover.branch
                else "the worktree"
                if item.leftover.path
                else "the branch"
            )
            whose = f"dead run {item.leftover.run}" if item.leftover.run else "the pool (changed since it was idle)"
            lines.append(f"{verb} {what} {item.name} of {whose}")
        else:
            hint = "" if item.leftover.alive else "; --force removes it"
            lines.append(f"kept {item.name}: {item.reason}{hint}")
    return "\n".join(lines)


def leftovers_text(found: list[Leftover]) -> str:
    """``status``: the task worktrees and branches dead runs left (a run killed with SIGKILL)."""
    lines = ["Worktrees and branches of dead runs (project-manager clean removes those that hold no work):"]
    for leftover in found:
        where = f" at {leftover.path}" if leftover.path else ""
        whose = f"run {leftover.run}" if leftover.run else "a pool worktree changed since it was idle"
        lines.append(f"  {leftover.branch or leftover.task} ({whose}){where}")
    return "\n".join(lines)


def pool_text(removals: list[PoolRemoval], *, done: bool) -> str:
    """``clean --pool``: each idle pool worktree removed (or that would be), and each kept and why."""
    verb = "removed" if done else "would remove"
    kept = "kept the pool worktree"
    return "\n".join(
        f"{verb} the idle pool worktree {item.path}" if item.removed else f"{kept} {item.path}: {item.reason}"
        for item in removals
    )


def idle_pool_text(folder: Path, idle: list[Path]) -> str:
    """``status``: how many idle worktrees the pool keeps, and where."""
    return (
        f"{len(idle)} idle pool worktree(s) in {folder}, kept for the next worktree tasks "
        "(worktree_pool; project-manager clean --pool removes them)"
    )


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


def progress_text(
    counts: Mapping[str, int], running: int, queued: int, elapsed_s: float | None, *, eta_s: float | None = None
) -> str:
    """``12/40 done, 3 running, 2 failed · elapsed 4m 12s · ~12 min left``: a run's tasks finished
    (``counts``, by outcome) of all it has, the skipped and cancelled ones too where there are;
    the elapsed time if known; the time left (``eta_s``) if known and something is left."""
    done = sum(counts.values())
    failed = sum(counts.get(state.value, 0) for state in FAILED_STATES)
    parts = [f"{done}/{done + running + queued} done", f"{running} running", f"{failed} failed"]
    parts += [
        f"{n} {state.value}" for state in (TaskState.SKIPPED, TaskState.CANCELLED) if (n := counts.get(state.value))
    ]
    text = ", ".join(parts)
    if elapsed_s is not None:
        text = f"{text} · elapsed {seconds_text(elapsed_s)}"
    return text if eta_s is None or not running + queued else f"{text} · {left_text(eta_s)}"
