"""Worktree isolation through the installed command, on a real git repository: an agent type
with two instances runs two tasks at once, each in a worktree of its own, both merged back
into the branch checked out; --json says so per task."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ..conftest import WAIT, git, git_repo

SCRIPT = Path(sys.executable).with_name("project-manager")


def run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )


def test_two_instances_run_at_once_in_worktrees_and_are_merged(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n", "notes.txt": "mine\n"})
    (repo / "notes.txt").write_text("my unsaved notes\n")
    meet_a, meet_b = tmp_path / "a.fifo", tmp_path / "b.fifo"
    os.mkfifo(meet_a)
    os.mkfifo(meet_b)
    batch = repo.parent / "batch.yaml"
    batch.write_text(
        "agents:\n"
        "  dev: {preset: shell, instances: 2, isolation: worktree}\n"
        "tasks:\n"
        f"  - {{id: one, agent: dev, files: [a.txt], timeout: 30s,"
        f" description: 'echo x > {meet_b}; read x < {meet_a}; echo one > a.txt'}}\n"
        f"  - {{id: two, agent: dev, files: [b.txt], timeout: 30s,"
        f" description: 'read x < {meet_b}; echo y > {meet_a}; echo two > b.txt'}}\n"
    )
    done = run(repo, "--file", str(batch), "--json")
    assert done.returncode == 0, done.stderr
    tasks = {t["id"]: t for t in json.loads(done.stdout)["tasks"]}
    assert {t["merge"] for t in tasks.values()} == {"merged"}
    assert tasks["one"]["changed_files"] == ["a.txt"]
    assert (tasks["one"]["insertions"], tasks["one"]["deletions"]) == (1, 1)
    assert tasks["two"]["unclaimed_writes"] == []
    assert re.fullmatch(r"pm/[0-9a-f-]+/one", tasks["one"]["branch"])
    assert (git(repo, "show", "HEAD:a.txt"), git(repo, "show", "HEAD:b.txt")) == ("one\n", "two\n")
    assert (repo / "notes.txt").read_text() == "my unsaved notes\n"
    assert git(repo, "status", "--porcelain") == " M notes.txt\n"


def test_several_instances_in_the_shared_checkout_are_refused_before_anything_runs(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    (repo / "project-manager.yaml").write_text("agents:\n  dev: {preset: shell, instances: 2}\n")
    done = run(repo, "dev: echo ran > a.txt @a.txt")
    assert done.returncode == 2
    assert "agent 'dev' runs 2 instances at once" in done.stderr
    assert (repo / "a.txt").read_text() == "a\n"
    isolated = run(repo, "dev: echo ran > a.txt @a.txt", "--isolation", "worktree")
    assert isolated.returncode == 0, isolated.stderr
    assert "merged, 1 file +1 -1" in isolated.stdout  # the summary's merge column: the diff stat
    assert git(repo, "show", "HEAD:a.txt") == "ran\n"


def test_a_write_outside_the_claims_is_rejected_and_its_branch_kept(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    done = run(repo, "shell: echo x > a.txt; echo y > stray.txt @a.txt", "--isolation", "worktree", "--json")
    assert done.returncode == 1
    (task,) = json.loads(done.stdout)["tasks"]
    assert (task["status"], task["merge"], task["unclaimed_writes"]) == ("failed", "rejected", ["stray.txt"])
    assert git(repo, "show", f"{task['branch']}:stray.txt") == "y\n"  # kept for inspection
    assert git(repo, "show", "HEAD:a.txt") == "a\n"


def test_a_detached_head_refuses_worktree_tasks(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    git(repo, "checkout", "-q", "--detach")
    done = run(repo, "shell: touch ran.txt @a.txt", "--isolation", "worktree")
    assert done.returncode == 2
    assert "HEAD is on none" in done.stderr
    assert not (repo / "ran.txt").exists()


def test_the_dry_run_plans_every_instance(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n"})
    (repo / "project-manager.yaml").write_text("agents:\n  dev: {preset: shell, instances: 2, isolation: worktree}\n")
    done = run(repo, "dev: one @a.txt", "dev: two @b.txt", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["starts"] == ["t1", "t2"]  # before: t2 waited, "dev busy"
