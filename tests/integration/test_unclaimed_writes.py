"""Changes outside the claims, reported after the fact: the CLI run for real against fake agents."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from ..conftest import WAIT, git_repo, interrupt_when_ready

SCRIPT = Path(sys.executable).with_name("project-manager")
FAKES = Path(__file__).parents[1] / "fake_agents"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit (``notes.md``), and ``*.log`` ignored."""
    return git_repo(tmp_path / "repo", {"notes.md": "notes\n", ".gitignore": "*.log\n"})


def run(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo), "--no-live"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT * 6, env=env, cwd=repo)


def writers(repo: Path, tasks: str) -> Path:
    """A batch whose agents ``wa`` and ``wb`` are fake_agents/writer.py, its description their script."""
    batch = repo.parent / "batch.yaml"
    command = json.dumps([sys.executable, str(FAKES / "writer.py"), "{description}"])
    batch.write_text(f"agents:\n  wa: {{command: {command}}}\n  wb: {{command: {command}}}\ntasks:\n{tasks}")
    return batch


def test_an_agent_that_writes_outside_its_claims_is_reported_in_the_json(repo: Path, fakes: dict[str, str]) -> None:
    (repo / "notes.md").write_text("the user's own edit, before the run\n")
    done = run(repo, "aider: fix it @src/a.py", "--json", env=fakes)
    assert done.returncode == 0, done.stdout + done.stderr
    [task] = json.loads(done.stdout)["tasks"]
    assert task["unclaimed_writes"] == ["edited/t1"]  # not notes.md: it changed before the task started
    assert task["unclaimed_writes_also_running"] == []
    assert " warning   t1 [aider] changed outside its claims: edited/t1" in done.stderr  # the event lines


def test_two_tasks_running_together_are_both_named(repo: Path) -> None:
    """a and b run at once (each waits for the other's mark); then a writes its file and one
    nobody claims. The tree is shared: both reports carry it, each naming the other task."""
    marks = repo.parent
    batch = writers(
        repo,
        f"  - {{id: a, agent: wa, files: [a.txt], description: '--mark {marks}/a --wait {marks}/b"
        ' --write a.txt --write "stray dir/x.txt"\'}\n'
        f"  - {{id: b, agent: wb, files: [b.txt], description: '--mark {marks}/b --wait {marks}/a --write b.txt'}}\n",
    )
    done = run(repo, "--file", str(batch), "--json", "-j", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    tasks = {t["id"]: t for t in json.loads(done.stdout)["tasks"]}
    assert (tasks["a"]["unclaimed_writes"], tasks["a"]["unclaimed_writes_also_running"]) == (["stray dir/x.txt"], ["b"])
    assert (tasks["b"]["unclaimed_writes"], tasks["b"]["unclaimed_writes_also_running"]) == (["stray dir/x.txt"], ["a"])
    assert "changed outside the claims: stray dir/x.txt (also running: b; any of them may have)" in done.stderr


def test_the_summary_marks_the_task_and_says_what_it_changed(repo: Path) -> None:
    (repo / "notes.md").write_text("dirty before the run\n")
    batch = writers(
        repo,
        "  - {id: tidy, agent: wa, files: [src/], description: '--write src/a.py --write notes.md --write x.log'}\n"
        "  - {id: clean, agent: wb, files: [docs/], depends_on: [tidy], description: '--write docs/b.md'}\n",
    )
    done = run(repo, "--file", str(batch))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    [row] = [line for line in lines if line.startswith("tidy ")]
    assert "succeeded !" in row
    assert "! tidy changed outside its claims: notes.md" in lines  # written again; x.log is ignored
    assert not any(line.startswith("! clean") for line in lines)
    assert sum(" warning   " in line for line in lines) == 1


def test_outside_a_git_repository_the_report_is_unknown_and_said_once(tmp_path: Path) -> None:
    done = run(tmp_path, "shell: touch a b @a", "shell: touch c @c", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [t["unclaimed_writes"] for t in json.loads(done.stdout)["tasks"]] == [None, None]
    assert done.stderr.count("changes outside the claims are not reported in this run:") == 1
    assert "not a git repository" in done.stderr


def test_ctrl_c_is_not_held_up_by_a_git_status_that_hangs(repo: Path, tmp_path: Path) -> None:
    """Before: the snapshot as a task starts runs in the worker, before its agent; a git status
    that hung (a network file system, a huge tree) kept a Ctrl-C from ending the run for its
    whole GIT_TIMEOUT_S (60 s), and the wrapper's child outlived it. Now it ends within the
    output's patience (2 s) of the signal, the git call's whole session killed."""
    bin_dir, fifo = tmp_path / "bin", tmp_path / "status.fifo"
    bin_dir.mkdir()
    os.mkfifo(fifo)
    real_git = shutil.which("git")
    (bin_dir / "git").write_text(
        f'#!/bin/sh\nfor a in "$@"; do [ "$a" = status ] && echo $$ > "{fifo}" && exec sleep 60; done\n'
        f'exec "{real_git}" "$@"\n'
    )
    (bin_dir / "git").chmod(0o755)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    argv = [str(SCRIPT), "delegate-multiple", "shell: true @a.txt", "--repo", str(repo), "--no-live"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=repo)
    out, hung = interrupt_when_ready(proc, reader, "git status")  # it waits WAIT, well under GIT_TIMEOUT_S
    assert proc.returncode == 130
    assert "cancelled" in out
    assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == psutil.STATUS_ZOMBIE
