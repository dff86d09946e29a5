"""Every bit of the CLI's output: plain event lines, the summary, JSON, errors.

Plain lines carry no escape codes, so CI logs and scripts read them as they are; colour is
used only on a terminal, and never when NO_COLOR is set (Rich honours it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from queue_core import QueueStatus, TaskEvent, TaskOutcome, TaskState
from queue_core.changes import Stray
from queue_core.reports import AgentReport
from queue_core.retention import RetentionReport

if TYPE_CHECKING:
    from .usage import UsageSampler

_WORDS = {
    "started": "started",
    "succeeded": "finished",
    "failed": "FAILED",
    "timed_out": "TIMED OUT",
    "cancelled": "cancelled",
    "skipped": "skipped",
    "rate_limited": "RATE LIMITED",
    "retrying": "retrying",
    "paused": "paused",
}


@dataclass(frozen=True)
class SummaryRow:
    """One task's line in the summary and in --json: how it ended, and what it changed outside
    its claims while it ran (see queue_core.changes; None: unknown), which only the CLI watches."""

    outcome: TaskOutcome
    unclaimed: Stray | None = field(default_factory=Stray)

    @property
    def reason(self) -> str | None:
        """Why it did not succeed; a task that succeeded on a retry is not shown its earlier error."""
        return None if self.outcome.status is TaskState.SUCCEEDED else self.outcome.reason

    @property
    def report(self) -> AgentReport:
        return self.outcome.report or AgentReport()

    def to_json(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "id": o.id,
            "agent": o.agent,
            "description": o.description,
            "status": o.status.value,
            "exit_code": o.exit_code,
            "duration_s": None if o.duration_s is None else round(o.duration_s, 3),
            "log": o.log,
            "error": self.report.error,
            "cost_usd": self.report.cost_usd,
            "tokens": self.report.tokens,
            "unclaimed_writes": None if self.unclaimed is None else list(self.unclaimed.paths),
            "unclaimed_writes_also_running": None if self.unclaimed is None else list(self.unclaimed.beside),
        }


def total_cost(rows: list[SummaryRow]) -> float | None:
    """The run's cost in USD, as far as its agents reported one; None if none did."""
    return reported_cost(row.outcome.report for row in rows)


def reported_cost(reports: Iterable[AgentReport | None]) -> float | None:
    """The sum of the costs ``reports`` give; None if none gives one."""
    costs = [r.cost_usd for r in reports if r is not None and r.cost_usd is not None]
    return round(sum(costs), 6) if costs else None


def exit_now(code: int) -> NoReturn:
    """End the process at once with ``code``: output that could not be delivered is dropped.

    For a command whose output thread is stuck on a reader that went away: the interpreter's
    own exit would wait for that thread's lock on stdout for good. Everything else is done.
    """
    logging.shutdown()
    os._exit(code)


def write_out(text: str) -> bool:
    """Write ``text`` and a newline on stdout, through its file descriptor where it has one (see
    :func:`_write`: a write abandoned while blocked then holds no lock the exit needs); False if
    stdout is gone."""
    return _write(sys.stdout, fileno(sys.stdout), f"{text}\n")


def out(text: str) -> bool:
    """Print ``text`` on stdout; False if stdout is gone (a closed terminal or pipe).

    Stdout then points at /dev/null, so that flushing it at exit does not fail again.
    """
    try:
        print(text, flush=True)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True


@contextlib.contextmanager
def queue_log_to(output: PlainEvents | LiveView) -> Iterator[None]:
    """While entered, what queue_core logs (a warning, an error) is one notice line, without a traceback."""
    handler = _NoticeHandler(output)
    logger = logging.getLogger("queue_core")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _NoticeHandler(logging.Handler):
    def __init__(self, output: PlainEvents | LiveView):
        super().__init__(logging.WARNING)
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]}"
        self.output.notice(text)


def notice_line(text: str) -> str:
    """``12:00:01 notice    the registry lock held by pid 123 (stopped: ...)``."""
    return f"{time.strftime('%H:%M:%S')} {'notice':<9} {text}"


