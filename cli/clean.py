"""``project-manager clean``: prune the repository's state directory now (see queue_core.retention),
then dead runs' task worktrees and branches, with ``--pool`` the pool's idle worktrees, and with
``--history`` the durations that estimates are made from.

Thin: the repository's ``keep_runs`` comes from ``project-manager.yaml`` unless ``--keep-runs``
says otherwise; what goes and what stays is decided in the library, under the registry lock,
and only said here. Exit codes: 0 done; 1 the registry cannot be used, or something could not
be removed; 2 bad input.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from queue_core.durations import DurationHistory
from queue_core.errors import GitError, StateError
from queue_core.registry import Registry, state_dir
from queue_core.retention import DEFAULT_KEEP_RUNS, preview, prune
from queue_core.statedir import describe_entry
from queue_core.status import live_run_records
from queue_core.worktree_leftovers import Leftover, known_runs, leftovers_and_idle, sweep
from queue_core.worktree_pool import pool_dir, remove_idle

from . import render, terminal
from .config import ConfigError
from .config_files import load_repo_config
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .repo import find_repo


def run(
    repo: Path | None,
    *,
    keep_runs: int | None,
    dry_run: bool,
    force: bool = False,
    pool: bool = False,
    history: bool = False,
) -> int:
    repo_root = find_repo(repo)
    try:
        config = load_repo_config(repo_root)
        keep = keep_runs or config.keep_runs or DEFAULT_KEEP_RUNS
        worktree_root = config.worktree_root
    except ConfigError as exc:
        terminal.error(str(exc))
        return EXIT_USAGE
    known = known_runs(repo_root, root=worktree_root)  # before the pruning takes dead runs' records
    try:
        # Unlike the end of a run, clean also drops the hidden refs of runs that left no file.
        if dry_run:  # a view, like status: no lock taken, nothing written, not even a run record
            report = preview(repo_root, keep, orphan_refs=True)
        else:
            registry = Registry(repo_root)
            try:
                report = prune(registry, keep, orphan_refs=True)
            finally:
                registry.finish_run(None)
    except StateError as exc:
        terminal.error(str(exc))
        return EXIT_FAILED
    terminal.out(render.clean_text(report))
    for note in report.skipped:
        terminal.warning(note)
    for failure in report.failed:
        terminal.error(f"could not remove {failure}")
    try:
        swept = sweep(repo_root, run_alive(repo_root), root=worktree_root, force=force, dry_run=dry_run, known=known)
        idled = remove_idle(repo_root, root=worktree_root, dry_run=dry_run) if pool else []
    except GitError as exc:  # not a git repository: no worktrees to look for
        swept, idled = [], []
        if (repo_root / ".git").exists():
            terminal.error(f"could not list the worktrees of dead runs: {exc}")
            return EXIT_FAILED
    if swept:
        terminal.out(render.swept_text(swept, done=not dry_run))
    if idled:
        terminal.out(render.pool_text(idled, done=not dry_run))
    if history and not _forget_durations(repo_root, dry_run=dry_run):
        return EXIT_FAILED
    return EXIT_FAILED if report.failed else EXIT_OK


def _forget_durations(repo_root: Path, *, dry_run: bool) -> bool:
    """--history: remove the durations estimates are made from (see queue_core.durations), or
    say it would; whether that went well."""
    durations = DurationHistory(state_dir(repo_root))
    try:
        runs, junk = len(durations.samples()), None
        if durations.damaged:
            junk = f"{durations.damaged} damaged line(s)"
    except StateError:  # not a regular file, or unreadable: it goes all the same
        runs, junk = 0, describe_entry(durations.path)
    if not os.path.lexists(durations.path):
        junk = None
    try:
        if (runs or junk) and not dry_run:
            durations.clear()
    except StateError as exc:
        terminal.error(str(exc))
        return False
    terminal.out(render.durations_text(runs, done=not dry_run, junk=junk))
    return True


def run_alive(repo_root: Path) -> Callable[[str], bool]:
    """Whether a run lives (or holds claims), asked afresh each time: a run that starts while
    its worktrees are looked at has its record written before it makes any."""

    def alive(run: str) -> bool:
        return any(record.run == run for record in live_run_records(repo_root))

    return alive


def worktree_views(repo_root: Path) -> tuple[list[Leftover], Path, list[Path]]:
    """For ``status``: the task worktrees and branches that dead runs left, the pool's folder and
    its idle worktrees; none if they cannot be listed (not a git repository, a bad
    project-manager.yaml: the other views say so)."""
    try:
        root = load_repo_config(repo_root).worktree_root
        known = known_runs(repo_root, root=root)
        found, idle = leftovers_and_idle(repo_root, run_alive(repo_root), root=root, known=known)
    except (ConfigError, GitError, StateError):
        return [], pool_dir(repo_root), []
    return [leftover for leftover in found if not leftover.alive], pool_dir(repo_root, root), idle
