"""Run journals (``logs/<run>/events.jsonl``) made by hand, in the documented format, for the
timeline's tests: a run with dependencies, a retry and a skip; one where a release starts the
next task; worktree instances of one agent; a run killed mid-way."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

T0 = 1_800_000_000.0  # 2027-01-15: a wall-clock time, as the journal holds


def line(event: str, at: float, run: str = "r1", **fields: Any) -> dict[str, Any]:
    return {"event": event, "run": run, "time": T0 + at, **fields}


def batch_task(task_id: str, agent: str, depends_on: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "id": task_id,
        "agent": agent,
        "description": f"do {task_id}",
        "files": [],
        "reads": [],
        "depends_on": list(depends_on),
        "priority": 0,
    }


def started(at: float, tasks: Sequence[dict[str, Any]], run: str = "r1") -> dict[str, Any]:
    return line("run_started", at, run, version=1, pid=123, batch={"tasks": list(tasks)})


def task_line(event: str, at: float, task: str, agent: str, attempt: int = 1, **fields: Any) -> dict[str, Any]:
    return line(event, at, task=task, agent=agent, attempt=attempt, **fields)


def final(
    event: str,
    at: float,
    task: str,
    agent: str,
    attempt: int = 1,
    *,
    duration: float | None = None,
    exit_code: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    return task_line(
        event,
        at,
        task,
        agent,
        attempt,
        final=True,
        exit_code=exit_code,
        duration_s=duration,
        total_s=duration,
        cost_usd=None,
        tokens=None,
        error=error,
    )


def ended(at: float, exit_code: int = 0, run: str = "r1") -> dict[str, Any]:
    return line("run_ended", at, run, exit_code=exit_code, counts={})


#: spec and notes (architect) share docs/; api then broken (code_developer, one at a time);
#: tests needs api; after needs broken, which fails, so after is skipped; flaky fails once, then
#: succeeds. The critical path: api -> tests (10 s of wall, 26 s of task time).
STANDARD = [
    started(
        0,
        [
            batch_task("spec", "architect"),
            batch_task("api", "code_developer"),
            batch_task("broken", "code_developer"),
            batch_task("tests", "tester", ["api"]),
            batch_task("flaky", "releaser"),
            batch_task("notes", "architect"),
            batch_task("after", "tester", ["broken"]),
        ],
    ),
    task_line("started", 0, "spec", "architect", description="write the spec"),
    task_line("started", 0, "api", "code_developer"),
    task_line("started", 0, "flaky", "releaser"),
    task_line("waiting", 0.1, "broken", "code_developer", reason="code_developer busy (api)"),
    task_line("waiting", 0.1, "notes", "architect", reason="docs/x.md overlaps docs/ held by architect (spec)"),
    task_line("waiting", 0.1, "tests", "tester", reason="needs api"),
    task_line("waiting", 0.1, "after", "tester", reason="needs broken"),
    task_line("retrying", 2, "flaky", "releaser", exit_code=1, duration_s=2.0, error="the agent exited with code 1"),
    task_line("started", 3, "flaky", "releaser", attempt=2),
    final("succeeded", 4, "api", "code_developer", duration=4.0, exit_code=0),
    task_line("started", 4, "broken", "code_developer"),
    task_line("started", 4, "tests", "tester"),
    final("succeeded", 5, "flaky", "releaser", attempt=2, duration=2.0, exit_code=0),
    final("succeeded", 6, "spec", "architect", duration=6.0, exit_code=0),
    task_line("started", 6, "notes", "architect"),
    final("failed", 7, "broken", "code_developer", duration=3.0, exit_code=3, error="the agent exited with code 3"),
    final("skipped", 7, "after", "tester", attempt=0, error="dependency broken failed"),
    final("succeeded", 9, "notes", "architect", duration=3.0, exit_code=0),
    final("succeeded", 10, "tests", "tester", duration=6.0, exit_code=0),
    ended(10, exit_code=1),
]

#: a, then b (same agent: a's end lets b start), then c (needs b): the critical path a -> b -> c,
#: its first link a release, its second a dependency. d runs beside them, short.
RELEASE = [
    started(0, [batch_task("a", "dev"), batch_task("b", "dev"), batch_task("c", "qa", ["b"]), batch_task("d", "qa")]),
    task_line("started", 0, "a", "dev"),
    task_line("started", 0, "d", "qa"),
    task_line("waiting", 0.5, "b", "dev", reason="dev busy (a)"),
    final("succeeded", 1, "d", "qa", duration=1.0, exit_code=0),
    final("succeeded", 5, "a", "dev", duration=5.0, exit_code=0),
    task_line("started", 5.01, "b", "dev"),
    final("succeeded", 8, "b", "dev", duration=3.0, exit_code=0),
    task_line("started", 8, "c", "qa"),
    final("succeeded", 12, "c", "qa", duration=4.0, exit_code=0),
    ended(12),
]

#: worktree mode: three claude tasks, w1 and w2 at once, w3 after w1 (two lanes); one codex task.
WORKTREE = [
    started(
        0,
        [batch_task("w1", "claude"), batch_task("w2", "claude"), batch_task("w3", "claude"), batch_task("x", "codex")],
    ),
    task_line("started", 0, "w1", "claude"),
    task_line("started", 0, "w2", "claude"),
    task_line("started", 0, "x", "codex"),
    final("succeeded", 3, "w1", "claude", duration=3.0, exit_code=0),
    task_line("started", 3, "w3", "claude"),
    final("succeeded", 4, "x", "codex", duration=4.0, exit_code=0),
    final("succeeded", 5, "w2", "claude", duration=5.0, exit_code=0),
    final("succeeded", 6, "w3", "claude", duration=3.0, exit_code=0),
    ended(6),
]

#: killed at 7 s (no run_ended): long still runs, queued never started, waiting for long's files.
KILLED = [
    started(0, [batch_task("done", "dev"), batch_task("long", "ops"), batch_task("queued", "ops")]),
    task_line("started", 0, "done", "dev"),
    task_line("started", 0, "long", "ops"),
    task_line("waiting", 0.2, "queued", "ops", reason="ops busy (long)"),
    final("succeeded", 2, "done", "dev", duration=2.0, exit_code=0),
    task_line("waiting", 7, "queued", "ops", reason="ops busy (long)"),
]


def jsonl(events: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(event) + "\n" for event in events)


def write_journal(state: Path, run: str, text: str) -> Path:
    """``text`` as the journal of ``run`` in the state directory ``state``; its path."""
    folder = state / "logs" / run
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.jsonl"
    path.write_text(text, encoding="utf-8")
    return path
