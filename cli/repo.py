"""The repository a command works on: every command takes ``--repo``, and finds it alike without."""

from __future__ import annotations

import subprocess
from pathlib import Path


def find_repo(explicit: Path | None) -> Path:
    """``--repo``, else the git top level of the current directory, else the current directory."""
    if explicit is not None:
        return explicit.resolve()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],  # noqa: S607 - git from PATH, fixed arguments
            capture_output=True,
            text=True,
            check=True,
            start_new_session=True,  # a Ctrl-C is this command's to handle, not git's to die of
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return Path.cwd().resolve()
    return Path(top).resolve()
