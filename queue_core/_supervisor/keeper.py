"""A keeper: the process that runs one task's agent at a time, and outlives none of its processes.

A keeper is forked from the supervisor and makes itself a child subreaper (Linux
``prctl(PR_SET_CHILD_SUBREAPER)``), then starts each task's agent in a session of its own,
held short of its command until the keeper has appended the agent's process group to the
run's record of them: no agent runs a single instruction of its own before the registry can
tell that its processes live.
Every process the agent creates stays below the keeper: a child that double-forks or calls
``setsid`` is re-parented to the keeper when its parent exits, never to init. So the keeper
knows exactly when the task's last process is gone: when it has no child left (``waitpid``
fails with ECHILD). Only then does it report the task ended, and only then does it take the
next task.

It stops the task's tree (SIGTERM and SIGCONT to every descendant, by pid, and to the agent's
group while it has members; SIGKILL after the grace period, again until no child is left)
when asked (cancel, timeout), when the agent exits leaving processes behind, when it is sent
SIGTERM, and when the supervisor goes away (end of file on its command pipe); in the last two
cases it then exits.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import stat
import sys
import time
from typing import TYPE_CHECKING

from .proctree import KEEPER_NAME, Proc, descendants, pids, process_table, read_proc, signal_exactly
from .wire import PIPE_BUF, Frames, frame, short

if TYPE_CHECKING:
    from typing import Any, NoReturn

#: While stopping, how often a keeper signals again whatever still lives.
KILL_POLL_S = 0.02
#: The longest a keeper waits at once.
MAX_WAIT_S = 3600.0
#: Signals that the supervisor or a keeper ignores or handles, and an agent gets back as default.
DEFAULT_FOR_AGENTS = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGCHLD,
    signal.SIGQUIT,
)
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
_libc: Any = None


def prctl(option: int, value: int | bytes) -> bool:
    """Linux prctl(2) through ctypes; False where it does not exist or fails."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    arg = ctypes.c_char_p(value) if isinstance(value, bytes) else ctypes.c_ulong(value)
    return _libc.prctl(option, arg, 0, 0, 0) == 0  # type: ignore[no-any-return]


def wakeup_pipe() -> int:
    """A pipe that the interpreter writes each caught signal's number to; returns its read end."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    return r


def drain(fd: int) -> bytes:
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except (BlockingIOError, InterruptedError):
        pass
    return data


def write_all(fd: int, data: bytes) -> bool:
    """Write all of ``data`` to a blocking pipe; False if its reader is gone."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        return False
    return True


class Keeper:
    """See the module. ``commands`` is the pipe from the supervisor, ``report`` the one back to it."""

    def __init__(self, commands: int, report: int):
        self.commands = commands  # -1 after end of file: the supervisor is gone, or ends us
        self.report = report
        self.frames = Frames()
        self.pending: list[tuple[Any, ...]] = []  # read, not yet handled
        self.later: list[tuple[Any, ...]] = []  # a spawn that came while a task ran (a bug upstream)
        self.pid = os.getpid()
        self.exiting = False  # told to go (SIGTERM, or end of file): no further task
        self.wake = -1

    def serve(self) -> NoReturn:
        try:
            prctl(PR_SET_CHILD_SUBREAPER, 1)
            prctl(PR_SET_NAME, KEEPER_NAME.encode())
            self.wake = wakeup_pipe()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # the supervisor blocked it to fork
            while not self.exiting:
                message = self.later.pop(0) if self.later else self._next(None)
                # A spawn read once we are told to go is left unserved: the supervisor, seeing us
                # exit cleanly without having started it, gives it to another keeper.
                if message is not None and message[0] == "spawn" and not self.exiting:
                    self._task(message[1], message[2:])
        except BaseException:  # noqa: BLE001 - a bug: report it, since our stderr is /dev/null
            import traceback

            write_all(self.report, frame("crashed", short(traceback.format_exc(), PIPE_BUF - 100)))
            os._exit(70)
        os._exit(0)

    def _next(self, timeout: float | None) -> tuple[Any, ...] | None:
        """The next command; None if none came within ``timeout`` or a signal came first."""
        if not self.pending:
            watched = [self.wake] + ([self.commands] if self.commands >= 0 else [])
            ready, _, _ = select.select(watched, [], [], timeout)
            if self.wake in ready and signal.SIGTERM in drain(self.wake):
                self.exiting = True
            if self.commands in ready:
                data = os.read(self.commands, 1 << 20)
                if not data:  # end of file stays readable: stop watching it
                    os.close(self.commands)
                    self.commands = -1
                    self.exiting = True
                self.pending += self.frames.feed(data)
        return self.pending.pop(0) if self.pending else None

    def _report(self, *message: Any) -> None:
        data = frame(*message)
        assert len(data) <= PIPE_BUF, message  # one atomic write: reports of keepers never mix
        write_all(self.report, data)

    def _task(self, token: int, spec: tuple[Any, ...]) -> None:
        argv, cwd, env, log, header, grace, record = spec
        log_fd = go = -1
        try:
            os.chdir(cwd)
            log_fd = _open_log(log)
            os.write(log_fd, header)
            _which(argv[0], env)  # a missing command fails here, with its errno, not in the shell
            agent, go = _spawn_held(argv, env, log_fd)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte
            for fd in (log_fd, go):
                if fd >= 0:
                    os.close(fd)
            self._failed(token, exc)
            return
        proc = read_proc(agent)
        ticks = 0 if proc is None else proc.start
        try:
            if record is not None:  # the run's record of its agents' process groups, first
                path, entry = record
                _record_group(path, entry, agent, ticks)
            write_all(go, b"g\n")  # now its command runs
        except OSError as exc:  # it does not run: holds must name the group of whatever runs
            _note(log_fd, f"cannot record the agent's process group, so it does not run: {exc}")
        os.close(go)  # end of file, if it was not let go: it exits having run nothing
        self._report("started", token, agent, ticks)
        status = self._watch(token, agent, log_fd, grace)
        os.close(log_fd)
        self._report("ended", token, status, self.exiting)

    def _failed(self, token: int, exc: BaseException) -> None:
        number = getattr(exc, "errno", None) or 0
        reason = short(getattr(exc, "strerror", None) or str(exc))
        self._report("failed", token, number, reason, short(getattr(exc, "filename", None)), self.exiting)

    def _watch(self, token: int, agent: int, log_fd: int, grace: float) -> int:
        """Wait for the agent and every process it leaves; returns the agent's exit status."""
        status: int | None = None
        stop = False
        term_at: float | None = None  # when SIGTERM went to the tree
        killed = False
        while True:
            try:
                while (reaped := os.waitpid(-1, os.WNOHANG))[0] != 0:
                    if reaped[0] == agent:
                        status = os.waitstatus_to_exitcode(reaped[1])
            except ChildProcessError:  # no child left: a subreaper has no descendant left either
                assert status is not None
                return status
            now = time.monotonic()
            timeout: float | None = None
            if term_at is None and (stop or self.exiting or status is not None):
                left = _signal_tree(agent, self.pid, signal.SIGTERM)
                if status is not None and left:
                    _note(log_fd, f"the agent exited; stopping what it left running: {pids(left)}")
                term_at = now
            if term_at is not None:
                if now < term_at + grace:
                    timeout = min(term_at + grace - now, MAX_WAIT_S)  # a huge grace must not overflow select
                else:
                    left = _signal_tree(agent, self.pid, signal.SIGKILL)
                    if left and not killed:
                        _note(log_fd, f"still running {grace:g}s after SIGTERM, killed: {pids(left)}")
                    killed = True
                    timeout = KILL_POLL_S
            message = self._next(timeout)
            if message is not None and message[:2] == ("stop", token):
                stop = True
            elif message is not None and message[0] == "spawn":  # the supervisor sends one only while idle
                self.later.append(message)


