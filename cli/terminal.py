"""Every write of the CLI to the terminal: lines and JSON on stdout, errors and warnings on
stderr, the event lines of a run, and the Rich live screen. The text itself is made in
cli/render.py, the panels in cli/panels.py; nothing else in the CLI writes.

Plain lines carry no escape codes, so CI logs and scripts read them as they are; colour is
used only on a terminal, and never when NO_COLOR is set (Rich honours it). A reader that went
away (a closed pipe or terminal) never fails a command: what it misses is dropped.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import queue
import shutil
import signal
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NoReturn, TextIO

if TYPE_CHECKING:
    from rich.console import RenderableType

    from queue_core import TaskEvent

# cli.render (and the library it imports) is imported where it is used: a command that only
# says a line (`claim`, `check`, run inside a task at an edit) must not pay for it.


def out(text: str) -> bool:
    """Print ``text`` on stdout; False if stdout is gone (a closed terminal or pipe), which then
    points at /dev/null (see :func:`_let_go`)."""
    try:
        print(text, flush=True)
    except OSError:
        _let_go(sys.stdout.fileno())
        return False
    return True


def print_result(text: str) -> int:
    """Print ``text``, a command's whole result, and a newline on stdout; the command's exit
    code: 0 if delivered, 141 (as for SIGPIPE) if the reader went away (``| head``), 1 if it
    could not be written (a full disk), said on stderr: a script must not take a result cut
    short, or none, for the whole. Either way stdout then points at /dev/null."""
    fd = fileno(sys.stdout)
    try:
        if fd is None:  # a test's captured output
            print(text, flush=True)
            return 0
        data = f"{text}\n".encode(sys.stdout.encoding or "utf-8", "replace")
        while data:
            data = data[os.write(fd, data) :]
    except OSError as exc:
        return _undelivered(fd, exc)
    return 0


def _undelivered(fd: int | None, exc: OSError) -> int:
    """The exit code of a command whose output ``exc`` stopped (see print_result); stdout let go."""
    if fd is not None:
        _let_go(fd)
    if exc.errno == errno.EPIPE:
        return 128 + signal.SIGPIPE
    error(f"cannot write the output: {exc.strerror or exc}")
    return 1


def width() -> int:
    """The columns of the terminal (``COLUMNS`` first, as for Rich); DEFAULT_WIDTH for output that
    goes to no terminal (a pipe, a CI log)."""
    from .render import DEFAULT_WIDTH

    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def print_panels(panels: RenderableType) -> bool:
    """Print Rich ``panels`` once on stdout, laid out for the terminal's width; False if stdout
    is gone (as :func:`out`)."""
    from rich.console import Console

    try:
        Console().print(panels)
        sys.stdout.flush()
    except OSError:
        _let_go(sys.stdout.fileno())
        return False
    return True


def write_out(text: str) -> bool:
    """Write ``text`` and a newline on stdout, through its file descriptor where it has one (see
    :func:`_write`: a write abandoned while blocked then holds no lock the exit needs); False if
    stdout is gone, which then points at /dev/null (see :func:`_let_go`)."""
    fd = fileno(sys.stdout)
    if _write(sys.stdout, fd, f"{text}\n"):
        return True
    if fd is not None:
        _let_go(fd)
    return False


def write_err(text: str) -> bool:
    """Write ``text`` and a newline on stderr, as :func:`write_out` does on stdout; False if stderr is gone."""
    return _write(sys.stderr, fileno(sys.stderr), f"{text}\n")


def write_bytes(data: bytes) -> int | None:
    """Write ``data`` on stdout as it is (an agent's log: any bytes, any encoding); None if
    written, else the command's exit code, as :func:`print_result` gives it (141: the reader
    went away; 1: it could not be written, said on stderr). stdout then points at /dev/null."""
    fd = fileno(sys.stdout)
    try:
        if fd is None:  # a test's captured output
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return None
        while data:
            data = data[os.write(fd, data) :]
    except OSError as exc:
        return _undelivered(fd, exc)
    return None


def _let_go(fd: int) -> None:
    """Point ``fd``, whose reader went away, at /dev/null: what is still buffered for it, and the
    interpreter's own flush of stdout at exit, then go nowhere rather than fail the command."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def error(message: str) -> None:
    with contextlib.suppress(OSError):  # stderr is gone (/dev/full, closed): the exit code says it
        print(f"project-manager: error: {message}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"project-manager: warning: {message}", file=sys.stderr, flush=True)


def bell() -> None:
    """Ring the terminal's bell: on stderr if it is a terminal, else on stdout if it is one;
    never into a file or a pipe, where a BEL is only a stray byte."""
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(ValueError, OSError):  # closed, or gone
            if stream.isatty():
                _write(stream, fileno(stream), "\a")
                return


def exit_now(code: int) -> NoReturn:
    """End the process at once with ``code``: output that could not be delivered is dropped.

    For a command whose output thread is stuck on a reader that went away: the interpreter's
    own exit would wait for that thread's lock on stdout for good. Everything else is done,
    but for the terminal's echo, given back here (a terminal held with Ctrl-S takes its
    settings, if not its output): a shell keeps the settings a command exits with.
    """
    for echo in _ECHO_OFF.copy():  # each one removes itself
        echo()
    logging.shutdown()
    os._exit(code)


@contextlib.contextmanager
def queue_log_to(output: PlainEvents | LiveView) -> Iterator[None]:
    """While entered, what queue_core logs (a warning, an error) is one notice line, without a traceback."""
    handler = _NoticeHandler(output)
    logger = logging.getLogger("queue_core")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _NoticeHandler(logging.Handler):
    def __init__(self, output: PlainEvents | LiveView):
        super().__init__(logging.WARNING)
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]}"
        self.output.notice(text)


