"""Subprocess agents: one command per task, in its own process group, its output in a log file.

An agent type maps to an argv template (``["aider", "--message={prompt}", "--", "{files}"]``).
The placeholders ``{description}``, ``{task_id}``, ``{files}``, ``{reads}`` and ``{prompt}``
(the description followed by the paths the task may modify and read, see
:data:`DEFAULT_PROMPT`) are replaced in one pass over the template's elements, never through
a shell, so a description such as ``$(touch x); rm -rf y`` reaches the agent as plain text.
An element that is exactly ``{files}`` (or ``{reads}``) becomes one argument per path. The
same values are in the environment: ``PM_TASK_ID``, ``PM_AGENT``, ``PM_DESCRIPTION``,
``PM_FILES`` (one per line) and ``PM_RUN_ID``; ``PM_REPO`` is ``cwd``, the repository.

Commands run under this process's supervisor (:mod:`queue_core.supervisor`), each in a
session of its own. Output goes straight to the log file (the command writes to it; nothing
is buffered here), so a task that floods its output loses none of it and cannot block.
Stopping (cancel, timeout) sends SIGTERM to every process of the command's tree, then SIGKILL
after a grace period; a task ends only once its last process is gone. A timeout is noted in
the log (``[project-manager] timed out after 1s (attempt 1 of 3): stopping it``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from .errors import AgentExitError, AgentReportedError, RateLimitedError
from .reports import AgentReport, read_report
from .statedir import open_append
from .supervisor import AgentProcess, shared_supervisor

if TYPE_CHECKING:
    from .records import MergeOutcome

__all__ = ["DEFAULT_PROMPT", "SubprocessAgent", "append_to_log", "render_argv", "render_prompt"]

_PLACEHOLDER = re.compile(r"\{(description|task_id|files|reads|prompt)\}")
_PROMPT_PLACEHOLDER = re.compile(r"\{(description|files|reads)\}")

#: What ``{prompt}`` says by default: the task, then the paths it may modify and read (claims as
#: written, globs included). It steers the agent; it does not sandbox it.
DEFAULT_PROMPT = (
    "{description}\n\n"
    "Files and directories you may modify: {files}. Files you may only read: {reads}. "
    "Do not create, modify or delete anything else."
)


def render_prompt(template: str, *, description: str, files: Sequence[str], reads: Sequence[str] = ()) -> str:
    """The prompt for one task: ``{description}``, ``{files}`` and ``{reads}`` replaced in one pass."""
    values = {"description": description, "files": ", ".join(files) or "none", "reads": ", ".join(reads) or "none"}
    return _PROMPT_PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def render_argv(
    template: Sequence[str],
    *,
    description: str,
    task_id: str,
    files: Sequence[str],
    reads: Sequence[str] = (),
    prompt: str | None = None,
) -> list[str]:
    """The argv for one task: placeholders replaced in a single pass, no shell involved.

    ``{prompt}`` is ``prompt`` (default: the description). An element that is exactly
    ``{files}`` or ``{reads}`` becomes one argument per path.
    """
    values = {
        "description": description,
        "task_id": task_id,
        "files": " ".join(files),
        "reads": " ".join(reads),
        "prompt": description if prompt is None else prompt,
    }
    argv: list[str] = []
    for element in template:
        if element in ("{files}", "{reads}"):
            argv.extend(files if element == "{files}" else reads)
        else:
            argv.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)], element))
    return argv


@dataclass
class SubprocessAgent:
    """An ``execute_fn`` that runs one agent command under the supervisor; Stoppable and Logged
    (see queue_core.task).

    Returns the exit code (0) on success; raises AgentExitError otherwise, AgentReportedError
    if it exited 0 but its output (in ``report_format``) reports an error, RateLimitedError if
    that output (or its stderr, when it failed) says it hit a rate limit, the OSError that kept
    the command from starting (FileNotFoundError: no such program), or SupervisorError. It
    returns only once the command *and every process it started* are gone (see
    :mod:`queue_core.supervisor`), so a claim is never released while one of them lives.
    ``grace_s`` is how long a stopped command has between SIGTERM and SIGKILL.
    """

    #: Where its attempts run: in the checkout the queue runs in (a WorktreeAgent: "worktree").
    isolation: ClassVar[str] = "shared"

    argv: list[str]
    cwd: Path
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    grace_s: float = 5.0
    #: The format of what the agent reports in its log (a key of queue_core.reports.FORMATS), if any.
    report_format: str | None = None
    #: What the agent reported of its last attempt, read from its log once it ended; its cost and
    #: tokens are those of every attempt so far.
    report: AgentReport | None = field(default=None, init=False)
    #: Where the command's process group is recorded before it runs: a file and the task's id
    #: (see queue_core.task.Supervised). Set by a queue with a registry.
    record_group_in: tuple[Path, str] | None = field(default=None, init=False, repr=False)
    # _lock guards _stopping, and the writes of _process.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _process: AgentProcess | None = field(default=None, init=False, repr=False)
    _stopping: bool = field(default=False, init=False, repr=False)
    _exit_code: int | None = field(default=None, init=False, repr=False)

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
        reads: Sequence[str] = (),
        prompt: str = DEFAULT_PROMPT,
        report_format: str | None = None,
    ) -> SubprocessAgent:
        """The agent for one task; ``prompt`` is the template of ``{prompt}`` (see render_prompt)."""
        env = {
            "PM_TASK_ID": task_id,
            "PM_AGENT": agent,
            "PM_DESCRIPTION": description,
            "PM_FILES": "\n".join(files),
            "PM_RUN_ID": run_id,
            "PM_REPO": str(cwd),
        }
        text = render_prompt(prompt, description=description, files=files, reads=reads)
        argv = render_argv(template, description=description, task_id=task_id, files=files, reads=reads, prompt=text)
        return cls(argv, cwd, log, env, grace_s, report_format)

    def __call__(self) -> int:
        header = os.fsencode(f"$ {shlex.join(self.argv)}\n")  # quoted as a POSIX shell reads it
        # Bytes: the environment is encoded once here, not again by whoever starts the command.
        env = {**os.environb, **{os.fsencode(k): os.fsencode(v) for k, v in self.env.items()}}
        with self._lock:
            stopping = self._stopping
            self._process, self._exit_code = None, None
        if stopping:  # stopped before it started: do not start (a retry may)
            raise self._stopped_before_start()
        start = _size(self.log) + len(header)  # the log is appended to: this attempt's report starts here
        # Not under the lock: starting the supervisor takes a while, and pid is read under a queue's lock.
        process = shared_supervisor().spawn(
            self.argv,
            cwd=self.cwd,
            env=env,
            log=self.log,
            header=header,
            grace_s=self.grace_s,
            record=self.record_group_in,
        )
        if self._adopt(process):
            process.stop()
        try:
            code = process.wait()
        finally:
            with self._lock:
                self._stopping = False  # a stop was for this attempt: a retry starts afresh
        report = None
        if self.report_format is not None:
            report = read_report(self.log, self.report_format, start=start, failed=code != 0)
        return self._judge(code, report)

    def _judge(self, code: int, report: AgentReport | None) -> int:
        """Keep the attempt's exit code and ``report`` (what its log says, if it is read); return
        the code if the attempt succeeded, else raise what its failure is."""
        self._exit_code = code
        if report is not None:
            self.report = report.after(self.report)
            if self.report.rate_limited:  # a stopped attempt ends cancelled or timed out whatever it says
                what = f"the agent was rate-limited: {self.report.error or 'no message'}"
                raise RateLimitedError(what, self.report.retry_after)
        if code != 0:
            raise AgentExitError(code, self.log)
        if self.report is not None and self.report.error is not None:
            raise AgentReportedError(self.report.error, self.log)
        return code

    def _stopped_before_start(self) -> AgentExitError:
        """What an attempt stopped before its command started ends with; the stop is spent."""
        with self._lock:
            self._stopping = False
        return AgentExitError(-signal.SIGTERM, self.log)

    def _adopt(self, process: AgentProcess) -> bool:
        """Make ``process`` this attempt's; whether a stop came while it was being started."""
        with self._lock:
            self._process = process
            return self._stopping

    def note(self, text: str) -> None:
        """Append a line of the queue's to the log (why it stopped the attempt), where a reader of
        the agent's output finds it; a log that cannot be written is left as it is."""
        append_to_log(self.log, os.fsencode(f"[project-manager] {text}\n"))

    def stop(self) -> None:
        """Stop the command and every process it started: SIGTERM now, SIGKILL after ``grace_s``.

        Returns at once; the call running the command returns once they are all gone.
        """
        process = self._stop_requested()
        if process is not None:
            process.stop()

    def _stop_requested(self) -> AgentProcess | None:
        """Note that the attempt is to stop; its process, if it started."""
        with self._lock:
            self._stopping = True
            return self._process

    @property
    def pid(self) -> int | None:
        """The command's pid (and process group id) once started."""
        process = self._process
        return None if process is None else process.pid

    @property
    def exit_code(self) -> int | None:
        """The command's exit code (negative: the signal that ended it); None until it ends."""
        return self._exit_code

    def merge_outcome(self) -> MergeOutcome | None:
        """What came of the branch of its last attempt, for the run's history: none here, in the
        checkout (see WorktreeAgent)."""
        return None


def append_to_log(path: Path, data: bytes) -> None:
    """Append ``data`` to the log at ``path`` (made if missing), opened as the supervisor opens
    it: never through a symlink, never a FIFO's wait; a log that cannot be written is left as it is."""
    with contextlib.suppress(OSError), open_append(path) as fd:
        os.write(fd, data)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
