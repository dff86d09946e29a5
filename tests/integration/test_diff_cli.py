"""``project-manager diff TASK``: what a worktree task changed, to review, whether its branch was
kept (not merged: rejected, in conflict, blocked, ``merge: none``) or merged and deleted (the
hidden refs ``refs/pm/<run>/<task>/base`` and ``tip`` keep it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ..conftest import WAIT, git, git_repo
from .test_worktree_cli import SCRIPT, run


def diff(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "diff", *args, "--repo", str(repo)], capture_output=True, text=True, timeout=WAIT
    )


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args, "--repo", str(repo)], capture_output=True, text=True, timeout=WAIT)


def batch(repo: Path, script: str, *, merge: str = "merge", extra: str = "") -> Path:
    """A batch of one worktree task, t1, that runs ``script`` and claims a.txt."""
    path = repo.parent / "batch.yaml"
    quoted = script.replace("'", "''")
    path.write_text(
        "tasks:\n"
        f"  - {{id: t1, agent: shell, files: [a.txt], isolation: worktree, merge: {merge}, timeout: 30s{extra},"
        f" description: '{quoted}'}}\n"
    )
    return path


def ran(repo: Path, *args: str) -> dict[str, object]:
    done = run(repo, *args, "--json")
    assert done.returncode == 0, done.stderr
    (task,) = json.loads(done.stdout)["tasks"]
    assert isinstance(task, dict)
    return task


def hidden(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", "refs/pm/").split()


def test_the_diff_of_a_kept_branch_against_where_it_started(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    done = run(repo, "shell: echo x > a.txt; echo y > stray.txt @a.txt", "--isolation", "worktree", "--json")
    assert done.returncode == 1  # rejected: stray.txt is outside its claims
    (task,) = json.loads(done.stdout)["tasks"]
    git(repo, "commit", "-q", "--allow-empty", "-m", "the user goes on")  # the diff is from where it started

    shown = diff(repo, "t1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"# {task['branch']} (its branch, not merged)\n")
    assert "+++ b/stray.txt" in shown.stdout
    assert "-a\n+x" in shown.stdout

    stat = diff(repo, "t1", "--stat")
    assert stat.returncode == 0, stat.stderr
    assert "2 files changed" in stat.stdout

    run_id = task["branch"].split("/")[1]
    assert diff(repo, "t1", "--run", run_id).stdout == shown.stdout
    assert hidden(repo) == []  # a kept branch is its own truth


@pytest.mark.parametrize("merge", ["merge", "squash", "rebase"])
def test_a_merged_task_s_diff_is_exactly_its_change_and_leaves_no_branch(tmp_path: Path, merge: str) -> None:
    """The user commits on the branch while the task runs: the merge holds both, the diff only
    the task's. Before: "no branch of task 't1' is left", exit 1 (and, with a squash or a
    rebase, the merged branch stayed in `git branch`)."""
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "user.txt": "u\n"})
    users = f"echo mine > {repo}/user.txt && git -C {repo} -c user.name=u -c user.email=u@x commit -qam mine"
    task = ran(repo, "--file", str(batch(repo, f"{users} && echo task > a.txt", merge=merge)))
    assert task["merge"] == "merged"
    assert git(repo, "show", "HEAD:user.txt") == "mine\n"
    assert git(repo, "branch", "--format=%(refname)").split() == [git(repo, "symbolic-ref", "HEAD").strip()]

    shown = diff(repo, "t1")
    assert shown.returncode == 0, shown.stderr
    header, _, body = shown.stdout.partition("\n")
    assert header == f"# {task['branch']} (merged; its branch was deleted)"
    assert "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+task" in body
    assert "user.txt" not in body

    stat = diff(repo, "t1", "--stat")
    assert stat.returncode == 0, stat.stderr
    assert stat.stdout.splitlines()[1:] == [" a.txt | 2 +-", " 1 file changed, 1 insertion(+), 1 deletion(-)"]

    status = json.loads(cli(repo, "status", "--json").stdout)
    assert status["leftover_worktrees"] == []
    cleaned = cli(repo, "clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "refs/pm" not in cleaned.stdout
    assert len(hidden(repo)) == 2  # a run within keep_runs keeps them


def test_a_second_attempt_s_diff(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    once = tmp_path / "failed-once"
    script = f"echo attempt > a.txt; [ -e {once} ] || {{ touch {once}; exit 1; }}; echo second > a.txt"
    task = ran(repo, "--file", str(batch(repo, script, extra=", retries: 1, retry_delay: 0.01s")))
    assert str(task["branch"]).endswith("/t1.2")
    shown = diff(repo, "t1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"# {task['branch']} (merged; its branch was deleted)\n")
    assert "+second" in shown.stdout


def test_run_picks_an_older_run_and_retention_drops_its_refs(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    old = ran(repo, "--file", str(batch(repo, "echo old > a.txt")))
    new = ran(repo, "--file", str(batch(repo, "echo new > a.txt")))
    old_run, new_run = (str(t["branch"]).split("/")[1] for t in (old, new))
    assert "+new" in diff(repo, "t1").stdout
    older = diff(repo, "t1", "--run", old_run)
    assert older.returncode == 0, older.stderr
    assert older.stdout.startswith(f"# pm/{old_run}/t1 (merged")
    assert "-a\n+old" in older.stdout

    cleaned = cli(repo, "clean", "--keep-runs", "1")
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed run {old_run}" in cleaned.stdout
    assert f"2 hidden ref(s) refs/pm/{old_run}/)" in cleaned.stdout
    assert hidden(repo) == [f"refs/pm/{new_run}/t1/base", f"refs/pm/{new_run}/t1/tip"]
    gone = diff(repo, "t1", "--run", old_run)
    assert gone.returncode == 1
    assert f"run {old_run}" in gone.stderr
    assert "keep_runs" in gone.stderr  # why: its records were pruned


def test_a_task_with_nothing_left_is_told_why_and_hostile_ids_are_refused(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    shown = diff(repo, "t1")
    assert shown.returncode == 1
    assert "nothing of task 't1' is left to show" in shown.stderr
    for bad in ("a b", "../x", "x\ny", "x/y"):
        refused = diff(repo, bad)
        assert refused.returncode == 2, bad
        assert "task id" in refused.stderr
    for bad in ("../r", "r/x", "r x"):
        refused = diff(repo, "t1", "--run", bad)
        assert refused.returncode == 2, bad
        assert "run id" in refused.stderr


def test_a_task_in_the_shared_checkout_is_said_to_have_no_branch(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    task = ran(repo, "shell: echo x > a.txt @a.txt")
    assert task["branch"] is None
    shown = diff(repo, "t1")
    assert shown.returncode == 1
    assert "task 't1' ran in the shared checkout in run " in shown.stderr
    assert "no branch" in shown.stderr
