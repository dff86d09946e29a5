"""The live views laid out for the terminal, 80 x 24 first: rendered with a Console of a fixed
size, as a terminal would show them.

Before: at 80 x 24 the descriptions collapsed to one letter, the Resources panel was cut off
at the bottom, ``status --watch`` spent the width on the run id, and the queue's columns took
the width of the rows of the moment, so the text jumped from one frame to the next.
"""

from __future__ import annotations

import io
import socket
from dataclasses import replace
from pathlib import Path

from rich.console import Console, RenderableType

from cli.panels import Columns, run_view
from cli.status import status_view
from cli.usage import Machine, Usage
from queue_core import QueueStatus, RepoStatus
from queue_core.records import RunningTask, WaitingTask
from queue_core.status import RunView
from tests.integration._screen import one_line, panel_problems

MACHINE = Machine(54.0, 2, 3 * 2**30, 16 * 2**30)
AGENTS = Usage(50.4, 300 * 2**20)

RUNNING = (
    RunningTask(
        "api",
        "code_developer",
        "implement the REST API of the coffee maker daemon, with its tests",
        ("coffee_maker/api.py", "tests/test_api.py"),
        elapsed_s=252,
    ),
    RunningTask("spec", "architect", "write SPEC-046 for the parser", ("docs/architecture/",), elapsed_s=75),
    RunningTask("roadmap", "project_manager", "update the roadmap", ("docs/roadmap/ROADMAP.md",), elapsed_s=3),
    RunningTask("hello", "shell", "echo hello", ("x",), elapsed_s=3700, timed_out=True),
)
WAITING = tuple(
    WaitingTask(
        f"page{i}",
        "writer",
        reason=f"docs/architecture/p{i}.md overlaps docs/architecture/ held by architect (spec); "
        "max_parallel (4) reached",
    )
    for i in range(12)
)


def _status(waiting: tuple[WaitingTask, ...] = WAITING) -> QueueStatus:
    counts = {"succeeded": 10, "failed": 2, "skipped": 1}
    return QueueStatus(queued_tasks=24, max_parallel=4, running=RUNNING, waiting=waiting, counts=counts)


def _batch() -> Columns:
    """The columns of the run's batch: these tasks, and one with a longer id that waits unlisted."""
    names = [(t.id, t.agent, None) for t in (*RUNNING, *WAITING)]
    return Columns().see([*names, ("a-longer-id", "writer", None)])


def _view(status: QueueStatus | None = None, columns: Columns | None = None) -> RenderableType:
    return run_view(
        status or _status(),
        columns=columns or _batch(),
        agents=AGENTS,
        machine=MACHINE,
        cost=0.1234,
        elapsed_s=252,
    )


def _screen(view: RenderableType, width: int, height: int) -> list[str]:
    console = Console(
        width=width, height=height, record=True, file=io.StringIO(), force_terminal=True, color_system=None
    )
    console.print(view)
    return console.export_text().splitlines()


def _assert_fits(lines: list[str], width: int, height: int) -> None:
    """No more lines than the terminal has, no line wider, every panel whole."""
    assert len(lines) <= height, "\n".join(lines)
    assert panel_problems(lines, width) == [], "\n".join(lines)


def _panel(lines: list[str], title: str) -> list[str]:
    """The lines of the panel titled ``title``."""
    start = next(i for i, line in enumerate(lines) if line.startswith("╭") and f" {title} " in line)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("╰"))
    return lines[start : end + 1]


def test_a_run_at_80x24_keeps_each_running_tasks_id_agent_description_elapsed_time_and_files() -> None:
    lines = _screen(_view(), 80, 24)
    _assert_fits(lines, 80, 24)
    running = _panel(lines, "Running agents (4/4)")
    for task in RUNNING:
        first_word = task.description.split()[0]
        one_line(running, f" {task.id} ", task.agent, first_word, task.files[0][:10])
    assert "4m 12s" in one_line(running, "api")
    assert "1h 01m" in one_line(running, "hello", "(timed out) echo")