def unclaimed_line(event: TaskEvent, found: Stray) -> str:
    """``12:00:01 warning   t1 [dev] changed outside its claims: x.txt``, and the tasks beside it."""
    return f"{time.strftime('%H:%M:%S')} {'warning':<9} {event.task_id} [{event.agent_type}] {unclaimed_text(found)}"


#: Paths named in a line of text; --json has them all.
UNCLAIMED_SHOWN = 5


def unclaimed_text(found: Stray) -> str:
    """``changed outside its claims: a, b and 3 more (also running: t2; any of them may have)``."""
    shown = [path if path.isprintable() else repr(path) for path in found.paths[:UNCLAIMED_SHOWN]]
    more = len(found.paths) - len(shown)
    paths = ", ".join(shown) + (f" and {more} more" if more else "")
    if not found.beside:
        return f"changed outside its claims: {paths}"
    return f"changed outside the claims: {paths} (also running: {', '.join(found.beside)}; any of them may have)"


def event_line(event: TaskEvent) -> str:
    """``12:00:01 started   parser [code_developer]``, and the attempt or the error where it helps."""
    word = _WORDS.get(event.kind, event.kind)
    attempt = f" (attempt {event.attempt})" if event.attempt > 1 and event.kind == "started" else ""
    detail = f": {event.error}" if event.error and event.kind not in ("succeeded", "started") else ""
    return f"{time.strftime('%H:%M:%S')} {word:<9} {event.task_id} [{event.agent_type}]{attempt}{detail}"


