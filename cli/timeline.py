"""``project-manager timeline [RUN] [-o FILE]``: a run drawn as one self-contained HTML file.

Drawn from the run's journal, ``logs/<run>/events.jsonl`` in the state directory (see
:mod:`queue_core.timeline`); the latest run's unless RUN is given. The file is written
atomically (a reader sees the old file or the new one), never into the state directory (it
could replace a run's journal or log), never over a directory. Exit codes: 0 written; 1 no
journal of the run, or it cannot be read, or the file cannot be written; 2 bad input.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from queue_core.errors import InvalidArgumentError, JournalError
from queue_core.runfiles import journal_path
from queue_core.statedir import locate
from queue_core.timeline import journal_lines, run_from_events
from queue_core.timeline_layout import layout
from queue_core.timeline_svg import html_page

from . import terminal
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .history import CommandError, refused, run_named
from .outfiles import replace_file
from .repo import find_repo


def run(repo: Path | None, run_text: str | None, *, output: str | None) -> int:
    repo_root = find_repo(repo)
    state = locate(repo_root)
    try:
        explicit = None if output is None or output == "-" else _checked_target(output, state)
        run_id = run_named(state, run_text)
    except InvalidArgumentError as exc:
        terminal.error(str(exc))
        return EXIT_USAGE
    except CommandError as error:
        return refused(error)
    path = journal_path(state, run_id)
    if os.path.islink(path.parent):  # state is never read through a symlink (see queue_core.statedir)
        terminal.error(f"{path.parent}: is a symlink, not a run's folder; refusing to follow it")
        return EXIT_FAILED
    try:
        lines = journal_lines(path)
        journal = run_from_events(lines.events, unreadable=lines.unreadable, cut=lines.cut)
    except JournalError as exc:
        terminal.error(_unreadable(run_id, path, exc))
        return EXIT_FAILED
    picture = layout(journal)
    page = html_page(picture)
    if output == "-":
        return terminal.print_result(page.rstrip("\n"))
    try:
        target = explicit or _checked_target(f"timeline-{run_id}.html", state)
        replace_file(target, page.encode("utf-8"))
    except InvalidArgumentError as exc:
        terminal.error(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        terminal.error(f"cannot write {output or target}: {exc.strerror or exc}")
        return EXIT_FAILED
    terminal.out(f"wrote {output or target.name}: run {run_id}, {picture.lines[1]}")
    return EXIT_OK


def _unreadable(run_id: str, path: Path, exc: JournalError) -> str:
    if exc.reason == "no such file":
        return (
            f"run {run_id} left no journal ({path}): no such run, a run of a version before the journal, "
            "or one whose logs were pruned (keep_runs, clean)"
        )
    return f"the journal of run {run_id}, {path}: {exc.reason}"


def _checked_target(output: str, state: Path) -> Path:
    """Where ``output`` writes: a file in an existing directory, not a directory itself nor a
    special file, nor in the state directory. A symlink is written through, to its file.
    Raises InvalidArgumentError."""
    if not output:
        raise InvalidArgumentError("-o: expected a file name, or - for stdout")
    given = Path(output)
    target = Path(os.path.realpath(given))
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise InvalidArgumentError(f"-o {output}: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise InvalidArgumentError(f"-o {output}: is a directory; expected a file name, such as {given / 'run.html'}")
    if mode is not None and not stat.S_ISREG(mode):
        raise InvalidArgumentError(f"-o {output}: is not a regular file; expected a file name")
    if not target.parent.is_dir():
        raise InvalidArgumentError(f"-o {output}: no such directory {given.parent}")
    if target.is_relative_to(Path(os.path.realpath(state))):
        raise InvalidArgumentError(f"-o {output}: is inside the state directory {state}; write it elsewhere")
    return target
