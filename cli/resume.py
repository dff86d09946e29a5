"""``delegate-multiple --resume [RUN]``: a run's batch run again, but for the tasks that succeeded.

Every run keeps, in its journal's first line (``logs/<run>/events.jsonl``, in the state
directory; ``--events`` copies it), what its batch was made of (:class:`BatchSource`): the batch file's text, the task
arguments as typed and the folder their claims counted from, ``project-manager.yaml``'s text,
and the flags that shape a run. A resume loads those texts through the loader every run uses,
the one judge of what a batch may be, so it needs nothing else: a batch file edited or removed
since, or a changed ``project-manager.yaml``, changes nothing (a warning says so). Texts rather
than the loaded specs, because specs would need a second format, and a second judge, kept in
step with the loader forever.

A task is carried (taken as succeeded, not run again) if its final line in the journal says it
succeeded, or the run carried it from an earlier one (a resume of a resume); its dependants
start without waiting for it. Every other task runs again: failed, timed out, rate-limited,
skipped, cancelled, never started, or started and never ended (the run was killed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queue_core import TaskOutcome, TaskState
from queue_core.errors import JournalError, RunNotFoundError, first_few
from queue_core.machine import Limits
from queue_core.runfiles import iter_runs, journal_path, read_journal, run_summary
from queue_core.runid import RUN_ID_PATTERN
from queue_core.statedir import state_dir
from queue_core.timeline import journal_lines

from . import terminal
from .config import ISOLATIONS, Batch, ConfigError, claim_base
from .config_files import REPO_CONFIG, read_config, read_repo_config
from .exits import EXIT_USAGE
from .history import CommandError, run_named
from .render import SummaryRow

__all__ = ["RESUME_ALONE", "BatchSource", "Carried", "Options", "Resumption", "journal_batch", "previous"]

#: The version of a journal's ``"source"``: a reader refuses one it does not know.
SOURCE_VERSION = 1
#: Why --resume is refused beside --file or several arguments.
RESUME_ALONE = (
    "--resume takes at most one argument, the run to resume (its id or a unique part of it; default: the "
    "latest run), and no --file: it runs the batch that run recorded"
)


@dataclass(frozen=True)
class Options:
    """The flags that shape a run, as given on its command line (None: not given), which a resume
    takes unless it is given them again: ``--max-parallel``, ``--isolation``, the limits, ``--cluster``."""

    max_parallel: int | str | None = None
    isolation: str | None = None
    limits: Limits = field(default_factory=Limits)
    cluster: str | None = None

    def over(self, recorded: Options) -> Options:
        """These options, each ``recorded``'s where it was not given now."""
        return Options(
            self.max_parallel if self.max_parallel is not None else recorded.max_parallel,
            self.isolation if self.isolation is not None else recorded.isolation,
            Limits(
                self.limits.cpu if self.limits.cpu is not None else recorded.limits.cpu,
                self.limits.memory if self.limits.memory is not None else recorded.limits.memory,
            ),
            self.cluster if self.cluster is not None else recorded.cluster,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "max_parallel": self.max_parallel,
            "isolation": self.isolation,
            "limit_cpu": self.limits.cpu,
            "limit_memory": self.limits.memory,
            "cluster": self.cluster,
        }

    @classmethod
    def from_json(cls, data: object) -> Options:
        """Raises ValueError unless ``data`` is what :meth:`to_json` writes."""
        entry = _object(data, "options")
        count = entry.get("max_parallel")
        if (
            count is not None
            and count != "auto"
            and (not isinstance(count, int) or isinstance(count, bool) or count < 1)
        ):
            raise ValueError(f"max_parallel: expected a count of 1 or more, auto or null, got {count!r}")
        isolation = entry.get("isolation")
        if isolation is not None and isolation not in ISOLATIONS:
            raise ValueError(f"isolation: expected one of {', '.join(ISOLATIONS)} or null, got {isolation!r}")
        cpu, memory = entry.get("limit_cpu"), entry.get("limit_memory")
        cluster = entry.get("cluster")  # absent from a journal older than --cluster
        if cluster is not None:
            from queue_core.cluster import check_address

            if not isinstance(cluster, str):
                raise ValueError(f"cluster: expected an address or null, got {cluster!r}")
            check_address(cluster)  # InvalidArgumentError, a ValueError
        return cls(count, isolation, Limits(cpu, memory), cluster)  # Limits raises InvalidArgumentError too


