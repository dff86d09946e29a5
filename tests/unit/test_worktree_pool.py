"""A pool of reusable worktrees (queue_core.worktree_pool), on real git repositories: a merged
task's worktree reused by the next, reset to its base; never one that holds work, never one
that another task or process holds; bounded; a killed holder's entry left to ``clean``."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from queue_core.errors import InvalidArgumentError, InvalidTaskIdError, UnmergedWorkError, WorktreeError
from queue_core.flocks import try_lock
from queue_core.worktree_pool import Lease, idle, pool_dir, remove_idle, take
from queue_core.worktrees import base_commit, finish, list_worktrees

from ..conftest import WAIT, git, git_repo

RUN = "r1"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {".gitignore": "cache/\n.env\n", "a.txt": "a\n", "b.txt": "b\n"}
    return git_repo(tmp_path / "repo", files).resolve()


def _branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/pm/").split()


def _head(path: Path) -> str:
    return git(path, "rev-parse", "HEAD").strip()


def _on(path: Path) -> str:
    """The branch checked out in ``path``; "HEAD" when detached."""
    return git(path, "rev-parse", "--abbrev-ref", "HEAD").strip()


def _merged(lease: Lease, repo: Path, text: str = "done\n", *, keep: int = 2) -> None:
    """The task changes a.txt, its branch is merged into the user's, and it gives its worktree back."""
    tree = lease.worktree
    (tree.path / "a.txt").write_text(text)
    finish(tree, f"do {tree.task}")
    git(repo, "merge", "-q", "--no-ff", "-m", f"merge {tree.task}", tree.branch)
    lease.give_back(delete_branch=True, keep=keep)


def _idle_entry(repo: Path) -> Path:
    """One idle worktree in the pool, given back by a merged task."""
    lease = take(repo, RUN, "t0", base_commit(repo))
    _merged(lease, repo, "t0\n")
    assert idle(repo) == [lease.worktree.path]
    return lease.worktree.path


# --- reuse ------------------------------------------------------------------------------------


def test_a_merged_tasks_worktree_is_reused_by_the_next_task_at_its_base(repo: Path) -> None:
    first = take(repo, RUN, "t1", base_commit(repo))
    path = first.worktree.path
    assert not first.reused
    assert path == pool_dir(repo) / "0"
    assert _on(path) == f"pm/{RUN}/t1"
    (path / "cache").mkdir()
    (path / "cache/build.o").write_text("compiled\n")  # ignored: a build cache
    (path / ".env").write_text("KEY=the last task's\n")  # ignored too
    _merged(first, repo, "t1\n", keep=1)

    assert _on(path) == "HEAD"  # detached: given back
    assert _branches(repo) == []  # merged: its branch went
    assert idle(repo) == [path]
    (repo / "b.txt").write_text("the user's commit\n")
    git(repo, "commit", "-qam", "the user's commit meanwhile")

    second = take(repo, RUN, "t2", base_commit(repo))

    assert second.reused
    assert second.worktree.path == path
    assert (second.worktree.base, _head(path)) == (base_commit(repo), base_commit(repo))
    assert _on(path) == f"pm/{RUN}/t2"
    assert _branches(repo) == [f"pm/{RUN}/t2"]  # no stale branch of t1
    assert (path / "a.txt").read_text() == "t1\n"  # tracked files: at the new base
    assert (path / "b.txt").read_text() == "the user's commit\n"
    assert (path / "cache/build.o").read_text() == "compiled\n"  # ignored files stay
    assert git(path, "status", "--porcelain") == ""
    assert idle(repo) == []  # taken
    (path / "b.txt").write_text("t2\n")
    assert finish(second.worktree, "do t2").paths == ("b.txt",)  # what this task changed, only
    second.release()


def test_a_task_that_is_not_given_back_keeps_its_worktree_and_the_next_gets_another(repo: Path) -> None:
    first = take(repo, RUN, "t1", base_commit(repo))
    (first.worktree.path / "a.txt").write_text("rejected work\n")
    finish(first.worktree, "do t1")
    first.release()  # failed, rejected, in conflict or blocked: kept as it is

    second = take(repo, RUN, "t2", base_commit(repo))

    assert (second.reused, second.worktree.path.name) == (False, "1")
    assert _on(first.worktree.path) == f"pm/{RUN}/t1"
    assert (first.worktree.path / "a.txt").read_text() == "rejected work\n"
    second.release()


def test_merge_none_gives_the_worktree_back_and_keeps_the_branch(repo: Path) -> None:
    lease = take(repo, RUN, "t1", base_commit(repo))
    (lease.worktree.path / "a.txt").write_text("left for review\n")
    tip = finish(lease.worktree, "do t1").tip

    removal = lease.give_back(delete_branch=False, keep=1)

    assert not removal.branch_deleted
    assert _branches(repo) == [f"pm/{RUN}/t1"]
    assert git(repo, "rev-parse", f"pm/{RUN}/t1").strip() == tip
    assert (_on(lease.worktree.path), _head(lease.worktree.path)) == ("HEAD", tip)
    assert idle(repo) == [lease.worktree.path]
    again = take(repo, RUN, "t2", base_commit(repo))
    assert again.reused
    assert (again.worktree.path / "a.txt").read_text() == "a\n"  # at the base, not the kept branch
    assert git(repo, "rev-parse", f"pm/{RUN}/t1").strip() == tip  # the kept branch is untouched
    again.release()


def test_the_pool_keeps_at_most_keep_idle_worktrees(repo: Path) -> None:
    leases = [take(repo, RUN, f"t{i}", base_commit(repo)) for i in range(3)]
    assert [lease.worktree.path.name for lease in leases] == ["0", "1", "2"]
    for lease in leases:
        lease.give_back(delete_branch=True, keep=2)  # nothing done: nothing to merge

    assert idle(repo) == [leases[0].worktree.path, leases[1].worktree.path]
    assert not leases[2].worktree.path.exists()  # the third was removed, with git
    assert leases[2].worktree.path not in [entry.path for entry in list_worktrees(repo)]
    assert _branches(repo) == []
    zero = take(repo, RUN, "z", base_commit(repo))
    zero.give_back(delete_branch=True, keep=0)
    assert not zero.worktree.path.exists()
    assert len(idle(repo)) == 1


@pytest.mark.parametrize(
    "change",
    ["untracked file", "modified file", "staged file", "unfinished merge", "commit on the detached HEAD", "a branch"],
)
def test_an_idle_worktree_someone_changed_is_never_reset(repo: Path, change: str) -> None:
    path = _idle_entry(repo)
    if change == "untracked file":
        (path / "notes.txt").write_text("mine\n")
    elif change == "modified file":
        (path / "b.txt").write_text("mine\n")
    elif change == "staged file":
        (path / "new.txt").write_text("mine\n")
        git(path, "add", "new.txt")
    elif change == "unfinished merge":
        git_dir = Path(git(path, "rev-parse", "--absolute-git-dir").strip())
        (git_dir / "MERGE_HEAD").write_text(_head(path) + "\n")
    elif change == "commit on the detached HEAD":
        (path / "b.txt").write_text("mine\n")
        git(path, "commit", "-qam", "mine")
    else:
        git(path, "switch", "-q", "-c", "mine")
    before = _head(path)

    lease = take(repo, RUN, "t1", base_commit(repo))

    assert not lease.reused
    assert lease.worktree.path != path
    assert idle(repo) == []
    assert _head(path) == before  # left exactly as it was
    if change in ("untracked file", "modified file", "staged file"):
        assert git(path, "status", "--porcelain") != ""
    lease.release()


def test_ignored_files_are_no_work_and_a_nested_repository_is(repo: Path) -> None:
    path = _idle_entry(repo)
    (path / "cache").mkdir()
    (path / "cache/x.o").write_text("ignored\n")
    assert idle(repo) == [path]
    git_repo(path / "inner", {"f.txt": "a repository the agent made\n"})
    assert idle(repo) == []
    lease = take(repo, RUN, "t1", base_commit(repo))
    assert lease.worktree.path != path
    assert (path / "inner/f.txt").exists()
    lease.release()


