"""The supervisor process: it starts every agent of one coordinator, and outlives none of them.

``queue_core.supervisor`` starts it as ``python -I -S _guardian.py FD``, in a session of its
own (so a terminal's Ctrl-C, Ctrl-Z and hang-up never reach it), with no standard streams (so
it never keeps a pipe of its coordinator's open, such as a CI log's), and talks to it over the
socket FD. It imports only small standard modules (every fork copies what it imported), and
is importable for its helpers without side effects.

**Keepers.** The supervisor runs each task's agent through a *keeper*: a process forked from
it that has made itself a child subreaper (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``) and
spawns the agent in a session of its own. Every process the agent creates then stays below
the keeper: a child that double-forks or calls ``setsid`` is re-parented to the keeper when
its parent exits, never to init. So the keeper knows exactly when the task's last process is
gone: when it has no child left (``waitpid`` fails with ECHILD). Only then does it report the
task's end, and the coordinator releases the task's claims only after that report, so never
while a process of the task lives. A keeper serves one task at a time and then waits for the
next: forking a keeper costs about a millisecond of CPU, so they are kept, as many as ran at
once.

**Stopping.** A keeper stops its task's tree (SIGTERM and SIGCONT to the agent's process
group and to every descendant, SIGKILL after the grace period, repeated until no child is
left) when the coordinator asks (cancel, timeout), when the agent exits leaving processes
behind, and when the supervisor dies (end of file on its command pipe). The supervisor stops
every task when its coordinator dies, whatever killed it: it reads end of file on the socket,
and should a forked copy of the coordinator keep the socket open, it sees its parent change
within POLL_S. It exits once its last child is gone, so while it lives, processes of its
coordinator's tasks may live; the registry holds their claims until then (see
``queue_core.registry.Owner``). A keeper that is itself killed leaves its processes to the
supervisor, a subreaper too, which stops them and only then reports that task's end.

**Without /proc or a subreaper** (macOS): the process table comes from ``ps``, and a process
that leaves the agent's tree (``setsid``, then its parent exits) is re-parented to launchd,
where it cannot be found and is not stopped.

The wire format, every way: a 4-byte big-endian length, then a ``marshal``-ed tuple.
Coordinator to supervisor: ``("spawn", token, argv, cwd, env, log, header, grace)`` (bytes,
the environment exactly) and ``("stop", token)``; back: ``("hello", pid)``, ``("started",
token, agent pid, keeper pid, keeper start ticks)``, ``("ended", token, status)`` (status -N:
killed by signal N; None: the keeper was killed), ``("failed", token, errno, reason,
filename)`` and, before it dies of a bug, ``("crashed", traceback)``. The supervisor forwards
spawn and stop frames to the task's keeper unchanged.
"""

from __future__ import annotations

import errno
import gc
import marshal
import os
import select
import signal
import struct
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, NoReturn

#: How often the supervisor checks that its parent is still its coordinator, besides the socket.
POLL_S = 0.5
#: While stopping, how often a keeper signals again whatever still lives.
KILL_POLL_S = 0.02
#: Signals that the supervisor or a keeper ignores or handles, and an agent gets back as default.
_DEFAULT_FOR_AGENTS = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGCHLD,
    signal.SIGQUIT,
)
#: The names these processes give themselves (``ps``, ``/proc/PID/comm``), so views can tell them from agents.
SUPERVISOR_NAME, KEEPER_NAME = "pm-supervisor", "pm-keeper"
_PR_SET_NAME = 15
_PR_SET_CHILD_SUBREAPER = 36
_LENGTH = struct.Struct(">I")
_MAX_FRAME = 64 << 20


def frame(*message: Any) -> bytes:
    """One message on the wire."""
    body = marshal.dumps(message)
    return _LENGTH.pack(len(body)) + body


