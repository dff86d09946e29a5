"""``project-manager clean``: prune the repository's state directory now (see queue_core.retention).

Thin: the repository's ``keep_runs`` comes from ``project-manager.yaml`` unless ``--keep-runs``
says otherwise; what goes and what stays is decided in the library, under the registry lock,
and only said here. Exit codes: 0 done; 1 the registry cannot be used, or something could not
be removed; 2 bad input.
"""

from __future__ import annotations

from pathlib import Path

from queue_core.errors import StateError
from queue_core.registry import Registry
from queue_core.retention import DEFAULT_KEEP_RUNS, preview, prune

from . import render, terminal
from .config import ConfigError
from .config_files import load_repo_config
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .repo import find_repo


def run(repo: Path | None, *, keep_runs: int | None, dry_run: bool) -> int:
    repo_root = find_repo(repo)
    try:
        keep = keep_runs or load_repo_config(repo_root).keep_runs or DEFAULT_KEEP_RUNS
    except ConfigError as exc:
        terminal.error(str(exc))
        return EXIT_USAGE
    try:
        if dry_run:  # a view, like status: no lock taken, nothing written, not even a run record
            report = preview(repo_root, keep)
        else:
            registry = Registry(repo_root)
            try:
                report = prune(registry, keep)
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
    return EXIT_FAILED if report.failed else EXIT_OK
