"""WorktreeAgent through a TaskQueue on real git repositories: several instances of one agent
type at once, each in a worktree of its own, merged back into the user's branch.

The agents are shell scripts. Two that must overlap in time meet through two FIFOs: each
finishes only if the other runs at the same moment (bounded by the task's timeout).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from queue_core import AgentTask, InvalidTaskError, MergeBackError, SubprocessAgent, TaskQueue
from queue_core.claims import Claim
from queue_core.errors import AgentExitError
from queue_core.isolated import WorktreeAgent, WorktreePlan
from queue_core.mergeplan import MergeMode
from queue_core.worktree_pool import idle, pool_dir, take

from ..conftest import WAIT, git, git_repo

RUN = "20261128-120000-1-abcdef"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"a.txt": "base a\n", "b.txt": "base b\n", "user.txt": "base user\n"})


def branch_of(repo: Path) -> str:
    return git(repo, "symbolic-ref", "--short", "HEAD").strip()


def agent(repo: Path, task: str, script: str, files: tuple[str, ...], **plan: object) -> AgentTask:
    """A task of agent type "dev" whose command is ``sh -c script``, in a worktree of its own."""
    runner = WorktreeAgent.for_task(
        ["sh", "-c", script],
        task_id=task,
        agent="dev",
        description=f"do {task}",
        files=files,
        cwd=repo,
        log=repo.parent / f"{task}.log",
        run_id=RUN,
    )
    runner.plan = WorktreePlan(
        repo,
        RUN,
        task,
        f"do {task}",
        branch_of(repo),
        tuple(Claim.parse(f) for f in files),
        **plan,  # type: ignore[arg-type]
    )
    return AgentTask("dev", f"do {task}", list(files), runner, id=task, timeout=WAIT)


def show(repo: Path, path: str) -> str:
    return git(repo, "show", f"HEAD:{path}")


def test_two_instances_of_one_agent_type_run_at_once_and_both_are_merged(repo: Path, tmp_path: Path) -> None:
    (repo / "user.txt").write_text("the user's unsaved work\n")  # uncommitted, and never touched
    meet_a, meet_b = tmp_path / "a.fifo", tmp_path / "b.fifo"
    os.mkfifo(meet_a)
    os.mkfifo(meet_b)
    first = agent(repo, "A", f"echo a > {meet_b}; read x < {meet_a}; echo A > a.txt", ("a.txt",))
    second = agent(repo, "B", f"read x < {meet_b}; echo b > {meet_a}; echo B > b.txt", ("b.txt",))
    with TaskQueue(2, repo=repo, instances={"dev": 2}) as queue:
        futures = queue.submit_tasks([first, second])
        assert [f.result(timeout=WAIT) for f in futures] == [0, 0]
    assert (show(repo, "a.txt"), show(repo, "b.txt")) == ("A\n", "B\n")
    assert (repo / "a.txt").read_text() == "A\n"  # the checkout follows its branch
    assert (repo / "user.txt").read_text() == "the user's unsaved work\n"
    assert git(repo, "status", "--porcelain") == " M user.txt\n"
    for task in (first, second):
        report = task.execute_fn.worktree  # type: ignore[attr-defined]
        assert report.merge == "merged"
        assert not report.path.exists()
    assert git(repo, "branch", "--list", "pm/*") == ""  # merged branches go
    # Each merge commit says what it merged, as git's own do; the task's commit beneath says the task.
    merges = git(repo, "log", "--merges", "--format=%s", "--reverse").splitlines()
    assert sorted(merges) == [f"Merge branch 'pm/{RUN}/A'", f"Merge branch 'pm/{RUN}/B'"]
    assert git(repo, "log", "--no-merges", "-1", "--format=%s", "HEAD^2") in ("A: do A\n", "B: do B\n")


def test_a_write_outside_the_claims_is_rejected_and_its_branch_kept(repo: Path) -> None:
    task = agent(repo, "A", "echo A > a.txt; echo stray > b.txt", ("a.txt",))
    before = git(repo, "rev-parse", "HEAD")
    with TaskQueue(1, repo=repo) as queue, pytest.raises(MergeBackError) as caught:
        queue.submit_task(task).result(timeout=WAIT)
    assert caught.value.status == "rejected"
    assert caught.value.paths == ("b.txt",)
    assert git(repo, "rev-parse", "HEAD") == before
    report = task.execute_fn.worktree  # type: ignore[attr-defined]
    assert (report.merge, report.changed, report.unclaimed) == ("rejected", ("a.txt", "b.txt"), ("b.txt",))
    git(repo, "rev-parse", "--verify", f"refs/heads/{report.branch}")  # kept
    assert (report.path / "b.txt").read_text() == "stray\n"  # kept for inspection


def test_with_warn_a_write_outside_the_claims_is_merged_and_reported(repo: Path) -> None:
    task = agent(repo, "A", "echo A > a.txt; echo stray > b.txt", ("a.txt",), fail_on_violation=False)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(task).result(timeout=WAIT) == 0
    report = task.execute_fn.worktree  # type: ignore[attr-defined]
    assert (report.merge, report.unclaimed) == ("merged", ("b.txt",))
    assert show(repo, "b.txt") == "stray\n"


def test_a_conflict_with_the_users_commit_leaves_the_repository_clean(repo: Path) -> None:
    """The agent, as the user would meanwhile, commits to a.txt on the user's branch; then its own
    change to a.txt conflicts. Nothing is mid-merge afterwards, and the user's commit stays."""
    user_commit = (
        f"printf 'user a\\n' > {repo}/a.txt && git -C {repo} -c user.name=u -c user.email=u@x commit -qam user"
    )
    task = agent(repo, "A", f"{user_commit} && echo A > a.txt", ("a.txt",))
    with TaskQueue(1, repo=repo) as queue, pytest.raises(MergeBackError) as caught:
        queue.submit_task(task).result(timeout=WAIT)
    assert caught.value.status == "conflict"
    assert caught.value.paths == ("a.txt",)
    assert show(repo, "a.txt") == "user a\n"
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".git" / "MERGE_HEAD").exists()