class PlainEvents:
    """One timestamped line per task event, for CI and --no-live; thread-safe.

    The queue's workers only stamp and enqueue a line; a thread of its own writes the lines
    (in order, flushed), so a slow reader of the output, such as a CI log pipe, never holds
    up a task. Use it as a context manager: leaving it writes every line still queued.

    ``defuse``, if given, is applied to every line but those of :meth:`command`: on GitHub
    Actions, it keeps an agent's words in a line from being read as a workflow command.
    """

    def __init__(self, out: TextIO | None = None, defuse: Callable[[str], str] | None = None):
        self._out = out or sys.stdout
        self._defuse = defuse
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_lines, name="project-manager-output", daemon=True)

    def __enter__(self) -> PlainEvents:
        self._writer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write every line still queued, then stop (however long the reader takes)."""
        if self._writer.is_alive():
            self._lines.put(None)
            self._writer.join()

    def event(self, event: TaskEvent) -> None:
        from .render import event_line

        self.note(event_line(event))

    def note(self, text: str) -> None:
        self._lines.put(text if self._defuse is None else self._defuse(text))

    def notice(self, text: str) -> None:
        from .render import notice_line

        self.note(notice_line(text))

    def command(self, text: str) -> None:
        """Queue ``text`` as it is: our own workflow commands (cli/github.py), which must be obeyed."""
        self._lines.put(text)

    def _write_lines(self) -> None:
        fd = fileno(self._out)
        writing = True
        while True:
            lines = [self._lines.get()]
            while not self._lines.empty():  # whatever queued meanwhile goes out in the same write
                lines.append(self._lines.get())
            done = lines[-1] is None  # None comes last: __exit__ queues it after every line
            text = "".join(f"{line}\n" for line in lines if line is not None)
            if writing and text:
                writing = _write(self._out, fd, text)  # False: the reader went away; keep draining, quietly
            if done:
                return


class _Freeze(enum.Enum):
    """What ``LiveView.freeze`` queues: the live display ends here, the lines go on."""

    FREEZE = enum.auto()


class LiveView:
    """Rich Live panels while a run goes on, refreshed four times a second (terminals only).

    ``frame`` gives the panels afresh each time (see cli.panels.run_view). Event lines are
    printed above them. One thread of its own draws: whoever hands it a line never waits for
    the terminal (one held with Ctrl-S, say).
    """

    def __init__(self, frame: Callable[[], RenderableType], refresh_s: float = 0.25):
        self._frame = frame
        self._refresh_s = refresh_s
        self._screen = Screen()
        self._lines: queue.SimpleQueue[str | _Freeze | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LiveView:
        self._screen.start(self._frame())
        self._thread = threading.Thread(target=self._draw, name="project-manager-live", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Draw the lines still queued and the last frame, then stop; again, it does nothing."""
        if self._thread is None:
            return
        self._lines.put(None)
        self._thread.join()
        self._thread = None
        with contextlib.suppress(OSError):  # the terminal is gone (SIGHUP): nothing to draw on
            self._screen.stop()

    def freeze(self) -> None:
        """Draw the last frame and end the live display, after the lines queued: what comes
        later (the interruption, the agents stopping) prints below it as plain lines, and the
        frame stays whole. Never waits for the terminal."""
        self._lines.put(_Freeze.FREEZE)

    def event(self, event: TaskEvent) -> None:
        from .render import event_line

        self.note(event_line(event))

    def notice(self, text: str) -> None:
        from .render import notice_line

        self.note(notice_line(text))

    def note(self, text: str) -> None:
        self._lines.put(text)

    def _draw(self) -> None:
        """Print queued lines as they come, and the panels every ``refresh_s`` until frozen, until None comes."""
        next_frame: float | None = time.monotonic()  # None: frozen
        try:
            while True:
                try:
                    wait = None if next_frame is None else max(0.0, next_frame - time.monotonic())
                    line = self._lines.get(timeout=wait)
                except queue.Empty:
                    line = ""
                if line is None or line is _Freeze.FREEZE:
                    if next_frame is not None:
                        self._screen.show(self._frame())
                    if line is None:
                        return
                    self._screen.stop()
                    next_frame = None
                elif line:
                    self._screen.line(line)
                if next_frame is not None and time.monotonic() >= next_frame:
                    self._screen.show(self._frame())
                    next_frame = time.monotonic() + self._refresh_s
        except OSError:  # the terminal is gone: stop drawing, keep taking lines
            while self._lines.get() is not None:
                pass