def test_a_run_at_80x24_keeps_its_progress_and_whole_resources_and_cuts_the_queue_saying_so() -> None:
    lines = _screen(_view(), 80, 24)
    assert lines[0] == "13/41 done, 4 running, 2 failed, 1 skipped · elapsed 4m 12s"
    assert _panel(lines, "Resources")[1:3] == [
        f"│ {'machine  CPU 54% of 2 cores, memory 3.0 of 16.0 GiB':<76} │",
        f"│ {'agents   CPU 50% of 2 cores, memory 300 MiB, cost so far $0.1234':<76} │",
    ]
    assert lines[-1].startswith("╰")  # the Resources panel ends the screen, whole
    queue = _panel(lines, "Queue (24)")
    assert "and 16 more" in queue[-2]  # 24 waiting, 8 listed: the rows left
    assert "│ page0        writer " in queue[2]  # as wide as the batch's longest id, listed or not
    assert "docs/architecture/p0.md overlaps" in queue[2]  # the first blocker, where it can be read
    assert not any("Active files" in line for line in lines)  # the running panel shows the files


def test_a_run_at_80x24_renders_as_this() -> None:
    """A snapshot, for the eye: a small run whose every panel fits."""
    status = QueueStatus(
        queued_tasks=1,
        max_parallel=4,
        running=RUNNING[:2],
        waiting=WAITING[:1],
        counts={"succeeded": 1},
    )
    lines = _screen(_view(status, Columns().see([("api", "code_developer", None), ("page0", "writer", None)])), 80, 24)
    assert "\n".join(lines) == SNAPSHOT_80X24


SNAPSHOT_80X24 = """\
1/4 done, 2 running, 0 failed · elapsed 4m 12s
╭──────────────────────────── Running agents (2/4) ────────────────────────────╮
│ task      agent           description             elapsed  files             │
│ api       code_developer  implement the REST AP…  4m 12s   coffee_maker/api… │
│ spec      architect       write SPEC-046 for th…  1m 15s   docs/architectur… │
╰──────────────────────────────────────────────────────────────────────────────╯
╭────────────────────────────── Active files (3) ──────────────────────────────╮
│ file                                                held by   agent          │
│ coffee_maker/api.py                                 api       code_developer │
│ tests/test_api.py                                   api       code_developer │
│ docs/architecture/                                  spec      architect      │
╰──────────────────────────────────────────────────────────────────────────────╯
╭───────────────────────────────── Queue (1) ──────────────────────────────────╮
│ task      agent           waits because                                      │
│ page0     writer          docs/architecture/p0.md overlaps docs/architectur… │
╰──────────────────────────────────────────────────────────────────────────────╯
╭───────────────────────────────── Resources ──────────────────────────────────╮
│ machine  CPU 54% of 2 cores, memory 3.0 of 16.0 GiB                          │
│ agents   CPU 50% of 2 cores, memory 300 MiB, cost so far $0.1234             │
╰──────────────────────────────────────────────────────────────────────────────╯"""


def test_a_run_at_200x50_shows_everything_whole() -> None:
    lines = _screen(_view(), 200, 50)
    _assert_fits(lines, 200, 50)
    running = _panel(lines, "Running agents (4/4)")
    for task in RUNNING:
        assert task.description in one_line(running, f" {task.id} ", task.agent, ", ".join(task.files))
    files = _panel(lines, "Active files (5)")
    assert len(files) == 3 + 5
    queue = _panel(lines, "Queue (24)")
    assert all(task.reason in one_line(queue, f" {task.id} ") for task in WAITING)
    assert "and 12 more" in queue[-2]