def test_a_task_starts_from_what_the_tasks_before_it_merged(repo: Path) -> None:
    first = agent(repo, "A", "echo A > a.txt", ("a.txt",), merge=MergeMode.SQUASH)
    second = agent(repo, "B", "grep -qx A a.txt && echo B > b.txt", ("b.txt",), merge=MergeMode.REBASE)
    second = AgentTask("dev", second.task_description, ["b.txt"], second.execute_fn, id="B", depends_on=["A"])
    with TaskQueue(2, repo=repo, instances={"dev": 2}) as queue:
        futures = queue.submit_tasks([first, second])
        assert [f.result(timeout=WAIT) for f in futures] == [0, 0]
    assert (show(repo, "a.txt"), show(repo, "b.txt")) == ("A\n", "B\n")
    assert len(git(repo, "log", "--format=%P", "-1").split()) == 1  # squash and rebase: no merge commit


def test_merge_none_leaves_the_branch_and_merges_nothing(repo: Path) -> None:
    task = agent(repo, "A", "echo A > a.txt", ("a.txt",), merge=MergeMode.NONE)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(task).result(timeout=WAIT) == 0
    report = task.execute_fn.worktree  # type: ignore[attr-defined]
    assert report.merge == "none"
    assert show(repo, "a.txt") == "base a\n"
    assert git(repo, "show", f"{report.branch}:a.txt") == "A\n"
    assert not report.path.exists()


def test_several_instances_refuse_an_agent_command_in_the_shared_checkout(repo: Path) -> None:
    plain = SubprocessAgent(["true"], repo, repo.parent / "x.log")
    with TaskQueue(2, repo=repo, instances={"dev": 2}) as queue:
        with pytest.raises(InvalidTaskError, match="worktree of their own"):
            queue.submit_task(AgentTask("dev", "x", ["a.txt"], plain, id="x"))
        assert queue.submit_task(AgentTask("other", "y", ["b.txt"], plain, id="y")).result(timeout=WAIT) == 0


# --- a pool of worktrees (worktree_pool: N) ---------------------------------------------------


