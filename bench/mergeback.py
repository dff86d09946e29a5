"""Merge-back (issue 13): what merging a task's branch costs, against a plain ``git merge --no-ff``.

A generated repository of 20,000 files (200 directories of 100), the user's ``main`` one commit
past the run's base, and a task's branch from the base changing 3 files. Each trial puts
``main`` and the checkout back at the user's commit (untimed), then times one of:

* ``git merge --no-ff`` of the branch in the clean checkout: the anchor;
* ``merge_back`` (merge, squash, rebase) under ``merge_lock``, in the same clean checkout;
* ``merge_back`` (merge) with the user's work in the checkout: 10 modified files, one staged,
  one untracked (what it is for: ``git merge`` would write beside them just the same, but
  stop mid-merge on a conflict).

Median of ``TRIALS`` each, the kinds interleaved so that drift hits all alike. Also where
merge_back's time goes: its git calls, by command, from the clean merge trials. The repository
is made in /dev/shm when the machine has it (see ``fast_tmp``). In ``make bench`` (run_all) and
alone: ``python -m bench.mergeback``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from queue_core.changes import GitCalls
from queue_core.claims import Claim
from queue_core.mergeback import MergeMode, MergeStatus, merge_back
from queue_core.mergelock import merge_lock

from ._common import Check, Section, TimedGit, fast_tmp, median, ms, print_section, table

FILES = 20_000
PER_DIR = 100
TRIALS = 5
BRANCH = "pm/bench/t1"
TASK_FILES = ("d0007/f0003.txt", "d0101/f0050.txt", "d0199/f0099.txt")


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}
    ).stdout


def _make_repo(root: Path) -> tuple[Path, str, str]:
    """The repository, its base commit and the user's commit on main (the branch made too)."""
    repo = root / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.name", "Bench")
    _git(repo, "config", "user.email", "bench@example.invalid")
    for number in range(FILES):
        path = repo / f"d{number // PER_DIR:04d}" / f"f{number % PER_DIR:04d}.txt"
        if number % PER_DIR == 0:
            path.parent.mkdir()
        path.write_text(f"file {number}\n" + "line\n" * 20)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD").strip()
    # The task's branch, made with plumbing in an index of its own: the checkout is not touched.
    index = str(root / "task.index")
    env = {"GIT_INDEX_FILE": index}
    _git(repo, "read-tree", base, env=env)
    for path in TASK_FILES:
        blob = subprocess.run(
            ["git", "hash-object", "-w", "--stdin"], cwd=repo, input=f"{path} by the task\n", capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
        _git(repo, "update-index", "--cacheinfo", f"100644,{blob},{path}", env=env)
    tree = _git(repo, "write-tree", env=env).strip()
    task = subprocess.run(
        ["git", "commit-tree", tree, "-p", base, "-m", "task t1"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    _git(repo, "update-ref", f"refs/heads/{BRANCH}", task)
    (repo / "d0050/f0000.txt").write_text("the user's commit\n")
    _git(repo, "commit", "-q", "-am", "the user's commit")
    return repo, base, _git(repo, "rev-parse", "HEAD").strip()


def _reset(repo: Path, user: str) -> None:
    _git(repo, "reset", "-q", "--hard", user)
    _git(repo, "clean", "-qfd")


def _dirty(repo: Path) -> None:
    for number in range(10):
        (repo / f"d{number + 10:04d}/f0001.txt").write_text("the user's edit\n")
    _git(repo, "add", "d0010/f0001.txt")
    (repo / "notes.md").write_text("untracked\n")


def _ours(repo: Path, base: str, mode: MergeMode, git: GitCalls) -> float:
    started = time.perf_counter()
    with merge_lock(repo):
        result = merge_back(
            repo, target_branch="main", base=base, branch=BRANCH, mode=mode, message="task t1",
            claims=[Claim.parse(p) for p in TASK_FILES], git=git,
        )  # fmt: skip
    spent = time.perf_counter() - started
    assert result.status is MergeStatus.MERGED, result.reason
    return spent


def _dirty_then_ours(repo: Path, base: str) -> float:
    _dirty(repo)
    return _ours(repo, base, MergeMode.MERGE, GitCalls())


def _plain(repo: Path) -> float:
    started = time.perf_counter()
    _git(repo, "merge", "--no-ff", "-q", "-m", "task t1", BRANCH)
    return time.perf_counter() - started


def run() -> Section:
    where = fast_tmp()
    with tempfile.TemporaryDirectory(prefix="pm-bench-merge-", dir=where) as tmp:
        repo, base, user = _make_repo(Path(tmp))
        timed = TimedGit()
        kinds: dict[str, Callable[[], float]] = {
            "git merge --no-ff (anchor)": lambda: _plain(repo),
            "merge_back, merge": lambda: _ours(repo, base, MergeMode.MERGE, timed),
            "merge_back, squash": lambda: _ours(repo, base, MergeMode.SQUASH, GitCalls()),
            "merge_back, rebase": lambda: _ours(repo, base, MergeMode.REBASE, GitCalls()),
            "merge_back, merge, user's work in the checkout": lambda: _dirty_then_ours(repo, base),
        }  # fmt: skip
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(TRIALS):
            for kind, measure in kinds.items():
                _reset(repo, user)
                times[kind].append(measure())
    anchor = median(times["git merge --no-ff (anchor)"])
    rows = [(kind, ms(median(spent)), f"{median(spent) / anchor:.2f}×") for kind, spent in times.items()]
    calls = sorted(timed.spent.items(), key=lambda item: -sum(item[1]))
    breakdown = [(name, len(spent) // TRIALS, ms(sum(spent) / TRIALS)) for name, spent in calls]
    ours = median(times["merge_back, merge"])
    body = (
        f"{FILES:,} files, a task changing {len(TASK_FILES)}, main one commit past the base, in "
        f"{where or tempfile.gettempdir()}"
        f"{' (memory)' if where else ' (no /dev/shm here: the default temporary folder, on disk)'}; median of "
        f"{TRIALS}.\n\n"
        + table(["what", "median", "vs git merge --no-ff"], rows)
        + "\nWhere `merge_back` (merge) spends it, per merge:\n\n"
        + table(["git command", "calls", "time"], breakdown)
    )
    check = Check("merge-back, 20k files, 3 changed", f"{ms(ours)} ({ours / anchor:.2f}× git merge)", "—", True)
    return Section("Merge-back of a task's branch", body, [check])


if __name__ == "__main__":
    print_section(run())
