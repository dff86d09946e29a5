"""Hostile tests of worktree isolation (issue 13) on real git repositories: what agents do to
their worktrees, a stop (a timeout) at each step of an attempt, git commands of the user's and
of other runs meeting a merge or a worktree being made, names at the limits, and what happens
after a merge."""

from __future__ import annotations

import functools
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cli.config import ConfigError, check_worktree_ids
from cli.config_files import load_batch
from queue_core import AgentExitError, AgentTask, MergeBackError, QueueError, TaskQueue, WorktreeError, isolated
from queue_core.changes import GitCalls
from queue_core.claims import Claim
from queue_core.errors import GitError
from queue_core.isolated import WorktreeAgent, WorktreePlan
from queue_core.mergeback import MergeMode, MergeStatus, merge_back
from queue_core.mergelock import merge_lock
from queue_core.worktree_leftovers import leftovers, sweep
from queue_core.worktrees import Worktree, create, finish

from ..conftest import WAIT, eventually, git, git_repo, wait_for

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


class GitThatWaits(GitCalls):
    """Git calls that, at the first command naming ``word``, wait (bounded) for ``go`` first."""

    def __init__(self, word: str) -> None:
        super().__init__()
        self.word, self.reached, self.go = word, threading.Event(), threading.Event()

    def run(self, repo: Path, *args: str, **kw: Any) -> tuple[int, bytes]:
        if self.word in args and not self.reached.is_set():
            self.reached.set()
            assert self.go.wait(WAIT), f"git {self.word} was never let go"
        return super().run(repo, *args, **kw)


def stop_opens(runner: WorktreeAgent, gate: threading.Event) -> None:
    """Make a stop of ``runner`` (a timeout, a cancel) also set ``gate``."""
    stop = runner.stop

    def stop_then_open() -> None:
        stop()
        gate.set()

    runner.stop = stop_then_open  # type: ignore[method-assign]


class Clock:
    """A queue's clock that the test moves past every deadline (a task's timeout) when it wants."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def time_out(self, queue: TaskQueue) -> None:
        engine = queue._engine
        with engine.lock:
            self.offset += 3600.0
            engine.timer.wake()


def _time_out_a_hung_setup_then_retry(repo: Path, tmp_path: Path) -> None:
    """A worktree task whose first setup hangs times out; its retry must run its agent, merged."""
    mark = tmp_path / "setup-hung-once"
    task = agent(repo, "A", "echo more >> a.txt", ("a.txt",), retries=1)
    runner = task.execute_fn
    assert isinstance(runner, WorktreeAgent)
    assert runner.plan is not None
    hang_once = f'test -e "{mark}" || {{ touch "{mark}"; exec sleep {WAIT * 3}; }}'
    runner.plan = replace(runner.plan, setup=(("sh", "-c", hang_once),))
    task.retry_delay = 0.0
    clock = Clock()
    with TaskQueue(1, repo=repo, clock=clock) as queue:
        future = queue.submit_task(task)
        eventually("the first setup to hang", mark.exists)
        clock.time_out(queue)
        assert future.result(timeout=WAIT) == 0  # the stop was the first attempt's, not the retry's
    assert git(repo, "show", "HEAD:a.txt") == "base a\nmore\n"


def test_a_retry_after_a_timeout_in_the_setup_runs_its_agent(repo: Path, tmp_path: Path) -> None:
    _time_out_a_hung_setup_then_retry(repo, tmp_path)


def test_a_timeout_whose_stop_ends_the_setup_before_it_returns_does_not_stop_the_retry(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: stop() killed the setup first and set the agent's own stop flag last; the attempt
    could end in between (its end clears the flags), so the flag outlived it and the retry
    ended at once "killed by signal 15" (seen under load). Here the attempt's end is made to
    come in between: the flags must be set before anything is stopped."""
    attempt_ended = threading.Event()
    real_attempt = WorktreeAgent._attempt

    def attempt(self: WorktreeAgent, plan: WorktreePlan) -> int:
        try:
            return real_attempt(self, plan)
        finally:
            attempt_ended.set()

    real_stop = isolated.Setup.stop

    def stop_then_wait_for_the_attempt_to_end(self: Any) -> None:
        real_stop(self)
        attempt_ended.wait(WAIT)

    monkeypatch.setattr(WorktreeAgent, "_attempt", attempt)
    monkeypatch.setattr(isolated.Setup, "stop", stop_then_wait_for_the_attempt_to_end)
    _time_out_a_hung_setup_then_retry(repo, tmp_path)


