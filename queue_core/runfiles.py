"""A repository's runs, read back from what they left in its state directory.

For ``project-manager history``, ``show`` and ``logs``, and for any tool that reads a past run
(a timeline, a resume). A run leaves, in the state directory (see :mod:`queue_core.registry`):

* ``runs/<run>.json`` while it lives: its record (:class:`~queue_core.records.RunRecord`), what
  runs and waits now;
* ``logs/<run>/events.jsonl``, its journal, from its start: one JSON object a line, each
  flushed as it happens, so a run killed with SIGKILL keeps every line but maybe a half-written
  last one (the format: README, "The run journal");
* ``logs/<run>/<task>.log``, each agent's output (see :mod:`queue_core.logfiles`);
* ``history/<run>.json`` once it ended by itself (:class:`~queue_core.records.RunHistory`).

A run is ``finished`` if it left a history record, or a journal whose last line says it ended;
``running`` while its record lives (:func:`~queue_core.holds.judge_run`: its process, its
supervisor or an agent); ``killed`` if its journal or a dead record shows it started and
nothing says it ended; ``unfinished`` if only its logs are left, which cannot tell how it ended.

Everything here reads; nothing writes or takes the registry lock (like ``status``, a view).
A file is taken as it comes: a damaged or foreign one is passed over and named in the
warnings, never raised; a journal's last line is read only once it is whole.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clocks import REAL, Clocks
from .errors import AmbiguousRunError, RunNotFoundError
from .holds import STALE_AFTER_S, judge_run
from .journal import NAME
from .records import SCHEMA, RunHistory, RunRecord, schema_of
from .runid import RUN_ID_PATTERN, check_run_id
from .runviews import RunList, RunSummary, from_history, from_journal, from_record, stamp
from .statedir import list_dir, read_regular

__all__ = [
    "JOURNAL",
    "JournalLines",
    "JournalTail",
    "find_run",
    "iter_runs",
    "journal_path",
    "latest_run",
    "list_runs",
    "parse_journal",
    "read_journal",
    "run_summary",
    "scan_journal",
]

#: A run's journal, in its logs folder: retention and ``clean`` take it with its logs.
JOURNAL = NAME  # the journal, as queue_core.journal writes it


# --- the journal -------------------------------------------------------------------------------


def journal_path(directory: Path, run: str) -> Path:
    """Where ``run`` keeps its journal, in the state directory ``directory``."""
    return directory / "logs" / run / JOURNAL


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The lines of the journal at ``path`` (see :func:`parse_journal`); none if there is none,
    or it is no regular file (never followed, never waited on)."""
    try:
        raw = read_regular(path)
    except OSError:
        return []
    return [] if raw is None else parse_journal(raw)


def parse_journal(raw: bytes) -> list[dict[str, Any]]:
    """The journal's objects in ``raw``, in order (see :func:`scan_journal`)."""
    return scan_journal(raw).events


@dataclass(frozen=True)
class JournalLines:
    """A journal's objects, in order; ``unreadable``: lines that were no journal object; ``cut``:
    the last line was half-written (a run killed mid-write, or writing it now)."""

    events: list[dict[str, Any]]
    unreadable: int = 0
    cut: bool = False


def scan_journal(raw: bytes) -> JournalLines:
    """Each line of ``raw`` that is a JSON object with a string ``event``, in order.

    A last line without its newline counts if it is a whole object (the writer writes a line and
    its newline at once: without it, the line is being written, or was cut by a full disk).
    Any other line (damaged, or not a journal's) is passed over and counted; so are keys a
    reader does not know, which a newer writer may add.
    """
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" after a whole last line
    events: list[dict[str, Any]] = []
    unreadable = 0
    for line in lines:
        if line.strip():
            event = _decode(line)
            if event is None:
                unreadable += 1
            else:
                events.append(event)
    last = _decode(tail) if tail.strip() else None
    if last is not None:
        events.append(last)
    return JournalLines(events, unreadable, cut=bool(tail.strip()) and last is None)


def _decode(line: bytes) -> dict[str, Any] | None:
    """One line's object; None if it is none. A value of the wrong type (NaN too) is for the
    reader of that key to pass over: the rest of the line still counts."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) and isinstance(value.get("event"), str) else None


class JournalTail:
    """A journal read as it grows, by another process than its run's: :meth:`read` gives the
    lines appended since the last call. A journal replaced or cut shorter is read again from
    its start; one that does not exist yet gives nothing."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._inode: int | None = None
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return []
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return []
            if st.st_ino != self._inode or st.st_size < self._offset:
                self._inode, self._offset, self._partial = st.st_ino, 0, b""
            os.lseek(fd, self._offset, os.SEEK_SET)
            data = _read_to_end(fd)
        finally:
            os.close(fd)
        self._offset += len(data)
        data, self._partial = self._partial + data, b""
        whole, _, self._partial = data.rpartition(b"\n")
        return parse_journal(whole + b"\n") if whole else []