def test_with_a_pool_the_next_task_reuses_the_merged_tasks_worktree(repo: Path) -> None:
    (repo / ".gitignore").write_text(".env\ncache/\n")
    (repo / ".worktreeinclude").write_text(".env\n")
    git(repo, "add", ".gitignore", ".worktreeinclude")
    git(repo, "commit", "-qm", "ignore")
    (repo / ".env").write_text("KEY=first\n")
    script = 'echo "at $PM_WORKTREE"; cat .env; ls cache 2>/dev/null; mkdir -p cache; touch cache/{name}.o; '
    script += "echo {name} > {file}"
    first = agent(repo, "A", script.format(name="A", file="a.txt"), ("a.txt",), pool=1)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(first).result(timeout=WAIT) == 0
    (repo / ".env").write_text("KEY=second\n")  # the user's change: the next task's copy is new
    second = agent(repo, "B", script.format(name="B", file="b.txt"), ("b.txt",), pool=1)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(second).result(timeout=WAIT) == 0

    reports = [task.execute_fn.worktree for task in (first, second)]  # type: ignore[attr-defined]
    assert [r.merge for r in reports] == ["merged", "merged"]
    assert reports[0].path == reports[1].path == pool_dir(repo) / "0"
    log_a, log_b = (repo.parent / f"{t}.log" for t in "AB")
    assert f"at {reports[0].path}\nKEY=first\n" in log_a.read_text()
    assert f"at {reports[0].path}\nKEY=second\nA.o\n" in log_b.read_text()  # the cache stayed, .env is new
    assert (show(repo, "a.txt"), show(repo, "b.txt")) == ("A\n", "B\n")
    assert git(repo, "branch", "--list", "pm/*") == ""
    assert idle(repo) == [reports[0].path]


