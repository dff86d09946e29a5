"""This process's supervisor: the one process that starts, watches and stops its agents.

Every agent command (:class:`~queue_core.runner.SubprocessAgent`) runs under a supervisor
process, one per coordinator process, started on first use (``TaskQueue(repo=...)`` starts it
at once, so that the registry can name it in every hold). Its own code is the package
:mod:`queue_core._supervisor`, which says how it works. What it guarantees:

* a task ends, and its claims can be released, only once every process it started is gone,
  including children that double-forked or called ``setsid``;
* stopping a task (cancel, timeout) stops its whole tree: SIGTERM, the grace period, SIGKILL;
* if this process dies, by any signal, SIGKILL included, the supervisor stops every agent
  tree and then exits. The registry keeps this process's claims held while the supervisor or
  its keepers live, and each task's claims while its agent's process group does (see
  :class:`queue_core.registry.Owner`), so nothing else touches those files until the last
  agent process is gone.

A supervisor that dies is not replaced in the same process: the holds this process wrote
name it, so an agent started under a new one could outlive its claims. Its tasks end once
its keepers (which stop their trees on their own) are gone, failing with
:class:`~queue_core.errors.SupervisorError`, and so does starting another.

It contains agents that misbehave by accident (background children, ``setsid``, double forks,
SIGTERM ignored); not an agent that sets out to kill or stop it and its keepers, which needs
a PID namespace or a cgroup.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._supervisor.proctree import KEEPER_NAME, SUPERVISOR_NAME
from ._supervisor.wire import Frames, frame
from .errors import InvalidArgumentError, SupervisorError
from .processes import ProcessId

__all__ = ["PROCESS_NAMES", "AgentProcess", "Supervisor", "shared_supervisor"]

log = logging.getLogger("queue_core")

#: The names of the supervisor's own processes, as ``ps`` and psutil show them: not agents.
PROCESS_NAMES = frozenset({SUPERVISOR_NAME, KEEPER_NAME})
#: How long the supervisor may take to start and say hello.
START_TIMEOUT_S = 30.0
#: How often a task whose supervisor died looks whether its processes are gone yet.
ORPHAN_POLL_S = 0.05
# The supervisor's own code runs as the top-level package ``_supervisor``, never importing queue_core.
_LAUNCH = "import sys; sys.path.insert(0, sys.argv[1]); from _supervisor.main import main; main(int(sys.argv[2]))"


class AgentProcess:
    """One agent command under the supervisor: its process group once it runs, its end, a way to stop it."""

    def __init__(self, supervisor: Supervisor, token: int):
        self._supervisor = supervisor
        self.token = token
        #: The agent as the leader of its process group, once that exists; else None.
        self.group: ProcessId | None = None
        self._ended = threading.Event()
        self._status: int | None = None
        self._error: BaseException | None = None

    @property
    def pid(self) -> int | None:
        """The agent's pid, which is also its process group's id, once that exists."""
        group = self.group
        return None if group is None else group.pid

    def wait(self) -> int:
        """Block until the agent and every process it left are gone; its exit status (-N: signal N).

        Raises the OSError that kept it from starting (FileNotFoundError: no such program), or
        SupervisorError if its keeper was killed or the supervisor died: then only once no
        process of the task can be left.
        """
        self._ended.wait()
        if self._error is not None:
            raise self._error
        if self._status is None:
            raise SupervisorError("the process that kept this agent was killed; the supervisor stopped what it left")
        return self._status

    def stop(self) -> None:
        """Ask for the whole tree to be stopped: SIGTERM now, SIGKILL after the grace period."""
        self._supervisor._send(("stop", self.token))

    def _on_started(self, pid: int, start_ticks: int) -> None:
        self.group = ProcessId(pid, 0.0, start_ticks) if start_ticks else ProcessId.of(pid)

    def _end(self, status: int | None = None, error: BaseException | None = None) -> None:
        self._status, self._error = status, error
        self._ended.set()


class Supervisor:
    """The supervisor process of this process, and the connection to it; see the module.

    Raises SupervisorError if it cannot be started.
    """

    def __init__(self) -> None:
        self.owner_pid = os.getpid()  # the coordinator it belongs to: a fork starts its own
        ours, theirs = socket.socketpair()
        try:
            package_parent = str(Path(__file__).resolve().parent)
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and code, fixed arguments
                [sys.executable, "-I", "-S", "-c", _LAUNCH, package_parent, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # it must not keep our pipes open after we die (a CI log)
                stderr=subprocess.DEVNULL,  # a crash is sent on the socket instead
                start_new_session=True,  # no terminal signal reaches it; its keepers share its group
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
        self._frames = Frames()
        #: The supervisor's pid, also the id of the process group it shares with its keepers.
        self.pid: int = self._hello()[1]
        #: The supervisor as the leader of that group: the registry names it in every hold.
        self.process = ProcessId.of(self.pid)
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
        record: tuple[str | os.PathLike[str], str] | None = None,
    ) -> AgentProcess:
        """Start ``argv`` in ``cwd`` with exactly ``env``, its output appended to ``log`` after ``header``.

        With ``record`` (a file, a task id), the agent's process group is appended to that file
        before the command runs (and if it cannot be, the command does not run). Returns at
        once; :meth:`AgentProcess.wait` says how it ended. Raises ValueError for an empty command
        or a NUL byte, OSError (E2BIG) for a command and environment too large to run, and
        SupervisorError if the supervisor is gone.
        """
        spec = _encode(argv, cwd, env, log, header, grace_s, record)
        with self._lock:
            if self._lost is not None:
                raise self._lost
            token = next(self._tokens)
            process = self._procs[token] = AgentProcess(self, token)
        self._send(("spawn", token, *spec))
        return process

    def _send(self, message: tuple[object, ...]) -> None:
        data = frame(*message)
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
        try:
            while data := self._sock.recv(65536):
                for message in self._frames.feed(data):
                    self._on_message(message)
        except (OSError, ValueError):  # gone; or a corrupt stream: the same for us
            pass
        finally:
            self._on_lost()

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "crashed":
            log.error("the supervisor process (pid %s) reported a crash:\n%s", self.pid, message[1])
            return
        token = message[1]
        with self._lock:
            process = self._procs.get(token) if kind == "started" else self._procs.pop(token, None)
        if process is None:
            return
        if kind == "started":
            process._on_started(*message[2:])
        elif kind == "ended":
            process._end(status=message[2])
        else:  # "failed": it never started
            number, reason, filename = message[2:]
            if isinstance(filename, bytes):
                filename = os.fsdecode(filename)
            process._end(error=OSError(number, reason, filename) if number else SupervisorError(str(reason)))

    def _on_lost(self) -> None:
        """The supervisor is gone: its tasks end once none of their processes can be left."""
        with self._lock:
            self._lost = SupervisorError(
                f"the supervisor process (pid {self.pid}) died; agents cannot be started in this process any more "
                "(the holds it wrote name that supervisor)"
            )
            pending, self._procs = list(self._procs.values()), {}
        # Its keepers, in its process group, stop their trees on their own when they see it gone.
        while pending and self.process.group_alive():
            threading.Event().wait(ORPHAN_POLL_S)
        for process in pending:
            # An agent whose keeper was killed too: wait for its own group.
            while process.group is not None and process.group.group_alive():
                threading.Event().wait(ORPHAN_POLL_S)
            process._end(error=self._lost)


def _encode(
    argv: Sequence[str],
    cwd: str | os.PathLike[str],
    env: Mapping[bytes, bytes],
    log: str | os.PathLike[str],
    header: bytes,
    grace_s: float,
    record: tuple[str | os.PathLike[str], str] | None,
) -> tuple[Any, ...]:
    """The spawn request's fields, checked: what exec would refuse is refused here, for this task alone."""
    if not argv:
        raise InvalidArgumentError("an empty command")
    args = [os.fsencode(a) for a in argv]
    paths = [os.fsencode(os.path.abspath(p)) for p in (cwd, log)]  # not the keeper's cwd: it is reused
    environ = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    if any(b"\0" in x for x in (*args, *paths, *environ, *environ.values())):
        raise InvalidArgumentError("a NUL byte in the command, its directory, its log or its environment")
    size = sum(len(x) + 1 for x in (*args, *environ, *environ.values()))
    if size > _arg_max():
        raise OSError(
            errno.E2BIG, f"the command and its environment take {size:,} bytes", args[0].decode(errors="replace")
        )
    to_record = None if record is None else (os.fsencode(os.path.abspath(record[0])), json.dumps(record[1]).encode())
    return (args, paths[0], environ, paths[1], header, float(grace_s), to_record)


def _arg_max() -> int:
    try:
        return os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        return 2 << 20


_shared: Supervisor | None = None
_shared_lock = threading.Lock()


def shared_supervisor() -> Supervisor:
    """This process's supervisor, started on first use; raises SupervisorError if it cannot be."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.owner_pid != os.getpid():
            _shared = Supervisor()
        return _shared


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
