"""What a run in worktree isolation checks of the repository before anything runs."""

from __future__ import annotations

import os
from pathlib import Path

from queue_core.changes import GitCalls
from queue_core.registry import state_dir

from .config import ConfigError
from .config_files import REPO_CONFIG

__all__ = ["check_worktree_root"]


def check_worktree_root(repo_root: Path, root: str | None) -> None:
    """Refuse a ``worktree_root`` that is no folder, or is in the working tree where git does not
    ignore it: each task's worktree would show in ``git status``, be taken for a write of the
    tasks running meanwhile outside their claims, and go into the commit of a ``git add --all``
    in the checkout. Raises ConfigError."""
    if root is None:
        return
    top, folder = repo_root.resolve(), (repo_root / root).resolve()  # as git records the worktrees
    if os.path.exists(folder) and not folder.is_dir():
        raise ConfigError(REPO_CONFIG, None, "worktree_root", f"{root!r} is not a folder")
    if not folder.is_relative_to(top) or folder.is_relative_to(state_dir(repo_root).parent.resolve()):
        return  # outside the working tree, or in the git directory
    probe = (folder / "run" / "task").relative_to(top).as_posix()
    code, _ = GitCalls().run(repo_root, "git", "check-ignore", "-q", "--", probe, ok=(0, 1))
    if code != 0:
        raise ConfigError(
            REPO_CONFIG,
            None,
            "worktree_root",
            f"{root!r} is in the working tree and git does not ignore it: git status would show every "
            "task's worktree, and a task's check for writes outside its claims would take the others' "
            "worktrees for some; put it outside the working tree (../worktrees), or ignore it in .gitignore",
        )
