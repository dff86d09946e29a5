"""A worktree task (issue 13): what its worktree costs, new or from the pool, against plain git.

On a generated repository of FILES committed files (an ignored ``node_modules/`` of IGNORED
files, as a JavaScript project has, and a ``.env`` that ``.worktreeinclude`` names), each task is
one call of :class:`~queue_core.isolated.WorktreeAgent`, the code a worktree task runs: its
worktree, the ``.worktreeinclude`` copy and a port block, the agent (``sh -c`` writing one file,
a few ms under the supervisor), the commit and exact diff, the claim check, the merge into the
user's ``main`` under the merge lock (which updates the user's checkout), then the worktree
removed (the merged branch deleted) or given back to the pool. No setup commands: their cost
is the user's. Three kinds, taking turns, ROUNDS tasks each after one untimed:

1. plain git, the anchor: ``git worktree add --detach`` + ``git worktree remove``;
2. a new worktree per task (``worktree_pool: 0``, the default);
3. from the pool (``worktree_pool: 1``): the worktree the last task gave back, reset to this
   task's base; ignored files (``node_modules``) stay.

The median of each, and where each spends it by git command. Target (DESIGN.md): <= 1.5x plain
git. The repository is made in /dev/shm when the machine has it (see ``fast_tmp``): on a VM's
disk, writing 20,000 files swings tenfold with the host's load, which says nothing of our code.
In ``make bench`` (run_all) and alone: ``python -m bench.worktrees``.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from queue_core.claims import Claim
from queue_core.isolated import WorktreeAgent, WorktreePlan
from queue_core.worktrees import GIT

from ._common import Check, Section, TimedGit, fast_tmp, median, ms, print_section, table

FILES = 20_000
IGNORED = 2_000
ROUNDS = 5
RUN = "bench"
TASK_FILE = "src/d0/m0.py"
_GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run([*_GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _make_repo(root: Path) -> Path:
    """A repository on ``main`` of FILES small files in 200 folders, an ignored node_modules and a .env."""
    repo = root / "repo"
    for i in range(FILES):
        directory = repo / "src" / f"d{i % 200}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"m{i}.py").write_text(f"x = {i}\n")
    (repo / ".gitignore").write_text(".env\nnode_modules/\n")
    (repo / ".worktreeinclude").write_text(".env\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.name", "bench")  # the task's commit and the merge commit
    _git(repo, "config", "user.email", "bench@example.invalid")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "bench")
    for i in range(IGNORED):
        directory = repo / "node_modules" / f"p{i % 50}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"i{i}.js").write_text("module.exports = 1\n")
    (repo / ".env").write_text("API_KEY=bench\n")
    return repo


def _plain(repo: Path, n: int) -> float:
    path = repo.parent / "plain" / f"t{n}"
    base = _git(repo, "rev-parse", "main").strip()
    t0 = time.perf_counter()
    GIT(repo, "git", "worktree", "add", "--quiet", "--detach", "--", str(path), base)
    GIT(repo, "git", "worktree", "remove", "--", str(path))
    return time.perf_counter() - t0


def _task(repo: Path, task: str, pool: int, git: TimedGit) -> float:
    """One worktree task, as a run of ``delegate-multiple`` runs it; its time."""
    agent = WorktreeAgent.for_task(
        ["sh", "-c", f"echo \"x = '{task}'\" > {TASK_FILE}"],
        task_id=task,
        agent="bench",
        description=f"bench task {task}",
        files=(TASK_FILE,),
        cwd=repo,
        log=repo.parent / "logs" / f"{task}.log",
        run_id=RUN,
    )
    assert isinstance(agent, WorktreeAgent)
    agent.plan = WorktreePlan(repo, RUN, task, f"bench task {task}", "main", (Claim.parse(TASK_FILE),), pool=pool)
    agent._git = git  # the bench counts its git calls
    t0 = time.perf_counter()
    assert agent() == 0
    spent = time.perf_counter() - t0
    assert agent.worktree is not None
    assert agent.worktree.merge == "merged", agent.worktree
    return spent


def _breakdown(timed: TimedGit, rounds: int) -> str:
    """The git commands a task spends most in, per task."""
    calls = sorted(timed.spent.items(), key=lambda item: -sum(item[1]))
    return ", ".join(f"{name} {ms(sum(spent) / rounds)}" for name, spent in calls[:6])


def run() -> Section:
    where = fast_tmp()
    with tempfile.TemporaryDirectory(prefix="pm-bench-worktrees-", dir=where) as tmp:
        repo = _make_repo(Path(tmp))
        (repo.parent / "logs").mkdir()
        new_git, pool_git = TimedGit(), TimedGit()
        kinds: dict[str, Callable[[int], float]] = {
            "plain": lambda n: _plain(repo, n),
            "new": lambda n: _task(repo, f"t{n}", 0, new_git),
            "pool": lambda n: _task(repo, f"p{n}", 1, pool_git),
        }
        for kind in kinds.values():  # untimed: the first worktree of the pool is made here
            kind(-1)
        new_git.spent.clear()
        pool_git.spent.clear()
        times: dict[str, list[float]] = defaultdict(list)
        for n in range(ROUNDS):
            for name, kind in kinds.items():
                times[name].append(kind(n))
        assert _git(repo, "branch", "--list", "pm/*") == ""  # every merged branch went
    anchor, new, pooled = (median(times[name]) for name in kinds)
    rows = [
        ("plain `git worktree add` + `remove` (anchor)", ms(anchor), "1.00x", ""),
        ("a new worktree per task (`worktree_pool: 0`)", ms(new), f"{new / anchor:.2f}x", _breakdown(new_git, ROUNDS)),
        ("from the pool (`worktree_pool: 1`)", ms(pooled), f"{pooled / anchor:.2f}x", _breakdown(pool_git, ROUNDS)),
    ]
    body = (
        f"A repository of {FILES:,} committed files, {IGNORED:,} ignored ones (node_modules/) and a .env that "
        f".worktreeinclude names, in {where or tempfile.gettempdir()}"
        f"{' (memory)' if where else ' (no /dev/shm here: the default temporary folder, on disk)'}. "
        "Each task is a WorktreeAgent call: worktree, include, agent (sh, one file), commit + diff, "
        f"claim check, merge into main (its checkout updated), remove or give back; no setup commands. "
        f"Median of {ROUNDS} tasks each, the three kinds taking turns, after one untimed each.\n\n"
        + table(["per task", "median", "vs plain git", "most of it, by git command"], rows)
    )
    checks = [
        Check("worktree task, a new worktree, 20k files (incl. merge)", f"{new / anchor:.2f}x plain git", "<= 1.5x",
              new / anchor <= 1.5),
        Check("worktree task from the pool, 20k files (incl. merge)", f"{pooled / anchor:.2f}x plain git", "<= 1.5x",
              pooled / anchor <= 1.5),
    ]  # fmt: skip
    return Section("Worktree tasks: a new worktree or one from the pool", body, checks)


if __name__ == "__main__":
    print_section(run())
