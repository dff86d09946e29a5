"""Where a repository's state lives, and how its files are made and read.

A git repository keeps it in ``<git common dir>/project-manager/``: every worktree of the
repository shares that one directory, and ``git clean -fdX`` cannot reach it. Any other
directory keeps it in ``<repo>/.project-manager/``.

The state is private and never followed elsewhere: its directories are 0700 and its files
0600 whoever made them, a symlink in the place of one is refused, and only regular files are
read (a FIFO put there cannot make a reader wait). What is removed is removed as an entry: a
symlink goes, its target stays (see :func:`remove_entry`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import NotRegularFileError, StateError

__all__ = [
    "LEGACY_DIR",
    "create_private",
    "describe_entry",
    "encode_json",
    "ensure_private_dir",
    "is_inside",
    "list_dir",
    "locate",
    "make_state_dir",
    "measure",
    "read_regular",
    "remove_entry",
    "state_dir",
    "work_tree_top",
    "write_private",
]

#: The state directory of a repository that is not a git repository, and where versions before
#: 0.9 kept it in every repository.
LEGACY_DIR = ".project-manager"
_NAME = "project-manager"
#: Guards make_state_dir's files with names of the process's own (the write probe, which
#: retention knows by its pid, and write_private's temporary file): its threads check at once.
_CHECKING = threading.Lock()


def locate(repo: Path) -> Path:
    """The state directory of the repository at ``repo`` (an absolute, resolved path)."""
    common = _git_common_dir(repo)
    return repo / LEGACY_DIR if common is None else common / _NAME


def state_dir(repo: str | os.PathLike[str]) -> Path:
    """The state directory of the repository at ``repo``, any path to it."""
    return locate(Path(repo).resolve())


def is_inside(path: str | os.PathLike[str], state: Path) -> bool:
    """Whether ``path``, its symlinks resolved, is in the state directory ``state``: a file there
    is the registry, a run's log, journal or record, never a place for a user's output file."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(state))