def _read_to_end(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


# --- finding runs ------------------------------------------------------------------------------


@dataclass
class _Files:
    """What one run left: its history record, its record in runs/, its logs folder."""

    run: str
    history: Path | None = None
    record: Path | None = None
    logs: Path | None = None


def _scan(directory: Path, warnings: list[str]) -> dict[str, _Files]:
    """The runs with files in ``directory``; foreign files of ``history/`` named in ``warnings``.

    A dot-file is a write under way (statedir.write_private's temporary file): passed over.
    """
    runs: dict[str, _Files] = {}
    for path, entry in _entries(directory / "history", warnings):
        run, _, kind = entry.name.rpartition(".")
        if entry.name.startswith("."):
            continue
        if kind != "json" or not RUN_ID_PATTERN.fullmatch(run):
            warnings.append(f"{path}: not a run's history record (expected <run>.json); skipped")
            continue
        runs.setdefault(run, _Files(run)).history = path
    for path, entry in _entries(directory / "runs", warnings):
        run, _, kind = entry.name.rpartition(".")
        if kind == "json" and RUN_ID_PATTERN.fullmatch(run):
            runs.setdefault(run, _Files(run)).record = path
    for path, entry in _entries(directory / "logs", warnings):
        if RUN_ID_PATTERN.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            runs.setdefault(entry.name, _Files(entry.name)).logs = path
    return runs


def _entries(directory: Path, warnings: list[str]) -> Iterable[tuple[Path, os.DirEntry[str]]]:
    try:
        return list(list_dir(directory))
    except OSError as exc:
        warnings.append(f"{directory}: cannot be read ({exc.strerror or exc}); not looked into")
        return []


def list_runs(
    directory: Path, *, limit: int | None = None, clocks: Clocks = REAL, stale_after: float = STALE_AFTER_S
) -> RunList:
    """The runs of the state directory ``directory``, newest first (by start), with their tasks;
    only the newest ``limit`` if given, and what could not be read of those.

    A journal is read only for a run without a history record. ``clocks`` tell a live run's
    time so far; ``stale_after`` when another host's run, silent, counts as dead.
    """
    warnings: list[str] = []
    found = iter_runs(directory, clocks=clocks, stale_after=stale_after, warnings=warnings)
    runs = tuple(itertools.islice(found, limit))
    return RunList(runs, tuple(warnings))


def iter_runs(
    directory: Path,
    *,
    clocks: Clocks = REAL,
    stale_after: float = STALE_AFTER_S,
    warnings: list[str] | None = None,
) -> Iterator[RunSummary]:
    """The runs of ``directory``, newest first, each read only when it is asked for: a run whose
    id tells its start (runid.new_run_id's) is ordered by it, unread; another is read first.
    What cannot be read is added to ``warnings``."""
    said: list[str] = [] if warnings is None else warnings
    scanned = _scan(directory, said)

    def _read(files: _Files) -> RunSummary | None:
        return _summary(files, directory, clocks, stale_after, said, journal=files.history is None)

    ordered: list[tuple[float, str, RunSummary | None]] = []
    for files in scanned.values():
        start = stamp(files.run)
        if start is None:
            summary = _read(files)
            if summary is not None:
                ordered.append((_sort_time(summary, files), files.run, summary))
        else:
            ordered.append((start, files.run, None))
    ordered.sort(key=lambda item: (item[0], item[1]), reverse=True)
    for _, same in itertools.groupby(ordered, key=lambda item: item[0]):
        # Runs of one second: their ids cannot tell which came first (the pid is no clock), so
        # they are read, and their starts decide; a run alone in its second is read when asked for.
        group = list(same)
        if len(group) > 1:
            group = [(start, run, read or _read(scanned[run])) for start, run, read in group]
            group.sort(key=lambda item: _started(item[2]), reverse=True)
        for _, run, read in group:
            summary = read or _read(scanned[run])
            if summary is not None:
                yield summary


def _started(summary: RunSummary | None) -> float:
    return 0.0 if summary is None or summary.started_at is None else summary.started_at


def latest_run(directory: Path, *, clocks: Clocks = REAL) -> str | None:
    """The id of the run that started last in ``directory``; None if there is none."""
    runs = list_runs(directory, limit=1, clocks=clocks).runs
    return runs[0].run if runs else None


def find_run(directory: Path, text: str) -> str:
    """The run that ``text`` names: its id, or a part its id starts or ends with that no other run's does.

    Raises InvalidArgumentError if ``text`` cannot be (a part of) a run id (a path, say),
    RunNotFoundError if no run matches, AmbiguousRunError if several do.
    """
    check_run_id(text)
    names = set(_scan(directory, []))
    if text in names:
        return text
    matches = sorted((name for name in names if name.startswith(text) or name.endswith(text)), reverse=True)
    if not matches:
        raise RunNotFoundError(text)
    if len(matches) > 1:
        raise AmbiguousRunError(text, matches)
    return matches[0]


def run_summary(
    directory: Path, run: str, *, clocks: Clocks = REAL, stale_after: float = STALE_AFTER_S
) -> tuple[RunSummary, tuple[str, ...]]:
    """``run`` (its exact id) as its files tell it, its journal read too, and what could not be
    read. Raises InvalidArgumentError for an id that is a path, RunNotFoundError if it left
    nothing, or nothing that can be read (its message then says why)."""
    check_run_id(run)
    files = _scan(directory, []).get(run)  # what is wrong with other runs' files is not this run's
    warnings: list[str] = []
    summary = None if files is None else _summary(files, directory, clocks, stale_after, warnings, journal=True)
    if summary is None:  # what it left cannot be read: say why, not that it left nothing
        why = "; ".join(warning.removesuffix("; skipped") for warning in warnings)
        raise RunNotFoundError(run, why and f"run {run!r} left nothing that can be read: {why}")
    return summary, tuple(warnings)


def _summary(
    files: _Files, directory: Path, clocks: Clocks, stale_after: float, warnings: list[str], *, journal: bool
) -> RunSummary | None:
    """One run from its files; None if they show nothing of a run (a record of a command that
    runs no queue, such as ``clean``)."""
    history = None if files.history is None else _read_history(files.history, files.run, warnings)
    lines = read_journal(journal_path(directory, files.run)) if journal and files.logs is not None else []
    record = None if files.record is None else _read_record(files.record)
    now = clocks.wall()
    if history is not None:
        return from_history(history, lines)
    if record is not None and judge_run(directory / "runs", files.run, stale_after=stale_after, clocks=clocks)[0]:
        if record.status is None and files.logs is None:
            return None
        return from_journal(files.run, "running", lines, now) if lines else from_record(record, now, live=True)
    if lines:
        ended = any(line["event"] == "run_ended" for line in lines)
        return from_journal(files.run, "finished" if ended else "killed", lines, now)
    if record is not None and record.status is not None:
        return from_record(record, now, live=False)
    if files.logs is not None:
        return RunSummary(files.run, "unfinished", started_at=stamp(files.run))
    return None


def _read_history(path: Path, run: str, warnings: list[str]) -> RunHistory | None:
    """The history record at ``path``, if it is ``run``'s and can be read; else None, said in ``warnings``."""
    try:
        raw = read_regular(path)
    except OSError as exc:
        warnings.append(f"{path}: {exc.strerror or exc}; skipped")
        return None
    if raw is None:
        return None  # pruned since it was listed
    try:
        data = json.loads(raw)
        if (version := schema_of(data)) > SCHEMA:
            warnings.append(
                f"{path}: a history record of version {version}, written by a newer project-manager; skipped"
            )
            return None
        history = RunHistory.from_json(data)
    except (ValueError, RecursionError) as exc:
        warnings.append(f"{path}: not a history record that can be read ({_first_line(exc)}); skipped")
        return None
    if history.run != run:
        warnings.append(f"{path}: the history record of run {history.run!r}, not of {run!r}; skipped")
        return None
    return history


def _read_record(path: Path) -> RunRecord | None:
    """The run record at ``path``; None if it cannot be read (damaged, newer, gone: a view passes it over)."""
    try:
        return RunRecord.from_json(json.loads(read_regular(path) or b"null"))
    except (OSError, ValueError, RecursionError):
        return None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _sort_time(summary: RunSummary, files: _Files) -> float:
    """When a run started, to order runs by: as its files say, else its id, else its files' time."""
    if summary.started_at is not None:
        return summary.started_at
    stamped = stamp(summary.run)
    if stamped is not None:
        return stamped
    times = []
    for path in (files.history, files.record, files.logs):
        if path is not None:
            with contextlib.suppress(OSError):
                times.append(os.lstat(path).st_mtime)
    return min(times, default=0.0)
