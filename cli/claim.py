"""``project-manager claim`` and ``check``: an agent, inside its task, claims more as it works.

Thin over :mod:`queue_core.taskclaims`: the task is found from the environment its agent was
started with (``PM_RUN_ID``, ``PM_TASK_ID``, ``PM_STATE_DIR``, and ``PM_WORKTREE`` or
``PM_REPO`` for where its paths lie); outside a task both are refused.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from queue_core.claims import Access, Claim
from queue_core.errors import ClaimDeadlockError, ClaimHeldError, ClaimRefusedError
from queue_core.runid import check_run_id
from queue_core.task import check_task_id
from queue_core.taskclaims import TaskClaims, holder_text, holders, may_write, task_path

from . import terminal
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE

#: ``claim``'s exit codes beyond 0 and 2: held (after the wait), and a wait that would deadlock.
EXIT_HELD, EXIT_DEADLOCK = 3, 4


@dataclass(frozen=True)
class TaskEnv:
    """The task a command runs inside, as its environment says."""

    run: str
    task: str
    state: Path
    top: Path  # where its paths lie: its worktree, or the repository

    @classmethod
    def of(cls, env: Mapping[str, str]) -> TaskEnv:
        """Raises ClaimRefusedError outside a task."""
        names = ("PM_RUN_ID", "PM_TASK_ID", "PM_STATE_DIR", "PM_REPO")
        missing = [name for name in names if not env.get(name)]
        if missing:
            raise ClaimRefusedError(
                f"not inside a task of project-manager ({', '.join(missing)} not set): "
                "only an agent that project-manager started can claim"
            )
        try:
            check_run_id(env["PM_RUN_ID"])
            check_task_id(env["PM_TASK_ID"])
        except ValueError as exc:
            raise ClaimRefusedError(f"not inside a task of project-manager: {exc}") from None
        top = env.get("PM_WORKTREE") or env["PM_REPO"]
        return cls(env["PM_RUN_ID"], env["PM_TASK_ID"], Path(env["PM_STATE_DIR"]), Path(top))


@dataclass(frozen=True)
class Answer:
    """What a command inside a task comes to: its exit code, and what it says (stdout if the
    code is 0 or 1, else stderr)."""

    code: int
    text: str


def claim_answer(
    paths: Sequence[str],
    *,
    read: bool,
    wait: float,
    env: Mapping[str, str] = os.environ,
    stop: threading.Event | None = None,
) -> Answer:
    """Claim ``paths`` for the task this runs inside: exit code 0, 2, 3 or 4; ``stop`` set ends a wait."""
    try:
        task = TaskEnv.of(env)
        claims = [task_path(path, os.getcwd(), task.top, task.state) for path in paths]
        access = Access.READ if read else Access.WRITE
        granted = TaskClaims(task.state, task.run, task.task).claim(claims, access, wait=wait, stop=stop)
    except ClaimRefusedError as exc:
        return Answer(EXIT_USAGE, f"not claimed: {exc}")
    except ClaimDeadlockError as exc:
        return Answer(EXIT_DEADLOCK, f"not claimed: {exc}")
    except (ClaimHeldError, OSError) as exc:  # held, or the registry not to be had (StateError...)
        return Answer(EXIT_HELD, f"not claimed: {exc}")
    how = "to read" if read else "to write"
    lines = [f"claimed {text} {how}" for text in granted.added] + [f"already held: {text}" for text in granted.had]
    return Answer(EXIT_OK, "\n".join(lines))


def check_answer(path: str, *, env: Mapping[str, str] = os.environ) -> Answer:
    """Whether the task this runs inside may write ``path`` now: 0 yes, 1 no (and why), 2 refused."""
    try:
        task, claim = _one_path(path, env)
    except ClaimRefusedError as exc:
        return Answer(EXIT_USAGE, str(exc))
    mine, holder = may_write(task.state, task.run, task.task, claim)
    if mine:
        return Answer(EXIT_OK, f"{claim.text}: this task may write it")
    if holder is None:
        return Answer(
            EXIT_FAILED, f"{claim.text}: not claimed by this task, and free: `project-manager claim` takes it"
        )
    return Answer(EXIT_FAILED, f"{claim.text}: held by {holder_text(holder, task.run)}")


def who_holds_answer(path: str, *, env: Mapping[str, str] = os.environ) -> Answer:
    """Every task that holds a claim overlapping ``path`` (this one included), and how: 0; 2 refused."""
    try:
        task, claim = _one_path(path, env)
    except ClaimRefusedError as exc:
        return Answer(EXIT_USAGE, str(exc))
    holds = holders(task.state, claim)
    if not holds:
        return Answer(EXIT_OK, f"{claim.text}: held by no task")
    lines = [
        f"{claim.text}: {'this task' if h.key == f'{task.run}/{task.task}' else holder_text(h, task.run)} "
        f"holds {', '.join(h.writes) or '-'} to write, {', '.join(h.reads) or '-'} to read"
        for h in holds
    ]
    return Answer(EXIT_OK, "\n".join(lines))


def _one_path(path: str, env: Mapping[str, str]) -> tuple[TaskEnv, Claim]:
    """The task this runs inside, and ``path`` as a claim in it; raises ClaimRefusedError."""
    task = TaskEnv.of(env)
    return task, task_path(path, os.getcwd(), task.top, task.state)


def say(answer: Answer) -> int:
    """Print ``answer`` as a command does; its exit code."""
    if answer.code in (EXIT_OK, EXIT_FAILED):
        if answer.text:
            terminal.out(answer.text)
    else:
        terminal.error(answer.text)
    return answer.code
