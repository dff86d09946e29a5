"""This process's supervisor: the one process that starts, watches and stops its agents.

Every agent command (:class:`~queue_core.runner.SubprocessAgent`) runs under a supervisor
process, one per coordinator process, started on first use (``TaskQueue(repo=...)`` starts it
at once, so that the registry can name it in every hold). What it guarantees, and how, is in
:mod:`queue_core._guardian`:

* a task ends, and its claims can be released, only once every process it started is gone,
  including children that double-forked or called ``setsid``;
* stopping a task (cancel, timeout) stops its whole tree: SIGTERM, the grace period, SIGKILL;
* if this process dies, by any signal, SIGKILL included, the supervisor stops every agent
  tree and then exits. The registry keeps this process's claims held while the supervisor
  lives (see :class:`queue_core.registry.Owner`), so nothing else touches those files until
  the last agent process is gone.

A supervisor that dies is not replaced in the same process: the holds this process wrote
name it, so an agent started under a new one could outlive its claims. Starting another task
then raises :class:`~queue_core.errors.SupervisorError`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _guardian
from .errors import SupervisorError

__all__ = ["PROCESS_NAMES", "AgentProcess", "Supervisor", "running_supervisor", "shared_supervisor"]

#: The names of the supervisor's own processes, as ``ps`` and psutil show them: not agents.
PROCESS_NAMES = frozenset({_guardian.SUPERVISOR_NAME, _guardian.KEEPER_NAME})

log = logging.getLogger("queue_core")

#: How long the supervisor may take to start and say hello.
START_TIMEOUT_S = 30.0
#: How often a task whose supervisor died looks whether its keeper process is gone yet.
ORPHAN_POLL_S = 0.05


class AgentProcess:
    """One agent command under the supervisor: its pid, its end, and a way to stop it."""

    def __init__(self, supervisor: Supervisor, token: int):
        self._supervisor = supervisor
        self.token = token
        #: The agent's pid (and process group id) once it started; None before, or if it never did.
        self.pid: int | None = None
        self._keeper: tuple[int, int] | None = None  # (pid, start ticks) of the process that keeps it
        self._started = threading.Event()
        self._ended = threading.Event()
        self._status: int | None = None
        self._error: BaseException | None = None

    def wait(self) -> int:
        """Block until the agent and every process it left are gone; its exit status (-N: signal N).

        Raises the OSError that kept it from starting (FileNotFoundError: no such program), or
        SupervisorError if the supervisor died: then only once the task's keeper process, which
        stops the tree on its own, is gone.
        """
        self._ended.wait()
        if self._error is not None:
            if isinstance(self._error, SupervisorError) and self._keeper is not None:
                _wait_gone(*self._keeper)
            raise self._error
        if self._status is None:
            raise SupervisorError(
                f"the process that kept this agent (pid {self._keeper[0] if self._keeper else '?'}) was killed; "
                "the supervisor stopped what it left"
            )
        return self._status

    def stop(self) -> None:
        """Ask for the whole tree to be stopped: SIGTERM now, SIGKILL after the grace period."""
        self._supervisor._send(("stop", self.token))

    def _on_started(self, pid: int, keeper: int, keeper_start: int) -> None:
        self.pid = pid
        self._keeper = (keeper, keeper_start)
        self._started.set()

    def _on_end(self, status: int | None = None, error: BaseException | None = None) -> None:
        self._status, self._error = status, error
        self._started.set()
        self._ended.set()


class Supervisor:
    """The supervisor process of this process, and the connection to it; see the module.

    Raises SupervisorError if it cannot be started.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()  # of the coordinator that owns it: a fork gets its own
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
                [sys.executable, "-I", "-S", _guardian.__file__, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # it must not keep our pipes open after we die (a CI log)
                stderr=subprocess.DEVNULL,  # a crash is sent on the socket instead
                start_new_session=True,  # no terminal signal (Ctrl-C, Ctrl-Z, hang-up) reaches it
            )
        except OSError as exc:
            ours.close()
            raise SupervisorError(f"cannot start the supervisor process: {exc}") from exc
        finally:
            theirs.close()
        self._sock = ours
        self._send_lock = threading.Lock()  # one frame at a time on the socket
        self._lock = threading.Lock()  # guards _procs and _lost
        self._procs: dict[int, AgentProcess] = {}  # by token, until they end
        self._tokens = itertools.count(1)
        self._lost: SupervisorError | None = None
        self._frames = _guardian.Frames()
        hello = self._hello()
        #: The supervisor's pid; the registry names it in every hold of this process.
        self.guardian_pid: int = hello[1]
        threading.Thread(target=self._read, name="queue_core-supervisor", daemon=True).start()

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str],
        env: Mapping[bytes, bytes],
        log: str | os.PathLike[str],
        header: bytes = b"",
        grace_s: float = 5.0,
    ) -> AgentProcess:
        """Start ``argv`` in ``cwd`` with exactly ``env``, its output appended to ``log`` after ``header``.

        Returns at once; the process's :meth:`AgentProcess.wait` says how it went. Raises
        SupervisorError if the supervisor is gone.
        """
        with self._lock:
            if self._lost is not None:
                raise self._lost
            token = next(self._tokens)
            process = self._procs[token] = AgentProcess(self, token)
        spec = ([os.fsencode(a) for a in argv], os.fsencode(cwd), dict(env), os.fsencode(log), header, float(grace_s))
        self._send(("spawn", token, *spec))
        return process

    def alive(self) -> bool:
        with self._lock:
            return self._lost is None

    def _send(self, message: tuple[object, ...]) -> None:
        data = _guardian.frame(*message)
        # If it died, the reader thread settles every process.
        with self._send_lock, contextlib.suppress(OSError):
            self._sock.sendall(data)

    def _hello(self) -> tuple[Any, ...]:
        self._sock.settimeout(START_TIMEOUT_S)
        try:
            while True:
                data = self._sock.recv(4096)
                if not data:
                    raise SupervisorError(f"the supervisor process exited at start ({self._process.wait()})")
                if messages := self._frames.feed(data):
                    return messages[0]
        except OSError as exc:
            self._process.kill()
            raise SupervisorError(f"the supervisor process did not start: {exc}") from exc
        finally:
            self._sock.settimeout(None)

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._on_lost()
                return
            for message in self._frames.feed(data):
                self._on_message(message)

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind, token = message[0], message[1]
        if kind == "crashed":
            log.error("the supervisor process (pid %s) crashed:\n%s", self.guardian_pid, token)
            return
        with self._lock:
            process = self._procs.get(token) if kind == "started" else self._procs.pop(token, None)
        if process is None:
            return
        if kind == "started":
            process._on_started(*message[2:])
        elif kind == "ended":
            process._on_end(status=message[2])
        else:  # "failed": it never started
            number, reason, filename = message[2:]
            process._on_end(error=OSError(number, reason, filename) if number else SupervisorError(str(reason)))

    def _on_lost(self) -> None:
        with self._lock:
            self._lost = SupervisorError(
                f"the supervisor process (pid {self.guardian_pid}) died; agents cannot be started in this process "
                "any more (the holds it wrote name that supervisor)"
            )
            pending, self._procs = list(self._procs.values()), {}
        for process in pending:
            process._on_end(error=self._lost)


