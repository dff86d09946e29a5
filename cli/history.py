"""``project-manager history``, ``show [RUN]`` and ``logs TASK [--run RUN] [-f]``: the runs of a
repository read back from its state directory (see queue_core.runfiles and queue_core.logfiles).

Read-only, like ``status``: no lock taken, nothing written. A file that cannot be read is named
in a warning and passed over. Exit codes: 0 shown; 1 no such run, task or log (or a log that
was removed or replaced while followed, or output that could not be written: a full disk); 2
bad input (a run or task id that is a path, a run named by a part of its id that several runs
have); 130 and such: ended by a signal; 141 the reader went away.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from queue_core.errors import AmbiguousRunError, InvalidArgumentError, InvalidTaskIdError, RunNotFoundError
from queue_core.logfiles import LogFollower, log_path, open_log, run_logs, tail_start
from queue_core.runfiles import find_run, iter_runs, list_runs, run_summary
from queue_core.runviews import RunSummary
from queue_core.statedir import state_dir
from queue_core.task import check_task_id

from . import terminal
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, exit_code_for
from .history_text import NO_CUT, history_text, logs_text, show_text
from .repo import find_repo
from .signals import Signals, noted

#: How often ``logs -f`` looks for more: a stat and a read, and the journal's new lines.
FOLLOW_INTERVAL_S = 0.1
#: Why following a log ended, when it is not the task's own end.
_FOLLOW_ENDS = {
    "run_died": "run {run} is no longer alive, and left no history: it was killed; its log ends here",
    "removed": "{path} was removed while it was followed",
    "replaced": "{path} was replaced by another file (rotated?) while it was followed",
    "truncated": "{path} was cut shorter while it was followed",
}


def history(repo: Path | None, *, limit: int, json_out: bool) -> int:
    """The newest ``limit`` runs of the repository, newest first."""
    root = find_repo(repo)
    found = list_runs(state_dir(root), limit=limit)
    for warning in found.warnings:
        terminal.warning(warning)
    runs = found.runs
    if json_out:
        return terminal.print_result(json.dumps([run.to_json(tasks=False) for run in runs], indent=2))
    if not runs:
        return terminal.print_result(f"No runs recorded in {root}.")
    return terminal.print_result(history_text(runs, width=_width()))


def show(repo: Path | None, run_text: str | None, *, json_out: bool) -> int:
    """One run (default: the latest), its header and its tasks."""
    directory = state_dir(find_repo(repo))
    try:
        run = run_named(directory, run_text)
        summary, warnings = run_summary(directory, run)
    except CommandError as error:
        return refused(error)
    except RunNotFoundError as exc:  # pruned since it was found
        terminal.error(str(exc))
        return EXIT_FAILED
    for warning in warnings:
        terminal.warning(warning)
    logs = directory / "logs" / run
    if json_out:
        data = summary.to_json()
        data["logs"] = str(logs) if logs.is_dir() else None
        return terminal.print_result(json.dumps(data, indent=2))
    shown = f"{logs}{os.sep}" if logs.is_dir() else None
    return terminal.print_result(show_text(summary, shown, width=_width()))


def logs(repo: Path | None, task: str | None, *, run_text: str | None, follow: bool, tail: int | None) -> int:
    """Print ``task``'s log (its last ``tail`` lines), then with ``follow`` what it writes until it
    ends; without ``task``, list the logs of the run ``run_text`` names."""
    directory = state_dir(find_repo(repo))
    try:
        if task is None:
            if run_text is None:
                raise CommandError(EXIT_USAGE, "give a TASK whose log to print, or --run RUN to list a run's logs")
            return _list_logs(directory, run_named(directory, run_text))
        _check_task(task)
        run = run_named(directory, run_text) if run_text is not None else _latest_with(directory, task)
        return _print_log(directory, run, task, follow=follow, tail=tail)
    except CommandError as error:
        return refused(error)


def _width() -> int:
    """The terminal's columns, which a line is cut to; on a pipe (grep, a file) lines stay whole."""
    return terminal.width() if sys.stdout.isatty() else NO_CUT


class CommandError(Exception):
    """The command cannot go on: ``message`` says why, ``code`` is its exit code (see :func:`_refused`)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def refused(error: CommandError) -> int:
    """Say why the command stopped; its exit code."""
    terminal.error(error.message)
    return error.code


def run_named(directory: Path, text: str | None) -> str:
    """The run ``text`` names (its id, or a unique start or end of it); the latest if None."""
    if text is None:
        runs = list_runs(directory, limit=1).runs
        if not runs:
            raise CommandError(EXIT_FAILED, f"no run is recorded in {directory}")
        return runs[0].run
    try:
        return find_run(directory, text)
    except InvalidArgumentError as exc:
        raise CommandError(EXIT_USAGE, str(exc)) from None
    except AmbiguousRunError as exc:
        raise CommandError(EXIT_USAGE, str(exc)) from None
    except RunNotFoundError:
        listed = "project-manager history lists them"
        raise CommandError(EXIT_FAILED, f"no run {text!r} in {directory} ({listed})") from None


def _check_task(task: str) -> None:
    """A task id is a file name in the run's logs folder: ``../x`` or ``/x`` is refused (exit 2)."""
    try:
        check_task_id(task)
    except InvalidTaskIdError as exc:
        raise CommandError(EXIT_USAGE, f"task id {task!r}: {exc.reason}") from None


