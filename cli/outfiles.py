"""Files a command writes for the user (``--junit``'s report, ``timeline``'s page): replaced
whole, never seen half-written, durable once the command says it wrote them."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

__all__ = ["replace_file"]


def replace_file(path: Path, data: bytes) -> None:
    """``path`` replaced by a file holding ``data`` (its mode as the umask gives), atomically and
    durably: a reader sees the old file or the whole new one; the file beside it that is renamed
    over it never outlives a failure, nor a Ctrl-C. Raises OSError."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