@dataclass(frozen=True)
class BatchSource:
    """What a run's batch is made of, as read when it started: ``arguments`` (the TASK texts, as
    typed), ``base`` (the folder, in the repository, their claims count from; see
    cli.config.claim_base), the batch ``file`` (its path, as given and absolute) and its text,
    ``project-manager.yaml``'s text (None: there was none), the repository ``repo`` it ran in,
    and the run's ``options``. ``read_by``: the run whose journal gave it (None: read now), which
    errors of a load name."""

    repo: str
    arguments: tuple[str, ...] = ()
    base: str | None = None
    file: str | None = None
    file_path: str | None = None
    file_text: str | None = None
    repo_config: str | None = None
    options: Options = field(default_factory=Options)
    read_by: str | None = field(default=None, compare=False)

    @classmethod
    def read(cls, task_texts: Sequence[str], batch_file: Path | None, repo_root: Path, options: Options) -> BatchSource:
        """The batch of a new run, its files read now, once. Raises ConfigError if one cannot be read."""
        return cls(
            str(repo_root),
            tuple(task_texts),
            claim_base(repo_root),
            None if batch_file is None else str(batch_file),
            None if batch_file is None else os.path.abspath(batch_file),
            None if batch_file is None else read_config(batch_file),
            read_repo_config(repo_root),
            options,
        )

    def file_source(self) -> str:
        """What errors of the batch file call it."""
        return _as_read(str(self.file), self.read_by)

    def repo_config_source(self, repo_root: Path) -> str:
        """What errors of ``project-manager.yaml`` call it."""
        return _as_read(str(repo_root / REPO_CONFIG), self.read_by)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SOURCE_VERSION,
            "repo": self.repo,
            "arguments": list(self.arguments),
            "base": self.base,
            "file": None
            if self.file is None
            else {"path": self.file, "abspath": self.file_path, "text": self.file_text},
            "repo_config": self.repo_config,
            "options": self.options.to_json(),
        }

    @classmethod
    def from_json(cls, data: object, run: str) -> BatchSource:
        """The source ``run``'s journal keeps. Raises ValueError unless it is :meth:`to_json`'s."""
        entry = _object(data, "source")
        if entry.get("version") != SOURCE_VERSION:
            raise ValueError(
                f"a source of version {entry.get('version')!r}, not {SOURCE_VERSION}: another project-manager"
            )
        arguments = entry.get("arguments")
        if not isinstance(arguments, list) or not all(isinstance(text, str) for text in arguments):
            raise ValueError("arguments: expected a list of strings")
        file = entry.get("file")
        path = abspath = text = None
        if file is not None:
            file = _object(file, "file")
            path, abspath, text = (_string(file, key, "file") for key in ("path", "abspath", "text"))
        repo_config = entry.get("repo_config")
        if repo_config is not None and not isinstance(repo_config, str):
            raise ValueError("repo_config: expected a string or null")
        base = entry.get("base")
        if base is not None and not isinstance(base, str):
            raise ValueError("base: expected a string or null")
        repo = _string(entry, "repo", "source")
        return cls(
            repo, tuple(arguments), base, path, abspath, text, repo_config, Options.from_json(entry.get("options")), run
        )


@dataclass(frozen=True)
class Carried:
    """The tasks of a resumed run taken as succeeded from earlier runs: ``runs`` (task id -> the run
    it succeeded in) and their ``rows`` in the summary, ``order`` every task of the batch in its order."""

    resumes: str
    runs: Mapping[str, str]
    rows: tuple[SummaryRow, ...] = ()
    order: tuple[str, ...] = ()

    def summary(self, outcomes: Sequence[SummaryRow]) -> list[SummaryRow]:
        """The summary's rows: ``outcomes`` (the tasks run) and the carried ones, in the batch's order."""
        rank = {task_id: i for i, task_id in enumerate(self.order)}
        return sorted([*self.rows, *outcomes], key=lambda row: rank.get(row.outcome.id, len(rank)))

    def line(self) -> str:
        """What a resumed run says first: which tasks it takes as succeeded, not running them again."""
        ids = list(self.runs)
        where = "in it or in a run it resumed" if set(self.runs.values()) - {self.resumes} else "in it"
        return (
            f"resuming run {self.resumes}: not running again the {len(ids)} of {len(self.order)} tasks "
            f"that succeeded {where}: {first_few(ids, 10)}"
        )

    def plan(self, text: str, *, json_out: bool) -> str:
        """A dry run's plan, with the run it resumes and the tasks it would not run again."""
        if not json_out:
            return f"{self.line()}\n{text}"
        plan = json.loads(text)
        return json.dumps({"resumes": self.resumes, "carried": dict(self.runs), **plan}, indent=2)


