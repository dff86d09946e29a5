"""A program on a pseudo-terminal (120 x 40 unless told), as in a terminal window, for the CLI's tests."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import termios
from collections.abc import Iterator

import pytest

from ..conftest import WAIT

#: util-linux's setsid, which gives a program the terminal as its controlling one (setsid -c).
SETSID = shutil.which("setsid")


class Terminal:
    """A program, the master end of its pseudo-terminal, and the path of its end (``tty``)."""

    def __init__(self, proc: subprocess.Popen[bytes], master: int, tty: str):
        self.proc = proc
        self.master = master
        self.tty = tty

    def read_to_end(self) -> bytes:
        """Everything the program shows from now until it exits and its terminal closes; fails if
        the terminal stays silent for WAIT seconds."""
        shown = b""
        while select.select([self.master], [], [], WAIT)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the program is gone, the terminal closed
                return shown
            if not chunk:
                return shown
            shown += chunk
        pytest.fail("the terminal went silent:\n" + shown.decode(errors="replace"))

    def hang_up(self) -> None:
        """Close the master end, as a closing window does (the kernel hangs up a controlling terminal)."""
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@contextlib.contextmanager
def on_terminal(
    argv: list[str],
    *,
    controlling: bool = False,
    size: tuple[int, int] = (40, 120),
    env: dict[str, str] | None = None,
) -> Iterator[Terminal]:
    """Run ``argv`` on a new pseudo-terminal of ``size`` (rows, columns), in ``env`` (default: this
    process's environment); ``controlling``: as its
    session's controlling terminal (through setsid -c), so that a hang-up sends it SIGHUP and a
    Ctrl-C typed (``\x03`` written to ``master``) SIGINT. Leaving hangs up, and kills the program
    if it still runs."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    if controlling:
        assert SETSID is not None
        argv = [SETSID, "-c", *argv]
    env = {**(os.environ if env is None else env), "TERM": "xterm-256color"}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    tty = os.ttyname(slave)
    os.close(slave)
    terminal = Terminal(proc, master, tty)
    try:
        yield terminal
    finally:
        terminal.hang_up()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
