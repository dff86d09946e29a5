"""Keeping a repository's state directory bounded: what of past runs goes, when, and what never does.

Every run leaves files in the state directory (see :mod:`queue_core.registry`): a history record
and its agents' logs when it finishes; its record, holds and groups in ``runs/`` when it was
killed; a temporary file when a writer was killed mid-write. Left alone, they grow without bound.

* **Finished runs**: the newest ``keep_runs`` keep their ``history/<run>.json`` and ``logs/<run>/``;
  older ones go, ordered by the end (else the start) written in their history record, else by
  the modification time of their files (a killed run has no history).
* **Dead runs' records** (``runs/<run>.json``, ``.holds``, ``.groups``, ``.claimed``) go at once.
* **Temporary files** (``.<name>.<pid>.tmp``, ``.<name>.<pid>.<hex>.new``, ``.<name>.dead-<hex>``,
  ``.write-probe-<pid>``) go once ``STRAY_AGE_S`` old and no process has the pid in their name.
* **Damaged copies** of ``claims.json`` beyond the newest ``DAMAGED_KEPT`` go.
* **Hidden refs** of merged tasks (``refs/pm/<run>/``, see :mod:`queue_core.taskrefs`) go with
  their run's history and logs, all in one ``git update-ref --stdin`` transaction; those of a
  run that left no file at all only when asked (``clean``), never at a run's end.

Never touched: a live run, judged as the registry judges an owner: its process, its supervisor
(or a keeper of it) or one of its agents' process groups runs; or it runs on another host or in
another PID namespace and beat within ``stale_after``; or the registry holds claims of it. A
record that cannot be read is kept while it is young: when in doubt, keep. Nor is anything the
state directory does not name (a file of yours). Removal never follows a symlink and never
opens what it removes: a symlink or a FIFO goes as an entry, its target stays; a directory goes
with :func:`shutil.rmtree`, which on Linux removes links below it as links.

:func:`plan` looks and changes nothing; :func:`apply` removes what a plan names. :func:`prune`
does both in one step under the registry lock, as the end of every run and ``project-manager
clean`` do; :func:`preview` looks without it, for ``clean --dry-run``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from .claimsfile import read_registry
from .clocks import REAL, Clocks
from .errors import GitError, InvalidArgumentError, StateError
from .holds import STALE_AFTER_S, judge_run, live_holds
from .line import alive_by, live_places
from .statedir import LEGACY_DIR, describe_entry, list_dir, measure, remove_entry, state_dir
from .taskrefs import HIDDEN_PREFIX, by_run, drop, may_have_any

if TYPE_CHECKING:
    from .registry import Registry

__all__ = [
    "DAMAGED_KEPT",
    "DEFAULT_KEEP_RUNS",
    "STRAY_AGE_S",
    "HiddenRefs",
    "KeptRun",
    "Removal",
    "RetentionReport",
    "apply",
    "check_keep_runs",
    "plan",
    "preview",
    "prune",
]

#: How many finished runs keep their history and logs, unless told otherwise.
DEFAULT_KEEP_RUNS = 100
#: How many damaged copies of claims.json are kept for a post-mortem.
DAMAGED_KEPT = 3
#: A temporary file, or a record that cannot be read, younger than this may be being written.
STRAY_AGE_S = 3600.0

# What names a run's files: a run id (see runid.RUN_ID_PATTERN), suffixed "-2"... when reused.
_RUN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_RECORDS = ("json", "holds", "groups", "claimed")
# The temporary files of statedir.write_private, create_private and make_state_dir (and of
# taking a run id in versions that moved a dead record aside: ".dead-").
_STRAY = re.compile(r"\.(?:.+\.(?P<pid>\d+)\.(?:tmp|[0-9a-f]{6}\.new)|.+\.dead-[0-9a-f]{6}|write-probe-(?P<probe>\d+))")
_DAMAGED = "claims.json.damaged-"
# Where a history record written by Registry.finish_run says when its run started and ended:
# before its tasks, so the first few kilobytes tell it, however many tasks the run had.
_TIMES = re.compile(rb'"(started_at|ended_at)":(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)')
_HEAD_BYTES = 4096


@dataclass(frozen=True)
class Removal:
    """What goes (or, in a plan, would go): a run's files, or one stray file; and why.

    ``files`` and ``size`` count the entries that are not directories, and the bytes of the
    regular ones.
    """

    reason: str
    paths: tuple[Path, ...]
    run: str | None = None  # None: a temporary file or a damaged copy of claims.json
    files: int = 0
    size: int = 0
    refs: tuple[tuple[str, str], ...] = ()  # the run's hidden refs, with the commit each named


@dataclass(frozen=True)
class HiddenRefs:
    """The hidden refs of merged tasks in ``repo`` by run (:func:`queue_core.taskrefs.by_run`),
    listed before the state directory is looked at: a run that writes one has its record by then.
    ``orphans``: also drop those of runs that left no file in the state directory."""

    repo: Path
    by_run: Mapping[str, tuple[tuple[str, str], ...]]
    orphans: bool = False


@dataclass(frozen=True)
class KeptRun:
    """A run that lives, and what says so."""

    run: str
    reason: str


@dataclass
class RetentionReport:
    """What a plan would remove, or what was removed (``done``), and what was kept."""

    directory: Path
    keep_runs: int
    removed: list[Removal] = field(default_factory=list)
    live: list[KeptRun] = field(default_factory=list)  # never touched, with the reason
    finished: int = 0  # finished runs found
    finished_kept: int = 0  # of them, the newest keep_runs
    failed: list[str] = field(default_factory=list)  # "path: why" for what could not be removed
    skipped: list[str] = field(default_factory=list)  # "path: why" for a folder not looked into
    done: bool = False
    refs_repo: Path | None = None  # where the removals' refs are, if any are

    @property
    def files(self) -> int:
        return sum(r.files for r in self.removed)

    @property
    def size(self) -> int:
        return sum(r.size for r in self.removed)


def check_keep_runs(keep_runs: object) -> int:
    """``keep_runs`` if it is an integer of at least 1; raises ValueError otherwise.

    Not 0: the run that ends keeps its own history and logs, which its summary names.
    """
    if not isinstance(keep_runs, int) or isinstance(keep_runs, bool) or keep_runs < 1:
        raise InvalidArgumentError(f"keep_runs must be a positive integer, got {keep_runs!r}")
    return keep_runs


def plan(
    directory: Path,
    keep_runs: int,
    *,
    held: Collection[str] = (),
    protect: Collection[str] = (),
    stale_after: float = STALE_AFTER_S,
    clocks: Clocks = REAL,
    refs: HiddenRefs | None = None,
) -> RetentionReport:
    """What pruning the state directory ``directory`` would remove now; changes nothing.

    ``held`` names the runs that hold live claims, or places in line, in the registry, ``protect`` runs whose
    files stay whatever they look like (the caller's own) and that count first among the
    newest ``keep_runs``. Costs a listing of the state directory's folders, and a look at each
    run in ``runs/`` and, only when there are more finished runs than ``keep_runs``, at the
    head of each history record. ``clocks`` tell how old a heartbeat or a temporary file is.
    ``refs`` are the repository's hidden refs: a run's go with its history and logs.
    Raises ValueError for a bad ``keep_runs``.
    """
    keep_runs = check_keep_runs(keep_runs)
    now = clocks.wall()  # one instant for every temporary file's age
    runs_dir = directory / "runs"
    report = RetentionReport(directory, keep_runs, refs_repo=None if refs is None else refs.repo)
    runs, damaged = _collect(directory, report, now)
    by_run = {} if refs is None else refs.by_run
    dead: dict[str, str] = {}  # run -> why it is dead, for those with records
    finished: list[_Run] = []
    for run in runs.values():
        if run.id not in protect:
            alive, why = False, ""  # a run without a record, holds or groups: nothing could prove it lives
            if run.records:
                alive, why = judge_run(runs_dir, run.id, stale_after=stale_after, doubt_s=STRAY_AGE_S, clocks=clocks)
            if run.id in held and not alive:
                alive, why = True, "it holds claims, or waits in line, in the registry"
            if alive:
                report.live.append(KeptRun(run.id, why))
                continue
            if run.records:
                dead[run.id] = why
        if run.history is not None or run.logs is not None:
            finished.append(run)
    report.finished = len(finished)
    beyond: list[_Run] = []
    if len(finished) > keep_runs:
        finished.sort(key=lambda r: (r.id in protect, _finished_at(r), r.id), reverse=True)
        beyond = finished[keep_runs:]
    report.finished_kept = len(finished) - len(beyond)

    old = {run.id for run in beyond}
    live = {kept.run for kept in report.live}
    strange = {run.id for run in runs.values() if run.strange and run.id not in protect and run.id not in live}
    for run_id in sorted(dead.keys() | old | strange):
        run = runs[run_id]
        paths, reasons = list(run.strange), []
        if run_id in old:
            paths += [p for p in (run.history, run.logs) if p is not None]
            reasons.append(f"beyond the newest {keep_runs} finished runs")
        if run_id in dead:
            paths[:0] = run.records.values()
            reasons.append(f"dead: {dead[run_id]}")
        reasons += [f"{p.parent.name}/{p.name} is {describe_entry(p)}, not what a run writes" for p in run.strange]
        files, size = measure(paths)
        gone = by_run.get(run_id, ()) if run_id in old else ()
        report.removed.append(Removal("; ".join(reasons), tuple(paths), run_id, files, size, gone))
    if refs is not None and refs.orphans:
        for run_id in sorted(by_run.keys() - runs.keys() - set(protect) - set(held)):
            reason = "its hidden refs outlived it: the run left no record, history or logs"
            report.removed.append(Removal(reason, (), run_id, refs=by_run[run_id]))
    for path in sorted(damaged)[:-DAMAGED_KEPT]:
        files, size = measure([path])
        reason = f"a damaged copy of claims.json; the newest {DAMAGED_KEPT} are kept"
        report.removed.append(Removal(reason, (path,), None, files, size))
    return report


def _collect(directory: Path, report: RetentionReport, now: float) -> tuple[dict[str, _Run], list[Path]]:
    """The runs with files in ``directory``, and its damaged copies of claims.json; strays go in ``report``.

    A run's history that is not a regular file, or its logs that are not a real directory, is
    ``strange``: it is removed as an entry, not counted as a finished run.
    """
    runs: dict[str, _Run] = {}
    damaged: list[Path] = []
    for path, entry in _scan(directory, report):
        if entry.name.startswith(_DAMAGED):
            damaged.append(path)
        else:
            _add_stray(report, path, entry, now)
    for path, entry in _scan(directory / "runs", report):
        run, _, kind = entry.name.rpartition(".")
        if kind in _RECORDS and _RUN.fullmatch(run):
            runs.setdefault(run, _Run(run)).records[kind] = path
        else:
            _add_stray(report, path, entry, now)
    for path, entry in _scan(directory / "history", report):
        run, _, kind = entry.name.rpartition(".")
        if kind == "json" and _RUN.fullmatch(run):
            found = runs.setdefault(run, _Run(run))
            if entry.is_file(follow_symlinks=False):
                found.history = path
            else:
                found.strange.append(path)
        else:
            _add_stray(report, path, entry, now)
    for path, entry in _scan(directory / "logs", report):
        if _RUN.fullmatch(entry.name):
            found = runs.setdefault(entry.name, _Run(entry.name))
            if entry.is_dir(follow_symlinks=False):
                found.logs = path
            else:
                found.strange.append(path)
    return runs, damaged


def preview(
    repo: str | os.PathLike[str],
    keep_runs: int,
    *,
    stale_after: float = STALE_AFTER_S,
    clocks: Clocks = REAL,
    orphan_refs: bool = False,
) -> RetentionReport:
    """What :func:`prune` would remove in ``repo``'s state directory now, changing nothing.

    Read without the registry lock, like ``status``: a view, never a decision. Raises
    StateError if the state directory is not a directory (a symlink is never followed),
    ValueError for a bad ``keep_runs``.
    """
    directory = state_dir(repo)
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return RetentionReport(directory, check_keep_runs(keep_runs))
    except OSError as exc:
        raise StateError(directory, f"cannot read the state directory: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(directory, "is not a directory (a symlink is never followed)")
    refs, note = _hidden_refs(Path(repo), directory, orphan_refs)
    holds, line = read_registry(repo)
    live = live_holds(holds, directory / "runs", stale_after=stale_after, clocks=clocks)[0]
    waiting = live_places(line, alive_by(directory / "runs", stale_after, clocks=clocks))
    held = {hold.owner.run for hold in live} | {place.owner.run for place in waiting}
    report = plan(directory, keep_runs, held=held, stale_after=stale_after, clocks=clocks, refs=refs)
    report.skipped += note
    return report


def apply(report: RetentionReport) -> RetentionReport:
    """Remove what ``report`` (a plan) names; what was removed, and what could not be.

    Use it under the registry lock, in the step that made the plan (see :func:`prune`): no
    rebuild of claims.json reads a dead run's ``.holds`` meanwhile, and no new run takes the
    id of one judged dead (see runid.take_run_id) and starts writing its files.
    """
    done: list[Removal] = []
    failed = list(report.failed)
    for removal in report.removed:
        try:
            for path in removal.paths:
                remove_entry(path)
        except OSError as exc:
            failed.append(f"{exc.filename or removal.paths[0]}: {exc.strerror or exc}")
            continue
        done.append(removal)
    refs = [ref for removal in done for ref in removal.refs]
    if refs and report.refs_repo is not None:
        try:
            drop(report.refs_repo, refs)
        except GitError as exc:  # one moved since it was listed (or git failed): none went
            runs = ", ".join(f"{HIDDEN_PREFIX}{run}/" for run in sorted({r.run for r in done if r.refs and r.run}))
            failed.append(f"{runs}: {exc}")
    return replace(report, removed=done, failed=failed, done=True)


def prune(
    registry: Registry, keep_runs: int | None = None, *, dry_run: bool = False, orphan_refs: bool = False
) -> RetentionReport:
    """Prune ``registry``'s state directory, keeping the newest ``keep_runs`` (default: the registry's).

    One step under the registry lock, the look and the removal (see :func:`apply`); the holds
    of dead owners leave claims.json with their records. ``dry_run`` removes nothing;
    ``orphan_refs`` drops the hidden refs of runs that left no file too. Raises StateError if
    the lock cannot be had, ValueError for a bad ``keep_runs``.
    """
    refs, note = _hidden_refs(registry.repo, registry.dir, orphan_refs)  # before the scan: see HiddenRefs
    with registry.session() as session:
        report = plan(
            registry.dir,
            registry.keep_runs if keep_runs is None else keep_runs,
            held={hold.owner.run for hold in session.holds.values()} | {place.owner.run for place in session.waiting},
            protect={registry.run},
            stale_after=registry.stale_after,
            clocks=registry.clocks,
            refs=refs,
        )
        report.skipped += note
        return report if dry_run else apply(report)


def _hidden_refs(repo: Path, directory: Path, orphans: bool) -> tuple[HiddenRefs | None, list[str]]:
    """The hidden refs of ``repo``, whose state directory is ``directory`` (none outside git),
    and a note if they cannot be listed: then none goes."""
    if directory.name == LEGACY_DIR:
        return None, []
    if not may_have_any(directory.parent):  # the state directory is in the common git directory
        return HiddenRefs(repo, {}, orphans), []
    try:
        return HiddenRefs(repo, by_run(repo), orphans), []
    except GitError as exc:
        return None, [f"{HIDDEN_PREFIX}: the hidden refs of merged tasks could not be listed ({exc}); none removed"]


# --- judging runs ---------------------------------------------------------------------------------


@dataclass
class _Run:
    """The files of one run in the state directory."""

    id: str
    records: dict[str, Path] = field(default_factory=dict)  # "json", "holds", "groups" in runs/
    history: Path | None = None
    logs: Path | None = None
    strange: list[Path] = field(default_factory=list)  # its history or logs, but not a file or directory


def _finished_at(run: _Run) -> float:
    """When ``run`` ended, as its history record says (else when it started), else its files' newest time."""
    if run.history is not None:
        try:
            fd = os.open(run.history, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                head = os.read(fd, _HEAD_BYTES) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
            except OSError:
                head = b""
            finally:
                os.close(fd)
            times: dict[bytes, float] = {}
            for name, value in _TIMES.findall(head):
                times.setdefault(name, float(value))
            if times:
                return times.get(b"ended_at", times.get(b"started_at", 0.0))
    return max(_mtime(path) for path in (*run.records.values(), run.history, run.logs) if path is not None)


# --- stray files ------------------------------------------------------------------------------------


def _add_stray(report: RetentionReport, path: Path, entry: os.DirEntry[str], now: float) -> None:
    """Add ``entry`` to what goes if it is a temporary file whose writer is surely gone."""
    match = _STRAY.fullmatch(entry.name)
    if match is None:
        return
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return
    age = now - st.st_mtime
    pid = match.group("pid") or match.group("probe")
    if age < STRAY_AGE_S or (pid is not None and psutil.pid_exists(int(pid))):
        return  # may be being written (by a process stopped mid-write): its rename would fail
    by = "" if pid is None else f" by pid {pid}, which is gone"
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    report.removed.append(Removal(f"a temporary file left {_duration(age)} ago{by}", (path,), None, 1, size))


def _scan(directory: Path, report: RetentionReport) -> Iterator[tuple[Path, os.DirEntry[str]]]:
    """:func:`~queue_core.statedir.list_dir`; what cannot be listed is named in ``report.skipped``."""
    try:
        yield from list_dir(directory)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            report.skipped.append(f"{directory}: {describe_entry(directory)}, not a directory; not looked into")
        else:
            report.skipped.append(f"{directory}: cannot be read ({exc.strerror or exc}); not looked into")


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3 h``, ``4 days``."""
    if seconds == float("inf"):
        return "forever"
    if seconds < 120:
        return f"{max(0.0, seconds):.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