def _latest_with(directory: Path, task: str) -> str:
    """The newest run that has ``task``: its log, or its record lists it."""
    for run in iter_runs(directory):
        if log_path(directory, run.run, task).exists() or any(t.id == task for t in run.tasks):
            return run.run
    raise CommandError(EXIT_FAILED, f"no run recorded in {directory} has a task {task!r}")


def _list_logs(directory: Path, run: str) -> int:
    folder = directory / "logs" / run
    try:
        found = run_logs(directory, run)
    except OSError as exc:
        raise CommandError(EXIT_FAILED, f"{folder}: cannot be read ({exc.strerror or exc})") from None
    statuses = {task.id: task.status for task in _summary_or_none(directory, run).tasks}
    return terminal.print_result(logs_text(f"{folder}{os.sep}", found, statuses, width=_width()))


def _summary_or_none(directory: Path, run: str) -> RunSummary:
    try:
        return run_summary(directory, run)[0]
    except RunNotFoundError:
        return RunSummary(run, "unfinished")


def _print_log(directory: Path, run: str, task: str, *, follow: bool, tail: int | None) -> int:
    """Print the log, from its last ``tail`` lines; with ``follow``, then what comes, until it ends."""
    path = log_path(directory, run, task)
    try:
        fd = open_log(path)
    except OSError as exc:
        raise CommandError(EXIT_FAILED, f"{path}: {exc.strerror or exc}; not read") from None
    if fd is None and not follow:
        raise CommandError(EXIT_FAILED, _no_log(directory, run, task, path))
    size = 0
    if fd is not None:
        size = os.fstat(fd).st_size
        code = _copy(fd, 0 if tail is None else tail_start(fd, tail, size), size)
        if code is not None or not follow:
            os.close(fd)
            return code or EXIT_OK
    with LogFollower(directory, run, task, fd=fd, offset=size) as follower:
        return _follow(follower)


def _copy(fd: int, start: int, end: int) -> int | None:
    """Write bytes ``start`` to ``end`` of ``fd`` on stdout; an exit code if it had to stop (a
    signal, the reader gone), else None."""
    while start < end:
        if (signum := noted()) is not None:
            return exit_code_for(signum)
        chunk = os.pread(fd, min(1 << 16, end - start), start)
        if not chunk:
            return None  # cut shorter meanwhile
        if (code := terminal.write_bytes(chunk)) is not None:
            return code
        start += len(chunk)
    return None


def _follow(follower: LogFollower) -> int:
    """Print what the log gets until following ends; 130 (and such) quietly on Ctrl-C."""
    with Signals() as signals:
        while True:
            try:
                step = follower.step()
            except OSError as exc:
                raise CommandError(EXIT_FAILED, f"{follower.path}: {exc.strerror or exc}; not followed") from None
            if step.data and (code := terminal.write_bytes(step.data)) is not None:
                return code
            if step.end is not None:
                return _ended(follower, step.end)
            if not step.more and (signum := signals.wait(FOLLOW_INTERVAL_S)) is not None:
                return exit_code_for(signum)
            if signals.caught is not None:
                return exit_code_for(signals.caught)


def _ended(follower: LogFollower, end: str) -> int:
    """The exit code once following ended, and why, if it is not the task's own end."""
    if follower.fd is None and end in ("ended", "run_finished", "run_died"):
        why = f"it ended {follower.status}" if follower.status else f"run {follower.run} ended"
        terminal.error(f"task {follower.task!r} of run {follower.run} wrote no log: {why} before it started")
        return EXIT_FAILED
    message = _FOLLOW_ENDS.get(end)
    if message is None:
        return EXIT_OK
    text = message.format(run=follower.run, path=follower.path)
    if end == "run_died":
        terminal.warning(text)
        return EXIT_OK
    terminal.error(text)
    return EXIT_FAILED


def _no_log(directory: Path, run: str, task: str, path: Path) -> str:
    """Why ``task`` of ``run`` has no log, as far as its run's files tell."""
    tasks = {t.id: t for t in _summary_or_none(directory, run).tasks}
    found = tasks.get(task)
    if found is None:
        return f"run {run} has no task {task!r}: no {path}"
    if found.attempts == 0 and found.status not in ("running",):
        return f"task {task!r} of run {run} has no log: it never started ({found.status.replace('_', ' ')})"
    return f"task {task!r} of run {run} has no log ({path} is gone; a Python callable writes none)"
