"""A worktree's setup commands (``setup:`` in the repository's configuration): run before the agent.

A fresh worktree has the tracked files and what ``.worktreeinclude`` copied, not installed
dependencies or generated files; ``npm ci`` or ``uv sync`` makes it usable. Each command is an
argv (never a shell string), run in the worktree with the task's environment, one after the
other, under this process's supervisor like an agent (its whole process tree is stopped on
timeout, on :meth:`Setup.stop`, and if this process dies). Its output goes to the task's log,
after a header naming it, so a failure is read where the agent's output would be. The first
failure stops the setup and raises :class:`~queue_core.errors.SetupError`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import InvalidArgumentError, SetupError, exit_text
from .supervisor import AgentProcess, Supervisor, shared_supervisor

__all__ = ["SETUP_TIMEOUT_S", "Setup", "run_setup"]

#: How long one setup command may run by default: an install on a slow network, not a hang.
SETUP_TIMEOUT_S = 600.0


class Setup:
    """The setup commands of one task's worktree; :meth:`run` runs them, :meth:`stop` stops them
    from another thread. ``record`` is as for :meth:`Supervisor.spawn`: a file and a task id to
    note each command's process group in, so the registry sees the task's processes."""

    def __init__(
        self,
        worktree: str | os.PathLike[str],
        commands: Sequence[Sequence[str]],
        log: Path,
        env: Mapping[str, str],
        *,
        timeout_s: float = SETUP_TIMEOUT_S,
        grace_s: float = 5.0,
        record: tuple[str | os.PathLike[str], str] | None = None,
        supervisor: Supervisor | None = None,
    ):
        for command in commands:
            if isinstance(command, str) or not command or not all(isinstance(arg, str) for arg in command):
                raise InvalidArgumentError(f"a setup command is a non-empty list of strings, not {command!r}")
        if timeout_s <= 0:
            raise InvalidArgumentError(f"setup timeout: expected seconds > 0, got {timeout_s!r}")
        self.worktree = Path(worktree)
        self.commands = [tuple(command) for command in commands]
        self.log = log
        self.env = dict(env)
        self.timeout_s, self.grace_s, self.record = timeout_s, grace_s, record
        self._supervisor = supervisor
        self._lock = threading.Lock()  # guards the three below
        self._process: AgentProcess | None = None
        self._stopped = False
        self._timed_out = False

    def run(self) -> None:
        """Run every command in turn; raises SetupError, naming the command and the log, at the
        first that fails, times out, is stopped or cannot start (SupervisorError if the
        supervisor is gone). Returns only once the command's processes are all gone."""
        env = {**os.environb, **{os.fsencode(k): os.fsencode(v) for k, v in self.env.items()}}
        supervisor = self._supervisor or shared_supervisor()
        for command in self.commands:
            self._run_one(command, env, supervisor)

    def stop(self) -> None:
        """Stop the command running (its whole tree: SIGTERM, then SIGKILL after ``grace_s``) and
        run no further one; returns at once."""
        with self._lock:
            self._stopped = True
            process = self._process
        if process is not None:
            process.stop()

    def _run_one(self, command: tuple[str, ...], env: dict[bytes, bytes], supervisor: Supervisor) -> None:
        header = os.fsencode(f"[project-manager] setup in {self.worktree}\n$ {shlex.join(command)}\n")
        with self._lock:
            if self._stopped:
                raise SetupError(command, None, self.log, "was not run: the task was stopped")
        try:
            process = supervisor.spawn(
                command,
                cwd=self.worktree,
                env=env,
                log=self.log,
                header=header,
                grace_s=self.grace_s,
                record=self.record,
            )
        except (ValueError, OSError) as exc:  # a NUL byte, too large to run
            raise SetupError(command, None, self.log, f"could not run: {exc}") from exc
        if self._adopt(process):
            process.stop()  # stopped while it was being started
        timer = threading.Timer(self.timeout_s, self._time_out, (process,))
        timer.daemon = True
        timer.start()
        try:
            code = process.wait()
        except OSError as exc:  # it never started: no such program, not executable
            self._note(f"setup command {command[0]!r} could not start: {exc.strerror or exc}")
            raise SetupError(command, None, self.log, f"could not start: {exc.strerror or exc}") from exc
        finally:
            timer.cancel()
            with self._lock:
                self._process = None
                timed_out, stopped, self._timed_out = self._timed_out, self._stopped, False
        if timed_out:
            self._note(f"setup command timed out after {self.timeout_s:g}s: stopped")
            raise SetupError(command, code, self.log, f"timed out after {self.timeout_s:g}s")
        if stopped:
            raise SetupError(command, code, self.log, "was stopped")
        if code != 0:
            self._note(f"setup command {exit_text(code)}: the task fails")
            raise SetupError(command, code, self.log, exit_text(code))

    def _adopt(self, process: AgentProcess) -> bool:
        """Make ``process`` the one running; whether a stop came meanwhile."""
        with self._lock:
            self._process = process
            return self._stopped

    def _time_out(self, process: AgentProcess) -> None:
        with self._lock:
            if self._process is not process:
                return  # it ended as the timer fired
            self._timed_out = True
        process.stop()

    def _note(self, text: str) -> None:
        """Append a line of ours to the log, as the runner does: never through a symlink."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        with contextlib.suppress(OSError):
            fd = os.open(self.log, flags, 0o600)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.write(fd, os.fsencode(f"[project-manager] {text}\n"))
            finally:
                os.close(fd)


def run_setup(
    worktree: str | os.PathLike[str],
    commands: Sequence[Sequence[str]],
    log: Path,
    env: Mapping[str, str],
    *,
    timeout_s: float = SETUP_TIMEOUT_S,
) -> None:
    """Run ``commands`` in ``worktree`` as :class:`Setup` does, with no way to stop them but the timeout."""
    Setup(worktree, commands, log, env, timeout_s=timeout_s).run()
