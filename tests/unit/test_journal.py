"""The run journal's lines (pure, the time given) and the file that takes them: whole lines only,
a failure told once, a reader that went away told never."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from queue_core import AgentTask, TaskEvent
from queue_core import journal as journal_module
from queue_core.journal import FINAL, JournalFile, encode, run_ended, run_started, task_line, waiting_line
from queue_core.reports import AgentReport

#: What every line has, and what a task's line adds.
EVERY = {"event", "run", "time"}
TASK = EVERY | {"task", "agent", "attempt"}
FINAL_KEYS = TASK | {"final", "exit_code", "duration_s", "total_s", "cost_usd", "tokens", "error"}
#: Strings a batch may hold that a careless writer would break a line or a reader on.
HOSTILE = 'say "hi" \\ to ünï ✓ 𝄞\nsecond line\u2028third\u0000end'


def event(kind: str, **fields: Any) -> TaskEvent:
    return TaskEvent(kind, "t1", "dev", 100.0, fields.pop("attempt", 1), **fields)


def test_the_first_line_holds_the_batch_as_given() -> None:
    task = AgentTask("dev", HOSTILE, ["a/ü.py", 'b/"q".md'], lambda: None, 3, id="-x.y_z", reads=["r"], depends_on=[])
    line = run_started("R", 5.0, 42, [task])
    assert line == {
        "event": "run_started",
        "run": "R",
        "time": 5.0,
        "version": 1,
        "pid": 42,
        "batch": {
            "tasks": [
                {
                    "id": "-x.y_z",
                    "agent": "dev",
                    "description": HOSTILE,
                    "files": ["a/ü.py", 'b/"q".md'],
                    "reads": ["r"],
                    "depends_on": [],
                    "priority": 3,
                }
            ]
        },
    }


def test_a_line_is_one_line_of_ascii_that_round_trips_anything() -> None:
    line = {"event": "started", "run": "R", "time": 1.5, "description": HOSTILE}
    data = encode(line)
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert data.isascii()
    assert len(data.decode().splitlines()) == 1  # \u2028 escaped: str.splitlines does not cut it either
    assert json.loads(data) == line


def test_a_number_that_is_not_finite_is_null() -> None:
    report = AgentReport(cost_usd=float("nan"))
    data = encode(task_line("R", 1.0, event("succeeded", report=report, duration_s=float("inf"))))
    parsed = json.loads(data)
    assert (parsed["cost_usd"], parsed["duration_s"]) == (None, None)


def test_started_names_its_attempt_and_description() -> None:
    line = task_line("R", 7.0, event("started", attempt=2, description="do it"))
    assert line == {
        "event": "started",
        "run": "R",
        "time": 7.0,
        "task": "t1",
        "agent": "dev",
        "attempt": 2,
        "description": "do it",
    }


def test_retrying_tells_the_attempts_end_in_wall_clock_time() -> None:
    line = task_line(
        "R",
        1000.0,
        event("retrying", error="the agent exited with code 1", exit_code=1, duration_s=2.0, resumes_at=104.0),
    )
    assert set(line) == TASK | {"exit_code", "duration_s", "error", "resumes_at"}
    assert (line["exit_code"], line["duration_s"], line["error"]) == (1, 2.0, "the agent exited with code 1")
    assert line["resumes_at"] == 1004.0  # 4 s after the event, on the queue's clock


def test_a_pause_is_rate_limited_not_final_with_the_agents_own_words() -> None:
    report = AgentReport(error="429 Too Many Requests", rate_limited=True)
    line = task_line("R", 1000.0, event("paused", error="the agent was rate-limited", report=report, resumes_at=130.0))
    assert line["event"] == "rate_limited"
    assert line["final"] is False
    assert (line["error"], line["resumes_at"]) == ("429 Too Many Requests", 1030.0)


@pytest.mark.parametrize("kind", FINAL)
def test_each_final_line_has_every_key_null_where_unknown(kind: str) -> None:
    line = task_line("R", 9.0, event(kind, attempt=0, error="why"))
    assert set(line) == FINAL_KEYS
    assert line["event"] == kind
    assert line["final"] is True
    assert line["error"] == (None if kind == "succeeded" else "why")  # a success keeps no earlier error
    assert all(line[key] is None for key in ("exit_code", "duration_s", "total_s", "cost_usd", "tokens"))


def test_a_final_line_has_the_agents_cost_and_tokens_of_every_attempt() -> None:
    report = AgentReport(error="turn limit", cost_usd=0.75, input_tokens=20, output_tokens=2)
    line = task_line(
        "R", 9.0, event("failed", error="the agent reported an error", report=report, exit_code=0, total_s=3.5)
    )
    assert (line["cost_usd"], line["tokens"], line["error"], line["total_s"]) == (
        0.75,
        {"input": 20, "output": 2},
        "turn limit",
        3.5,
    )


def test_waiting_and_the_last_line() -> None:
    assert waiting_line("R", 2.0, "t2", "dev", 0, "a.py held by dev (t1)") == {
        "event": "waiting",
        "run": "R",
        "time": 2.0,
        "task": "t2",
        "agent": "dev",
        "attempt": 0,
        "reason": "a.py held by dev (t1)",
    }
    line = run_ended("R", 3.0, 1, {"succeeded": 2, "failed": 1})
    assert line["counts"] == {
        "succeeded": 2,
        "failed": 1,
        "timed_out": 0,
        "cancelled": 0,
        "skipped": 0,
        "rate_limited": 0,
    }
    assert (line["event"], line["exit_code"]) == ("run_ended", 1)


def test_the_file_takes_whole_lines_as_they_come(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    journal = JournalFile.create(path, private=True)
    assert journal.write({"event": "a"})
    assert path.read_bytes() == b'{"event":"a"}\n'  # unbuffered: there at once
    assert journal.write({"event": "b"})
    journal.close()
    assert not journal.write({"event": "c"})
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == ["a", "b"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_private_journal_is_never_written_through_a_symlink_nor_over_a_file(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    (tmp_path / "link").symlink_to(target)
    for name in ("link", "elsewhere"):
        with pytest.raises(OSError, match=r"File exists|Too many levels of symbolic links"):
            JournalFile.create(tmp_path / name, private=True)
    assert target.read_text() == "keep\n"


def test_a_copy_is_truncated_and_may_go_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "copy.jsonl"
    target.write_text("old\n")
    (tmp_path / "link").symlink_to(target)
    JournalFile.create(tmp_path / "link", private=False).write({"event": "new"})
    assert target.read_text() == '{"event":"new"}\n'


def test_a_fifo_nobody_reads_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="No such device or address") as raised:
        JournalFile.create(fifo, private=False)
    assert raised.value.errno == errno.ENXIO


def test_a_full_disk_is_told_once_and_the_torn_line_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.jsonl"
    told: list[str] = []
    journal = JournalFile.create(path, private=True, on_error=told.append)
    assert journal.write({"event": "whole"})
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 5:
            return real_write(fd, data[:5])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(journal_module.os, "write", half_then_full)
    assert not journal.write({"event": "torn"})
    assert not journal.write({"event": "later"})
    monkeypatch.undo()
    assert path.read_bytes() == b'{"event":"whole"}\n'
    assert told == [f"{path} could not be written (No space left on device): no more events go there"]


def test_dev_full_is_told_once(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    told: list[str] = []
    journal = JournalFile.create(Path("/dev/full"), private=False, on_error=told.append)
    assert not journal.write({"event": "a"})
    assert not journal.write({"event": "b"})
    assert len(told) == 1


def test_a_reader_that_went_away_is_no_error() -> None:
    read, write = os.pipe()
    os.close(read)
    told: list[str] = []
    journal = JournalFile(write, "pipe", on_error=told.append)
    assert not journal.write({"event": "a"})
    assert told == []
