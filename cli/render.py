"""Every bit of the CLI's output: plain event lines, the summary, JSON, errors.

Plain lines carry no escape codes, so CI logs and scripts read them as they are; colour is
used only on a terminal, and never when NO_COLOR is set (Rich honours it).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from queue_core import TaskEvent

_WORDS = {
    "started": "started",
    "succeeded": "finished",
    "failed": "FAILED",
    "timed_out": "TIMED OUT",
    "cancelled": "cancelled",
    "skipped": "skipped",
    "retrying": "retrying",
}


@dataclass(frozen=True)
class TaskOutcome:
    """One task's line in the summary and in --json."""

    id: str
    agent: str
    description: str
    status: str
    exit_code: int | None
    duration_s: float | None
    log: str | None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "description": self.description,
            "status": self.status,
            "exit_code": self.exit_code,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "log": self.log,
        }


class PlainEvents:
    """One timestamped line per task event, for CI and --no-live; thread-safe."""

    def __init__(self, out: TextIO | None = None):
        self._out = out or sys.stdout
        self._lock = threading.Lock()  # guards writes to _out from the queue's threads

    def __call__(self, event: TaskEvent) -> None:
        word = _WORDS.get(event.kind, event.kind)
        attempt = f" (attempt {event.attempt})" if event.attempt > 1 and event.kind == "started" else ""
        detail = f": {event.error}" if event.error and event.kind not in ("succeeded", "started") else ""
        line = f"{time.strftime('%H:%M:%S')} {word:<9} {event.task_id} [{event.agent_type}]{attempt}{detail}"
        with self._lock:
            print(line, file=self._out, flush=True)

    def note(self, text: str) -> None:
        with self._lock:
            print(text, file=self._out, flush=True)


def summary_text(outcomes: list[TaskOutcome], wall_s: float, sum_s: float) -> str:
    """The end-of-run summary as plain text: a table, then wall time, task time and speedup."""
    header = ("id", "agent", "outcome", "exit", "duration", "log")
    rows = [
        (
            o.id,
            o.agent,
            o.status if o.reason is None else f"{o.status} ({o.reason})",
            "" if o.exit_code is None else str(o.exit_code),
            "" if o.duration_s is None else f"{o.duration_s:.1f}s",
            _short_path(o.log),
        )
        for o in outcomes
    ]
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]
    speedup = sum_s / wall_s if wall_s > 0 else 1.0
    succeeded = sum(o.status == "succeeded" for o in outcomes)
    lines.append("")
    lines.append(
        f"{succeeded}/{len(outcomes)} succeeded; wall {wall_s:.1f}s, task time {sum_s:.1f}s, speedup {speedup:.2f}x"
    )
    return "\n".join(lines)


def _short_path(path: str | None) -> str:
    """``path`` relative to the current directory when it lies below it, else as it is."""
    if path is None:
        return ""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def run_json(run_id: str, outcomes: list[TaskOutcome], wall_s: float, sum_s: float) -> str:
    return json.dumps(
        {
            "run_id": run_id,
            "wall_s": round(wall_s, 3),
            "sum_s": round(sum_s, 3),
            "speedup": round(sum_s / wall_s, 3) if wall_s > 0 else 1.0,
            "tasks": [o.to_json() for o in outcomes],
        },
        indent=2,
    )


def plan_text(starts: list[tuple[str, str, str]], waits: list[tuple[str, str, str]]) -> str:
    """--dry-run: what would start together now, and why each other task would wait."""
    lines = ["Would start now, together:"]
    lines += [f"  {tid} [{agent}] {desc}" for tid, agent, desc in starts] or ["  (nothing)"]
    if waits:
        lines.append("Would wait:")
        lines += [f"  {tid} [{agent}]: {reason}" for tid, agent, reason in waits]
    return "\n".join(lines)


def error(message: str) -> None:
    print(f"project-manager: error: {message}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    print(f"project-manager: warning: {message}", file=sys.stderr, flush=True)
