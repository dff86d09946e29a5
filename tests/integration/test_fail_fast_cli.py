"""``--fail-fast`` and ``--fail-fast=cancel`` through the installed command: t1 fails while t2
runs and t3 waits; t2 finishes (or is stopped), t3 never starts, exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..conftest import WAIT, git_repo, in_thread
from .test_events_cli import Tail, check_journal, has

SCRIPT = Path(sys.executable).with_name("project-manager")
#: t1 fails once t2 runs (t2 opens t1's FIFO to write, which waits for t1 to read it); t3 waits
#: for t2's claim, and leaves a file if it ever starts.
TASKS = (
    "agents:\n  a: {preset: shell}\n  b: {preset: shell}\n  c: {preset: shell}\n"
    "tasks:\n"
    "  - {id: t1, agent: a, description: 'read x < t1.fifo; exit 3', files: [one]}\n"
    "  - {id: t2, agent: b, description: 'echo go > t1.fifo; read x < t2.fifo; echo done > two', files: [two]}\n"
    "  - {id: t3, agent: c, description: 'touch t3-started', files: [two]}\n"
)


def _start(tmp_path: Path, flag: str) -> tuple[subprocess.Popen[str], Path, Tail]:
    repo = git_repo(tmp_path / "repo", {"README": "x\n"})
    for fifo in ("t1.fifo", "t2.fifo"):
        os.mkfifo(repo / fifo)
    (tmp_path / "batch.yaml").write_text(TASKS)
    events = tmp_path / "events.jsonl"
    argv = [str(SCRIPT), "delegate-multiple", "--file", str(tmp_path / "batch.yaml"), flag, "--json"]
    argv += ["--events", str(events), "--repo", str(repo)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, repo, Tail(events)


def _tasks(out: str) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in json.loads(out)["tasks"]}


def test_fail_fast_lets_the_running_task_finish_and_starts_nothing_more(tmp_path: Path) -> None:
    proc, repo, tail = _start(tmp_path, "--fail-fast")
    with proc:
        try:
            tail.until("t1 to fail", has("failed", "t1"))
            assert not has("started", "t3")(tail.lines)
            in_thread(lambda: (repo / "t2.fifo").write_text("go\n"))  # t2 may finish now
            out, err = proc.communicate(timeout=WAIT)
        finally:
            proc.kill()
    assert proc.returncode == 1, err
    tasks = _tasks(out)
    assert [tasks[t]["status"] for t in ("t1", "t2", "t3")] == ["failed", "succeeded", "cancelled"]
    assert tasks["t3"]["error"] == "not started: fail-fast after t1 failed"
    assert (tasks["t3"]["attempts"], tasks["t3"]["log"]) == (0, None)
    assert (repo / "two").read_text() == "done\n"
    assert not (repo / "t3-started").exists()
    lines = tail.poll()
    check_journal(lines, {"t1", "t2", "t3"})
    (t3,) = [line for line in lines if line.get("task") == "t3" and line["event"] != "waiting"]
    assert (t3["event"], t3["error"]) == ("cancelled", "not started: fail-fast after t1 failed")
    assert lines[-1]["exit_code"] == 1


def test_fail_fast_cancel_stops_the_running_task(tmp_path: Path) -> None:
    proc, repo, tail = _start(tmp_path, "--fail-fast=cancel")
    with proc:
        try:
            out, err = proc.communicate(timeout=WAIT)  # nobody releases t2: it is stopped
        finally:
            proc.kill()
    assert proc.returncode == 1, err
    tasks = _tasks(out)
    assert [tasks[t]["status"] for t in ("t1", "t2", "t3")] == ["failed", "cancelled", "cancelled"]
    assert tasks["t2"]["error"] == "stopped: fail-fast after t1 failed"
    assert tasks["t3"]["error"] == "not started: fail-fast after t1 failed"
    assert not (repo / "two").exists()
    assert not (repo / "t3-started").exists()
    check_journal(tail.poll(), {"t1", "t2", "t3"})


def test_a_run_without_a_failure_is_as_without_the_flag(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"README": "x\n"})
    argv = [str(SCRIPT), "delegate-multiple", "shell: true @a", "shell: true @b", "--fail-fast=cancel"]
    argv += ["--repo", str(repo)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2/2 succeeded" in done.stdout