@dataclass(frozen=True)
class Resumption:
    """A run to resume: its id, what its batch was made of, and the tasks it succeeded in or
    carried (``carried``: task id -> the run it succeeded in)."""

    run: str
    source: BatchSource
    carried: Mapping[str, str]
    state: Path

    def split(self, batch: Batch) -> tuple[Batch, Carried]:
        """``batch`` (loaded from :attr:`source`) without the carried tasks, its dependencies on
        them dropped: a carried task succeeded, so its dependants need not wait; and what was carried."""
        runs = {task.id: self.carried[task.id] for task in batch.tasks if task.id in self.carried}
        again = tuple(
            dataclasses.replace(task, depends_on=tuple(dep for dep in task.depends_on if dep not in runs))
            for task in batch.tasks
            if task.id not in runs
        )
        rows = tuple(
            SummaryRow(
                self._outcome(task.id, task.agent, task.description, runs[task.id]), None, resumed_from=runs[task.id]
            )
            for task in batch.tasks
            if task.id in runs
        )
        carried = Carried(self.run, runs, rows, tuple(task.id for task in batch.tasks))
        return dataclasses.replace(batch, tasks=again), carried

    def _outcome(self, task_id: str, agent: str, description: str, run: str) -> TaskOutcome:
        """A carried task's outcome: succeeded, not started here, its log the one of the run it succeeded in."""
        log = self.state / "logs" / run / f"{task_id}.log"
        try:
            found = stat.S_ISREG(os.lstat(log).st_mode)
        except OSError:  # pruned (keep_runs, clean)
            found = False
        return TaskOutcome(task_id, agent, description, TaskState.SUCCEEDED, log=str(log) if found else None)


def journal_batch(source: BatchSource, carried: Carried | None) -> dict[str, Any]:
    """What a run adds under its first line's ``"batch"``: its source, and what it carried."""
    more: dict[str, Any] = {"source": source.to_json()}
    if carried is not None:
        more["carried"] = dict(carried.runs)
    return more


def previous(repo_root: Path, run_text: str | None) -> Resumption:
    """The run ``run_text`` names (the latest that is not running if None), to resume.

    Raises CommandError (exit 2: nothing ran) if there is none, it still runs, another run is
    resuming it now, or its journal is missing or keeps no batch to resume.
    """
    state = state_dir(repo_root)
    run = _latest_ended(state) if run_text is None else _named(state, run_text)
    try:
        summary, _ = run_summary(state, run)
    except RunNotFoundError:  # pruned since it was found
        raise CommandError(EXIT_USAGE, f"run {run} left nothing in {state} to resume") from None
    if summary.state == "running":
        raise CommandError(EXIT_USAGE, f"run {run} still runs: it is not over, so it cannot be resumed yet")
    _not_resumed_now(state, run)
    first, carried = _read(state, run)
    batch = first.get("batch")
    if not isinstance(batch, dict) or "source" not in batch:
        raise CommandError(
            EXIT_USAGE,
            f"run {run}'s journal keeps no batch to resume: it was written by a project-manager without --resume",
        )
    try:
        source = BatchSource.from_json(batch["source"], run)
    except ValueError as exc:
        raise CommandError(EXIT_USAGE, f"run {run}'s journal: its batch cannot be read ({exc})") from None
    _warn_of_changes(source, run, repo_root)
    return Resumption(run, source, carried, state)