class PlainEvents:
    """One timestamped line per task event, for CI and --no-live; thread-safe.

    The queue's workers only stamp and enqueue a line; a thread of its own writes the lines
    (in order, flushed), so a slow reader of the output, such as a CI log pipe, never holds
    up a task. Use it as a context manager: leaving it writes every line still queued.
    """

    def __init__(self, out: TextIO | None = None):
        self._out = out or sys.stdout
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_lines, name="project-manager-output", daemon=True)

    def __enter__(self) -> PlainEvents:
        self._writer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write every line still queued, then stop (however long the reader takes)."""
        if self._writer.is_alive():
            self._lines.put(None)
            self._writer.join()

    def event(self, event: TaskEvent) -> None:
        self._lines.put(event_line(event))

    def note(self, text: str) -> None:
        self._lines.put(text)

    def notice(self, text: str) -> None:
        self._lines.put(notice_line(text))

    def _write_lines(self) -> None:
        fd = fileno(self._out)
        writing = True
        while True:
            lines = [self._lines.get()]
            while not self._lines.empty():  # whatever queued meanwhile goes out in the same write
                lines.append(self._lines.get())
            done = lines[-1] is None  # None comes last: __exit__ queues it after every line
            text = "".join(f"{line}\n" for line in lines if line is not None)
            if writing and text:
                writing = _write(self._out, fd, text)  # False: the reader went away; keep draining, quietly
            if done:
                return


def fileno(stream: TextIO) -> int | None:
    """The file descriptor under ``stream``, flushed; None if it has none (a test's captured output)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return None
    with contextlib.suppress(OSError):  # gone (a hung-up terminal): what was buffered is lost anyway
        stream.flush()
    return fd


def _write(stream: TextIO, fd: int | None, text: str) -> bool:
    """Write all of ``text``; False if the reader went away.

    Through the file descriptor where there is one: a writer blocked on a reader that went away
    then holds none of the file object's locks, which anything else (the exit) would need.
    """
    try:
        if fd is None:
            stream.write(text)
            stream.flush()
            return True
        data = text.encode(stream.encoding or "utf-8", "replace")
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        return False
    return True


def summary_text(rows: list[SummaryRow], wall_s: float, sum_s: float) -> str:
    """The end-of-run summary as plain text: a table, then wall time, task time and speedup."""
    cost = total_cost(rows)
    header = ("id", "agent", "outcome", "exit", "duration", *(("cost",) if cost is not None else ()), "log")
    cells = [
        (
            row.outcome.id,
            row.outcome.agent,
            _outcome_cell(row) + (" !" if _strayed(row) else ""),
            "" if row.outcome.exit_code is None else str(row.outcome.exit_code),
            "" if row.outcome.duration_s is None else f"{row.outcome.duration_s:.1f}s",
            *(() if cost is None else ("" if row.report.cost_usd is None else f"${row.report.cost_usd:.4f}",)),
            _short_path(row.outcome.log),
        )
        for row in rows
    ]
    widths = [max(len(str(r[i])) for r in (header, *cells)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *cells)]
    lines += [
        f"! {r.outcome.id} {unclaimed_text(r.unclaimed)}" for r in rows if r.unclaimed is not None and _strayed(r)
    ]
    speedup = sum_s / wall_s if wall_s > 0 else 1.0
    succeeded = sum(row.outcome.status is TaskState.SUCCEEDED for row in rows)
    lines.append("")
    spent = "" if cost is None else f", cost ${cost:.4f}"
    lines.append(
        f"{succeeded}/{len(rows)} succeeded; wall {wall_s:.1f}s, task time {sum_s:.1f}s, speedup {speedup:.2f}x{spent}"
    )
    return "\n".join(lines)


def _outcome_cell(row: SummaryRow) -> str:
    status = row.outcome.status.value
    return status if row.reason is None else f"{status} ({row.reason})"


def _strayed(row: SummaryRow) -> bool:
    return row.unclaimed is not None and bool(row.unclaimed.paths)


def _short_path(path: str | None) -> str:
    """``path`` relative to the current directory when it lies below it, else as it is."""
    if path is None:
        return ""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def run_json(run_id: str, rows: list[SummaryRow], wall_s: float, sum_s: float) -> str:
    return json.dumps(
        {
            "run_id": run_id,
            "wall_s": round(wall_s, 3),
            "sum_s": round(sum_s, 3),
            "speedup": round(sum_s / wall_s, 3) if wall_s > 0 else 1.0,
            "cost_usd": total_cost(rows),
            "tasks": [row.to_json() for row in rows],
        },
        indent=2,
    )


def plan_json(
    tasks: list[tuple[str, str, list[str], tuple[str, ...], tuple[str, ...], tuple[str, ...]]],
    starts: list[tuple[str, str, str]],
    waits: list[tuple[str, str, str]],
    missing: list[str],
) -> str:
    """--dry-run --json: each task (id, agent, argv, files, reads, depends_on), what would start
    now, why the rest would wait, and the executables not on PATH."""
    keys = ("id", "agent", "argv", "files", "reads", "depends_on")
    plan = {
        "tasks": [
            dict(zip(keys, (tid, agent, argv, list(files), list(reads), list(deps)), strict=True))
            for tid, agent, argv, files, reads, deps in tasks
        ],
        "starts": [tid for tid, _, _ in starts],
        "waits": [{"id": tid, "reason": reason} for tid, _, reason in waits],
        "missing": missing,
    }
    return json.dumps(plan, indent=2)


def plan_text(
    starts: list[tuple[str, str, str]], waits: list[tuple[str, str, str]], argvs: dict[str, list[str]]
) -> str:
    """--dry-run: what would start together now, and why each other task would wait; under each,
    the command it would run, quoted for a POSIX shell."""
    lines = ["Would start now, together:"]
    for tid, agent, desc in starts:
        lines += [f"  {tid} [{agent}] {desc}", f"    $ {shlex.join(argvs[tid])}"]
    if not starts:
        lines.append("  (nothing)")
    if waits:
        lines.append("Would wait:")
        for tid, agent, reason in waits:
            lines += [f"  {tid} [{agent}]: {reason}", f"    $ {shlex.join(argvs[tid])}"]
    return "\n".join(lines)


def clean_text(report: RetentionReport) -> str:
    """``clean``: each run or file removed (or that would be, in a dry run) and why; each live run kept and why."""
    verb = "removed" if report.done else "would remove"
    lines = []
    for removal in report.removed:
        shown = [_in_state(report, path) for path in removal.paths]
        what = f"run {removal.run}" if removal.run is not None else shown[0]
        count = f": {removal.files} file(s), {_bytes(removal.size)}" if removal.files > 1 else ""
        where = f" ({', '.join(shown)}{count})" if removal.run is not None else ""
        lines.append(f"{verb} {what}: {removal.reason}{where}")
    lines += [f"kept run {kept.run}: {kept.reason}" for kept in report.live]
    if report.finished > report.finished_kept:
        lines.append(f"kept the newest {report.finished_kept} finished run(s) of {report.finished}")
    else:
        lines.append(f"kept {report.finished} finished run(s); at most {report.keep_runs} are kept")
    if report.removed:
        entries = len(report.removed)
        lines.append(f"{verb} {entries} item(s), {report.files} file(s), {_bytes(report.size)} in {report.directory}")
    else:
        lines.append(f"nothing to remove in {report.directory}")
    return "\n".join(lines)


def _in_state(report: RetentionReport, path: Path) -> str:
    """``path`` relative to the state directory."""
    return os.path.relpath(path, report.directory)


def _bytes(size: int) -> str:
    """``512 B``, ``12.3 kB``, ``4.0 MB``..."""
    units = ("B", "kB", "MB", "GB", "TB")
    value, index = float(size), 0
    while value >= 1000 and index < len(units) - 1:
        value /= 1000
        index += 1
    return f"{size} B" if index == 0 else f"{value:.1f} {units[index]}"


def error(message: str) -> None:
    with contextlib.suppress(OSError):  # stderr is gone (/dev/full, closed): the exit code says it
        print(f"project-manager: error: {message}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"project-manager: warning: {message}", file=sys.stderr, flush=True)


class LiveView:
    """Rich Live panels while a run goes on, refreshed four times a second (terminals only).

    Running agents (task, elapsed, files), the files held and by whom, the queue with the reason
    each task waits, and CPU and memory of the machine and of the agents' process trees. Event
    lines are printed above the panels. One thread of its own draws: whoever hands it a line
    never waits for the terminal (one held with Ctrl-S, say).
    """

    def __init__(
        self,
        get_status: Callable[[], QueueStatus],
        refresh_s: float = 0.25,
        cost: Callable[[], float | None] = lambda: None,
    ):
        from rich.console import Console

        self._get_status = get_status
        self._cost = cost
        self._refresh_s = refresh_s
        self.console = Console(stderr=False)
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self._usage: UsageSampler | None = None

    def __enter__(self) -> LiveView:
        from rich.live import Live

        from .usage import UsageSampler

        self._usage = UsageSampler()
        self._live = Live(self._render(), console=self.console, auto_refresh=False)
        self._live.__enter__()
        self._thread = threading.Thread(target=self._draw, name="project-manager-live", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Draw the lines still queued and the last frame, then stop; again, it does nothing."""
        if self._thread is None:
            return
        self._lines.put(None)
        self._thread.join()
        self._thread = None
        with contextlib.suppress(OSError):  # the terminal is gone (SIGHUP): nothing to draw on
            self._live.__exit__(None, None, None)

    def event(self, event: TaskEvent) -> None:
        self.note(event_line(event))

    def notice(self, text: str) -> None:
        self.note(notice_line(text))

    def note(self, text: str) -> None:
        self._lines.put(text)

    def _draw(self) -> None:
        """Print queued lines as they come, and the panels every ``refresh_s``, until None comes."""
        next_frame = time.monotonic()
        try:
            while True:
                try:
                    line = self._lines.get(timeout=max(0.0, next_frame - time.monotonic()))
                except queue.Empty:
                    line = ""
                if line is None:
                    self._live.update(self._render(), refresh=True)
                    return
                if line:
                    self.console.print(line, markup=False, highlight=False)  # user text, not Rich markup
                if time.monotonic() >= next_frame:
                    self._live.update(self._render(), refresh=True)
                    next_frame = time.monotonic() + self._refresh_s
        except OSError:  # the terminal is gone: stop drawing, keep taking lines
            while self._lines.get() is not None:
                pass

    def _render(self) -> Any:
        from .panels import run_view

        assert self._usage is not None  # made as the view is entered, before its first frame
        status = self._get_status()
        # The agents' process trees: below this process, which is left out.
        agents = self._usage.trees({"agents": os.getpid()}, with_roots=False)["agents"]
        return run_view(status, agents=agents, cost=self._cost(), machine=self._usage.machine())