def test_a_timeout_during_the_merge_never_merges_the_task_twice(repo: Path) -> None:
    task = agent(repo, "A", "echo more >> a.txt", ("a.txt",), retries=1)
    runner = task.execute_fn
    assert isinstance(runner, WorktreeAgent)
    runner._git = slow = GitThatWaits("merge-tree")  # the merge lock is held by then
    stop_opens(runner, slow.go)
    task.retry_delay = 0.0
    clock = Clock()
    with TaskQueue(1, repo=repo, clock=clock) as queue:
        future = queue.submit_task(task)
        wait_for(slow.reached, "the merge")
        clock.time_out(queue)
        assert future.result(timeout=WAIT) == 0  # the work is in: a retry would do it again
    assert git(repo, "show", "HEAD:a.txt") == "base a\nmore\n"
    assert runner.worktree is not None
    assert runner.worktree.merge == "merged"
    assert git(repo, "branch", "--list", "pm/*") == ""  # no second attempt's branch either


LONGEST_ID = "L" * 100  # the longest task id there is


def test_a_task_with_the_longest_id_gets_its_second_attempt(repo: Path, tmp_path: Path) -> None:
    mark = tmp_path / "failed-once"
    task = agent(repo, LONGEST_ID, f'test -e "{mark}" || {{ touch "{mark}"; exit 3; }}; echo more >> a.txt', ("a.txt",))
    task.retries, task.retry_delay = 1, 0.0
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(task).result(timeout=WAIT) == 0  # its branch: pm/<run>/<id>.2
    assert git(repo, "show", "HEAD:a.txt") == "base a\nmore\n"


def test_the_leftovers_of_the_longest_id_s_later_attempts_are_found(repo: Path) -> None:
    name = f"{LONGEST_ID}.2"
    tree = create(repo, RUN, name, git(repo, "rev-parse", "HEAD").strip())
    (tree.path / "a.txt").write_text("work\n")
    found = leftovers(repo, lambda run: False)
    assert [(f.task, f.branch, f.uncommitted) for f in found] == [(name, tree.branch, ("a.txt",))]
    assert sweep(repo, lambda run: False)[0].removed is False  # the work in it is kept, not missed


@pytest.mark.parametrize(
    ("ids", "why"),
    [
        (["x.lock"], "git cannot name a branch with it"),
        (["a..b"], "git cannot name a branch with it"),
        (["a."], "git cannot name a branch with it"),
        (["a", "a.2"], "the branch of task 'a''s attempt 2"),
        (["a.12", "a"], "the branch of task 'a''s attempt 12"),
    ],
)
def test_worktree_task_ids_that_cannot_name_their_branches_are_refused(
    tmp_path: Path, ids: list[str], why: str
) -> None:
    tasks = "".join(f"  - {{id: '{i}', agent: dev, description: x}}\n" for i in ids)
    path = tmp_path / "batch.yaml"
    path.write_text(f"agents:\n  dev: {{preset: shell}}\ntasks:\n{tasks}")
    batch = load_batch(path)
    check_worktree_ids(batch, batch.agents)  # in the shared checkout, no branch is named after them
    with pytest.raises(ConfigError, match=re.escape(why)):
        check_worktree_ids(batch, batch.agents, "worktree")


