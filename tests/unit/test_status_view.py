"""``status``'s output from hand-made ``repo_status`` snapshots: the live panels and the plain text."""

from __future__ import annotations

import io
import socket
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from cli.panels import Columns
from cli.status import status_text, status_view
from cli.usage import Machine, Usage
from queue_core import RepoStatus
from queue_core.records import RunningTask, WaitingTask
from queue_core.status import RunView

REPO = Path("/work/repo")
NOW = 1_000_000.0
LOCAL, REMOTE = "20250101-120000-41-aaaaaa", "20250101-120500-77-bbbbbb"


def _run(
    run: str, host: str, running: tuple[RunningTask, ...], waiting: tuple[WaitingTask, ...], queued: int
) -> RunView:
    pid = 41 if run == LOCAL else 77
    return RunView(
        run, pid, host, started_at=NOW - 120, updated_at=NOW - 30, running=running, waiting=waiting, queued=queued
    )


def _status() -> RepoStatus:
    """Two runs: one here with a running task and 150 queued (two listed), one on another host."""
    parser = RunningTask(
        "parser",
        "code_developer",
        "write the [bold]parser[/bold]",  # user text: never Rich markup
        files=("src/parser.py", "tests/test_parser.py"),
        elapsed_s=5.0,  # as the record was last written: aged by now
        started_at=NOW - 42,
    )
    # A record from a version without started_at: its elapsed_s is all there is.
    docs = replace(parser, id="docs", agent="doc_writer", description="document it", files=("README.md",))
    docs = replace(docs, started_at=None)
    waiting = (
        WaitingTask("lexer", "code_developer", reason="code_developer busy (parser)"),
        WaitingTask("tests", "tester", reason="src/parser.py held by parser"),
    )
    runs = (
        _run(LOCAL, socket.gethostname(), (parser,), waiting, 150),
        _run(REMOTE, "elsewhere.example", (docs,), (), 0),
    )
    return RepoStatus(runs)


def test_the_snapshot_adds_up_its_runs() -> None:
    status = _status()
    assert status.running_agents == ["code_developer", "doc_writer"]
    assert status.running_files == ["README.md", "src/parser.py", "tests/test_parser.py"]
    assert status.queued_tasks == 150


def _screen(status: RepoStatus) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    machine = Machine(7.0, 2, 2**30, 4 * 2**30)
    usage = {LOCAL: Usage(12.0, 300 * 2**20)}
    console.print(status_view(status, REPO, now=NOW, columns=Columns(), machine=machine, usage=usage, fit=False))
    return console.export_text()


def _line(screen: str, *words: str) -> str:
    """The one screen line holding every word."""
    (line,) = [line for line in screen.splitlines() if all(word in line for word in words)]
    return line


def test_the_running_panel_lists_each_task_with_its_run_agent_and_elapsed_time() -> None:
    screen = _screen(_status())
    assert "Running agents (2)" in screen
    line = _line(screen, "parser", "code_developer", "42s")  # elapsed from started_at, not the aged record
    assert LOCAL in line
    assert "write the [bold]" in line  # cut to fit, but shown as typed
    assert "src/parser.py, tests/" in line
    assert REMOTE in _line(screen, "docs", "doc_writer", "5s")


def test_the_files_panel_names_each_files_holder() -> None:
    screen = _screen(_status())
    assert "Active files (3)" in screen
    files = screen[screen.index("Active files (3)") : screen.index("Queue (150)")]
    assert LOCAL in _line(files, "src/parser.py", "parser", "code_developer")
    assert LOCAL in _line(files, "tests/test_parser.py", "parser", "code_developer")
    assert REMOTE in _line(files, "README.md", "docs", "doc_writer")


def test_the_queue_says_why_each_task_waits_and_counts_the_unlisted_ones() -> None:
    screen = _screen(_status())
    assert "Queue (150)" in screen
    assert LOCAL in _line(screen, "lexer", "code_developer busy (parser)")
    assert "tester" in _line(screen, "tests", "src/parser.py held by parser")
    assert "and 148 more" in screen


def test_resources_measure_local_runs_and_not_runs_on_another_host() -> None:
    screen = _screen(_status())
    assert "machine  CPU 7% of 2 cores, memory 1.0 of 4.0 GiB" in screen
    assert f"run {LOCAL}: CPU 12% of 2 cores, memory 300 MiB" in screen
    assert f"run {REMOTE}: on another host, not measured here" in screen
    assert f"run {REMOTE} (pid 77 on elsewhere.example)" in screen


def test_a_queue_listed_in_full_says_no_more() -> None:
    status = _status()
    status = replace(status, runs=(replace(status.runs[0], queued=2), *status.runs[1:]))
    assert "more" not in _screen(status)


def test_nothing_running_is_said_plainly() -> None:
    assert _screen(RepoStatus()).strip() == f"Nothing runs in {REPO}."


def test_status_text_counts_the_waiting_tasks_a_record_does_not_list() -> None:
    text = status_text(_status(), REPO, now=NOW)
    assert "  waiting  lexer [code_developer]: code_developer busy (parser)" in text
    assert "  and 148 more waiting" in text
    assert text.count("more waiting") == 1  # the remote run lists every task it has waiting


def test_status_tells_a_running_tasks_time_left_and_its_runs() -> None:
    """From the record: the task's estimate against the time it has run by now, and the run's
    end as the record last told it (``ends_at``, wall clock)."""
    parser = RunningTask("parser", "code_developer", "parse", ("src/parser.py",), started_at=NOW - 60, estimate_s=300.0)
    late = RunningTask("late", "qa", "test", ("tests/",), started_at=NOW - 600, estimate_s=300.0)
    run = replace(_run(LOCAL, socket.gethostname(), (parser, late), (), 3), ends_at=NOW + 720)
    status = RepoStatus((run,))
    text = status_text(status, REPO, now=NOW)
    assert _line(text, "running  parser").endswith("(~4 min left)")
    assert _line(text, "running  late").endswith("(over estimate)")
    assert _line(text, f"run {LOCAL}").endswith("· elapsed 2m 00s · ~12 min left")
    screen = _screen(status)
    assert "code_developer" in _line(screen, "parser", "~4 min left")
    assert "~12 min left" in _line(screen, f"run {LOCAL}", "elapsed")


def test_a_claim_added_as_the_task_ran_is_marked_in_the_text_the_panels_and_the_record() -> None:
    parser = RunningTask(
        "parser", "code_developer", "parse", ("src/parser.py", "tests/"), started_at=NOW - 60, added=("tests/",)
    )
    status = RepoStatus((_run(LOCAL, socket.gethostname(), (parser,), (), 1),))
    assert _line(status_text(status, REPO, now=NOW), "running  parser").endswith("src/parser.py, tests/ (added)")
    screen = _screen(status)
    assert "src/parser.py, tests/" in _line(screen, "parser", "code_developer", "1m 00s")  # cut to fit there
    files = screen[screen.index("Active files") :]
    assert "tests/ (added)" in _line(files, "tests/", "parser")
    assert "(added)" not in _line(files, "src/parser.py", "parser")
    assert RunningTask.from_json(parser.to_json()) == parser
    assert "added" not in replace(parser, added=()).to_json()  # a record without is as before
