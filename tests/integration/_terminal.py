"""A program on a pseudo-terminal of 120 x 40, as in a terminal window, for the CLI's tests."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import shutil
import struct
import subprocess
import termios
from collections.abc import Iterator

#: util-linux's setsid, which gives a program the terminal as its controlling one (setsid -c).
SETSID = shutil.which("setsid")


class Terminal:
    """A program and the master end of its pseudo-terminal."""

    def __init__(self, proc: subprocess.Popen[bytes], master: int):
        self.proc = proc
        self.master = master

    def hang_up(self) -> None:
        """Close the master end, as a closing window does (the kernel hangs up a controlling terminal)."""
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@contextlib.contextmanager
def on_terminal(argv: list[str], *, controlling: bool = False) -> Iterator[Terminal]:
    """Run ``argv`` on a new pseudo-terminal; ``controlling``: as its session's controlling
    terminal (through setsid -c), so that a hang-up sends it SIGHUP. Leaving hangs up, and
    kills the program if it still runs."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    if controlling:
        assert SETSID is not None
        argv = [SETSID, "-c", *argv]
    env = {**os.environ, "TERM": "xterm-256color"}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    terminal = Terminal(proc, master)
    try:
        yield terminal
    finally:
        terminal.hang_up()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
