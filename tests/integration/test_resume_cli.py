"""``delegate-multiple --resume [RUN]`` through the installed command, on real git repositories:
a run killed with SIGKILL resumed to completion with only what did not succeed run again, a
resume of a failed run and of a resume, the run's recorded batch and flags, and the refusals.

Each fake agent (a shell command) appends its task id to ``ran.txt``, outside the repository,
so the test counts what ran; a gated task waits on a FIFO until the test lets it go. Every wait
is bounded; nothing sleeps.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from queue_core.registry import state_dir

from ..conftest import WAIT, eventually, git_repo
from .test_worktree_cli import SCRIPT

#: Three agents, so that a, f and g run at once; b shares g's agent, so it waits for g.
AGENTS = "agents:\n  one: {preset: shell}\n  two: {preset: shell}\n  gated: {preset: shell}\n"


def cli(repo: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(SCRIPT), *args, "--repo", str(repo)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, cwd=cwd)


def resume(repo: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = cli(repo, "delegate-multiple", "--resume", *args, "--json")
    assert done.stdout, done.stderr
    return done, json.loads(done.stdout)


def journal(repo: Path, run: str) -> list[dict[str, Any]]:
    data = (state_dir(repo) / "logs" / run / "events.jsonl").read_text()
    return [json.loads(line) for line in data.splitlines()]


def runs(repo: Path) -> list[dict[str, Any]]:
    listed = cli(repo, "history", "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert isinstance(found, list)
    return found


def statuses(report: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {task["id"]: (task["status"], task["resumed_from"]) for task in report["tasks"]}


class Gated:
    """A repository, ``ran.txt`` beside it, and a FIFO a task waits on until the test writes to it
    (or until the file ``open`` exists, for a run that should not wait)."""

    def __init__(self, tmp_path: Path):
        self.repo = git_repo(tmp_path / "repo", {"README": "x\n"})
        self.ran = tmp_path / "ran.txt"
        self.gate = tmp_path / "gate.fifo"
        self.open = tmp_path / "open"
        os.mkfifo(self.gate)
        self.batch = tmp_path / "batch.yaml"

    def write(self, tasks: str) -> Path:
        self.batch.write_text(AGENTS + "tasks:\n" + tasks)
        return self.batch

    def waits(self, task: str) -> str:
        """A shell command that notes ``task`` and waits for the gate, unless it is open."""
        return f"echo {task} >> {self.ran}; test -e {self.open} || read x < {self.gate}"

    def count(self) -> collections.Counter[str]:
        return collections.Counter(self.ran.read_text().split()) if self.ran.exists() else collections.Counter()

    def let_go(self) -> None:
        """Let a task waiting on the gate go on, if one does (never blocks)."""
        with contextlib.suppress(OSError):
            fd = os.open(self.gate, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"go\n")
            os.close(fd)


@pytest.fixture
def gated(tmp_path: Path) -> Gated:
    return Gated(tmp_path)


@contextlib.contextmanager
def running(gated: Gated, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``delegate-multiple ARGS`` in a session of its own; killed, and the gate let go, at the end."""
    argv = [str(SCRIPT), "delegate-multiple", *args, "--repo", str(gated.repo), "--no-live"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            gated.let_go()
            proc.kill()
        proc.wait(WAIT)


def lines_of(gated: Gated) -> list[dict[str, Any]]:
    """The journal of the only run so far, as far as it is written (whole lines)."""
    found = list((state_dir(gated.repo) / "logs").glob("*/events.jsonl"))
    if not found:
        return []
    data = found[0].read_bytes()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


def seen(lines: list[dict[str, Any]], event: str, task: str) -> bool:
    return any(line["event"] == event and line.get("task") == task for line in lines)


def test_a_run_killed_with_sigkill_is_resumed_running_only_what_did_not_succeed(gated: Gated) -> None:
    ran = gated.ran
    batch = gated.write(
        f"  - {{id: a, agent: one, description: 'echo a >> {ran}', files: [a.txt]}}\n"
        f"  - {{id: f, agent: two, description: 'echo f >> {ran}; exit 3', files: [f.txt]}}\n"
        f"  - {{id: g, agent: gated, priority: 1, description: '{gated.waits('g')}', files: [g.txt]}}\n"
        f"  - {{id: b, agent: gated, depends_on: [a], description: 'echo b >> {ran}', files: [b.txt]}}\n"
    )
    with running(gated, "--file", str(batch)) as proc:

        def ready() -> bool:
            lines = lines_of(gated)
            return seen(lines, "succeeded", "a") and seen(lines, "failed", "f") and seen(lines, "started", "g")

        eventually("a to succeed, f to fail and g to wait on its gate", ready)
        os.killpg(proc.pid, signal.SIGKILL)  # the coordinator's group; the supervisor stops g's agent
        assert proc.wait(WAIT) == -signal.SIGKILL
    (first,) = lines_of(gated)[:1]
    killed = first["run"]
    assert not seen(lines_of(gated), "started", "b")  # it waited for g's agent
    eventually("the run to be seen dead", lambda: [run["state"] for run in runs(gated.repo)] == ["killed"])
    assert gated.count() == {"a": 1, "f": 1, "g": 1}

    gated.open.touch()  # g runs through this time
    done, report = resume(gated.repo)
    assert done.returncode == 1, done.stderr  # f fails again
    assert statuses(report) == {
        "a": ("succeeded", killed),
        "f": ("failed", None),
        "g": ("succeeded", None),
        "b": ("succeeded", None),
    }
    assert gated.count() == {"a": 1, "f": 2, "g": 2, "b": 1}  # a, which succeeded, did not run again
    assert report["resumes"] == killed
    (a,) = (task for task in report["tasks"] if task["id"] == "a")
    assert (a["attempts"], a["total_s"], a["cost_usd"], a["estimate_s"]) == (0, None, None, None)
    assert a["log"] == str(state_dir(gated.repo) / "logs" / killed / "a.log")  # its log, where it ran
    started = journal(gated.repo, report["run_id"])[0]
    assert (started["resumes"], started["batch"]["carried"]) == (killed, {"a": killed})
    by_id = {task["id"]: task for task in started["batch"]["tasks"]}
    assert list(by_id) == ["f", "g", "b"]  # what this run ran: a is no task of it
    assert by_id["b"]["depends_on"] == []  # a succeeded: b does not wait for it
    assert f"resuming run {killed}: not running again the 1 of 4 tasks that succeeded in it: a" in done.stderr


def test_a_resume_of_a_resume_carries_what_succeeded_two_runs_back(gated: Gated) -> None:
    ran = gated.ran
    odd = "-x.y_z"  # a task id that looks like an option, with dots
    batch = gated.write(
        f"  - {{id: '{odd}', agent: one, description: 'echo odd >> {ran}', files: [a.txt]}}\n"
        f"  - {{id: f, agent: two, description: 'echo f >> {ran}; test -e {gated.open}', files: [f.txt]}}\n"
        f"  - {{id: late, agent: gated, depends_on: ['{odd}', f], description: 'echo late >> {ran}', files: [c.txt]}}\n"
    )
    first = cli(gated.repo, "delegate-multiple", "--file", str(batch), "--json")
    assert first.returncode == 1
    run1 = json.loads(first.stdout)["run_id"]
    assert {t["id"]: t["status"] for t in json.loads(first.stdout)["tasks"]} == {
        odd: "succeeded",
        "f": "failed",
        "late": "skipped",
    }

    done, report = resume(gated.repo)  # f fails again: late is skipped again
    run2 = report["run_id"]
    assert done.returncode == 1
    assert statuses(report) == {odd: ("succeeded", run1), "f": ("failed", None), "late": ("skipped", None)}

    gated.open.touch()
    done, report = resume(gated.repo, run2[-6:])  # a unique end of its id names it
    assert done.returncode == 0, done.stderr
    assert statuses(report) == {odd: ("succeeded", run1), "f": ("succeeded", None), "late": ("succeeded", None)}
    assert "in it or in a run it resumed" in done.stderr
    assert gated.count() == {"odd": 1, "f": 3, "late": 1}

    done, report = resume(gated.repo)  # nothing is left to do: a run with nothing to run, all carried
    assert done.returncode == 0, done.stderr
    assert {task["resumed_from"] for task in report["tasks"]} == {run1, report["resumes"]}
    assert gated.count() == {"odd": 1, "f": 3, "late": 1}


def test_a_resume_runs_the_batch_as_its_run_read_it_with_its_flags(gated: Gated) -> None:
    repo, ran, opened = gated.repo, gated.ran, gated.open
    sub = repo / "sub"
    sub.mkdir()
    config = repo / "project-manager.yaml"
    config.write_text(f"agents:\n  mine: {{command: [sh, -c, 'echo mine >> {ran}; test -e {opened}']}}\n")
    tasks = (f"shell: echo t1 >> {ran} @x.txt", f"shell: echo t2 >> {ran}; test -e {opened} @y.txt", "mine: m @z.txt")
    first = cli(repo, "delegate-multiple", *tasks, "--isolation", "worktree", cwd=sub)
    assert first.returncode == 1, first.stderr
    config.write_text("agents:\n  mine: {command: [sh, -c, 'exit 9']}\n")  # changed since: not what the run read
    opened.touch()
    done, report = resume(repo, "--max-parallel", "1")
    assert done.returncode == 0, done.stderr
    assert "project-manager.yaml changed since run" in done.stderr
    assert gated.count() == {"t1": 1, "t2": 2, "mine": 2}
    t2 = next(task for task in report["tasks"] if task["id"] == "t2")
    assert t2["branch"] == f"pm/{report['run_id']}/t2"  # --isolation worktree, as the run had it
    started = journal(repo, report["run_id"])[0]
    assert [t["files"] for t in started["batch"]["tasks"]] == [["sub/y.txt"], ["sub/z.txt"]]  # as typed in sub/
    options = started["batch"]["source"]["options"]
    assert (options["max_parallel"], options["isolation"]) == (1, "worktree")  # the flag given now wins


def test_a_run_that_still_runs_is_not_resumed_nor_one_being_resumed(gated: Gated) -> None:
    ran = gated.ran
    batch = gated.write(f"  - {{id: g, agent: gated, description: '{gated.waits('g')}; test -e {ran}.ok'}}\n")
    with running(gated, "--file", str(batch)) as proc:
        eventually("g to start", lambda: seen(lines_of(gated), "started", "g"))
        (run,) = [line["run"] for line in lines_of(gated)[:1]]
        latest = cli(gated.repo, "delegate-multiple", "--resume")  # the latest run that is over: none
        assert (latest.returncode, latest.stdout) == (2, "")
        assert "still runs" in latest.stderr
        named = cli(gated.repo, "delegate-multiple", "--resume", run)
        assert (named.returncode, named.stdout) == (2, "")
        assert f"run {run} still runs: it is not over" in named.stderr
        gated.let_go()
        assert proc.wait(WAIT) == 1  # g failed: no ran.txt.ok

    Path(f"{ran}.ok").touch()
    with running(gated, "--resume") as resuming:
        eventually("g to start again", lambda: gated.count()["g"] == 2)
        refused = cli(gated.repo, "delegate-multiple", "--resume", run)
        assert refused.returncode == 2
        assert f"is resuming run {run} now" in refused.stderr
        gated.let_go()
        assert resuming.wait(WAIT) == 0
    assert gated.count() == {"g": 2}


def test_a_run_whose_journal_keeps_no_batch_is_refused_and_nothing_runs(gated: Gated) -> None:
    """The refusals one by one: tests/unit/test_resume.py."""
    repo = gated.repo
    assert cli(repo, "delegate-multiple", f"shell: echo t >> {gated.ran}; false @a.txt").returncode == 1
    (run,) = (r["run"] for r in runs(repo))
    path = state_dir(repo) / "logs" / run / "events.jsonl"
    first, *rest = path.read_text().splitlines()
    start = json.loads(first)
    del start["batch"]["source"]  # as a project-manager before --resume wrote it
    path.write_text("\n".join([json.dumps(start), *rest]) + "\n")
    done = cli(repo, "delegate-multiple", "--resume", run)
    assert (done.returncode, done.stdout) == (2, "")
    assert f"run {run}'s journal keeps no batch to resume" in done.stderr
    assert gated.count() == {"t": 1}
    assert len(runs(repo)) == 1
