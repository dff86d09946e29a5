"""``project-manager diff TASK``: the changes of a worktree task's kept branch, to review.

A task in worktree isolation works on the branch ``pm/<run>/<task>`` (``<task>.2`` for its
second attempt...). A merged task's branch is deleted; one that was not merged (rejected,
in conflict, blocked, ``merge: none``, failed) is kept, and this shows its changes from where
it started: ``git diff HEAD...BRANCH``, the merge base of the checkout and the branch against
the branch. The newest run's, newest attempt's, unless ``--run`` names a run. Exit codes: 0
shown; 1 no such branch is left, or git failed; 2 bad input.
"""

from __future__ import annotations

import os
from pathlib import Path

from queue_core.changes import GitCalls
from queue_core.errors import GitError, InvalidArgumentError, InvalidTaskIdError
from queue_core.runid import check_run_id
from queue_core.task import check_task_id
from queue_core.worktrees import BRANCH_PREFIX

from . import terminal
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .repo import find_repo


def run(repo: Path | None, task: str, *, run_id: str | None, stat: bool) -> int:
    repo_root = find_repo(repo)
    try:
        check_task_id(task)
    except InvalidTaskIdError as exc:
        terminal.error(f"task id {task!r}: {exc.reason}")
        return EXIT_USAGE
    try:
        if run_id is not None:
            check_run_id(run_id)
    except InvalidArgumentError as exc:
        terminal.error(str(exc))
        return EXIT_USAGE
    git = GitCalls()
    try:
        refs = os.fsdecode(
            git(repo_root, "git", "for-each-ref", "--format=%(refname:short)", f"refs/heads/{BRANCH_PREFIX}")
        )
        branch = _newest(refs.split(), task, run_id)
        if branch is None:
            of_run = "" if run_id is None else f" of run {run_id}"
            terminal.error(
                f"no branch of task {task!r}{of_run} is left: only a worktree task that was not merged keeps its "
                "branch (a merged one's changes are in your branch's history)"
            )
            return EXIT_FAILED
        shown = git(
            repo_root, "git", "--no-pager", "diff", "--no-color", *(["--stat"] if stat else []), f"HEAD...{branch}"
        )
    except GitError as exc:
        terminal.error(str(exc))
        return EXIT_FAILED
    terminal.write_out(f"# {branch}\n{os.fsdecode(shown)}".rstrip("\n"))
    return EXIT_OK


def _newest(branches: list[str], task: str, run_id: str | None) -> str | None:
    """The branch of ``task``'s newest attempt in ``run_id`` (else the newest run: run ids sort by time)."""
    found: list[tuple[str, int, str]] = []
    for branch in branches:
        parts = branch.split("/")
        if len(parts) != 3 or parts[0] != BRANCH_PREFIX.rstrip("/") or (run_id is not None and parts[1] != run_id):
            continue
        attempt = "1" if parts[2] == task else parts[2].removeprefix(f"{task}.")
        if attempt.isdigit():  # a task id may hold dots: "x.2" is x's second attempt only if x is asked
            found.append((parts[1], int(attempt), branch))
    return max(found)[2] if found else None
