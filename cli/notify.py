"""``delegate-multiple --notify``: when a run ends by itself, the terminal's bell, and the
``on_finish:`` command of project-manager.yaml if it has one.

The command is an argv, never a shell string. It runs at the repository root and learns how the
run ended from its environment: ``PM_RUN_ID``, ``PM_EXIT_CODE``, ``PM_TOTAL``, ``PM_SUCCEEDED``
and ``PM_FAILED`` (failed, timed out or stayed rate-limited). It has ON_FINISH_TIMEOUT_S to end,
then it is killed with its process group. Whatever it does, the run's exit code stays the
tasks': a failure is a warning.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from queue_core import TaskState
from queue_core.errors import exit_text
from queue_core.records import FAILED_STATES

from . import terminal

#: How long ``on_finish`` may take: a notification, not a job.
ON_FINISH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Notify:
    """How to tell that a run ended: the bell, then ``command`` (empty: none) run in ``repo``."""

    command: tuple[str, ...]
    repo: Path
    timeout_s: float = ON_FINISH_TIMEOUT_S

    def __call__(self, run_id: str, code: int, outcomes: Sequence[TaskState]) -> None:
        """The run ``run_id`` ended with ``code``, its tasks with ``outcomes``: ring, run the command."""
        terminal.bell()
        if not self.command:
            return
        env = {
            "PM_RUN_ID": run_id,
            "PM_EXIT_CODE": str(code),
            "PM_TOTAL": str(len(outcomes)),
            "PM_SUCCEEDED": str(sum(o is TaskState.SUCCEEDED for o in outcomes)),
            "PM_FAILED": str(sum(o in FAILED_STATES for o in outcomes)),
        }
        problem = run_command(self.command, self.repo, env, self.timeout_s)
        if problem is not None:
            terminal.warning(f"on_finish ({shlex.join(self.command)}) {problem}; the run's exit code stands")


def run_command(command: Sequence[str], cwd: Path, env: dict[str, str], timeout_s: float) -> str | None:
    """Run ``command`` in ``cwd`` with ``env`` added, its output dropped but for its last error
    line, for at most ``timeout_s``; None if it exited 0, else what went wrong."""
    try:
        proc = subprocess.Popen(  # noqa: S603 - the user's own argv, from their file; no shell
            list(command),
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # stdout is the run's (its --json)
            stderr=subprocess.PIPE,
            start_new_session=True,  # a group of its own, to stop whole
        )
    except OSError as exc:
        return f"could not start: {exc.strerror or exc}"
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()  # a child that left the group may hold it open: not waited for
        return f"did not end within {timeout_s:g}s and was killed"
    if proc.returncode == 0:
        return None
    lines = err.decode(errors="replace").strip().splitlines()
    return exit_text(proc.returncode) + (f": {lines[-1]}" if lines else "")
