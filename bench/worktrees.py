"""A task's worktree (issue 13): what one costs per task, against plain git, and a pool of reusable ones.

On a generated repository of FILES committed files (and an ignored ``node_modules/`` of
IGNORED files, as a JavaScript project has; a ``.env`` that ``.worktreeinclude`` names):

1. plain git, the anchor: ``git worktree add --detach`` + ``git worktree remove``;
2. ours, per task: :func:`~queue_core.worktrees.create` (a new branch ``pm/<run>/<task>``),
   :func:`~queue_core.worktree_include.copy_included`, one file written (the agent's work),
   :func:`~queue_core.worktrees.finish` (the commit and the exact diff) and
   :func:`~queue_core.worktrees.remove` (its checks, then the worktree; the unmerged branch is
   kept, and deleted outside the timing). No setup commands (their cost is the user's) and no
   merge (another part of the issue);
3. a pool: one worktree made once, reset per task with ``git checkout --detach --force BASE``
   and ``git clean -fd`` (ignored files stay: the ``.env``, build caches), then a new branch,
   the same file written and :func:`finish`.

Each is timed over ROUNDS tasks, the three taking turns; the median is reported, and the parts
of ours. Target (DESIGN.md): ours <= 1.5x plain git. Run alone: ``python -m bench.worktrees`` (not
yet in run_all). The repository is made where ``tempfile`` puts it: ``TMPDIR=/dev/shm`` measures
git's and our work without the disk (where writing 20,000 files is most of the anchor).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from queue_core.worktree_include import copy_included
from queue_core.worktrees import GIT, Worktree, base_commit, create, finish, remove

from ._common import Check, Section, median, print_section, table

FILES = 20_000
IGNORED = 2_000
ROUNDS = 5
_GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]


def _git(cwd: Path, *args: str) -> None:
    subprocess.run([*_GIT, *args], cwd=cwd, check=True, capture_output=True)


def _make_repo(root: Path) -> Path:
    """A repository of FILES small files in 200 folders, an ignored node_modules and a .env."""
    repo = root / "repo"
    for i in range(FILES):
        directory = repo / "src" / f"d{i % 200}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"m{i}.py").write_text(f"x = {i}\n")
    (repo / ".gitignore").write_text(".env\nnode_modules/\n")
    (repo / ".worktreeinclude").write_text(".env\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "bench")
    for i in range(IGNORED):
        directory = repo / "node_modules" / f"p{i % 50}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"i{i}.js").write_text("module.exports = 1\n")
    (repo / ".env").write_text("API_KEY=bench\n")
    return repo


def _plain(repo: Path, base: str, n: int) -> dict[str, float]:
    path = repo.parent / "plain" / f"t{n}"
    t0 = time.perf_counter()
    GIT(repo, "git", "worktree", "add", "--quiet", "--detach", "--", str(path), base)
    GIT(repo, "git", "worktree", "remove", "--", str(path))
    return {"total": time.perf_counter() - t0}


def _ours(repo: Path, base: str, n: int) -> dict[str, float]:
    marks = [time.perf_counter()]
    wt = create(repo, "bench", f"t{n}", base)
    marks.append(time.perf_counter())
    copy_included(repo, wt.path, git=GIT)
    marks.append(time.perf_counter())
    (wt.path / "src/d0/m0.py").write_text(f"x = 'task {n}'\n")
    finish(wt, f"bench task {n}")
    marks.append(time.perf_counter())
    removal = remove(wt, delete_branch=True)
    marks.append(time.perf_counter())
    assert not removal.branch_deleted  # unmerged: kept, as it must be
    _git(repo, "branch", "-q", "-D", wt.branch)
    parts = ("create", "include", "commit + diff", "remove")
    times = {part: marks[i + 1] - marks[i] for i, part in enumerate(parts)}
    times["total"] = marks[-1] - marks[0]
    return times


def _pooled(repo: Path, base: str, n: int, pool: Path) -> dict[str, float]:
    branch = f"pm/pool/t{n}"
    t0 = time.perf_counter()
    GIT(pool, "git", "checkout", "--quiet", "--detach", "--force", base)
    GIT(pool, "git", "clean", "-q", "-fd")
    GIT(pool, "git", "switch", "--quiet", "-c", branch)
    (pool / "src/d0/m0.py").write_text(f"x = 'task {n}'\n")
    finish(Worktree(pool, branch, base, f"t{n}", "pool", repo), f"bench task {n}")
    elapsed = time.perf_counter() - t0
    GIT(pool, "git", "switch", "--quiet", "--detach")
    _git(repo, "branch", "-q", "-D", branch)
    return {"total": elapsed}


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {part: median([run[part] for run in runs]) for part in runs[0]}


def _interleaved(steps: list[Callable[[int], dict[str, float]]]) -> list[dict[str, float]]:
    """The median of each timed part of each step over ROUNDS tasks, the steps taking turns (on
    a shared machine, what slows one round slows all three alike); one untimed round first."""
    for step in steps:
        step(-1)
    runs: list[list[dict[str, float]]] = [[] for _ in steps]
    for n in range(ROUNDS):
        for i, step in enumerate(steps):
            runs[i].append(step(n))
    return [_medians(each) for each in runs]


def run() -> Section:
    with tempfile.TemporaryDirectory(prefix="pm-bench-worktrees-") as tmp:
        repo = _make_repo(Path(tmp))
        base = base_commit(repo)
        pool = repo.parent / "pool"
        GIT(repo, "git", "worktree", "add", "--quiet", "--detach", "--", str(pool), base)
        copy_included(repo, pool, git=GIT)
        plain, ours, pooled = _interleaved(
            [
                lambda n: _plain(repo, base, n),
                lambda n: _ours(repo, base, n),
                lambda n: _pooled(repo, base, n, pool),
            ]
        )
    anchor = plain["total"]

    def row(what: str, seconds: float) -> tuple[str, str, str]:
        return what, f"{seconds * 1e3:,.0f} ms", f"{seconds / anchor:.2f}x"

    rows = [
        row("plain `git worktree add` + `remove` (anchor)", anchor),
        row("ours: create + include + commit + diff + remove", ours["total"]),
        *(row(f"&nbsp;&nbsp;of which {part}", ours[part]) for part in ("create", "include", "commit + diff", "remove")),
        row("pool: reset + branch + commit + diff", pooled["total"]),
    ]
    body = (
        f"A repository of {FILES:,} committed files, {IGNORED:,} ignored ones (node_modules/) and a "
        f".env that .worktreeinclude names, in {tempfile.gettempdir()}; median of {ROUNDS} tasks each.\n\n"
        + table(["per task", "median", "vs plain git"], rows)
    )
    ratio = ours["total"] / anchor
    check = Check(
        "worktree task cost (no setup, no merge), 20k files", f"{ratio:.2f}x plain git", "<= 1.5x", ratio <= 1.5
    )
    return Section("Worktrees per task", body, [check])


if __name__ == "__main__":
    print_section(run())