class Frames:
    """Splits a byte stream into messages; :meth:`raw` keeps each frame's bytes, to forward it."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        return [message for message, _ in self.raw(data)]

    def raw(self, data: bytes) -> list[tuple[tuple[Any, ...], bytes]]:
        self._buffer += data
        out = []
        while len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if size > _MAX_FRAME:
                raise ValueError(f"a frame of {size} bytes: the stream is corrupt")
            end = _LENGTH.size + size
            if len(self._buffer) < end:
                break
            data = bytes(self._buffer[:end])
            del self._buffer[:end]
            # Only ever from our own processes, at the other end of a private socket or pipe.
            out.append((marshal.loads(data[_LENGTH.size :]), data))  # noqa: S302
        return out


# --- the process table -----------------------------------------------------------------------


class Proc:
    """One process as the table saw it; its start time tells a reused pid apart."""

    __slots__ = ("pgid", "pid", "ppid", "start", "state")

    def __init__(self, pid: int, ppid: int, pgid: int, start: int, state: str):
        self.pid, self.ppid, self.pgid, self.start, self.state = pid, ppid, pgid, start, state


def read_proc(pid: int) -> Proc | None:
    """``pid``'s entry in ``/proc`` (Linux), or None if there is no such process or no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name, in parentheses, may itself hold spaces and parentheses.
    rest = data[data.rindex(b")") + 2 :].split()
    return Proc(pid, int(rest[1]), int(rest[2]), int(rest[19]), rest[0].decode())


def process_table() -> dict[int, Proc]:
    """Every process of the machine that this one may see."""
    try:
        names = os.listdir("/proc")
    except FileNotFoundError:
        return _process_table_from_ps()
    table = {}
    for name in names:
        if name.isdigit() and (proc := read_proc(int(name))) is not None:
            table[proc.pid] = proc
    return table