def test_give_back_refuses_a_worktree_with_changes_and_keeps_it(repo: Path) -> None:
    lease = take(repo, RUN, "t1", base_commit(repo))
    (lease.worktree.path / "a.txt").write_text("committed\n")
    finish(lease.worktree, "do t1")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge", lease.worktree.branch)
    (lease.worktree.path / "late.txt").write_text("written after the commit\n")

    with pytest.raises(UnmergedWorkError) as caught:
        lease.give_back(delete_branch=True, keep=2)

    assert caught.value.uncommitted == ("late.txt",)
    assert (lease.worktree.path / "late.txt").read_text() == "written after the commit\n"
    assert idle(repo) == []
    assert not take(repo, RUN, "t2", base_commit(repo)).reused


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["../x", "x/y", "", ".hidden", "--upload-pack=touch", "a b", "x\ny", "x.lock"])
def test_a_hostile_task_id_is_refused_before_any_worktree_is_touched(repo: Path, task: str) -> None:
    path = _idle_entry(repo)
    with pytest.raises((InvalidTaskIdError, InvalidArgumentError)):
        take(repo, RUN, task, base_commit(repo))
    assert idle(repo) == [path]
    assert _branches(repo) == []


def test_a_name_led_by_a_dash_is_a_name_not_an_option(repo: Path) -> None:
    path = _idle_entry(repo)
    lease = take(repo, "-r", "-t", base_commit(repo))
    assert (lease.reused, lease.worktree.path, _on(path)) == (True, path, "pm/-r/-t")
    lease.release()


@pytest.mark.parametrize("base", ["--all", "-h", "nothing-here"])
def test_a_base_that_is_no_commit_is_refused_and_never_an_option(repo: Path, base: str) -> None:
    path = _idle_entry(repo)
    with pytest.raises(WorktreeError, match="names no commit"):
        take(repo, RUN, "t1", base)
    assert idle(repo) == [path]


def test_an_existing_branch_is_refused_and_the_idle_worktree_stays_idle(repo: Path) -> None:
    path = _idle_entry(repo)
    git(repo, "branch", f"pm/{RUN}/t1")
    with pytest.raises(WorktreeError, match="never reused"):
        take(repo, RUN, "t1", base_commit(repo))
    assert idle(repo) == [path]


def test_worktree_root_puts_the_pool_there(repo: Path, tmp_path: Path) -> None:
    lease = take(repo, RUN, "t1", base_commit(repo), root="../trees")
    assert lease.worktree.path == (tmp_path / "trees/.pool/0").resolve()
    lease.give_back(delete_branch=True, keep=1)
    assert idle(repo, root="../trees") == [lease.worktree.path]
    assert idle(repo) == []  # the default root's pool: another folder


# --- across processes -------------------------------------------------------------------------

_TAKE = """
import sys
import threading
from pathlib import Path
from queue_core.worktree_pool import take
print("ready", flush=True)
sys.stdin.readline()  # every process is ready: go
lease = take(Path(sys.argv[1]), "r1", sys.argv[2], sys.argv[3])
print(lease.worktree.path, lease.reused, flush=True)
sys.stdin.read()  # held until stdin closes, or a SIGKILL
lease.release()
"""

_HOLD_LOCK = """
import sys
import threading
from pathlib import Path
from queue_core.flocks import try_lock
assert try_lock(Path(sys.argv[1]), "the lock") is not None
print("held", flush=True)
sys.stdin.read()
"""


class _Child:
    """A Python process of ours whose lines are read with a bound; killed at the end if need be."""

    def __init__(self, code: str, *args: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], WAIT)
        assert ready, "the child said nothing"
        return self.proc.stdout.readline().strip()

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def close(self, *, kill: bool = False) -> None:
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=WAIT)


def test_processes_taking_worktrees_at_once_never_share_one(repo: Path) -> None:
    base = base_commit(repo)
    held = [take(repo, RUN, f"t{i}", base) for i in range(2)]
    for lease in held:
        lease.give_back(delete_branch=True, keep=2)
    idle_before = set(idle(repo))
    assert len(idle_before) == 2
    children = [_Child(_TAKE, str(repo), f"p{i}", base) for i in range(4)]
    try:
        assert [child.line() for child in children] == ["ready"] * 4
        for child in children:  # the barrier: all are waiting on stdin; let them go together
            child.say("go\n")
        taken = [child.line().split() for child in children]
    finally:
        for child in children:
            child.close()
    paths = [Path(path) for path, _ in taken]
    assert len(set(paths)) == 4
    assert {path for path, (_, reused) in zip(paths, taken, strict=True) if reused == "True"} == idle_before
    assert sorted(_branches(repo)) == [f"pm/{RUN}/p{i}" for i in range(4)]