@pytest.mark.parametrize("in_git", [True, False])
def test_the_merges_of_one_run_take_the_merge_lock_at_once(repo: Path, tmp_path: Path, in_git: bool) -> None:
    """Each merge checks the state directory first; the threads of a run did it at once, with
    one probe file between them, and a task whose agent had succeeded failed for it (outside
    git, the state directory's .gitignore was a second such file)."""
    where = repo if in_git else tmp_path / "plain"
    rounds, threads = 50, 8
    start = threading.Barrier(threads, timeout=WAIT)
    errors: list[BaseException] = []

    def merge_often() -> None:
        try:
            for n in range(rounds):
                start.wait()
                with merge_lock(where if in_git else where / str(n), timeout=WAIT):  # outside git: made anew
                    pass
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
            start.abort()

    running = [threading.Thread(target=merge_often) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(WAIT)
    assert errors == []


def test_a_merge_lock_held_too_long_blocks_the_merge_and_keeps_the_branch(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(isolated, "merge_lock", functools.partial(merge_lock, timeout=0.2))
    task = agent(repo, "A", "echo more >> a.txt", ("a.txt",))
    # Held by a merge of another run, stuck (SIGSTOP).
    with merge_lock(repo), TaskQueue(1, repo=repo) as queue, pytest.raises(MergeBackError) as caught:
        queue.submit_task(task).result(timeout=WAIT)
    report = task.execute_fn.worktree  # type: ignore[attr-defined]
    assert report.merge == "blocked"  # not null, as if it never got so far
    assert f"its branch {report.branch}" in str(caught.value)
    assert git(repo, "show", f"{report.branch}:a.txt") == "base a\nmore\n"
    assert "merge lock" in (repo.parent / "A.log").read_text()  # who held it, where the task's output is


def test_an_agent_that_removed_its_worktree_is_told_so_not_that_git_could_not_run(repo: Path) -> None:
    script = 'echo more >> a.txt; cd /; git -C "$PM_WORKTREE" worktree remove --force "$PM_WORKTREE"'
    task = agent(repo, "A", script, ())
    with TaskQueue(1, repo=repo) as queue, pytest.raises(WorktreeError, match="is gone") as caught:
        queue.submit_task(task).result(timeout=WAIT)
    assert "could not run" not in str(caught.value)
    assert git(repo, "show", "HEAD:a.txt") == "base a\n"


class GitLockedByTheUser(GitCalls):
    """Git calls during which, from the merge's update-ref on, a commit of the user's holds the
    index's and the branch's locks, for the next ``failures`` git calls that meet them."""

    def __init__(self, repo: Path, branch: str, failures: int) -> None:
        super().__init__()
        self.locks = [repo / ".git" / "index.lock", repo / ".git" / "refs" / "heads" / f"{branch}.lock"]
        self.failures = failures

    def run(self, repo: Path, *args: str, **kw: Any) -> tuple[int, bytes]:
        if "update-ref" in args and self.failures and not self.locks[0].exists():
            for lock in self.locks:
                lock.write_text("")
        try:
            return super().run(repo, *args, **kw)
        except GitError:
            if self.locks[0].exists():
                self.failures -= 1
                if not self.failures:  # the user's commit is done
                    for lock in self.locks:
                        lock.unlink()
            raise


def test_a_commit_of_the_users_holding_gits_locks_for_a_moment_neither_blocks_nor_leaves_the_merge_staged(
    repo: Path,
) -> None:
    target = git(repo, "symbolic-ref", "--short", "HEAD").strip()
    tree = create(repo, RUN, "A", git(repo, "rev-parse", "HEAD").strip())
    (tree.path / "a.txt").write_text("the task's\n")
    finish(tree, "A")
    locked = GitLockedByTheUser(repo, target, failures=2)  # the update-ref, then the put-back's read-tree
    result = merge_back(
        repo, target_branch=target, base=tree.base, branch=tree.branch, mode=MergeMode.MERGE,
        message="A\n", claims=(Claim.parse("a.txt"),), git=locked,
    )  # fmt: skip
    assert result.status is MergeStatus.MERGED, result.reason
    assert git(repo, "show", "HEAD:a.txt") == "the task's\n"
    assert git(repo, "status", "--porcelain") == ""  # nothing of the task's left staged


@pytest.mark.parametrize("mode", [MergeMode.SQUASH, MergeMode.REBASE])
def test_a_squashed_or_rebased_task_s_branch_goes_once_merged(repo: Path, mode: MergeMode) -> None:
    # The user commits while the task runs: the merge makes new commits, the branch's are on no other branch.
    script = f'echo more >> a.txt; git -C "{repo}" -c user.name=u -c user.email=u@x commit -q --allow-empty -m mine'
    task = agent(repo, "A", script, ("a.txt",))
    runner = task.execute_fn
    assert isinstance(runner, WorktreeAgent)
    assert runner.plan is not None
    runner.plan = replace(runner.plan, merge=mode)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(task).result(timeout=WAIT) == 0
    assert git(repo, "show", "HEAD:a.txt") == "base a\nmore\n"
    assert git(repo, "log", "-1", "--format=%s", "HEAD~1") == "mine\n"
    assert git(repo, "branch", "--list", "pm/*") == ""  # merged: not left for clean --force to take
    assert leftovers(repo, lambda run: False) == []


class GitBesideACommitOfTheUsers(GitCalls):
    """Git calls as a commit of the user's takes index.lock just as the merge looks at the
    checkout, and lets go of it ``after`` seconds later (a commit takes milliseconds)."""

    def __init__(self, repo: Path, after: float) -> None:
        super().__init__()
        self.lock, self.after = repo / ".git" / "index.lock", after
        self.timer: threading.Timer | None = None

    def run(self, repo: Path, *args: str, **kw: Any) -> tuple[int, bytes]:
        result = super().run(repo, *args, **kw)
        if "--show-toplevel" in args and self.timer is None:  # the look, before it checks the locks
            self.lock.write_text("")
            self.timer = threading.Timer(self.after, self.lock.unlink)  # the user's commit, ending
            self.timer.start()
        return result


def test_a_commit_of_the_users_under_way_as_the_merge_looks_is_waited_for(repo: Path) -> None:
    target = git(repo, "symbolic-ref", "--short", "HEAD").strip()
    tree = create(repo, RUN, "A", git(repo, "rev-parse", "HEAD").strip())
    (tree.path / "a.txt").write_text("the task's\n")
    finish(tree, "A")
    calls = GitBesideACommitOfTheUsers(repo, after=0.1)
    result = merge_back(
        repo, target_branch=target, base=tree.base, branch=tree.branch, mode=MergeMode.MERGE,
        message="A\n", claims=(Claim.parse("a.txt"),), git=calls,
    )  # fmt: skip
    assert calls.timer is not None
    calls.timer.join(WAIT)
    assert result.status is MergeStatus.MERGED, result.reason  # not blocked for a commit's milliseconds
    assert git(repo, "show", "HEAD:a.txt") == "the task's\n"
