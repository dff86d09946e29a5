"""How estimates read: in a dry run, in --json, in the live view and in status (cli.render, cli.panels)."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from cli.panels import Columns, running_part
from cli.render import (
    SummaryRow,
    estimate_text,
    left_text,
    plan_json,
    plan_text,
    progress_text,
    run_json,
    task_left_text,
)
from queue_core import TaskOutcome, TaskState
from queue_core.estimates import Estimate
from queue_core.records import RunningTask


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "over estimate"),
        (-5.0, "over estimate"),
        (0.4, "~1 s left"),
        (42.0, "~42 s left"),
        (60.0, "~1 min left"),
        (250.0, "~4 min left"),
        (720.0, "~12 min left"),
        (89 * 60.0, "~89 min left"),
        (2.5 * 3600, "~2.5 h left"),
        (3 * 86400.0, "~3.0 days left"),
    ],
)
def test_a_time_left_is_told_roughly(seconds: float, text: str) -> None:
    assert left_text(seconds) == text


def test_a_running_task_is_told_its_estimate_minus_what_it_ran() -> None:
    assert task_left_text(300.0, 60.0) == "~4 min left"
    assert task_left_text(300.0, 301.0) == "over estimate"
    assert task_left_text(None, 60.0) == ""


def test_the_progress_line_ends_with_the_time_left_when_known() -> None:
    counts = {"succeeded": 2}
    assert progress_text(counts, 1, 3, 30.0) == "2/6 done, 1 running, 0 failed · elapsed 30s"
    assert progress_text(counts, 1, 3, 30.0, eta_s=720.0) == (
        "2/6 done, 1 running, 0 failed · elapsed 30s · ~12 min left"
    )
    assert progress_text(counts, 0, 0, 30.0, eta_s=0.0) == "2/2 done, 0 running, 0 failed · elapsed 30s"


def test_an_estimate_says_what_it_is_made_from() -> None:
    assert estimate_text(Estimate(250.0, "task", 3)) == "~4 min, the median of its last 3 runs"
    assert estimate_text(Estimate(250.0, "task", 1)) == "~4 min, as its last run"
    assert estimate_text(Estimate(30.0, "id", 2)) == "~30 s, the median of the last 2 runs of its id"
    assert estimate_text(Estimate(30.0, "agent", 7)) == "~30 s, its agent's median"
    assert estimate_text(Estimate(30.0, "all", 7)) == "~30 s, the median of every agent's runs"


def test_the_dry_run_shows_each_tasks_estimate() -> None:
    text = plan_text(
        [("t1", "dev", "fix it")],
        [("t2", "dev", "dev busy (t1)")],
        {"t1": ["dev", "fix it"], "t2": ["dev", "more"]},
        {"t1": Estimate(250.0, "task", 3)},
    )
    assert text.splitlines() == [
        "Would start now, together:",
        "  t1 [dev] fix it",
        "    $ dev 'fix it'",
        "    estimate ~4 min, the median of its last 3 runs",
        "Would wait:",
        "  t2 [dev]: dev busy (t1)",
        "    $ dev more",
        "    no estimate",
    ]
    # Without history, as before.
    assert "estimate" not in plan_text([("t1", "dev", "fix it")], [], {"t1": ["dev"]})


def test_json_gives_each_tasks_estimate_or_null() -> None:
    plan = json.loads(
        plan_json([("t1", "dev", ["dev"], (), (), ()), ("t2", "dev", ["dev"], (), (), ())], [], [], [], {"t1": 4.5})
    )
    assert [t["estimate_s"] for t in plan["tasks"]] == [4.5, None]
    rows = [SummaryRow(TaskOutcome(tid, "dev", "d", TaskState.SUCCEEDED, 1, 1.0)) for tid in ("t1", "t2")]
    run = json.loads(run_json("r", rows, 2.0, 2.0, estimates={"t2": 3.0}))
    assert [t["estimate_s"] for t in run["tasks"]] == [None, 3.0]


def _rendered(tasks: tuple[RunningTask, ...]) -> str:
    console = Console(width=100, record=True, file=io.StringIO(), force_terminal=True, color_system=None)
    part = running_part("Running", tasks)
    console.print(part.panel(Columns().see((t.id, t.agent, None) for t in tasks), 100, part.wanted))
    return console.export_text()


def test_the_running_agents_show_the_time_left_of_each_only_when_some_have_an_estimate() -> None:
    with_estimates = _rendered(
        (
            RunningTask("t1", "dev", "fix", elapsed_s=60.0, estimate_s=300.0),
            RunningTask("t2", "qa", "test", elapsed_s=400.0, estimate_s=300.0),
            RunningTask("t3", "doc", "write", elapsed_s=10.0),
        )
    )
    assert "estimate" in with_estimates.splitlines()[1]
    line = next(line for line in with_estimates.splitlines() if " t1 " in line)
    assert "~4 min left" in line
    assert "over estimate" in next(line for line in with_estimates.splitlines() if " t2 " in line)
    without = _rendered((RunningTask("t3", "doc", "write", elapsed_s=10.0),))
    assert "estimate" not in without


def test_the_live_view_heads_with_the_runs_time_left() -> None:
    from cli.panels import run_view
    from cli.usage import Machine, Usage
    from queue_core import QueueStatus

    running = (RunningTask("t1", "dev", "fix", elapsed_s=60.0, estimate_s=300.0),)
    status = QueueStatus(queued_tasks=2, max_parallel=2, running=running, eta_s=720.0)
    console = Console(width=80, height=24, record=True, file=io.StringIO(), force_terminal=True, color_system=None)
    view = run_view(
        status, columns=Columns(), agents=Usage(0.0, 0), machine=Machine(1.0, 2, 2**30, 2**32), cost=None, elapsed_s=60
    )
    console.print(view)
    lines = console.export_text().splitlines()
    assert lines[0] == "0/3 done, 1 running, 0 failed · elapsed 1m 00s · ~12 min left"
    assert "~4 min left" in next(line for line in lines if " t1 " in line)