def test_an_idle_worktree_whose_lock_is_held_is_reused_only_once_its_holder_is_gone(repo: Path) -> None:
    path = _idle_entry(repo)
    holder = _Child(_HOLD_LOCK, str(path.with_name("0.lock")))
    try:
        assert holder.line() == "held"
        busy = take(repo, RUN, "t1", base_commit(repo))
        assert (busy.reused, busy.worktree.path.name) == (False, "1")
        busy.release()
    finally:
        holder.close(kill=True)
    after = take(repo, RUN, "t2", base_commit(repo))
    assert (after.reused, after.worktree.path) == (True, path)
    after.release()


def test_a_killed_holders_worktree_is_never_reused_and_its_work_survives(repo: Path) -> None:
    path = _idle_entry(repo)
    child = _Child(_TAKE, str(repo), "t1", base_commit(repo))
    try:
        assert child.line() == "ready"
        child.say("go\n")
        assert child.line().split() == [str(path), "True"]
        (path / "a.txt").write_text("the agent's work, uncommitted\n")
    finally:
        child.close(kill=True)
    assert child.proc.returncode == -signal.SIGKILL

    lease = take(repo, RUN, "t2", base_commit(repo))

    assert lease.worktree.path != path  # its lock is free, but it is on t1's branch, with work
    assert (path / "a.txt").read_text() == "the agent's work, uncommitted\n"
    assert _on(path) == f"pm/{RUN}/t1"
    lease.release()


# --- clean --pool -----------------------------------------------------------------------------


def test_remove_idle_removes_idle_worktrees_only_and_never_one_in_use(repo: Path) -> None:
    *leases, working = [take(repo, RUN, f"t{i}", base_commit(repo)) for i in range(4)]  # working: a task's
    for lease in leases:
        lease.give_back(delete_branch=True, keep=3)
    free, busy, dirty = (lease.worktree.path for lease in leases)
    (dirty / "notes.txt").write_text("someone's notes\n")
    fd = try_lock(busy.with_name(f"{busy.name}.lock"), "the lock")  # a task taking it, this moment
    assert fd is not None

    looked = remove_idle(repo, dry_run=True)
    assert [(r.path, r.removed, r.reason) for r in looked] == [(free, True, ""), (busy, False, "in use")]
    assert free.exists()

    done = remove_idle(repo)
    os.close(fd)

    assert [(r.path, r.removed) for r in done] == [(free, True), (busy, False)]
    assert not free.exists()
    assert busy.exists()
    assert (dirty / "notes.txt").read_text() == "someone's notes\n"
    assert working.worktree.path.exists()
    assert idle(repo) == [busy]
    working.release()


def test_an_idle_worktree_git_cannot_read_is_skipped_not_a_failure(repo: Path) -> None:
    path = _idle_entry(repo)
    index = Path(git(path, "rev-parse", "--git-path", "index").strip())
    (path / index if not index.is_absolute() else index).write_bytes(b"not an index")
    lease = take(repo, RUN, "t1", base_commit(repo))
    assert (lease.reused, lease.worktree.path.name) == (False, "1")
    lease.release()
    assert (path / index if not index.is_absolute() else index).read_bytes() == b"not an index"  # left alone


def test_threads_of_one_run_taking_worktrees_at_once_never_share_one(repo: Path) -> None:
    base = base_commit(repo)
    for lease in [take(repo, RUN, f"t{i}", base) for i in range(2)]:
        lease.give_back(delete_branch=True, keep=2)
    barrier = threading.Barrier(4)
    taken: list[Lease] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            barrier.wait(WAIT)
            lease = take(repo, RUN, f"w{i}", base)
            with lock:
                taken.append(lease)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    assert len({lease.worktree.path for lease in taken}) == 4
    assert sum(lease.reused for lease in taken) == 2
    for lease in taken:
        lease.release()
