"""The last lines of a task's log, read from its end, as reports outside the terminal show them.

A log is the agent's own output: it may be 50 MB, one line without an end, bytes that are not
UTF-8, NUL and control characters, or (an agent can do anything in the state directory) no
regular file at all. The JUnit report (cli/junit.py) and the GitHub Actions groups
(cli/github.py) show only its tail, so only the tail is read: from the end, never more than
TAIL_BYTES, whatever the file's size.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

#: How many of a log's last lines a report shows.
TAIL_LINES = 200
#: The most of a log read for them: 200 lines of a chatty agent, not a line of 50 MB.
TAIL_BYTES = 256 * 1024
#: Read from the end in blocks this large.
_BLOCK = 64 * 1024

#: What XML 1.0 cannot hold: NUL and the C0 controls but tab and line ends, lone surrogates
#: (a file name or argument that was not UTF-8), U+FFFE and U+FFFF. A GitHub log shows the
#: rest as it is; XML refuses a document with any of these, whatever the escaping.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (see _NOT_XML), the rest as it is."""
    return _NOT_XML.sub("", text)


@dataclass(frozen=True)
class Tail:
    """The end of a log: ``text``, its last lines, cleaned (see :func:`clean`); ``omitted``, the
    bytes before them that are not shown (0: the whole log is)."""

    text: str
    omitted: int = 0


def read_tail(path: str | os.PathLike[str] | None, lines: int = TAIL_LINES, limit: int = TAIL_BYTES) -> Tail | None:
    """The last ``lines`` lines of the log at ``path``, read from its end, ``limit`` bytes at most
    (a longer last line keeps its end); None if there is no log (no path, no file) or it is not
    a regular file (a FIFO is never waited on, a symlink never followed) or cannot be read.

    Bytes that are not UTF-8 show as U+FFFD. A line redrawn with carriage returns (a progress
    bar) shows as a terminal left it: its part after the last one.
    """
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        start, data = _tail_bytes(fd, info.st_size, lines, limit)
    except OSError:
        return None
    finally:
        os.close(fd)
    kept = data.split(b"\n")
    if data.endswith(b"\n"):
        kept.pop()  # the end of the last line, not an empty line after it
    if start > 0 and len(kept) > 1:
        start += len(kept[0]) + 1  # the first line is cut: leave it out whole
        kept.pop(0)
    if len(kept) > lines:
        start += sum(len(line) + 1 for line in kept[:-lines])
        kept = kept[-lines:]
    shown = (_as_shown(line.decode("utf-8", "replace")) for line in kept)
    return Tail(clean("\n".join(shown)), start)


def _tail_bytes(fd: int, size: int, lines: int, limit: int) -> tuple[int, bytes]:
    """Blocks read back from the end of ``fd`` until they hold more than ``lines`` line ends or
    ``limit`` bytes; where they start, and them."""
    start, blocks, ends = size, [], 0
    while start > 0 and size - start < limit and ends <= lines:
        step = min(_BLOCK, start, limit - (size - start))
        block = os.pread(fd, step, start - step)
        if not block:  # shrunk meanwhile: take what was read
            break
        start -= len(block)
        blocks.append(block)
        ends += block.count(b"\n")
    return start, b"".join(reversed(blocks))


def _as_shown(line: str) -> str:
    """A line as a terminal leaves it: its part after the last carriage return (not counting
    the one before a line end, as in CRLF)."""
    return line.rstrip("\r").rpartition("\r")[2]
