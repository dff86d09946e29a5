"""The installed ``project-manager`` script, run for real: CI output, and Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from ..conftest import WAIT, interrupt_when_ready
from ._terminal import on_terminal

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
    out, agent_pid = interrupt_when_ready(proc, reader, "the agent")
    assert proc.returncode == 130
    assert "interrupted" in out
    assert "cancelled" in out  # the summary still comes
    assert not psutil.pid_exists(agent_pid) or psutil.Process(agent_pid).status() == psutil.STATUS_ZOMBIE
    holds = json.loads((repo / ".project-manager" / "claims.json").read_text())["holds"]
    assert holds == []


def test_a_live_run_on_a_terminal_shows_the_panels(repo: Path) -> None:
    argv = [str(SCRIPT), "delegate-multiple", "shell: sleep 1 @x", "shell: true @y", "--repo", str(repo)]
    with on_terminal(argv) as terminal:
        proc, screen = terminal.proc, terminal.read_to_end()
        assert proc.wait(WAIT) == 0
    text = screen.decode(errors="replace")
    for title in ("Running agents", "Active files", "Queue", "Resources"):
        assert title in text
    assert "shell busy (t1)" in text  # the queue says why t2 waits
    assert "2/2 succeeded" in text


def _batch(path: Path, agents: list[str]) -> Path:
    """Tasks of different agents that all append to shared.txt, each marking its start and end."""
    lines = ["agents:"] + [f"  {a}: {{preset: shell}}" for a in agents] + ["tasks:"]
    for agent in agents:
        script = (
            f"echo start {agent} $(date +%s%N) >> shared.txt; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
            f"echo end {agent} $(date +%s%N) >> shared.txt"
        )
        lines += [f"  - id: {agent}", f"    agent: {agent}", f"    description: '{script}'", "    files: [shared.txt]"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_runs_on_one_repo_never_write_a_shared_file_at_once(repo: Path, tmp_path: Path) -> None:
    batches = [_batch(tmp_path / "one.yaml", ["a1", "a2", "a3"]), _batch(tmp_path / "two.yaml", ["b1", "b2", "b3"])]
    runs = [
        subprocess.Popen(
            [str(SCRIPT), "delegate-multiple", "--file", str(b), "--repo", str(repo), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for b in batches
    ]
    reports = [json.loads(run.communicate(timeout=60)[0]) for run in runs]
    assert all(r.returncode == 0 for r in runs)
    assert all(t["status"] == "succeeded" for report in reports for t in report["tasks"])
    events = [line.split() for line in (repo / "shared.txt").read_text().splitlines()]
    assert len(events) == 12
    holder = None
    for kind, agent, _ in sorted(events, key=lambda e: int(e[2])):
        if kind == "start":
            assert holder is None, f"{agent} started while {holder} held shared.txt"
            holder = agent
        else:
            assert holder == agent
            holder = None


def test_status_from_another_process_during_a_cli_run(repo: Path) -> None:
    release = repo / "release.fifo"
    os.mkfifo(release)
    with subprocess.Popen(
        [str(SCRIPT), "delegate-multiple", "shell: cat release.fifo @held.py", "--repo", str(repo), "--no-live"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as run:
        _watch_status_during(run, repo, release)
    assert _status(repo)["runs"] == []


def _watch_status_during(run: subprocess.Popen[str], repo: Path, release: Path) -> None:
    try:
        assert run.stdout is not None
        assert "started" in run.stdout.readline()  # the agent is running, blocked on the FIFO
        deadline = time.monotonic() + WAIT  # the run's record is written within 50 ms of a change
        while not (status := _status(repo))["running_agents"] and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert status["running_agents"] == ["shell"]
        assert status["running_files"] == ["held.py"]
        with open(release, "w") as fifo:  # let the agent finish
            fifo.write("done\n")
        assert run.wait(WAIT) == 0
    finally:
        if run.poll() is None:
            run.kill()


def _status(repo: Path) -> dict[str, object]:
    done = subprocess.run(
        [str(SCRIPT), "status", "--json", "--repo", str(repo)], capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_status_watch_on_a_terminal_shows_the_live_panels_until_ctrl_c(repo: Path) -> None:
    release = repo / "release.fifo"
    os.mkfifo(release)
    run = subprocess.Popen(
        [
            str(SCRIPT),
            "delegate-multiple",
            "shell: cat release.fifo @held.py",
            "shell: true @held.py",
            "--repo",
            str(repo),
            "--no-live",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wanted = ("Running agents (1)", "Active files (1)", "Queue (1)", "Resources", "cat release.fifo", "shell busy (t1)")
    screen = b""
    try:
        with on_terminal([str(SCRIPT), "status", "--watch", "--repo", str(repo)]) as terminal:
            watch, master = terminal.proc, terminal.master
            deadline = time.monotonic() + WAIT  # "Nothing runs" until the run's record is written, then the panels
            while not all(text.encode() in screen for text in wanted) and time.monotonic() < deadline:
                if select.select([master], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    screen += os.read(master, 65536)
            assert all(text.encode() in screen for text in wanted), screen.decode(errors="replace")
            watch.send_signal(signal.SIGINT)
            after = terminal.read_to_end()
            assert watch.wait(WAIT) == 130
    finally:
        with contextlib.suppress(OSError):  # let the agent finish, whatever happened
            os.close(os.open(release, os.O_WRONLY | os.O_NONBLOCK))
        with contextlib.suppress(subprocess.TimeoutExpired):
            run.wait(WAIT)
        if run.poll() is None:
            run.kill()
            run.wait()
    assert b"Traceback" not in after
    assert b"\x1b[?25h" in after  # the cursor Live hid is shown again
    assert run.returncode == 0
