"""A task's log read back (queue_core.logfiles): ids that are paths refused, the tail of a log read
from its end, and a log followed step by step, in steps the test takes (a clock it sets), until
its task ends, its run ends or dies, or the log is removed or replaced."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from queue_core import logfiles
from queue_core.clocks import Clocks
from queue_core.errors import InvalidArgumentError, InvalidTaskIdError, NotRegularFileError
from queue_core.holds import Owner
from queue_core.logfiles import FollowStep, LogFollower, log_path, open_log, run_logs, tail_start
from queue_core.processes import ProcessId
from queue_core.records import RunRecord
from queue_core.runfiles import journal_path

from ..conftest import in_thread
from ._state import dead, owner, state

__all__ = ["dead", "state"]  # fixtures


@pytest.mark.parametrize("task", ["../x", "/etc/passwd", "a/b", "..", ".hidden", "", "a\nb", "t1.log/../../x"])
def test_a_task_id_that_is_a_path_never_makes_a_path(state: Path, task: str) -> None:
    with pytest.raises(InvalidTaskIdError):
        log_path(state, "r", task)


@pytest.mark.parametrize("run", ["../history", "/var", ".", "a/b"])
def test_a_run_id_that_is_a_path_never_makes_a_path(state: Path, run: str) -> None:
    with pytest.raises(InvalidArgumentError):
        log_path(state, run, "t1")
    with pytest.raises(InvalidArgumentError):
        run_logs(state, run)


def test_a_run_s_logs_are_its_regular_task_logs(state: Path, tmp_path: Path) -> None:
    folder = state / "logs" / "r"
    folder.mkdir()
    (folder / "b.log").write_text("bb")
    (folder / "a.log").write_text("a")
    (folder / "events.jsonl").write_text("{}\n")  # the journal
    (folder / "dir.log").mkdir()
    os.mkfifo(folder / "fifo.log")
    (tmp_path / "secret").write_text("secret")
    (folder / "link.log").symlink_to(tmp_path / "secret")
    (folder / ".hidden.log").write_text("x")
    assert [(log.task, log.size) for log in run_logs(state, "r")] == [("a", 1), ("b", 2)]
    assert run_logs(state, "none") == []


def test_a_log_that_is_a_symlink_or_a_fifo_is_never_opened(state: Path, tmp_path: Path) -> None:
    folder = state / "logs" / "r"
    folder.mkdir()
    (tmp_path / "secret").write_text("secret")
    (folder / "link.log").symlink_to(tmp_path / "secret")
    os.mkfifo(folder / "fifo.log")
    with pytest.raises(NotRegularFileError):
        open_log(folder / "link.log")
    with pytest.raises(NotRegularFileError):
        in_thread(lambda: open_log(folder / "fifo.log"))  # never waits for a writer
    assert open_log(folder / "none.log") is None


@pytest.mark.parametrize(
    ("text", "lines", "tail"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),  # a last line without its newline is a line
        (b"a\nb\nc\n", 9, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 0, b""),
        (b"", 3, b""),
        (b"\n\n\n", 2, b"\n\n"),
        (b"one line, no newline", 1, b"one line, no newline"),
    ],
)
def test_the_tail_of_a_log(tmp_path: Path, text: bytes, lines: int, tail: bytes) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(text)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert text[tail_start(fd, lines, len(text)) :] == tail
    finally:
        os.close(fd)


def test_the_tail_of_a_huge_log_reads_only_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.log"
    body = b"".join(b"line %d\n" % i for i in range(100_000))
    path.write_bytes(body)
    reads: list[int] = []
    real = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return real(fd, n, offset)

    monkeypatch.setattr(logfiles.os, "pread", pread)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert body[tail_start(fd, 3, len(body)) :] == b"line 99997\nline 99998\nline 99999\n"
    finally:
        os.close(fd)
    assert sum(reads) <= logfiles.BLOCK + 1  # the last block, and the last byte


# --- following ----------------------------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def run_dir(state: Path) -> Path:
    """The logs folder of run r, which lives: its record names this process."""
    data = RunRecord("r", Owner.current("r"), 0.0).to_json()
    (state / "runs" / "r.json").write_text(json.dumps(data))
    folder = state / "logs" / "r"
    folder.mkdir()
    return folder


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def final(state: Path, task: str, event: str) -> None:
    line = {"event": event, "run": "r", "time": 1.0, "task": task, "agent": "dev", "attempt": 1, "final": True}
    append(journal_path(state, "r"), json.dumps(line).encode() + b"\n")


def follower(state: Path, clock: Clock, task: str = "t1") -> LogFollower:
    return LogFollower(state, "r", task, clocks=Clocks(monotonic=clock))


def test_a_follower_gives_what_is_written_and_ends_when_the_journal_says_the_task_ended(
    state: Path, run_dir: Path
) -> None:
    clock = Clock()
    log = run_dir / "t1.log"
    with follower(state, clock) as follow:
        assert follow.step() == FollowStep(b"")  # no log yet: the task has not started
        append(log, b"first\n")
        assert follow.step() == FollowStep(b"first\n")
        assert follow.step() == FollowStep(b"")
        final(state, "t2", "failed")  # another task's end
        append(log, b"second\n")
        assert follow.step() == FollowStep(b"second\n")
        append(log, b"last words\n")
        final(state, "t1", "succeeded")
        assert follow.step() == FollowStep(b"last words\n", "ended", status="succeeded")


def test_a_follower_ends_when_the_run_finishes_or_dies_looked_at_every_half_second(
    state: Path, run_dir: Path, dead: ProcessId
) -> None:
    clock = Clock()
    with follower(state, clock) as follow:
        assert follow.step().end is None
        (state / "history" / "r.json").write_text("{}")
        clock.now = logfiles.RUN_CHECK_S / 2
        assert follow.step().end is None  # not looked at yet
        clock.now = logfiles.RUN_CHECK_S
        assert follow.step().end == "run_finished"
    (state / "history" / "r.json").unlink()
    (state / "runs" / "r.json").write_text(json.dumps(RunRecord("r", owner("r", dead), 0.0).to_json()))
    with follower(state, Clock()) as follow:
        assert follow.step().end == "run_died"


@pytest.mark.parametrize("change", ["removed", "replaced", "truncated"])
def test_a_log_removed_replaced_or_cut_while_followed_ends_it_after_what_was_read(
    state: Path, run_dir: Path, change: str
) -> None:
    log = run_dir / "t1.log"
    log.write_bytes(b"before\n")
    with follower(state, Clock()) as follow:
        assert follow.step() == FollowStep(b"before\n")
        append(log, b"then\n")
        if change == "removed":
            log.unlink()
        elif change == "replaced":
            log.rename(run_dir / "t1.log.1")
            log.write_bytes(b"a new log\n")
        else:
            os.truncate(log, 2)
        step = follow.step()
        assert step.end == change
        assert step.data == (b"" if change == "truncated" else b"then\n")  # an unlinked log is read to its end


def test_a_log_written_faster_than_a_step_reads_comes_in_steps(
    state: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logfiles, "STEP_BYTES", 8)
    (run_dir / "t1.log").write_bytes(b"0123456789abcdef-end")
    final(state, "t1", "failed")
    with follower(state, Clock()) as follow:
        assert follow.step() == FollowStep(b"01234567", more=True, status="failed")
        assert follow.step() == FollowStep(b"89abcdef", more=True, status="failed")
        assert follow.step() == FollowStep(b"-end", "ended", status="failed")  # its end only once all is read


def test_what_appears_at_the_log_s_path_must_be_a_regular_file(state: Path, run_dir: Path) -> None:
    os.mkfifo(run_dir / "t1.log")
    with follower(state, Clock()) as follow, pytest.raises(NotRegularFileError):
        in_thread(follow.step)
