"""A keeper: the process that runs one task's agent at a time, and outlives none of its processes.

A keeper is forked from the supervisor and makes itself a child subreaper (Linux
``prctl(PR_SET_CHILD_SUBREAPER)``), then forks each task's agent into a session of its own,
and holds it there, short of exec, until the coordinator has recorded its process group in
the registry and says "go": no agent runs a single instruction of its own before its claims
name its process group.
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
        argv, cwd, env, log, header, grace = spec
        log_fd = go = exec_error = -1
        try:
            os.chdir(cwd)
            log_fd = _open_log(log)
            os.write(log_fd, header)
            agent, go, exec_error = _fork_agent(_which(argv[0], env), argv, env, log_fd)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte
            for fd in (log_fd, go, exec_error):
                if fd >= 0:
                    os.close(fd)
            self._failed(token, exc)
            return
        proc = read_proc(agent)
        # Its process group exists: the coordinator records it, then says "go" (or stops the task).
        self._report("started", token, agent, 0 if proc is None else proc.start)
        status = self._watch(token, agent, log_fd, grace, go)
        os.close(log_fd)
        try:
            error = os.read(exec_error, 64)  # the agent wrote errno here if its exec failed
        except BlockingIOError:
            error = b""
        os.close(exec_error)
        if error:
            number = int(error)
            self._failed(token, OSError(number, os.strerror(number), os.fsdecode(argv[0])))
        else:
            self._report("ended", token, status, self.exiting)

    def _failed(self, token: int, exc: BaseException) -> None:
        number = getattr(exc, "errno", None) or 0
        reason = short(getattr(exc, "strerror", None) or str(exc))
        self._report("failed", token, number, reason, short(getattr(exc, "filename", None)), self.exiting)

    def _watch(self, token: int, agent: int, log_fd: int, grace: float, go: int) -> int:
        """Let the agent go when told, and wait for it and every process it leaves; its exit status."""
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
                if go >= 0:  # not let go yet: end of file, and it exits without running anything
                    os.close(go)
                    go = -1
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
            elif message is not None and message[:2] == ("go", token) and go >= 0 and term_at is None:
                write_all(go, b"g")
                os.close(go)
                go = -1
            elif message is not None and message[0] == "spawn":  # the supervisor sends one only while idle
                self.later.append(message)


def _fork_agent(path: bytes, argv: list[bytes], env: dict[bytes, bytes], log_fd: int) -> tuple[int, int, int]:
    """Fork the agent into a session of its own, held short of exec until a "g" comes on its pipe.

    Returns its pid (its process group's id), the write end of that pipe, and a pipe on which
    it writes errno if exec fails (end of file once exec succeeded: the write end is
    close-on-exec). End of file on the first pipe (a stop, or this keeper dead) and it exits
    without running anything.
    """
    go_r, go_w = os.pipe()
    error_r, error_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the agent, until exec: only what a forked child of a one-thread process may do
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            for sig in DEFAULT_FOR_AGENTS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            os.setsid()  # a session of its own: no terminal signal reaches it, and killpg reaches its group
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            if os.read(go_r, 1) == b"g":
                os.execve(path, argv, env)  # noqa: S606 - argv from the user's own agent config, no shell
        except OSError as exc:
            os.write(error_w, str(exc.errno or errno.EIO).encode())
            code = 127
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(error_w)
    os.set_blocking(error_r, False)
    return pid, go_w, error_r


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
        os.makedirs(os.path.dirname(path) or b".", exist_ok=True)
    except OSError:
        pass  # opening the log says why, if it matters
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, 0o666)
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
