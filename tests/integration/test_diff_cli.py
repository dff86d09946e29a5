"""``project-manager diff TASK``: the changes of a worktree task's branch that was kept (not
merged: rejected, in conflict, blocked, or ``merge: none``), to review before merging it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ..conftest import WAIT, git, git_repo
from .test_worktree_cli import SCRIPT, run


def diff(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "diff", *args, "--repo", str(repo)], capture_output=True, text=True, timeout=WAIT
    )


def test_the_diff_of_a_kept_branch_against_where_it_started(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    done = run(repo, "shell: echo x > a.txt; echo y > stray.txt @a.txt", "--isolation", "worktree", "--json")
    assert done.returncode == 1  # rejected: stray.txt is outside its claims
    (task,) = json.loads(done.stdout)["tasks"]
    git(repo, "commit", "-q", "--allow-empty", "-m", "the user goes on")  # the diff is from where it started

    shown = diff(repo, "t1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"# {task['branch']}\n")
    assert "+++ b/stray.txt" in shown.stdout
    assert "-a\n+x" in shown.stdout

    stat = diff(repo, "t1", "--stat")
    assert stat.returncode == 0, stat.stderr
    assert "2 files changed" in stat.stdout

    run_id = task["branch"].split("/")[1]
    assert diff(repo, "t1", "--run", run_id).stdout == shown.stdout


def test_a_task_with_no_branch_left_is_told_why(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    assert run(repo, "shell: echo x > a.txt @a.txt", "--isolation", "worktree").returncode == 0  # merged
    shown = diff(repo, "t1")
    assert shown.returncode == 1
    assert "no branch of task 't1' is left" in shown.stderr
    bad = diff(repo, "a b")
    assert bad.returncode == 2
    assert "task id" in bad.stderr
