"""Hostile tests of issue 15 with the installed script, real processes and real signals: the
journal's copy on a FIFO nobody reads, ``--events`` and ``--junit`` aimed at the state
directory, agents whose words GitHub's runner would obey, and the words of a task that fail-fast
cancelled after it had reported an error."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from queue_core.registry import state_dir

from ..conftest import WAIT, eventually, git_repo

SCRIPT = Path(sys.executable).with_name("project-manager")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"README": "x\n"})


def _argv(repo: Path, *args: str) -> list[str]:
    return [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo), "--no-live"]


def _run(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(repo, *args), capture_output=True, text=True, timeout=WAIT * 3, env=env)


def _read_until(fd: int, text: bytes, seen: bytearray) -> None:
    """Read ``fd`` into ``seen`` until it holds ``text``; fails after WAIT."""
    deadline = time.monotonic() + WAIT
    while text not in seen:
        left = max(0.0, deadline - time.monotonic())
        assert select.select([fd], [], [], left)[0], f"never saw {text!r} in:\n{seen.decode()}"
        chunk = os.read(fd, 65536)
        assert chunk, f"the pipe ended before {text!r}:\n{seen.decode()}"
        seen += chunk


def _drain(fd: int) -> bytes:
    """Everything ``fd`` (a FIFO) gives until its writer closes it; fails after WAIT."""
    data = bytearray()
    os.set_blocking(fd, False)
    deadline = time.monotonic() + WAIT
    while True:
        left = max(0.0, deadline - time.monotonic())
        assert select.select([fd], [], [], left)[0], "the FIFO was never closed"
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return bytes(data)
        data += chunk


def _logs(repo: Path, task: str) -> list[Path]:
    return list((state_dir(repo) / "logs").glob(f"*/{task}.log"))


# --- the journal's copy on a FIFO whose reader does not read ------------------------------------


def _big_batch(repo: Path, first: str = "true") -> Path:
    """Three tasks (the first runs ``first``, the others ``true``) whose descriptions fill the
    run's first journal line past a pipe's 64 KiB."""
    padding = "x" * 30_000
    path = repo.parent / "batch.yaml"
    commands = {"a": first, "b": "true", "c": "true"}
    path.write_text(
        "agents:\n"
        + "".join(f"  {a}: {{command: [sh, -c, {json.dumps(c)}]}}\n" for a, c in commands.items())
        + "tasks:\n"
        + "".join(
            f"  - {{id: t{i}, agent: {a}, description: '{padding}', files: [{a}]}}\n" for i, a in enumerate(commands)
        )
    )
    return path


def _with_reader(fifo: Path) -> int:
    """A reader of a new FIFO at ``fifo`` that reads nothing until the test says."""
    os.mkfifo(fifo)
    return os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)


def test_a_fifo_reader_that_does_not_read_holds_up_no_task_and_loses_no_line(repo: Path, tmp_path: Path) -> None:
    """``--events FIFO`` whose reader opened it and reads nothing: before, the run's first line
    (90 kB) blocked the command before any task started, for good, and Ctrl-C could not end it.
    Now the tasks run and the summary comes; the run then waits for the reader, as it waits
    for stdout's, and once it reads, it gets every line, whole."""
    fifo = tmp_path / "events.fifo"
    reader = _with_reader(fifo)
    argv = _argv(repo, "--file", str(_big_batch(repo)), "--events", str(fifo))
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as run:
            try:
                assert run.stdout is not None
                _read_until(run.stdout.fileno(), b"3/3 succeeded", bytearray())  # no line was read yet
                data = _drain(reader)
                assert run.wait(WAIT) == 0
            finally:
                run.kill()
    finally:
        os.close(reader)
    lines = [json.loads(line) for line in data.decode().split("\n")[:-1]]
    assert data.endswith(b"\n")
    events = [line["event"] for line in lines if line["event"] != "waiting"]
    assert (events[0], events[-1]) == ("run_started", "run_ended")
    assert sorted(events[1:-1]) == ["started"] * 3 + ["succeeded"] * 3


def test_ctrl_c_ends_a_run_whose_fifo_reader_does_not_read(repo: Path, tmp_path: Path) -> None:
    """The same reader, and a task that runs until stopped: Ctrl-C stops it and the command ends
    (before: it could not, its threads stuck writing to the FIFO)."""
    fifo = tmp_path / "events.fifo"
    reader = _with_reader(fifo)
    argv = _argv(repo, "--file", str(_big_batch(repo, "echo up; exec sleep 60")), "--events", str(fifo))
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as run:
            try:
                assert run.stdout is not None
                _read_until(run.stdout.fileno(), b"finished  t2", bytearray())
                eventually("t0 to start", lambda: any(b"up" in log.read_bytes() for log in _logs(repo, "t0")))
                run.send_signal(signal.SIGINT)
                assert run.wait(WAIT) == 130
            finally:
                run.kill()
    finally:
        os.close(reader)


# --- --events and --junit aimed at the state directory ----------------------------------------


def test_events_and_junit_never_write_into_the_state_directory(repo: Path, tmp_path: Path) -> None:
    """``--events`` truncated what it was given, and ``--junit`` replaced it: aimed at another
    run's log, or through a symlink at a history record, they destroyed it. Both are refused
    before anything runs (exit 2), as ``timeline -o`` is, and the file stays (the other targets
    are in tests/unit/test_attack_i15.py)."""
    first = _run(repo, "shell: echo precious @a")
    assert first.returncode == 0, first.stderr
    (log,) = _logs(repo, "t1")
    (history,) = (state_dir(repo) / "history").glob("*.json")
    link = tmp_path / "report.xml"
    link.symlink_to(history)
    before = {path: path.read_bytes() for path in (log, history)}
    for flag, target in (("--events", log), ("--junit", link)):
        done = _run(repo, "shell: touch ran @ran", flag, str(target))
        assert done.returncode == 2, (flag, target, done.stderr)
        assert f"{flag}: {target}: is inside the state directory" in done.stderr, done.stderr
    assert {path: path.read_bytes() for path in before} == before
    assert not (repo / "ran").exists()
