"""``delegate-multiple --notify``: when a run ends by itself, the terminal's bell, and the
``on_finish:`` command of project-manager.yaml if it has one.

The command is an argv, never a shell string. It runs at the repository root and learns how the
run ended from its environment: ``PM_RUN_ID``, ``PM_EXIT_CODE``, ``PM_TOTAL``, ``PM_SUCCEEDED``
and ``PM_FAILED`` (failed, timed out or stayed rate-limited). It has ON_FINISH_TIMEOUT_S to end,
then it is killed with its process group. Whatever it does, the run's exit code stays the
tasks': a failure is a warning. A stop signal while it runs kills it at once, and is the exit code.

:func:`run_command` is the one way the CLI runs such a command: ``hooks:`` (cli/hooks.py) too.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from queue_core import TaskState
from queue_core.errors import exit_text
from queue_core.records import FAILED_STATES

from . import terminal

#: How long ``on_finish`` may take: a notification, not a job.
ON_FINISH_TIMEOUT_S = 10.0
#: How much of its stderr is kept, for its last line: the rest is dropped as it comes.
ERROR_TAIL_BYTES = 4096
#: Once it exited, how long its last error line may take to come through: a process it left
#: behind may hold the pipe open.
ERROR_LINE_WAIT_S = 1.0

#: Waits for the given call, returning the number of a stop signal that came first, else None
#: (cli.signals.Signals.wait_for).
Waiter = Callable[[Callable[[], object]], "int | None"]


@dataclass(frozen=True)
class Notify:
    """How to tell that a run ended: the bell, then ``command`` (empty: none) run in ``repo``."""

    command: tuple[str, ...]
    repo: Path
    timeout_s: float = ON_FINISH_TIMEOUT_S

    def __call__(self, run_id: str, code: int, outcomes: Sequence[TaskState], wait: Waiter | None = None) -> int | None:
        """The run ``run_id`` ended with ``code``, its tasks with ``outcomes``: ring, run the command.

        ``wait`` (see Waiter) waits for the command: a stop signal then stops it at once. The
        number of that signal, if one came; else None.
        """
        terminal.bell()
        if not self.command:
            return None
        signums: list[int] = []
        problem = run_command(self.command, self.repo, run_env(run_id, code, outcomes), self.timeout_s, wait, signums)
        if problem is not None:
            stands = "" if signums else "; the run's exit code stands"
            terminal.warning(f"on_finish ({shlex.join(self.command)}) {problem}{stands}")
        return signums[0] if signums else None


def run_env(run_id: str, code: int, outcomes: Sequence[TaskState]) -> dict[str, str]:
    """How the run ``run_id`` ended, for a command's environment: ``PM_RUN_ID``, ``PM_EXIT_CODE``,
    ``PM_TOTAL``, ``PM_SUCCEEDED`` and ``PM_FAILED``."""
    return {
        "PM_RUN_ID": run_id,
        "PM_EXIT_CODE": str(code),
        "PM_TOTAL": str(len(outcomes)),
        "PM_SUCCEEDED": str(sum(o is TaskState.SUCCEEDED for o in outcomes)),
        "PM_FAILED": str(sum(o in FAILED_STATES for o in outcomes)),
    }


def run_command(
    command: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    timeout_s: float,
    wait: Waiter | None = None,
    signums: list[int] | None = None,
    *,
    stdin: bytes | None = None,
) -> str | None:
    """Run ``command`` in ``cwd`` with ``env`` added and ``stdin`` to read (None: nothing), its
    output dropped but for its last error line, for at most ``timeout_s``; None if it exited 0,
    else what went wrong.

    Its end is its own exit, not the end of its output, which a process it left running may hold
    open. ``wait`` waits for that exit (see Waiter); a stop signal then stops the command, and
    its number goes into ``signums``.
    """
    try:
        with _input(stdin) as source:
            proc = subprocess.Popen(  # noqa: S603 - the user's own argv, from their file; no shell
                list(command),
                cwd=cwd,
                env={**os.environ, **env},
                stdin=source,
                stdout=subprocess.DEVNULL,  # stdout is the run's (its --json)
                stderr=subprocess.PIPE,
                start_new_session=True,  # a group of its own, to stop whole
            )
    except OSError as exc:
        return f"could not start: {exc.strerror or exc}"
    assert proc.stderr is not None
    errors = _Tail(proc.stderr, ERROR_TAIL_BYTES)
    deadline = time.monotonic() + timeout_s

    def exited() -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)

    if wait is None:
        exited()
    signum = None if wait is None else wait(exited)
    if proc.poll() is None:  # out of time, or stopped by a signal
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if signum is not None:
            if signums is not None:
                signums.append(signum)
            return f"was stopped: interrupted by {signal.Signals(signum).name}"
        return f"did not end within {timeout_s:g}s and was killed"
    if proc.returncode == 0:
        return None
    lines = errors.text(min(ERROR_LINE_WAIT_S, max(0.0, deadline - time.monotonic()))).strip().splitlines()
    return exit_text(proc.returncode) + (f": {lines[-1]}" if lines else "")


@contextlib.contextmanager
def _input(data: bytes | None) -> Iterator[int | IO[bytes]]:
    """What a command reads on stdin: nothing, or ``data`` in a temporary file, private and
    already unlinked. A file, not a pipe: a command that never reads it cannot block, nor keep
    anyone waiting to write the rest."""
    if data is None:
        yield subprocess.DEVNULL
        return
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.seek(0)
        yield file


class _Tail:
    """The last ``size`` bytes of ``pipe``, read to its end by a thread of its own."""

    def __init__(self, pipe: IO[bytes], size: int):
        self._pipe = pipe
        self._size = size
        self._data = b""
        self._thread = threading.Thread(target=self._read, name="project-manager-command-errors", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError), self._pipe:
            while chunk := os.read(self._pipe.fileno(), 65536):  # what is there: no wait for a full buffer
                self._data = (self._data + chunk)[-self._size :]

    def text(self, wait_s: float) -> str:
        """What was kept once the pipe ended, or ``wait_s`` seconds passed."""
        self._thread.join(wait_s)
        return self._data.decode(errors="replace")