_shared: Supervisor | None = None
_shared_lock = threading.Lock()


def shared_supervisor() -> Supervisor:
    """This process's supervisor, started on first use; raises SupervisorError if it cannot be."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.pid != os.getpid():
            _shared = Supervisor()
        return _shared


def running_supervisor() -> Supervisor | None:
    """This process's supervisor if it has been started, without starting it."""
    supervisor = _shared
    return supervisor if supervisor is not None and supervisor.pid == os.getpid() else None


def _forget_after_fork() -> None:
    # A forked child must not hold the parent's end of the socket, or the supervisor would not
    # see the parent die; and another thread may have held the lock at the fork. The child
    # starts a supervisor of its own if it needs one.
    global _shared, _shared_lock
    _shared_lock = threading.Lock()
    if _shared is not None:
        with contextlib.suppress(OSError):
            os.close(_shared._sock.detach())
    _shared = None


os.register_at_fork(after_in_child=_forget_after_fork)


def _wait_gone(pid: int, start: int) -> None:
    """Wait until process ``pid`` (started at ``start`` clock ticks) is gone; it is not our child."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # gone already; or no pidfds (macOS, old kernels): poll
        _poll_gone(pid, start)
        return
    try:
        proc = _guardian.read_proc(pid)
        if proc is not None and proc.start == start:  # the pidfd is the keeper's, not a reused pid's
            select.select([fd], [], [])  # readable once the process has exited
    finally:
        os.close(fd)


def _poll_gone(pid: int, start: int) -> None:
    while True:
        if Path("/proc").is_dir():
            proc = _guardian.read_proc(pid)
            if proc is None or proc.state == "Z" or proc.start != start:
                return
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
        time.sleep(ORPHAN_POLL_S)
