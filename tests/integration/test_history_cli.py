"""``history``, ``show`` and ``logs`` through the installed command, after real runs on real git
repositories: a finished run, a worktree task's merge, a run killed with SIGKILL, and ``logs -f``
of a running task from a second process, its agent held on a FIFO so the test says when it
writes and ends. Every wait is bounded; nothing sleeps."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from queue_core.registry import state_dir

from ..conftest import WAIT, eventually, git, git_repo
from .test_worktree_cli import SCRIPT


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args, "--repo", str(repo)], capture_output=True, text=True, timeout=WAIT)


def delegate(repo: Path, *tasks: str, extra: tuple[str, ...] = ()) -> dict[str, object]:
    done = cli(repo, "delegate-multiple", *tasks, *extra, "--json")
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    return report


def test_a_finished_run_read_back_by_history_show_and_logs(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    report = delegate(repo, "shell: echo hello; echo world @a.txt", "shell: echo oops >&2; exit 3 @b.txt")
    run = report["run_id"]
    assert isinstance(run, str)

    listed = cli(repo, "history", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert (entry["run"], entry["state"], entry["counts"]) == (run, "finished", {"succeeded": 1, "failed": 1})
    assert f"{run}  " in cli(repo, "history").stdout

    shown = cli(repo, "show")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"run {run} (finished): 1 succeeded, 1 failed\n")
    t2 = next(line for line in shown.stdout.splitlines() if line.startswith("t2 "))
    assert "failed" in t2
    assert "exited with code 3" in t2
    assert json.loads(cli(repo, "show", run[-6:], "--json").stdout)["run"] == run

    log = cli(repo, "logs", "t1")
    assert (log.returncode, log.stderr) == (0, "")
    assert log.stdout.endswith("hello\nworld\n")
    assert cli(repo, "logs", "t1", "--tail", "1").stdout == "world\n"
    listing = cli(repo, "logs", "--run", run).stdout.splitlines()
    assert [line.split()[0] for line in listing[2:]] == ["task", "t1", "t2"]


def test_show_gives_a_worktree_task_s_merge_kept_in_the_history_record(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    report = delegate(repo, "shell: printf 'x\\ny\\n' > a.txt @a.txt", extra=("--isolation", "worktree"))
    run = report["run_id"]
    record = json.loads((state_dir(repo) / "history" / f"{run}.json").read_text())
    assert record["tasks"][0]["merge"]["result"] == "merged"
    t1 = next(line for line in cli(repo, "show").stdout.splitlines() if line.startswith("t1 "))
    assert "merged, 1 file +2 -1" in t1
    (task,) = json.loads(cli(repo, "show", "--json").stdout)["tasks"]
    assert task["merge"] == {
        "branch": f"pm/{run}/t1", "result": "merged", "files": 1, "insertions": 2, "deletions": 1,
        "reason": task["merge"]["reason"],
    }  # fmt: skip
    assert git(repo, "show", "HEAD:a.txt") == "x\ny\n"


class Held:
    """A run of one task, t1, that prints ``first``, then waits on a FIFO for a line, prints
    ``second`` and that line, and ends: the test holds it between the two."""

    def __init__(self, tmp_path: Path):
        self.repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
        self.gate = tmp_path / "gate.fifo"
        os.mkfifo(self.gate)
        task = f"shell: echo first; read line < {self.gate}; echo second; echo $line @a.txt"
        argv = [str(SCRIPT), "delegate-multiple", task, "--repo", str(self.repo), "--no-live"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        eventually("t1 to write its first line", lambda: self.log is not None and b"first" in self.log.read_bytes())

    @property
    def log(self) -> Path | None:
        found = list((state_dir(self.repo) / "logs").glob("*/t1.log"))
        return found[0] if found else None

    def release(self, line: str) -> None:
        with self.gate.open("w") as gate:
            gate.write(line + "\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=WAIT)


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Held]:
    run = Held(tmp_path)
    try:
        yield run
    finally:
        run.close()


def read_until(proc: subprocess.Popen[bytes], wanted: bytes) -> bytes:
    """What ``proc`` writes on stdout until ``wanted`` is in it; fails after WAIT."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], WAIT)
        assert ready, f"{wanted!r} never came; got {seen!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"stdout ended before {wanted!r}; got {seen!r}"
        seen += chunk
    return seen


def follow(repo: Path) -> subprocess.Popen[bytes]:
    argv = [str(SCRIPT), "logs", "t1", "-f", "--repo", str(repo)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_logs_f_from_another_process_prints_a_running_task_s_output_as_it_comes_until_it_ends(held: Held) -> None:
    follower = follow(held.repo)
    try:
        seen = read_until(follower, b"first\n")  # printed while the task still runs
        assert follower.poll() is None
        held.release("bye")
        rest, err = follower.communicate(timeout=WAIT)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert (follower.returncode, err) == (0, b"")
    assert held.log is not None
    assert seen + rest == held.log.read_bytes()  # every byte once, in order
    assert (seen + rest).endswith(b"first\nsecond\nbye\n")
    assert held.proc.wait(WAIT) == 0


def test_ctrl_c_ends_logs_f_with_130_quietly(held: Held) -> None:
    follower = follow(held.repo)
    try:
        read_until(follower, b"first\n")
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=WAIT)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert (follower.returncode, err) == (130, b"")
    (run,) = json.loads(cli(held.repo, "history", "--json").stdout)  # the run goes on
    assert (run["state"], run["counts"]) == ("running", {"running": 1})
    held.release("done")
    assert held.proc.wait(WAIT) == 0


def test_a_run_killed_with_sigkill_shows_as_killed_and_its_log_stays(held: Held) -> None:
    held.proc.send_signal(signal.SIGKILL)  # its supervisor stops the agent
    held.proc.wait(WAIT)
    repo = held.repo

    def killed() -> bool:
        runs = json.loads(cli(repo, "history", "--json").stdout)
        return [run["state"] for run in runs] == ["killed"]

    eventually("the run to be seen dead", killed)
    listed = cli(repo, "history")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert "killed" in listed.stdout
    shown = cli(repo, "show")
    assert (shown.returncode, shown.stderr) == (0, "")
    assert shown.stdout.startswith("run ")
    assert "(killed)" in shown.stdout.splitlines()[0]
    assert cli(repo, "logs", "t1").stdout.endswith("first\n")
