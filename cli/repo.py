"""The repository a command works on: every command takes ``--repo``, and finds it alike without."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import NoReturn

import typer

from queue_core.statedir import work_tree_top

from . import terminal
from .exits import EXIT_USAGE


def find_repo(explicit: Path | None) -> Path:
    """``--repo`` if it is a directory, else the git top level of the current directory.

    Anything else is bad input (exit 2): a ``--repo`` that is no directory would be made by
    the run or shown as empty by ``status``; outside a git repository, the current folder taken
    silently might be the home folder. A folder that is not a git repository is used when
    ``--repo`` names it; a folder inside one is not: its runs share the repository's registry,
    where claims count from the top level, so claims counted from the folder would miss theirs.
    """
    if explicit is not None:
        if not explicit.is_dir():
            _refuse(f"--repo {explicit}: no such directory")
        root = explicit.resolve()
        work_tree = work_tree_top(root)
        if work_tree is not None and work_tree != root:
            _refuse(f"--repo {explicit} lies inside the git repository {work_tree}: give --repo {work_tree}")
        return root
    try:
        here = Path.cwd()
    except FileNotFoundError:
        _refuse("the current directory was removed; cd to one that exists, or give --repo DIR")
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],  # noqa: S607 - git from PATH, fixed arguments
            capture_output=True,
            text=True,
            check=True,
            start_new_session=True,  # a Ctrl-C is this command's to handle, not git's to die of
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        _refuse(f"{here} is not a git repository; give --repo DIR to work on a folder that is not one")
    return Path(top).resolve()


def _refuse(message: str) -> NoReturn:
    terminal.error(message)
    raise typer.Exit(EXIT_USAGE)