def test_with_a_pool_a_rejected_task_keeps_its_worktree_and_the_next_gets_another(repo: Path) -> None:
    rejected = agent(repo, "A", "echo A > a.txt; echo stray > b.txt", ("a.txt",), pool=2)
    with TaskQueue(1, repo=repo) as queue, pytest.raises(MergeBackError):
        queue.submit_task(rejected).result(timeout=WAIT)
    kept = rejected.execute_fn.worktree  # type: ignore[attr-defined]
    after = agent(repo, "B", "echo B > b.txt", ("b.txt",), pool=2)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(after).result(timeout=WAIT) == 0

    assert after.execute_fn.worktree.path != kept.path  # type: ignore[attr-defined]
    assert (kept.path / "b.txt").read_text() == "stray\n"  # kept for inspection, on its branch
    assert git(kept.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == kept.branch
    assert idle(repo) == [after.execute_fn.worktree.path]  # type: ignore[attr-defined]


def test_a_failing_agent_keeps_its_pool_worktree_with_its_work(repo: Path) -> None:
    failing = agent(repo, "A", "echo half > a.txt; exit 3", ("a.txt",), pool=2)
    with TaskQueue(1, repo=repo) as queue, pytest.raises(AgentExitError):
        queue.submit_task(failing).result(timeout=WAIT)
    report = failing.execute_fn.worktree  # type: ignore[attr-defined]
    assert (report.path / "a.txt").read_text() == "half\n"
    assert idle(repo) == []
    assert not take(repo, RUN, "next", git(repo, "rev-parse", "HEAD").strip()).reused


def test_without_a_pool_nothing_is_kept(repo: Path) -> None:
    task = agent(repo, "A", "echo A > a.txt", ("a.txt",))
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(task).result(timeout=WAIT) == 0
    assert not task.execute_fn.worktree.path.exists()  # type: ignore[attr-defined]
    assert not pool_dir(repo).exists()


@pytest.mark.parametrize("mode", [MergeMode.SQUASH, MergeMode.REBASE])
def test_with_a_pool_a_squashed_or_rebased_tasks_worktree_is_given_back(repo: Path, mode: MergeMode) -> None:
    user_commit = f"printf 'user\\n' > {repo}/user.txt && git -C {repo} -c user.name=u -c user.email=u@x commit -qam u"
    task = agent(repo, "A", f"{user_commit} && echo A > a.txt", ("a.txt",), merge=mode, pool=1)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(task).result(timeout=WAIT) == 0
    report = task.execute_fn.worktree  # type: ignore[attr-defined]
    assert report.merge == "merged"
    assert (show(repo, "a.txt"), show(repo, "user.txt")) == ("A\n", "user\n")
    assert idle(repo) == [report.path]  # clean, detached: ready for the next task
    assert git(repo, "branch", "--list", "pm/*") == ""  # gone: its hidden refs keep its tip for diff
    assert git(repo, "rev-parse", f"refs/pm/{RUN}/A/tip").strip() == git(report.path, "rev-parse", "HEAD").strip()


# --- what a merged task leaves for review: hidden refs, no branch ----------------------------------


def branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/pm/").split()


def hidden(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/pm/")
    return dict(line.split() for line in out.splitlines())


@pytest.mark.parametrize("mode", [MergeMode.MERGE, MergeMode.SQUASH, MergeMode.REBASE])
def test_a_merged_branch_goes_and_its_hidden_refs_show_exactly_the_task_s_change(repo: Path, mode: MergeMode) -> None:
    """The user commits meanwhile (a squash or a rebase then leaves the task's commit on no
    branch): the branch goes all the same, and base..tip is the task's change, not the user's."""
    user_commit = f"printf 'u\\n' > {repo}/user.txt && git -C {repo} -c user.name=u -c user.email=u@x commit -qam u"
    task = agent(repo, "A", f"{user_commit} && echo A > a.txt", ("a.txt",), merge=mode)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(task).result(timeout=WAIT) == 0
    report = task.execute_fn.worktree  # type: ignore[attr-defined]
    assert report.merge == "merged"
    assert git(repo, "branch", "--list", "pm/*") == ""
    base, tip = f"refs/pm/{RUN}/A/base", f"refs/pm/{RUN}/A/tip"
    assert set(hidden(repo)) == {base, tip}
    assert git(repo, "diff", "--name-only", base, tip) == "a.txt\n"
    assert git(repo, "show", f"{tip}:a.txt") == "A\n"
    assert git(repo, "show", f"{base}:user.txt") == "base user\n"  # where the task started
    assert show(repo, "user.txt") == "u\n"  # the user's commit stays


def test_a_second_attempt_keeps_its_own_refs_and_the_first_its_branch(repo: Path, tmp_path: Path) -> None:
    once = tmp_path / "failed-once"
    script = f"echo A > a.txt; [ -e {once} ] || {{ touch {once}; exit 1; }}"
    task = agent(repo, "A", script, ("a.txt",))
    task = AgentTask("dev", task.task_description, ["a.txt"], task.execute_fn, id="A", retries=1, retry_delay=0.0)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(task).result(timeout=WAIT) == 0
    assert branches(repo) == [f"pm/{RUN}/A"]  # the failed attempt's, kept
    assert set(hidden(repo)) == {f"refs/pm/{RUN}/A.2/base", f"refs/pm/{RUN}/A.2/tip"}


@pytest.mark.parametrize("mode", [MergeMode.NONE, None])
def test_a_branch_that_is_not_merged_leaves_no_hidden_refs(repo: Path, mode: MergeMode | None) -> None:
    """merge: none, or a task rejected for a write outside its claims: the branch is the truth."""
    script = "echo A > a.txt" if mode else "echo A > a.txt; echo stray > b.txt"
    task = agent(repo, "A", script, ("a.txt",), **({"merge": mode} if mode else {}))
    with TaskQueue(1, repo=repo) as queue:
        future = queue.submit_task(task)
        if mode is None:
            with pytest.raises(MergeBackError):
                future.result(timeout=WAIT)
        else:
            assert future.result(timeout=WAIT) == 0
    assert branches(repo) == [f"pm/{RUN}/A"]
    assert hidden(repo) == {}


def test_refs_that_cannot_be_written_keep_a_squashed_branch_and_say_so(repo: Path) -> None:
    """Someone's ref is in the way: it is never overwritten; the merge stands, the branch stays."""
    theirs = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-ref", f"refs/pm/{RUN}/A/tip", theirs)
    user_commit = f"printf 'u\\n' > {repo}/user.txt && git -C {repo} -c user.name=u -c user.email=u@x commit -qam u"
    task = agent(repo, "A", f"{user_commit} && echo A > a.txt", ("a.txt",), merge=MergeMode.SQUASH)
    with TaskQueue(1, repo=repo) as queue:
        assert queue.submit_task(task).result(timeout=WAIT) == 0
    report = task.execute_fn.worktree  # type: ignore[attr-defined]
    assert report.merge == "merged"
    assert show(repo, "a.txt") == "A\n"
    assert hidden(repo) == {f"refs/pm/{RUN}/A/tip": theirs}
    assert branches(repo) == [f"pm/{RUN}/A"]  # its commit is on no other branch, and no ref keeps it
    assert "project-manager diff cannot show it" in report.reason
    assert f"its branch pm/{RUN}/A is kept: 1 commit(s)" in report.reason