def _process_table_from_ps() -> dict[int, Proc]:
    """Without /proc (macOS): ``ps``, with no start times (0): a reused pid cannot be told apart."""
    import subprocess  # only here: every fork of the supervisor copies what it imported

    try:
        out = subprocess.run(
            ["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "pgid=", "-o", "state="],  # noqa: S607 - fixed argv
            capture_output=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    table = {}
    for line in out.splitlines():
        pid, ppid, pgid, state = line.split()[:4]
        table[int(pid)] = Proc(int(pid), int(ppid), int(pgid), 0, state.decode()[:1])
    return table


def descendants(root: int, table: dict[int, Proc]) -> list[Proc]:
    """The processes below ``root`` in ``table``, parents before their children."""
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    todo = [root]
    while todo:
        for proc in children.get(todo.pop(), ()):
            found.append(proc)
            todo.append(proc.pid)
    return found


def signal_exactly(proc: Proc, sig: int) -> None:
    """Send ``sig`` to ``proc``, and to no other process that may have taken its pid since."""
    try:
        fd = os.pidfd_open(proc.pid) if proc.start and hasattr(os, "pidfd_open") else -1
    except OSError:  # gone; or no pidfds here (old kernel, seccomp): check, then kill
        fd = -1
    try:
        now = read_proc(proc.pid)
        if proc.start and (now is None or now.start != proc.start):
            return  # gone, or the pid is another process's now
        if fd >= 0:  # pinned to the process we checked: no pid reuse can slip in
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(proc.pid, sig)
    except OSError:  # it exited meanwhile
        pass
    finally:
        if fd >= 0:
            os.close(fd)


def _pids(procs: Iterable[Proc]) -> str:
    pids = [str(p.pid) for p in procs]
    return ", ".join(pids[:10]) + (f" and {len(pids) - 10} more" if len(pids) > 10 else "")


_libc: Any = None


def _prctl(option: int, value: int | bytes) -> bool:
    """Linux prctl(2) through ctypes; False where it does not exist or fails."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    arg = ctypes.c_char_p(value) if isinstance(value, bytes) else ctypes.c_ulong(value)
    return _libc.prctl(option, arg, 0, 0, 0) == 0  # type: ignore[no-any-return]


def _wakeup_pipe() -> int:
    """A pipe that the interpreter writes each caught signal's number to; returns its read end."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    return r


def _noted(signum: int, frame: object) -> None:
    """The wakeup pipe has the signal already: nothing to do here."""


def _drain(fd: int) -> bytes:
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except (BlockingIOError, InterruptedError):
        pass
    return data


def _write(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking pipe; a reader that is gone loses it, quietly."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass


# --- a keeper --------------------------------------------------------------------------------


class Keeper:
    """Runs one task's agent at a time and stops every process it leaves (see the module)."""

    def __init__(self, commands: int, report: int):
        self.commands = commands  # from the supervisor; -1 after end of file: it is gone, or ends us
        self.frames = Frames()
        self.pending: list[tuple[Any, ...]] = []
        self.report = report  # to the supervisor
        self.pid = os.getpid()
        self.exiting = False  # after the current task, if any: the supervisor is gone, or SIGTERM came

    def serve(self) -> NoReturn:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        _prctl(_PR_SET_NAME, KEEPER_NAME.encode())
        self.wake = _wakeup_pipe()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # the supervisor blocked it to fork
        while not self.exiting:
            message = self._next(None)
            if message is not None and message[0] == "spawn":  # a stop that came too late is dropped
                self._task(message[1], message[2:])
        os._exit(0)

    def _next(self, timeout: float | None) -> tuple[Any, ...] | None:
        """The next command; None if none came within ``timeout`` (or a signal came first)."""
        if not self.pending:
            watched = [self.wake] + ([self.commands] if self.commands >= 0 else [])
            ready, _, _ = select.select(watched, [], [], timeout)
            if self.wake in ready and signal.SIGTERM in _drain(self.wake):
                self.exiting = True  # someone ended us: stop the task, and go
            if self.commands in ready:
                data = os.read(self.commands, 1 << 20)
                if not data:  # end of file stays readable: stop watching it
                    os.close(self.commands)
                    self.commands = -1
                    self.exiting = True
                self.pending += self.frames.feed(data)
        return self.pending.pop(0) if self.pending else None

    def _task(self, token: int, spec: tuple[Any, ...]) -> None:
        argv, cwd, env, log, header, grace = spec
        log_fd = -1
        try:
            os.chdir(cwd)
            try:
                os.makedirs(os.path.dirname(log) or b".", exist_ok=True)
            except OSError:
                pass  # opening the log says why, if it matters
            log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
            os.write(log_fd, header)
            agent = os.posix_spawn(
                _which(argv[0], env),
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                ],
                setsid=True,  # a session of its own: no terminal signal reaches it, and killpg reaches its group
                setsigmask=(),
                setsigdef=_DEFAULT_FOR_AGENTS,
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
            number = getattr(exc, "errno", None) or 0
            reason = (getattr(exc, "strerror", None) or str(exc))[:500]
            filename = getattr(exc, "filename", None)
            if isinstance(filename, (str, bytes)):
                filename = filename[:2000]  # a report must stay one atomic write (PIPE_BUF)
            _write(self.report, frame("failed", token, number, reason, filename))
            if log_fd >= 0:
                os.close(log_fd)
            return
        _write(self.report, frame("started", token, agent))
        status = self._watch(token, agent, log_fd, grace)
        os.close(log_fd)
        _write(self.report, frame("ended", token, status))

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
                    _note(log_fd, f"the agent exited; stopping what it left running: {_pids(left)}")
                term_at = now
            if term_at is not None:
                if now < term_at + grace:
                    timeout = term_at + grace - now
                else:
                    left = _signal_tree(agent, self.pid, signal.SIGKILL)
                    if left and not killed:
                        _note(log_fd, f"still running {grace:g}s after SIGTERM, killed: {_pids(left)}")
                    killed = True
                    timeout = KILL_POLL_S
            message = self._next(timeout)
            if message is not None and message[:2] == ("stop", token):
                stop = True
            elif message is not None and message[0] == "spawn":  # cannot happen: one task at a time
                self.pending.insert(0, message)
                return status if status is not None else -signal.SIGKILL


def _signal_tree(agent: int, keeper: int, sig: int) -> list[Proc]:
    """Signal the agent's group and every live descendant of ``keeper``; returns those descendants."""
    left = [p for p in descendants(keeper, process_table()) if p.state != "Z"]
    try:
        os.killpg(agent, sig)  # the group may outlive its leader
    except OSError:
        pass
    for proc in left:
        signal_exactly(proc, sig)
        if sig == signal.SIGTERM:
            signal_exactly(proc, signal.SIGCONT)  # a stopped process handles SIGTERM only once resumed
    return left


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


# --- the supervisor --------------------------------------------------------------------------


class Supervisor:
    """The main loop of the supervisor process; see the module."""

    def __init__(self, sock: int):
        self.sock = sock  # to the coordinator; -1 once it is gone
        os.set_blocking(sock, False)
        self.requests = Frames()
        self.outbox = bytearray()
        self.report_r, self.report_w = os.pipe()  # keepers -> supervisor: each message one atomic write
        os.set_blocking(self.report_r, False)
        self.reports = Frames()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, _noted)
        signal.signal(signal.SIGTERM, _noted)
        self.wake = _wakeup_pipe()
        self.parent = os.getppid()
        self.keepers: set[int] = set()  # every live keeper
        self.commands: dict[int, int] = {}  # keeper pid -> the write end of its command pipe, until closing
        self.idle: list[int] = []  # keepers waiting for a task
        self.tasks: dict[int, tuple[int, float]] = {}  # keeper pid -> (token, grace) of its task
        self.by_token: dict[int, int] = {}  # token -> keeper pid
        self.lost: dict[int, float] = {}  # token -> grace, of keepers killed mid-task: we stop what they left
        self.strays_term_at: float | None = None
        self.childless = True
        self.closing = False
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        _prctl(_PR_SET_NAME, SUPERVISOR_NAME.encode())
        gc.freeze()  # what a keeper inherits, its collector leaves alone: fewer pages copied on write

    def run(self) -> None:
        self._send("hello", os.getpid())
        while True:
            self._reap()
            if self.lost:
                self._stop_strays()
            if self.closing and self.childless and not self.lost:
                return
            reading = [self.wake, self.report_r] + ([self.sock] if self.sock >= 0 else [])
            writing = [self.sock] if self.outbox and self.sock >= 0 else []
            ready, writable, _ = select.select(reading, writing, [], KILL_POLL_S if self.lost else POLL_S)
            if self.wake in ready and signal.SIGTERM in _drain(self.wake):
                self._close()
            if self.report_r in ready:
                self._read_reports()
            if self.sock in ready:
                self._read_requests()
            if self.sock in writable:
                self._flush()
            if os.getppid() != self.parent:  # the coordinator died, and a fork of it keeps the socket
                self._coordinator_gone()

    def _send(self, *message: Any) -> None:
        if self.sock >= 0:
            self.outbox += frame(*message)
            self._flush()

    def _flush(self) -> None:
        try:
            del self.outbox[: os.write(self.sock, self.outbox)]
        except BlockingIOError:
            pass  # the socket is full (a stopped coordinator): select says when to go on
        except OSError:  # the coordinator is gone; end of file on the socket says so next
            self.outbox.clear()

    def _read_requests(self) -> None:
        try:
            data = os.read(self.sock, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._coordinator_gone()
            return
        for message, raw in self.requests.raw(data):
            if message[0] == "spawn":
                self._spawn(message[1], message[-1], raw)
            elif message[0] == "stop" and (keeper := self.by_token.get(message[1])) is not None:
                _write(self.commands[keeper], raw)

    def _coordinator_gone(self) -> None:
        if self.sock >= 0:
            os.close(self.sock)
            self.sock = -1
        self._close()

    def _close(self) -> None:
        """Stop every task and let every keeper go (end of file); exit once the last child is gone."""
        if not self.closing:
            self.closing = True
            for fd in self.commands.values():
                os.close(fd)
            self.commands.clear()
            self.idle.clear()

    def _spawn(self, token: int, grace: float, raw: bytes) -> None:
        if self.closing:
            self._send("failed", token, 0, "the supervisor is stopping", None)
            return
        try:
            keeper = self.idle.pop() if self.idle else self._fork_keeper()
        except OSError as exc:  # EAGAIN: the limit on processes
            self._send("failed", token, exc.errno or 0, exc.strerror or str(exc), None)
            return
        self.tasks[keeper] = (token, grace)
        self.by_token[token] = keeper
        _write(self.commands[keeper], raw)

    def _fork_keeper(self) -> int:
        commands_r, commands_w = os.pipe()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # until the keeper handles it itself
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            os.close(commands_r)
            os.close(commands_w)
            raise
        if pid == 0:
            try:
                gc.disable()  # a keeper allocates little: leave the inherited pages shared
                signal.set_wakeup_fd(-1)
                for fd in (self.sock, self.wake, self.report_r, commands_w, *self.commands.values()):
                    if fd >= 0:
                        os.close(fd)
                Keeper(commands_r, self.report_w).serve()
            finally:
                os._exit(70)  # only if serve() raised; its traceback is on stderr
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.close(commands_r)
        self.keepers.add(pid)
        self.commands[pid] = commands_w
        self.childless = False
        return pid

    def _read_reports(self) -> None:
        for message in self.reports.feed(_drain(self.report_r)):
            kind, token = message[0], message[1]
            keeper = self.by_token.get(token)
            if keeper is None:
                continue
            if kind == "started":
                proc = read_proc(keeper)
                self._send("started", token, message[2], keeper, 0 if proc is None else proc.start)
                continue
            # "ended" or "failed": the keeper has no child left, and waits for its next task.
            self._send(*message)
            del self.by_token[token], self.tasks[keeper]
            if keeper in self.commands:
                self.idle.append(keeper)

    def _reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.childless = True
                return
            if pid == 0:
                return
            self.keepers.discard(pid)
            if pid in self.idle:
                self.idle.remove(pid)
            if (fd := self.commands.pop(pid, None)) is not None:
                os.close(fd)
            if pid not in self.tasks:
                continue  # an idle keeper; or a process that a killed keeper left us
            self._read_reports()  # its task's last word may still be in the pipe
            if pid in self.tasks:  # killed mid-task: its processes were re-parented to us
                token, grace = self.tasks.pop(pid)
                del self.by_token[token]
                self.lost[token] = grace

    def _stop_strays(self) -> None:
        """Stop what killed keepers left us; then report their tasks ended (status None)."""
        table = process_table()
        me = os.getpid()
        strays = [p for p in table.values() if p.ppid == me and p.pid not in self.keepers]
        left = [p for s in strays for p in (s, *descendants(s.pid, table)) if p.state != "Z"]
        if not left:
            for token in self.lost:
                self._send("ended", token, None)
            self.lost.clear()
            self.strays_term_at = None
            return
        now = time.monotonic()
        if self.strays_term_at is None:
            self.strays_term_at = now
            for proc in left:
                signal_exactly(proc, signal.SIGTERM)
                signal_exactly(proc, signal.SIGCONT)
        elif now >= self.strays_term_at + max(self.lost.values()):
            for proc in left:
                signal_exactly(proc, signal.SIGKILL)


def main(argv: list[str]) -> None:
    supervisor = Supervisor(int(argv[1]))
    try:
        supervisor.run()
    except BaseException:  # a bug: say what it was to the coordinator, whose stderr we do not hold
        import traceback

        supervisor._send("crashed", traceback.format_exc())
        os.set_blocking(supervisor.sock, True)
        supervisor._flush()
        raise


if __name__ == "__main__":
    main(sys.argv)
