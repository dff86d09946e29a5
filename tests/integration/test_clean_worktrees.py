"""``project-manager clean`` and ``status`` with worktree tasks left behind by dead runs (a run
killed with SIGKILL leaves its worktrees and branches): status names them; clean removes those
that hold no work, keeps and names those with commits on no other branch or uncommitted
changes unless --force, and never touches a live run's; the pool's idle worktrees stay unless
--pool."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from queue_core import AgentTask, TaskQueue
from queue_core.status import live_run_records
from queue_core.worktree_pool import pool_dir, take
from queue_core.worktrees import base_commit, create

from ..conftest import WAIT, eventually, git, git_repo

SCRIPT = Path(sys.executable).with_name("project-manager")
DEAD = "20261128-100000-99999-deadbe"


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args, "--repo", str(repo)], capture_output=True, text=True, timeout=WAIT)


def branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/pm/").split()


def test_clean_removes_a_dead_runs_empty_worktree_and_keeps_one_with_work_unless_forced(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    base = base_commit(repo)
    empty = create(repo, DEAD, "empty", base)
    worked = create(repo, DEAD, "worked", base)
    (worked.path / "a.txt").write_text("the agent's work\n")
    git(worked.path, "commit", "-qam", "work")

    shown = cli(repo, "status")
    assert shown.returncode == 0, shown.stderr
    assert f"pm/{DEAD}/worked" in shown.stdout
    assert "project-manager clean" in shown.stdout

    (listed,) = [
        item
        for item in json.loads(cli(repo, "status", "--json").stdout)["leftover_worktrees"]
        if item["task"] == "worked"
    ]
    assert (listed["branch"], len(listed["unmerged_commits"])) == (f"pm/{DEAD}/worked", 1)

    looked = cli(repo, "clean", "--dry-run")
    assert looked.returncode == 0, looked.stderr
    assert f"would remove the worktree and branch pm/{DEAD}/empty" in looked.stdout
    assert empty.path.exists()

    done = cli(repo, "clean")
    assert done.returncode == 0, done.stderr
    assert f"removed the worktree and branch pm/{DEAD}/empty" in done.stdout
    assert f"kept pm/{DEAD}/worked" in done.stdout
    assert "1 commit(s) on no other branch" in done.stdout
    assert branches(repo) == [f"pm/{DEAD}/worked"]
    assert not empty.path.exists()
    assert worked.path.exists()

    forced = cli(repo, "clean", "--force")
    assert forced.returncode == 0, forced.stderr
    assert branches(repo) == []
    assert not worked.path.exists()


def test_clean_never_touches_a_live_runs_worktree(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    release = threading.Event()
    with TaskQueue(1, repo=repo) as queue:
        queue.submit_task(AgentTask("a", "wait", ["a.txt"], lambda: release.wait(WAIT), id="w"))
        run = queue.registry.run if queue.registry else ""
        eventually("the run's record", lambda: any(r.run == run for r in live_run_records(repo)))
        tree = create(repo, run, "w", base_commit(repo))
        done = cli(repo, "clean", "--force")
        release.set()
    assert done.returncode == 0, done.stderr
    assert f"kept pm/{run}/w: its run is alive" in done.stdout
    assert tree.path.exists()


def delegate(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo)], capture_output=True, text=True, timeout=WAIT
    )


def test_the_pool_worktrees_in_status_and_clean(tmp_path: Path) -> None:
    """Two runs with worktree_pool: 1 reuse one worktree; status counts it idle; clean leaves it and
    keeps a killed run's pool worktree with work; clean --pool removes the idle one only."""
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n", "project-manager.yaml": "worktree_pool: 1\n"})
    killed = take(repo, DEAD, "worked", base_commit(repo))  # a run killed mid-task: its pool worktree, with work
    (killed.worktree.path / "a.txt").write_text("the agent's work\n")
    killed.release()
    first = delegate(repo, f"shell: pwd > {tmp_path}/first; echo one > a.txt @a.txt", "--isolation", "worktree")
    assert first.returncode == 0, first.stderr
    second = delegate(repo, f"shell: pwd > {tmp_path}/second; echo two > b.txt @b.txt", "--isolation", "worktree")
    assert second.returncode == 0, second.stderr
    used = Path((tmp_path / "first").read_text().strip())
    assert Path((tmp_path / "second").read_text().strip()) == used  # reused
    assert used == pool_dir(repo) / "1"  # 0 is the killed run's
    assert (git(repo, "show", "HEAD:a.txt"), git(repo, "show", "HEAD:b.txt")) == ("one\n", "two\n")
    assert branches(repo) == [f"pm/{DEAD}/worked"]

    shown = cli(repo, "status")
    assert shown.returncode == 0, shown.stderr
    assert f"1 idle pool worktree(s) in {pool_dir(repo)}" in shown.stdout
    assert "project-manager clean --pool removes them" in shown.stdout
    assert f"pm/{DEAD}/worked (run {DEAD}) at {killed.worktree.path}" in shown.stdout
    as_json = json.loads(cli(repo, "status", "--json").stdout)
    assert as_json["idle_pool_worktrees"] == [str(used)]
    assert [item["task"] for item in as_json["leftover_worktrees"]] == ["worked"]

    done = cli(repo, "clean")
    assert done.returncode == 0, done.stderr
    assert f"kept pm/{DEAD}/worked: 1 uncommitted path(s)" in done.stdout
    assert "pool worktree" not in done.stdout
    assert used.exists()

    looked = cli(repo, "clean", "--pool", "--dry-run")
    assert looked.returncode == 0, looked.stderr
    assert f"would remove the idle pool worktree {used}" in looked.stdout
    assert used.exists()

    pooled = cli(repo, "clean", "--pool")
    assert pooled.returncode == 0, pooled.stderr
    assert f"removed the idle pool worktree {used}" in pooled.stdout
    assert not used.exists()
    assert (killed.worktree.path / "a.txt").read_text() == "the agent's work\n"
    assert "idle pool" not in cli(repo, "status").stdout