def test_the_columns_keep_their_widths_whatever_the_rows() -> None:
    """Widths come from the terminal and the batch, not from the rows of the moment."""
    short = _screen(_view(_status(WAITING[:1])), 80, 24)
    long = _screen(_view(_status((replace(WAITING[0], id="a-longer-id"), *WAITING[1:3]))), 80, 24)
    assert _panel(short, "Queue (24)")[1] == _panel(long, "Queue (24)")[1]  # the header: every column where it was
    assert one_line(long, "a-longer-id").index("docs/") == one_line(short, "page0").index("docs/")
    assert _panel(short, "Running agents (4/4)")[:3] == _panel(long, "Running agents (4/4)")[:3]


def test_a_short_terminal_drops_rows_never_the_resources() -> None:
    lines = _screen(_view(), 80, 16)
    _assert_fits(lines, 80, 16)
    assert "Resources" in lines[-4]
    assert "and 24 more" in one_line(lines, "and")  # no row of the queue fits: it says how many wait


def _repo_status() -> RepoStatus:
    """Two runs, one of them here, with long run ids."""
    here, there = "20261127-190042-27432-23a36f", "20261127-190500-9-bbbbbb"
    runs = (
        RunView(
            here,
            27432,
            socket.gethostname(),
            started_at=1000.0,
            running=(replace(RUNNING[0], started_at=1000.0), replace(RUNNING[1], started_at=1100.0)),
            waiting=WAITING[:3],
            queued=3,
            counts={"succeeded": 2},
        ),
        RunView(there, 9, "ci.example", started_at=1100.0, running=(replace(RUNNING[2], started_at=None),)),
    )
    return RepoStatus(runs)


def _status_screen(width: int, height: int) -> list[str]:
    status = _repo_status()
    here = status.runs[0].run
    view = status_view(
        status, Path("/repo"), now=1252.0, columns=Columns(), machine=MACHINE, usage={here: AGENTS}, fit=True
    )
    return _screen(view, width, height)


def test_status_watch_at_80_columns_gives_the_width_to_the_tasks_not_the_run_id() -> None:
    lines = _status_screen(80, 24)
    _assert_fits(lines, 80, 24)
    running = _panel(lines, "Running agents (3)")
    assert not any("20261127" in line for line in running)  # the run column went first
    one_line(running, " api ", "code_developer", "implement the", "4m 12s", "coffee_maker/")
    queue = _panel(lines, "Queue (3)")
    assert "│ …7432-23a36f  page0 " in one_line(queue, "page0")  # the tail of the run id, which tells runs apart
    head = " ".join(line.strip() for line in lines[: lines.index(running[0])])  # wrapped as the width asks
    assert "run 20261127-190042-27432-23a36f (pid 27432 on " in head
    assert "): 2/7 done, 2 running, 0 failed · elapsed 4m 12s" in head
    assert "run 20261127-190042-27432-23a36f: CPU 50% of 2 cores, memory 300 MiB" in "\n".join(lines)


def test_status_watch_at_200_columns_shows_the_whole_run_id() -> None:
    lines = _status_screen(200, 50)
    _assert_fits(lines, 200, 50)
    assert "20261127-190042-27432-23a36f" in one_line(_panel(lines, "Running agents (3)"), " api ")
    assert "20261127-190500-9-bbbbbb" in one_line(_panel(lines, "Active files (4)"), "docs/roadmap/ROADMAP.md")


def test_columns_grow_with_the_names_seen_and_never_shrink() -> None:
    columns = Columns()
    assert [kind for kind, _ in columns.layout(("run", "task", "agent", "reason"), 120)] == ["task", "agent", "reason"]
    columns.see([("a-rather-long-task-id", "agent", "run-1")])
    wide = dict(columns.layout(("run", "task", "agent", "reason"), 120))
    columns.see([("t1", "a", "r")])
    assert dict(columns.layout(("run", "task", "agent", "reason"), 120)) == wide
    assert (wide["run"], wide["task"]) == (len("run-1"), len("a-rather-long-task-id"))
