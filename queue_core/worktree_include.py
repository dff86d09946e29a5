"""``.worktreeinclude``: the ignored files of the user's checkout that a new worktree needs (``.env``,
a local config), copied in.

The convention (Claude Code, Codex, Conductor, ccmanager, git-worktreeinclude): a file at the
top of the working tree, in gitignore syntax; a file is copied when it matches one of its
patterns *and* git ignores it. Tracked files come with the checkout and are never copied over.
Git does the matching, so the syntax is exactly gitignore's (negations, ``**``, anchors):

* ``git ls-files --others --ignored --exclude-from=<the patterns>``: untracked files matching them;
* ``git ls-files --others --ignored --exclude-standard --directory``: what git ignores (a wholly
  ignored directory, such as ``node_modules/``, as one entry).

What is copied stays inside: a symlink is copied as a symlink only if it is relative and its
target stays inside the repository (an absolute one would reach the user's checkout, or
elsewhere); a parent that is a symlink, in the checkout or in the worktree, stops the file; an
existing file in the worktree is never overwritten, except, in a worktree reused from the pool,
the last task's copy (a tracked file never is); modes and modification times are kept.

Last, git is asked in the new worktree which copied files it would not ignore there (the user's
uncommitted ``.gitignore`` may be what ignores them): those are removed again, since the task's
``git add --all`` would commit them, a secret included.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .changes import GitCalls
from .errors import NotRegularFileError, WorktreeError
from .statedir import read_regular

__all__ = ["INCLUDE_FILE", "Included", "copy_included", "drop_unignored", "pack_included"]

INCLUDE_FILE = ".worktreeinclude"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Included:
    """What :func:`copy_included` did: the paths copied, and those left out with the reason."""

    copied: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


def copy_included(
    repo: str | os.PathLike[str], worktree: str | os.PathLike[str], *, git: GitCalls, replace: bool = False
) -> Included:
    """Copy into ``worktree`` the files of the working tree ``repo`` that its ``.worktreeinclude``
    names and git ignores; nothing without that file.

    ``replace``, for a worktree reused from the pool: a file or symlink the worktree has in the
    place of one, and does not track (the last task's copy), is replaced, unless it is the same
    already (size, mode and time: copies keep them); a tracked file or a folder never is.

    Raises WorktreeError if ``.worktreeinclude`` is not a regular file, GitError if git fails. A
    file that cannot be copied is skipped, with the reason, not raised: the task may not need it.
    """
    dest = Path(worktree)
    copied, skipped = _copy_all(Path(repo), dest, git, _Tracked(dest, git) if replace else None)
    if copied:
        drop_unignored(dest, copied, skipped, git)
    return Included(tuple(copied), tuple(skipped))


def pack_included(repo: str | os.PathLike[str], *, git: GitCalls) -> tuple[bytes, Included]:
    """The files :func:`copy_included` would copy, as an uncompressed tar (b"" if none), for a
    worktree on another machine (:mod:`queue_core.cluster_worker` unpacks it, never over a file
    the worktree has, and drops what git would not ignore there). Raises as copy_included does."""
    with tempfile.TemporaryDirectory(prefix="pm-include-") as staging:
        copied, skipped = _copy_all(Path(repo), Path(staging), git, None)
        if not copied:
            return b"", Included((), tuple(skipped))
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:") as tar:
            for path in copied:
                tar.add(os.path.join(staging, path), arcname=path, recursive=False)
        return out.getvalue(), Included(tuple(copied), tuple(skipped))


def _copy_all(
    top: Path, dest: Path, git: GitCalls, tracked: _Tracked | None
) -> tuple[list[str], list[tuple[str, str]]]:
    """Copy from ``top`` to ``dest`` what ``.worktreeinclude`` names and git ignores: the paths
    copied, and those skipped with the reason."""
    try:
        patterns = read_regular(top / INCLUDE_FILE)  # never a symlink, never a FIFO's wait
    except (NotRegularFileError, OSError) as exc:
        raise WorktreeError(f"{top / INCLUDE_FILE}: cannot be read as a file of patterns: {exc}") from exc
    if patterns is None:
        return [], []
    wanted = _matching(top, patterns, git)
    ignored = _split(git(top, "git", "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"))
    copied: list[str] = []
    skipped: list[tuple[str, str]] = []
    real_top = os.path.realpath(top)
    for path in wanted:
        why = "git does not ignore it" if not _under(path, ignored) else _copy(real_top, top, dest, path, tracked)
        if why is None:
            copied.append(path)
        else:
            skipped.append((path, why))
    return copied, skipped


def _matching(top: Path, patterns: bytes, git: GitCalls) -> list[str]:
    """The untracked files below ``top`` that ``patterns`` (gitignore syntax) match, sorted."""
    # Git reads the patterns from a copy: the file in the tree was read once, never followed.
    fd, name = tempfile.mkstemp(prefix="pm-worktreeinclude-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(patterns)
        raw = git(top, "git", "ls-files", "-z", "--others", "--ignored", f"--exclude-from={name}")
    finally:
        os.unlink(name)
    # An entry ending in "/" is a nested repository (another worktree, say): never copied.
    return sorted(path for path in _split(raw) if not path.endswith("/"))


def _split(raw: bytes) -> set[str]:
    return {os.fsdecode(name) for name in raw.split(b"\0") if name}


def _under(path: str, ignored: set[str]) -> bool:
    """Whether ``path`` or a directory above it is among ``ignored`` (directories end in ``/``)."""
    if path in ignored:
        return True
    parts = path.split("/")
    return any("/".join(parts[:i]) + "/" in ignored for i in range(1, len(parts)))


class _Tracked:
    """The paths a worktree tracks, listed once, when first asked (only a reused worktree asks)."""

    def __init__(self, worktree: Path, git: GitCalls):
        self._worktree, self._git = worktree, git
        self._paths: set[str] | None = None

    def __contains__(self, path: str) -> bool:
        if self._paths is None:
            self._paths = _split(self._git(self._worktree, "git", "ls-files", "-z", "--cached"))
        return path in self._paths


def _copy(real_top: str, top: Path, dest: Path, path: str, tracked: _Tracked | None) -> str | None:
    """Copy ``path`` from ``top`` to ``dest``; None if done, else why not (nothing left half-made).
    With ``tracked`` (see ``replace``), what is there and untracked is replaced first."""
    source = top / path
    try:
        st = os.lstat(source)
        if os.path.realpath(source.parent) != os.path.join(real_top, os.path.dirname(path)).rstrip("/"):
            return "a folder above it is a symlink"
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(source)
            why = _outside(real_top, source, path, target)
            if why:
                return why
        elif not stat.S_ISREG(st.st_mode):
            return "not a regular file or a symlink"
        with _parent_fd(dest, path) as parent:
            if parent is None:
                return "a folder above it in the worktree is not a folder"
            name = os.path.basename(path)
            if tracked is not None and (why := _make_way(parent, name, path, st, tracked)) is not None:
                return why or None
            if stat.S_ISLNK(st.st_mode):
                os.symlink(target, name, dir_fd=parent)
            else:
                _copy_file(source, name, parent, st)
    except FileExistsError:
        return "the worktree has it already (tracked there): not overwritten"
    except OSError as exc:
        return f"cannot be copied: {exc.strerror or exc}"
    return None


def _make_way(parent: int, name: str, path: str, source: os.stat_result, tracked: _Tracked) -> str | None:
    """Remove the untracked file or symlink ``name`` in ``parent`` that a copy of ``path`` replaces.
    None: go on and copy; "": nothing to do, the same is there; else why it is not replaced."""
    try:
        st = os.lstat(name, dir_fd=parent)
    except FileNotFoundError:
        return None
    same_file = stat.S_ISREG(st.st_mode) and stat.S_ISREG(source.st_mode) and st.st_size == source.st_size
    if same_file and st.st_mode == source.st_mode and st.st_mtime_ns == source.st_mtime_ns:
        return ""  # before asking git what it tracks: the usual case of a reused worktree
    if path in tracked:
        return None  # the copy meets it and says so, as in a new worktree
    if stat.S_ISDIR(st.st_mode):
        return "a folder in the worktree has its name: not replaced"
    os.unlink(name, dir_fd=parent)
    return None


def _outside(real_top: str, source: Path, path: str, target: str) -> str | None:
    """Why the symlink ``path`` (to ``target``) must not be copied; None if it stays inside."""
    if os.path.isabs(target):
        return f"a symlink to an absolute path ({target}): it would reach outside the worktree"
    lexical = os.path.normpath(os.path.join(os.path.dirname(path), target))
    real = os.path.realpath(source)
    if lexical == ".." or lexical.startswith("../") or os.path.commonpath([real_top, real]) != real_top:
        return f"a symlink out of the repository ({target})"
    return None


@contextlib.contextmanager
def _parent_fd(dest: Path, path: str) -> Iterator[int | None]:
    """An fd of the folder of ``path`` in ``dest``, made as needed, each step never through a
    symlink; None if a step is not a real folder."""
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in path.split("/")[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
            try:
                below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError:  # ELOOP, ENOTDIR: a symlink or a file where a folder should be
                yield None
                return
            os.close(fd)
            fd = below
        yield fd
    finally:
        os.close(fd)


def _copy_file(source: Path, name: str, parent: int, st: os.stat_result) -> None:
    """Copy the regular file ``source`` to ``name`` in the folder ``parent``: content, mode, times."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):  # swapped since the lstat
            raise OSError(0, "no longer a regular file")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(name, flags, 0o600, dir_fd=parent)
        try:
            with os.fdopen(src, "rb", closefd=False) as reader, os.fdopen(dst, "wb", closefd=False) as writer:
                shutil.copyfileobj(reader, writer, _CHUNK)
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        except OSError:
            os.unlink(name, dir_fd=parent)  # never a half-copied file
            raise
        finally:
            os.close(dst)
    finally:
        os.close(src)


def drop_unignored(dest: Path, copied: list[str], skipped: list[tuple[str, str]], git: GitCalls) -> None:
    """Remove from ``dest`` (and from ``copied``) what git would not ignore there."""
    seen = _split(git(dest, "git", "ls-files", "-z", "--others", "--exclude-standard"))
    for path in [p for p in copied if p in seen]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest / path)
        copied.remove(path)
        skipped.append((path, "the worktree does not ignore it: it would be committed"))