# Holds the agent, as its own process group and session, until a line comes on fd 3 (end of
# file: it exits, having run nothing); then execs the command, argv[0] and all, the agent's PATH
# finding it as execvp would. A shell, since only exec may follow fork at no cost (vfork).
_HELD = 'read -r go <&3 && exec "$@" 3<&-'


def _spawn_held(argv: list[bytes], env: dict[bytes, bytes], log_fd: int) -> tuple[int, int]:
    """Start the agent in a session of its own, held short of its command; its pid and the go pipe."""
    go_r, go_w = os.pipe()
    try:
        pid = os.posix_spawn(
            "/bin/sh",
            [b"sh", b"-c", _HELD.encode(), b"sh", *argv],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
                (os.POSIX_SPAWN_DUP2, go_r, 3),
            ],
            setsid=True,  # a session of its own: no terminal signal reaches it, and killpg reaches its group
            setsigmask=(),
            setsigdef=DEFAULT_FOR_AGENTS,
        )
    except BaseException:
        os.close(go_w)
        raise
    finally:
        os.close(go_r)
    return pid, go_w


def _record_group(path: bytes, entry: bytes, pid: int, ticks: int) -> None:
    """Append the agent's process group to the run's record of them (see queue_core.registry)."""
    line = b'{"task":%s,"pgid":%d,"ticks":%d}\n' % (entry, pid, ticks)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if os.write(fd, line) != len(line):
            raise OSError(errno.ENOSPC, "a short write")
    finally:
        os.close(fd)


def _signal_tree(agent: int, keeper: int, sig: int) -> list[Proc]:
    """Signal every live descendant of ``keeper``, and the agent's group; returns those descendants.

    The group is signalled (atomically, so that a child forked meanwhile gets it too) only while
    a descendant is in it: once it is empty, its id may be reused by another process's group.
    """
    found = descendants(keeper, process_table())
    if any(p.pgid == agent for p in found):
        try:
            os.killpg(agent, sig)
        except OSError:
            pass
    left = [p for p in found if p.state != "Z"]
    for proc in left:
        signal_exactly(proc, sig)
        if sig == signal.SIGTERM:
            signal_exactly(proc, signal.SIGCONT)  # a stopped process handles SIGTERM only once resumed
    return left


def _open_log(path: bytes) -> int:
    """The task's log, for appending: a regular file, never through a symlink, never a FIFO's wait."""
    try:
        os.makedirs(os.path.dirname(path) or b".", mode=0o700, exist_ok=True)
    except OSError:
        pass  # opening the log says why, if it matters
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, 0o600)  # agents' output: as private as the state it sits in
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "the log is not a regular file", os.fsdecode(path))
    os.set_blocking(fd, True)
    return fd


def _note(fd: int, text: str) -> None:
    """A line of ours in the task's log."""
    try:
        os.write(fd, f"[project-manager] {text}\n".encode())
    except OSError:
        pass


def _which(program: bytes, env: dict[bytes, bytes]) -> bytes:
    """The file that execvp would run for ``program``, searching the agent's own PATH."""
    if b"/" in program:
        return program
    for directory in os.get_exec_path(env):  # type: ignore[arg-type]  # bytes keys are fine
        candidate = os.path.join(os.fsencode(directory), program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fsdecode(program))
