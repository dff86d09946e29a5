"""The installed ``project-manager`` script, run for real: CI output, and Ctrl-C."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from ..conftest import WAIT

SCRIPT = Path(sys.executable).with_name("project-manager")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path


def test_output_without_a_terminal_is_plain_lines(repo: Path) -> None:
    done = subprocess.run(
        [str(SCRIPT), "delegate-multiple", "shell: echo a @a", "shell: echo b @b", "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TERM": "xterm-256color"},  # a terminal type, but no terminal: still plain
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(" started   t1 [shell]" in line for line in lines)
    assert any(" finished  t2 [shell]" in line for line in lines)
    assert "2/2 succeeded" in done.stdout


def test_ctrl_c_stops_the_agents_releases_the_claims_and_exits_130(repo: Path) -> None:
    fifo = repo / "ready.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    proc = subprocess.Popen(
        [
            str(SCRIPT),
            "delegate-multiple",
            "shell: echo $$ > ready.fifo; exec sleep 60 @held.py",
            "shell: true @held.py",
            "--repo",
            str(repo),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([reader], [], [], WAIT)
        assert ready, "the agent never started"
        agent_pid = int(os.read(reader, 64).split()[0])
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=WAIT)
    finally:
        os.close(reader)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in out
    assert "cancelled" in out  # the summary still comes
    assert not psutil.pid_exists(agent_pid) or psutil.Process(agent_pid).status() == psutil.STATUS_ZOMBIE
    holds = json.loads((repo / ".project-manager" / "claims.json").read_text())["holds"]
    assert holds == []


def test_a_live_run_on_a_terminal_shows_the_panels(repo: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [str(SCRIPT), "delegate-multiple", "shell: sleep 1 @x", "shell: true @y", "--repo", str(repo)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    os.close(slave)
    screen = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], WAIT)
            assert ready, "the run went silent"
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the run is over
                break
            if not chunk:
                break
            screen += chunk
        assert proc.wait(WAIT) == 0
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = screen.decode(errors="replace")
    for title in ("Running agents", "Active files", "Queue", "Resources"):
        assert title in text
    assert "shell busy (t1)" in text  # the queue says why t2 waits
    assert "2/2 succeeded" in text
