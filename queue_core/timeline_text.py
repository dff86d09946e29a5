"""The timeline picture's words: the lines under its title, and the hover text of each bar,
wait and marker. Task ids, reasons and errors are the user's and the agents' text, cut to a
length a tooltip can show; escaping is the SVG writer's (:mod:`queue_core.timeline_svg`).
"""

from __future__ import annotations

import time

from .timeline import AttemptSpan, CriticalStep, JournalRun, TaskRun

__all__ = ["attempt_title", "header_lines", "length_text", "marker_title", "wait_title"]

#: Cuts of user text in hover titles: a description or an error can be pages long.
TEXT_CUT, REASONS_SHOWN = 300, 8


def length_text(seconds: float) -> str:
    """A duration in the run's summary: ``4.2 s``, ``38 s``, ``2.5 min``, ``41 min``, ``2.3 h``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def header_lines(run: JournalRun, critical: tuple[CriticalStep, ...], width: int) -> tuple[str, ...]:
    """The lines under the title: the tasks by outcome, the times, the critical path, notes."""
    counts: dict[str, int] = {}
    for task in run.tasks:
        state = task.outcome or ("running" if task.attempts and task.attempts[-1].ending == "unfinished" else "queued")
        counts[state] = counts.get(state, 0) + 1
    outcomes = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in counts.items())
    wall, task_s = run.wall_s, run.task_s
    parallel = f", {task_s / wall:.1f}x parallel" if wall > 0 else ""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
    lines = [
        f"started {started} · {len(run.tasks)} tasks: {outcomes or 'none'}",
        f"wall {length_text(wall)}, task time {length_text(task_s)}{parallel}",
    ]
    if critical:
        head = f"critical path ({len(critical)} tasks): " if len(critical) > 1 else "critical path: "
        lines.append(head + _chain([step.task for step in critical], width - len(head)))
    if run.ended_at is None:
        lines.append(
            "no run_ended line: the run was killed, or still runs; drawn up to its last line "
            f"({_clock(run.last_time)}), unfinished attempts hatched"
        )
    if run.unreadable or run.cut:
        skipped = f"{run.unreadable} unreadable line(s) skipped" if run.unreadable else ""
        half = "its last line was half-written" if run.cut else ""
        lines.append("; ".join(part for part in (skipped, half) if part))
    return tuple(_cut(line, width) for line in lines)


def _chain(ids: list[str], limit: int) -> str:
    """``a → b → c``; when longer than ``limit``, the first ones that fit, then ``… → last``."""
    whole = " → ".join(ids)
    if len(whole) <= limit or len(ids) < 3:
        return _cut(whole, max(limit, 1))
    tail = f" → … → {ids[-1]}"
    shown = ids[0]
    for task in ids[1:-1]:
        if len(shown) + 3 + len(task) + len(tail) > limit:
            break
        shown += f" → {task}"
    return _cut(shown + tail, max(limit, 1))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def attempt_title(attempt: AttemptSpan) -> str:
    how = {
        "retried": "failed, retried",
        "paused": "rate-limited, ran again later",
        "unfinished": "unfinished (no line ended it)",
    }.get(attempt.ending, attempt.ending.replace("_", " "))
    exit_code = "" if attempt.exit_code is None else f", exit code {attempt.exit_code}"
    lines = [
        f"{attempt.task} [{attempt.agent}] attempt {attempt.number}: {how}{exit_code}",
        f"{length_text(attempt.seconds)}, {_clock(attempt.start)}–{_clock(attempt.end)}",
    ]
    if attempt.error:
        lines.append(_cut(attempt.error, TEXT_CUT))
    return "\n".join(lines)


def wait_title(task: str, start: float, end: float, reasons: list[str], *, unfinished: bool) -> str:
    """A wait's hover text: how long, from when, and why (the reasons sampled meanwhile)."""
    what = "still waiting" if unfinished else "waited"
    lines = [f"{task} {what} {length_text(end - start)}, {_clock(start)}–{_clock(end)}"]
    lines += [_cut(reason, TEXT_CUT) for reason in reasons[:REASONS_SHOWN]] or ["(no reason recorded)"]
    if len(reasons) > REASONS_SHOWN:
        lines.append(f"and {len(reasons) - REASONS_SHOWN} more")
    return "\n".join(lines)


def marker_title(task: TaskRun) -> str:
    if task.outcome is None:
        head = f"{task.id} [{task.agent}]: never started (still queued at the journal's end)"
    else:
        head = f"{task.id} [{task.agent}]: {task.outcome.replace('_', ' ')}, never started"
    lines = [head]
    if task.error:
        lines.append(_cut(task.error, TEXT_CUT))
    if task.description:
        lines.append(_cut(task.description, TEXT_CUT))
    return "\n".join(lines)