class Screen:
    """Rich Live on stdout: a frame, redrawn when shown a new one, and lines printed above it.

    Nothing is redrawn unasked (no refresh thread of Rich's): the view that shows a frame
    decides when, and a terminal that blocks (held with Ctrl-S) blocks only that view. While
    it runs, the terminal echoes nothing typed: a Ctrl-C's "^C", or an Enter, would move the
    cursor under the frame, and the next redraw would leave a torn border behind.
    """

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console()
        self._live = Live(console=self._console, auto_refresh=False)
        self._echo: Callable[[], None] | None = None  # gives the terminal its echo back

    def start(self, frame: RenderableType | None = None) -> None:
        """Take the terminal (the cursor hidden, typing not echoed, until :meth:`stop`), drawing
        ``frame`` at once if given."""
        self._echo = _without_echo(sys.stdout)
        if frame is not None:
            self._live.update(frame)
        self._live.start(refresh=frame is not None)

    def show(self, frame: RenderableType) -> None:
        self._live.update(frame, refresh=True)

    def line(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False)  # user text, not Rich markup

    def stop(self) -> None:
        """Leave the last frame on the terminal, the cursor below it and shown again; again, it does nothing."""
        self._live.stop()
        echo, self._echo = self._echo, None
        if echo is not None:
            echo()


def _without_echo(stream: TextIO) -> Callable[[], None] | None:
    """Turn off the echo of the terminal under ``stream``; returns what turns it back on, None if
    nothing changed (not a terminal, or this process runs in the background: a background
    process that changes its terminal is stopped, SIGTTOU; so is one that changes it back, so
    that is done only in the foreground too: a shell gives itself its own settings anyway)."""
    fd = fileno(stream)
    if fd is None or not _in_foreground(fd):
        return None
    try:
        before = termios.tcgetattr(fd)
        quiet = list(before)
        quiet[3] &= ~termios.ECHO  # the local modes
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (OSError, termios.error):
        return None

    def echo() -> None:
        with contextlib.suppress(ValueError):  # given back already (by exit_now, or by the view)
            _ECHO_OFF.remove(echo)
        if _in_foreground(fd):
            with contextlib.suppress(OSError, termios.error):  # the terminal is gone
                termios.tcsetattr(fd, termios.TCSANOW, before)

    _ECHO_OFF.append(echo)
    return echo


#: What gives each terminal whose echo is off its echo back: for exit_now, which cannot wait
#: for a view stuck on its terminal to stop.
_ECHO_OFF: list[Callable[[], None]] = []


def _in_foreground(fd: int) -> bool:
    """Whether ``fd`` is a terminal whose foreground process group is this process's."""
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # not a terminal, or gone
        return False


def fileno(stream: TextIO) -> int | None:
    """The file descriptor under ``stream``, flushed; None if it has none (a test's captured output)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return None
    with contextlib.suppress(OSError):  # gone (a hung-up terminal): what was buffered is lost anyway
        stream.flush()
    return fd


def _write(stream: TextIO, fd: int | None, text: str) -> bool:
    """Write all of ``text``; False if the reader went away.

    Through the file descriptor where there is one: a writer blocked on a reader that went away
    then holds none of the file object's locks, which anything else (the exit) would need.
    """
    try:
        if fd is None:
            stream.write(text)
            stream.flush()
            return True
        data = text.encode(stream.encoding or "utf-8", "replace")
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        return False
    return True
