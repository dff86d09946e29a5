"""State that versions before 0.9 left in ``<repo>/.project-manager``, moved to the git location.

Those versions kept a repository's state in the working tree; a git repository now keeps it in
its git common directory (see :mod:`queue_core.statedir`). Their history and logs move there
once; their claims cannot, so the move waits until no run of theirs holds any.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .claimsfile import parse
from .clocks import Clocks
from .errors import StateError
from .holds import live_holds
from .statedir import LEGACY_DIR, ensure_private_dir, read_regular

__all__ = ["migrate"]


def migrate(repo: Path, directory: Path, *, stale_after: float, clocks: Clocks) -> str | None:
    """Move the history and logs of ``repo``'s old state directory into ``directory``; what was
    done, to tell the user, or None if there was nothing to move.

    Raises StateError while a run of such a version holds claims there: it would not see ours.
    """
    legacy = repo / LEGACY_DIR
    if legacy == directory or not legacy.is_dir() or legacy.is_symlink():
        return None
    try:
        raw = read_regular(legacy / "claims.json")
        holds = [] if raw is None else parse(raw)[0]
    except (OSError, ValueError, KeyError, TypeError):
        holds = []
    live = live_holds(holds, legacy / "runs", stale_after=stale_after, clocks=clocks)[0]
    if live:
        raise StateError(
            legacy,
            f"run {live[0].owner.run} (pid {live[0].owner.pid}) of an older version holds claims here; "
            "let it finish first",
        )
    for name in ("history", "logs"):
        for entry in _entries(legacy / name):
            ensure_private_dir(directory / name)
            with contextlib.suppress(OSError):
                os.rename(entry, directory / name / entry.name)
    shutil.rmtree(legacy, ignore_errors=True)
    return f"moved this repository's project-manager state from {legacy} to {directory}"


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []
