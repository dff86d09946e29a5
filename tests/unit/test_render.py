"""cli.render's plain event lines: written in order, by a thread of their own, never blocking a run."""

from __future__ import annotations

import io

from cli.render import PlainEvents, event_line
from queue_core import TaskEvent


def test_event_lines_are_written_in_order_and_all_of_them_before_exit() -> None:
    out = io.StringIO()
    with PlainEvents(out) as events:
        for i in range(500):
            events.event(TaskEvent("started", f"t{i}", "shell", 0.0, 1))
        events.note("interrupted: stopping every agent and releasing every claim")
    lines = out.getvalue().splitlines()
    assert [line.split()[2] for line in lines[:-1]] == [f"t{i}" for i in range(500)]
    assert lines[-1] == "interrupted: stopping every agent and releasing every claim"


def test_event_line_says_the_attempt_and_the_error_where_they_help() -> None:
    assert event_line(TaskEvent("started", "parser", "dev", 0.0, 2)).endswith("started   parser [dev] (attempt 2)")
    assert event_line(TaskEvent("failed", "parser", "dev", 0.0, 1, "exit 3")).endswith("FAILED    parser [dev]: exit 3")
    assert event_line(TaskEvent("succeeded", "parser", "dev", 0.0, 1, "ignored")).endswith("finished  parser [dev]")


class _GoneReader(io.StringIO):
    """A pipe whose reader went away, like ``project-manager ... | head -1``."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_went_away_stops_the_lines_not_the_run() -> None:
    with PlainEvents(_GoneReader()) as events:
        events.event(TaskEvent("started", "t", "shell", 0.0, 1))
        events.event(TaskEvent("succeeded", "t", "shell", 0.0, 1))
    # Leaving the block drained the queue and joined the writer: nothing raised, nothing hangs.
