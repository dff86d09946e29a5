"""Subprocess agents: one command per task, in its own process group, its output in a log file.

An agent type maps to an argv template (``["claude", "-p", "{description}"]``). The
placeholders ``{description}``, ``{task_id}`` and ``{files}`` are replaced in one pass over
the template's elements, never through a shell, so a description such as ``$(touch x); rm -rf
y`` reaches the agent as plain text. An element that is exactly ``{files}`` becomes one
argument per file. The same values are in the environment: ``PM_TASK_ID``, ``PM_AGENT``,
``PM_DESCRIPTION``, ``PM_FILES`` (one per line) and ``PM_RUN_ID``.

Output goes straight to the log file (the child writes to it; nothing is buffered here), so a
task that floods its output loses none of it and cannot block. Stopping (cancel, timeout)
sends SIGTERM to the whole process group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import QueueError

__all__ = ["AgentExitError", "SubprocessAgent", "render_argv"]

_PLACEHOLDER = re.compile(r"\{(description|task_id|files)\}")


class AgentExitError(QueueError):
    """An agent command exited with a non-zero code; its output is in ``log``."""

    def __init__(self, exit_code: int, log: Path):
        self.exit_code = exit_code
        self.log = log
        how = f"was killed by signal {-exit_code}" if exit_code < 0 else f"exited with code {exit_code}"
        super().__init__(f"the agent {how} (log: {log})")


def render_argv(template: Sequence[str], *, description: str, task_id: str, files: Sequence[str]) -> list[str]:
    """The argv for one task: placeholders replaced in a single pass, no shell involved."""
    values = {"description": description, "task_id": task_id, "files": " ".join(files)}
    argv: list[str] = []
    for element in template:
        if element == "{files}":
            argv.extend(files)
        else:
            argv.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)], element))
    return argv


@dataclass
class SubprocessAgent:
    """An ``execute_fn`` that runs one agent command; Stoppable (see queue_core.task).

    Returns the exit code (0) on success; raises AgentExitError otherwise. ``grace_s`` is how
    long a stopped command has between SIGTERM and SIGKILL.
    """

    argv: list[str]
    cwd: Path
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    grace_s: float = 5.0
    # _lock guards _proc and _stopping.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _stopping: bool = field(default=False, init=False, repr=False)

    @classmethod
    def for_task(
        cls,
        template: Sequence[str],
        *,
        task_id: str,
        agent: str,
        description: str,
        files: Sequence[str],
        cwd: Path,
        log: Path,
        run_id: str = "",
        grace_s: float = 5.0,
    ) -> SubprocessAgent:
        env = {
            "PM_TASK_ID": task_id,
            "PM_AGENT": agent,
            "PM_DESCRIPTION": description,
            "PM_FILES": "\n".join(files),
            "PM_RUN_ID": run_id,
        }
        argv = render_argv(template, description=description, task_id=task_id, files=files)
        return cls(argv, cwd, log, env, grace_s)

    def __call__(self) -> int:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"$ {subprocess.list2cmdline(self.argv)}\n".encode())
            out.flush()
            with self._lock:
                if self._stopping:  # stopped before it started: do not start (a retry may)
                    self._stopping = False
                    raise AgentExitError(-signal.SIGTERM, self.log)
                self._proc = subprocess.Popen(  # noqa: S603 - argv from the user's own agent config, no shell
                    self.argv,
                    cwd=self.cwd,
                    # Bytes: Popen encodes every str of the environment again for every task.
                    env={**os.environb, **{os.fsencode(k): os.fsencode(v) for k, v in self.env.items()}},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so stop() reaches its children
                )
            code = self._proc.wait()
            with self._lock:
                self._stopping = False  # a stop was for this attempt: a retry starts afresh
        if code != 0:
            raise AgentExitError(code, self.log)
        return code

    def stop(self) -> None:
        """SIGTERM the command's process group now, SIGKILL it after ``grace_s``; returns at once."""
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc, signal.SIGTERM)
        timer = threading.Timer(self.grace_s, _signal_group, (proc, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    @property
    def pid(self) -> int | None:
        with self._lock:
            return None if self._proc is None else self._proc.pid

    @property
    def exit_code(self) -> int | None:
        """The command's exit code (negative: the signal that ended it); None until it ends."""
        with self._lock:
            return None if self._proc is None else self._proc.returncode


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The whole group, even when its leader has exited: the agent's children may live on.
    with contextlib.suppress(ProcessLookupError):  # the group is gone already
        os.killpg(proc.pid, sig)