def work_tree_top(repo: Path) -> Path | None:
    """The top of the git work tree that ``repo`` (an absolute, resolved path) lies in, found as
    locate finds its state directory: the nearest directory with a ``.git``; None outside one."""
    for directory in (repo, *repo.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir() or dot_git.is_file():
            return directory
    return None


def _git_common_dir(repo: Path) -> Path | None:
    """The git directory that every worktree of ``repo``'s repository shares, as git finds it; or None."""
    for directory in (repo, *repo.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            return dot_git.resolve()
        if dot_git.is_file():  # a linked worktree or a submodule: "gitdir: <its own git dir>"
            try:
                text = dot_git.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                return None
            if not text.startswith("gitdir:"):
                return None
            git_dir = (directory / text.removeprefix("gitdir:").strip()).resolve()
            try:
                common = (git_dir / "commondir").read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                return git_dir  # a submodule, or the main worktree's own: its git dir is the common one
            return (git_dir / common).resolve()
    return None


def ensure_private_dir(path: Path) -> None:
    """Make ``path`` a directory only its owner can enter; raises StateError if it cannot be.

    A symlink in its place is refused, never followed: state sent elsewhere (a committed
    symlink) would put claims and agents' output where others read or change them.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise StateError(path, f"is a symlink to {os.readlink(path)}; refusing to keep state through it")
        if not stat.S_ISDIR(st.st_mode):
            raise StateError(path, "is not a directory")
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, 0o700)  # made by an older version, or with a lax umask
    except StateError:
        raise
    except OSError as exc:
        raise StateError(path, f"cannot create or write the state directory: {exc.strerror or exc}") from exc


def make_state_dir(directory: Path) -> None:
    """Make the state directory ``directory`` and its ``runs/`` and ``history/``, or check them:
    owner-only, and writable. Raises StateError, naming the path, if they cannot be.

    One in the repository itself (``.project-manager``) gets a .gitignore: state is never committed.
    """
    for path in (directory, directory / "runs", directory / "history"):
        ensure_private_dir(path)
    try:
        with _CHECKING:
            if directory.name == LEGACY_DIR and not (directory / ".gitignore").exists():
                write_private(directory / ".gitignore", b"# project-manager's state: never commit it\n*\n")
            probe = directory / f".write-probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise StateError(directory, f"cannot write the state directory: {exc.strerror or exc}") from exc


def read_regular(path: Path, *, tail: int | None = None, head: int | None = None) -> bytes | None:
    """The content of the regular file ``path``; None if there is none. With ``tail``, only its
    last ``tail`` bytes, if it has more; with ``head``, only its first ``head``.

    Never waits on a FIFO and never follows a symlink: raises NotRegularFileError for anything
    but a regular file, and OSError if it cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise NotRegularFileError(errno.ELOOP, "a symlink, not a regular file", str(path)) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # before any read: a directory refuses one
        os.close(fd)
        raise NotRegularFileError(errno.EINVAL, "not a regular file", str(path))
    with os.fdopen(fd, "rb") as f:
        if tail is not None and info.st_size > tail:
            f.seek(info.st_size - tail)
        return f.read(-1 if head is None else head)


def encode_json(data: dict[str, Any]) -> bytes:
    """``data`` as every JSON file of the state is written: compact, by the C encoder."""
    return json.dumps(data, separators=(",", ":")).encode()


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` by a 0600 file holding ``data``, atomically: a reader sees the old or the new.

    Not fsynced: state needs to outlive its process, which the page cache does, not a crash of
    the machine, after which none of its processes runs. Raises OSError.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # left by a process that had this pid, or planted: never written through
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def open_append(path: Path) -> Iterator[int]:
    """A descriptor to append to ``path``, made 0600 if missing, closed at the end. Never follows
    a symlink nor waits on a FIFO: raises NotRegularFileError for anything but a regular file,
    OSError if it cannot be opened."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # a symlink; a FIFO nobody reads; a directory
            raise NotRegularFileError(exc.errno, "not a regular file", str(path)) from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file", str(path))
        yield fd
    finally:
        os.close(fd)


def create_private(path: Path, data: bytes) -> bool:
    """Create ``path`` as a 0600 file holding ``data`` if it does not exist; whether it was created.

    Atomic: a reader never sees it half-written, and of two creators one wins. Raises StateError,
    naming the path, if it cannot be written.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.new")
    try:
        write_private(tmp, data)
        try:
            os.link(tmp, path)  # fails if it exists
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    except OSError as exc:
        raise StateError(path, f"cannot write: {exc.strerror or exc}") from exc
    return True


def list_dir(directory: Path) -> Iterator[tuple[Path, os.DirEntry[str]]]:
    """The entries of ``directory``, with their paths; none if it does not exist.

    Never through a symlink: removing what is listed would remove what it points to. Raises
    OSError if ``directory`` is not a real directory (ELOOP, ENOTDIR) or cannot be read.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                yield directory / entry.name, entry
    finally:
        os.close(fd)


def remove_entry(path: Path) -> None:
    """Remove ``path`` without following it: a real directory with all below it, else the entry itself.

    A symlink goes as a link, its target stays; a FIFO is never opened. Gone already is fine.
    Raises OSError if it cannot be removed.
    """
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            # fd-based on Linux (shutil.rmtree.avoids_symlink_attacks): a symlink below goes as
            # a link, and one swapped in for ``path`` since the lstat is refused.
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def measure(paths: list[Path]) -> tuple[int, int]:
    """How many entries that are not directories are at or below ``paths`` (never followed), and
    the bytes of the regular ones among them."""
    files = size = 0
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            files += 1
            size += st.st_size if stat.S_ISREG(st.st_mode) else 0
            continue
        for _, _, names, dir_fd in os.fwalk(path, follow_symlinks=False):
            for name in names:
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except OSError:
                    continue
                files += 1
                size += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return files, size


def describe_entry(path: Path) -> str:
    """What ``path`` is, in words (``a symlink to /etc``, ``a FIFO``), without following it."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "gone"
    if stat.S_ISLNK(mode):
        with contextlib.suppress(OSError):
            return f"a symlink to {os.readlink(path)}"
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a regular file" if stat.S_ISREG(mode) else "a special file"
