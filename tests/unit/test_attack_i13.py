"""Hostile tests of worktree isolation (issue 13) on real git repositories: what agents do to
their worktrees, and what happens after a merge."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from queue_core import AgentExitError, AgentTask, QueueError, TaskQueue, WorktreeError, isolated
from queue_core.claims import Claim
from queue_core.isolated import WorktreeAgent, WorktreePlan
from queue_core.mergelock import merge_lock
from queue_core.worktrees import Worktree, create, finish

from ..conftest import WAIT, git, git_repo

RUN = "20261128-120000-1-abcdef"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"a.txt": "base a\n", "sub/keep.txt": "keep\n"})


def agent(repo: Path, task: str, script: str, files: tuple[str, ...], retries: int = 0) -> AgentTask:
    runner = WorktreeAgent.for_task(
        ["sh", "-c", script], task_id=task, agent="dev", description=f"do {task}", files=files, cwd=repo,
        log=repo.parent / f"{task}.log", run_id=RUN,
    )  # fmt: skip
    target = git(repo, "symbolic-ref", "--short", "HEAD").strip()
    claims = tuple(Claim.parse(f) for f in files)
    runner.plan = WorktreePlan(repo, RUN, task, f"do {task}", target, claims)
    return AgentTask("dev", f"do {task}", list(files), runner, id=task, timeout=WAIT, retries=retries)


def test_a_nested_repository_the_agent_made_is_never_merged(repo: Path) -> None:
    wt = create(repo, RUN, "nest", git(repo, "rev-parse", "HEAD").strip())
    inner = wt.path / "sub" / "inner"
    inner.mkdir()
    git(inner, "init", "-q")
    (inner / "work.txt").write_text("precious\n")
    git(inner, "add", "work.txt")
    git(inner, "-c", "user.name=a", "-c", "user.email=a@x", "commit", "-qm", "w")
    with pytest.raises(WorktreeError, match="git repository inside"):
        finish(wt, "nest")
    assert (inner / "work.txt").read_text() == "precious\n"  # kept where the agent left it


def test_a_worktree_that_cannot_be_removed_after_the_merge_does_not_fail_the_task(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(tree: Worktree, **_: object) -> None:
        raise WorktreeError(f"git worktree remove failed for {tree.path}")

    monkeypatch.setattr(isolated, "remove", refuse)
    task = agent(repo, "A", "echo more >> a.txt", ("a.txt",), retries=1)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(task).result(timeout=WAIT) == 0
    assert git(repo, "show", "HEAD:a.txt") == "base a\nmore\n"  # once: no retry ran the agent again
    report = task.execute_fn.worktree  # type: ignore[attr-defined]
    assert report.merge == "merged"
    assert "is kept" in (report.reason or "")


def test_the_task_s_timeout_ends_its_wait_for_another_s_merge(repo: Path) -> None:
    task = agent(repo, "A", "echo more >> a.txt", ("a.txt",))
    task.timeout = 0.5
    before = git(repo, "rev-parse", "HEAD")
    with merge_lock(repo), TaskQueue(1, repo=repo) as queue:  # a merge of another run, stuck (SIGSTOP)
        future = queue.submit_task(task)
        with pytest.raises(QueueError):
            future.result(timeout=WAIT)  # not MERGE_LOCK_TIMEOUT_S
    assert git(repo, "rev-parse", "HEAD") == before
    report = task.execute_fn.worktree  # type: ignore[attr-defined]
    assert git(repo, "rev-parse", f"{report.branch}:a.txt")  # the work is kept on its branch


def test_a_stop_before_the_attempt_starts_makes_no_worktree_and_runs_no_setup(repo: Path, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    task = agent(repo, "A", f"echo more >> a.txt; touch {marks}/agent", ("a.txt",))
    runner = task.execute_fn
    assert isinstance(runner, WorktreeAgent)
    assert runner.plan is not None
    runner.plan = replace(runner.plan, setup=(("touch", str(marks / "setup")),))
    runner.stop()  # a cancel or a timeout reaching the attempt before it began
    with pytest.raises(AgentExitError):
        runner()
    assert not list(marks.iterdir())  # neither the setup nor the agent ran
    assert len(git(repo, "worktree", "list", "--porcelain").strip().split("\n\n")) == 1  # only the checkout
    assert "pm/" not in git(repo, "branch", "--list", "pm/*")
    assert runner() == 0  # the stop was for that attempt: the next one runs whole
    assert sorted(p.name for p in marks.iterdir()) == ["agent", "setup"]
    assert git(repo, "show", "HEAD:a.txt") == "base a\nmore\n"
