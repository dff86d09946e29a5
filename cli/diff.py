"""``project-manager diff TASK``: what a worktree task changed, to review, merged or not.

A task in worktree isolation works on the branch ``pm/<run>/<task>`` (``<task>.2`` for its
second attempt...). One that was not merged (rejected, in conflict, blocked, ``merge: none``,
failed) keeps its branch: shown from where it and HEAD part, ``git diff HEAD...BRANCH``. A
merged one's branch is deleted, but its hidden refs ``refs/pm/<run>/<task>/base`` and ``tip``
stay until retention prunes the run's records: shown as ``git diff BASE TIP``, exactly what the
task committed. The newest run's, newest attempt's, unless ``--run`` names a run (see
:func:`queue_core.taskrefs.newest`). Exit codes: 0 shown; 1 nothing of the task is left, or git
failed; 2 bad input.
"""

from __future__ import annotations

import os
from pathlib import Path

from queue_core.changes import GitCalls
from queue_core.errors import GitError, InvalidArgumentError, InvalidTaskIdError
from queue_core.runid import check_run_id
from queue_core.task import check_task_id
from queue_core.taskrefs import Found, Ran, last_ran, newest
from queue_core.worktree_leftovers import known_runs

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
        found = newest(repo_root, task, run=run_id, known=known_runs(repo_root), git=git)
        if found is None:
            terminal.error(_nothing_left(task, run_id, last_ran(repo_root, task, run=run_id)))
            return EXIT_FAILED
        options = ["--stat"] if stat else []
        shown = git(repo_root, "git", "--no-pager", "diff", "--no-color", *options, *found.revisions(), "--")
    except GitError as exc:
        terminal.error(str(exc))
        return EXIT_FAILED
    terminal.write_out(f"# {found.label} ({_what(found)})\n{os.fsdecode(shown)}".rstrip("\n"))
    return EXIT_OK


def _what(found: Found) -> str:
    """What the header says the diff is of."""
    if not found.merged:
        return "its branch, not merged"
    return "merged; its branch was deleted" if found.branch is None else "merged; its branch is still there"


def _nothing_left(task: str, run_id: str | None, ran: Ran | None) -> str:
    """Why nothing of ``task`` can be shown, as far as the runs' history records tell."""
    if ran is not None and ran.isolation == "shared":
        return (
            f"task {task!r} ran in the shared checkout in run {ran.run}: a task there has no branch, "
            "its changes went straight into your working tree (see git status, git log)"
        )
    if ran is not None and ran.isolation == "worktree":
        if ran.attempts == 0:
            return f"task {task!r} of run {ran.run} never started: it has no branch"
        return (
            f"nothing of task {task!r} of run {ran.run} is left to show: it ran in a worktree, but neither its "
            f"branch nor its hidden refs refs/pm/{ran.run}/{task}/ are there (it stopped before it had a branch, "
            "or they were removed since)"
        )
    of_run = "" if run_id is None else f" in run {run_id}"
    return (
        f"nothing of task {task!r} is left to show{of_run}: no branch pm/<run>/{task} and no hidden refs "
        f"refs/pm/<run>/{task}/. A task in the shared checkout has no branch (its changes are in your "
        "working tree or history); a worktree task's refs go with its run's records when retention prunes "
        "them (keep_runs, project-manager clean)"
    )
