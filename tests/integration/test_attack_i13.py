"""Hostile tests of worktree isolation (issue 13), through the installed command on real git
repositories: what a user does to their checkout while tasks run and merge, and what agents do
to their worktrees."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from queue_core.worktrees import base_commit, create

from ..conftest import WAIT, eventually, git, git_repo
from .test_clean_worktrees import cli
from .test_worktree_cli import SCRIPT, run


def test_worktreeinclude_files_are_copied_into_the_task_worktree(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", ".gitignore": ".env\n", ".worktreeinclude": ".env\n"})
    (repo / ".env").write_text("SECRET=1\n")
    done = run(repo, "shell: cat .env > a.txt @a.txt", "--isolation", "worktree", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    (task,) = json.loads(done.stdout)["tasks"]
    assert (task["merge"], task["changed_files"]) == ("merged", ["a.txt"])  # .env is not committed
    assert git(repo, "show", "HEAD:a.txt") == "SECRET=1\n"
    assert (repo / ".env").read_text() == "SECRET=1\n"


def test_a_nested_repository_made_by_the_agent_is_not_merged_into_the_users_branch(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "sub/keep.txt": "keep\n"})
    before = git(repo, "rev-parse", "HEAD")
    script = (
        "mkdir sub/inner && cd sub/inner && git init -q && echo precious > work.txt && git add work.txt"
        " && git -c user.name=a -c user.email=a@x commit -qm w"
    )
    done = run(repo, f"shell: {script} @sub/**", "--isolation", "worktree", "--json")
    assert done.returncode == 1
    (task,) = json.loads(done.stdout)["tasks"]
    assert "git repository inside" in task["error"]
    assert git(repo, "rev-parse", "HEAD") == before  # no gitlink to a commit this repository lacks
    assert git(repo, "status", "--porcelain") == ""


def test_a_worktree_task_named_as_another_s_second_attempt_is_refused_before_anything_runs(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n"})
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        "agents:\n"
        "  dev: {preset: shell, instances: 2, isolation: worktree}\n"
        "tasks:\n"
        "  - {id: a, agent: dev, files: [a.txt], retries: 1, description: 'echo x > a.txt'}\n"
        "  - {id: a.2, agent: dev, files: [b.txt], description: 'echo x > b.txt'}\n"
    )
    done = run(repo, "--file", str(batch))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "batch.yaml:5: tasks[1].id: task 'a.2' runs in a worktree" in done.stderr
    assert git(repo, "branch", "--list", "pm/*") == ""
    assert git(repo, "status", "--porcelain") == ""


def test_a_worktree_root_in_the_working_tree_must_be_ignored(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n", ".gitignore": "project-manager.yaml\n"})
    (repo / "project-manager.yaml").write_text(
        "agents:\n  dev: {preset: shell, instances: 2, isolation: worktree}\nworktree_root: trees\n"
    )
    tasks = ("dev: echo one > a.txt @a.txt", "dev: echo two > b.txt @b.txt")
    done = run(repo, *tasks)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "project-manager.yaml: worktree_root: " in done.stderr
    assert git(repo, "branch", "--list", "pm/*") == ""
    assert not (repo / "trees").exists()
    with (repo / ".gitignore").open("a") as ignore:
        ignore.write("/trees/\n")
    done = run(repo, *tasks)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "outside the claims" not in done.stdout  # another task's worktree is not a write of this one's
    assert (git(repo, "show", "HEAD:a.txt"), git(repo, "show", "HEAD:b.txt")) == ("one\n", "two\n")


WORKTREE = ("--isolation", "worktree", "--repo")


def test_an_edit_in_the_checkout_while_a_worktree_task_runs_is_not_blamed_on_it(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "notes.txt": "notes\n"})
    started, go = tmp_path / "started", tmp_path / "go.fifo"
    os.mkfifo(go)
    with subprocess.Popen(
        [
            str(SCRIPT),
            "delegate-multiple",
            f"shell: echo x > a.txt; touch {started}; read x < {go} @a.txt",
            *WORKTREE,
            str(repo),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            eventually("the task's agent", started.exists)
            (repo / "notes.txt").write_text("the user's edit, in the checkout\n")
            go.write_text("go\n")
            out, err = proc.communicate(timeout=WAIT)
        finally:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert "notes.txt" not in out  # its agent wrote in its worktree: its branch says what it changed
    assert git(repo, "show", "HEAD:a.txt") == "x\n"
    assert (repo / "notes.txt").read_text() == "the user's edit, in the checkout\n"


def test_status_and_clean_leave_the_users_own_pm_branches_alone(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    git(repo, "branch", "pm/feature/login")  # merged: plain clean took it for a dead run's
    git(repo, "checkout", "-q", "-b", "pm/alice/wip")
    (repo / "a.txt").write_text("alice's work\n")
    git(repo, "commit", "-qam", "alice's wip")  # on no other branch: clean --force deleted it
    git(repo, "checkout", "-q", "-")
    dead = create(repo, "20261128-100000-99999-deadbe", "t1", base_commit(repo))  # a killed run's
    status = json.loads(cli(repo, "status", "--json").stdout)
    assert [item["branch"] for item in status["leftover_worktrees"]] == [dead.branch]
    done = cli(repo, "clean", "--force")
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/pm/").split() == [
        "pm/alice/wip",
        "pm/feature/login",
    ]
    assert not dead.path.exists()