def _latest_ended(state: Path) -> str:
    """The latest run that is not running (runs come newest first, see runfiles.iter_runs)."""
    running = 0
    for summary in iter_runs(state):
        if summary.state != "running":
            return summary.run
        running += 1
    if running:
        raise CommandError(EXIT_USAGE, f"every run recorded in {state} still runs: a run is resumed once it is over")
    raise CommandError(EXIT_USAGE, f"no run is recorded in {state}: there is nothing to resume")


def _named(state: Path, text: str) -> str:
    """The run ``text`` names, as ``show`` takes it; every refusal is exit 2 here: nothing ran."""
    try:
        return run_named(state, text)
    except CommandError as error:
        raise CommandError(EXIT_USAGE, f"--resume: {error.message}") from None


def _not_resumed_now(state: Path, run: str) -> None:
    """Refuse to resume ``run`` while another live run resumes it: both would run its tasks again."""
    for summary in iter_runs(state):
        if summary.state != "running":
            continue
        lines = read_journal(journal_path(state, summary.run))
        if lines and lines[0].get("event") == "run_started" and lines[0].get("resumes") == run:
            raise CommandError(EXIT_USAGE, f"run {summary.run} is resuming run {run} now")


def _read(state: Path, run: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The first line of ``run``'s journal, and the tasks it succeeded in or carried: task id -> run."""
    path = journal_path(state, run)
    if os.path.islink(path.parent):  # state is never read through a symlink (see queue_core.statedir)
        raise CommandError(EXIT_USAGE, f"{path.parent}: is a symlink, not a run's folder; refusing to follow it")
    try:
        lines = journal_lines(path).events
    except JournalError as exc:
        if exc.reason == "no such file":
            why = "a run of a version before the journal, or one whose logs were pruned (keep_runs, clean)"
            raise CommandError(
                EXIT_USAGE, f"run {run} left no journal ({path}), so it cannot be resumed: {why}"
            ) from None
        raise CommandError(EXIT_USAGE, f"the journal of run {run}, {path}: {exc.reason}") from None
    first = next((line for line in lines if line["event"] == "run_started"), None)
    if first is None:
        raise CommandError(
            EXIT_USAGE, f"the journal of run {run}, {path}, has no first line (run_started) to resume from"
        )
    return first, _succeeded(run, first, lines)


def _succeeded(run: str, first: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The tasks ``run`` carried from earlier runs (its first line says) and those that succeeded
    in it (their final line says): task id -> the run each succeeded in."""
    batch = first.get("batch")
    before = batch.get("carried") if isinstance(batch, dict) else None
    found = {
        task: where
        for task, where in (before.items() if isinstance(before, dict) else ())
        if isinstance(where, str) and RUN_ID_PATTERN.fullmatch(where)
    }
    for line in lines:
        task = line.get("task")
        ended_well = line["event"] == TaskState.SUCCEEDED.value and line.get("final") is True
        if ended_well and isinstance(task, str) and line.get("run") == run:
            found[task] = run
    return found


def _warn_of_changes(source: BatchSource, run: str, repo_root: Path) -> None:
    """Say where what the resume runs differs from what is on disk now: it runs the batch as run ``run`` read it."""
    if source.repo != str(repo_root):
        terminal.warning(f"run {run} ran in {source.repo}; this resume runs its batch in {repo_root}")
    if source.file_path is not None and _text_now(Path(source.file_path)) != source.file_text:
        terminal.warning(
            f"{source.file} changed (or went) since run {run} read it: the resume runs the batch as run {run} "
            "read it; a new run of the file is delegate-multiple --file"
        )
    try:
        config_now = read_repo_config(repo_root)
    except ConfigError:
        config_now = None
    if config_now != source.repo_config:
        terminal.warning(
            f"{REPO_CONFIG} changed since run {run} read it: the resume runs with the one run {run} read "
            "(its agents, hooks, pools, limits...)"
        )


def _text_now(path: Path) -> str | None:
    """The file's text now; None if it is gone, unreadable, or no regular file (a FIFO is never waited on)."""
    try:
        return read_config(path) if path.is_file() else None
    except ConfigError:
        return None


def _as_read(name: str, run: str | None) -> str:
    return name if run is None else f"{name} (as run {run} read it)"


def _object(data: object, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected an object, got {type(data).__name__}")
    return data


def _string(entry: Mapping[str, Any], key: str, what: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{what}.{key}: expected a string, got {type(value).__name__}")
    return value
