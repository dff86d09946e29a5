"""The supervisor's loop: it starts every agent of one coordinator, and outlives none of them.

It runs each task through a keeper (:mod:`.keeper`), forking one only when every keeper is
busy: forking a copy of this interpreter costs about a millisecond of CPU. It stops every task
when its coordinator dies, whatever killed it: it reads end of file on the socket, and should
a forked copy of the coordinator keep the socket open, it sees its parent change within
POLL_S. It exits once its last child is gone. It leads a process group that its keepers share,
so while a keeper lives the group has a member; the registry keeps a run's claims while the run,
its supervisor or that group lives (``queue_core.registry.Owner``).

A keeper killed mid-task leaves its processes to the supervisor, itself a subreaper, which
stops them and only then reports the task ended (status None). "No stray is left" is decided
from the process table without a race: every live stray has an ancestor among the supervisor's
own children, which stay in the table, as zombies if they died, until the supervisor reaps them,
and it reaps only between two looks at the table.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import sys
import time
from typing import TYPE_CHECKING

from .keeper import KILL_POLL_S, PR_SET_CHILD_SUBREAPER, PR_SET_NAME, Keeper, drain, prctl, wakeup_pipe
from .proctree import SUPERVISOR_NAME, descendants, process_table, read_proc, signal_exactly
from .wire import Frames, frame

if TYPE_CHECKING:
    from typing import Any

#: How often the supervisor checks that its parent is still its coordinator, besides the socket.
POLL_S = 0.5


def _noted(signum: int, frame: object) -> None:
    """The wakeup pipe has the signal already: nothing to do here."""


class Supervisor:
    """See the module."""

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
        self.wake = wakeup_pipe()
        self.parent = os.getppid()
        self.keepers: set[int] = set()  # every live keeper
        self.commands: dict[int, int] = {}  # keeper pid -> the write end of its command pipe, until closing
        self.to_keeper: dict[int, bytearray] = {}  # keeper pid -> what it has not read yet (it may be stopped)
        self.idle: list[int] = []  # keepers waiting for a task
        self.tasks: dict[int, tuple[int, float]] = {}  # keeper pid -> (token, grace) of its task
        self.by_token: dict[int, int] = {}  # token -> keeper pid
        self.unstarted: dict[int, bytes] = {}  # token -> its spawn frame, until the keeper starts it or fails
        self.stopped: set[int] = set()  # tokens a stop came for, until they end
        self.lost: dict[int, float] = {}  # token -> grace, of keepers killed mid-task: we stop what they left
        self.strays_term_at: float | None = None
        self.childless = True
        self.closing = False
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        prctl(PR_SET_NAME, SUPERVISOR_NAME.encode())
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
            writing += [self.commands[k] for k, pending in self.to_keeper.items() if pending and k in self.commands]
            ready, writable, _ = select.select(reading, writing, [], KILL_POLL_S if self.lost else POLL_S)
            if self.wake in ready and signal.SIGTERM in drain(self.wake):
                self._close()
            if self.report_r in ready:
                self._read_reports()
            if self.sock in ready:
                self._read_requests()
            if self.sock in writable:
                self._flush()
            for keeper in [k for k, fd in self.commands.items() if fd in writable]:
                self._flush_keeper(keeper)
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
                self._spawn(message[1], message[7], raw)
            elif (keeper := self.by_token.get(message[1])) is not None:  # "go" or "stop": for its keeper
                if message[0] == "stop":
                    self.stopped.add(message[1])
                    self._resume(keeper)
                self._to_keeper(keeper, raw)

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
            self.to_keeper.clear()
            self.idle.clear()
            for keeper in self.keepers:
                self._resume(keeper)

    @staticmethod
    def _resume(keeper: int) -> None:
        """A keeper stopped (by its agent, say) could not stop its task: let it go on."""
        try:
            os.kill(keeper, signal.SIGCONT)
        except OSError:
            pass

    def _spawn(self, token: int, grace: float, raw: bytes) -> None:
        """Give the task to an idle keeper that is not stopped, or to a new one."""
        if self.closing:
            self._send("failed", token, 0, "the supervisor is stopping", None)
            return
        if token in self.stopped:  # stopped before any keeper started it
            self.stopped.discard(token)
            self._send("ended", token, -signal.SIGTERM)
            return
        ready = [k for k in self.idle if (proc := read_proc(k)) is not None and proc.state not in ("T", "t")]
        try:
            keeper = ready[-1] if ready else self._fork_keeper()
        except OSError as exc:  # EAGAIN: the limit on processes
            self._send("failed", token, exc.errno or 0, exc.strerror or str(exc), None)
            return
        if keeper in self.idle:
            self.idle.remove(keeper)
        self.tasks[keeper] = (token, grace)
        self.by_token[token] = keeper
        self.unstarted[token] = raw
        self._to_keeper(keeper, raw)

    def _to_keeper(self, keeper: int, raw: bytes) -> None:
        """Send a frame to a keeper without ever blocking: one that is stopped must hold up no other."""
        if keeper in self.commands:
            self.to_keeper.setdefault(keeper, bytearray()).extend(raw)
            self._flush_keeper(keeper)

    def _flush_keeper(self, keeper: int) -> None:
        pending = self.to_keeper[keeper]
        try:
            del pending[: os.write(self.commands[keeper], pending)]
        except BlockingIOError:
            pass  # its pipe is full: select says when it has room
        except OSError:  # it died: _reap deals with its task
            pending.clear()

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
                os._exit(70)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.close(commands_r)
        os.set_blocking(commands_w, False)
        self.keepers.add(pid)
        self.commands[pid] = commands_w
        self.childless = False
        return pid

    def _read_reports(self) -> None:
        for message in self.reports.feed(drain(self.report_r)):
            kind, token = message[0], message[1]
            if kind == "crashed":
                self._send(*message)
                continue
            keeper = self.by_token.get(token)
            if keeper is None:
                continue
            self.unstarted.pop(token, None)
            if kind == "started":
                self._send(*message)
                continue
            # "ended" or "failed": no process of the task is left; the keeper is free, or leaving.
            leaving = message[-1]
            self._send(*message[:-1])
            del self.by_token[token], self.tasks[keeper]
            self.stopped.discard(token)
            if keeper in self.commands and not leaving:
                self.idle.append(keeper)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.childless = True
                return
            if pid == 0:
                return
            self.keepers.discard(pid)
            self.to_keeper.pop(pid, None)
            if pid in self.idle:
                self.idle.remove(pid)
            if (fd := self.commands.pop(pid, None)) is not None:
                os.close(fd)
            if pid not in self.tasks:
                continue  # an idle keeper; or a process that a killed keeper left us
            self._read_reports()  # its task's last word may still be in the pipe
            if pid not in self.tasks:
                continue
            token, grace = self.tasks.pop(pid)
            del self.by_token[token]
            raw = self.unstarted.pop(token, None)
            if raw is not None and os.waitstatus_to_exitcode(status) == 0:
                self._spawn(token, grace, raw)  # it left cleanly without starting it: give it to another
                continue
            self.stopped.discard(token)
            self.lost[token] = grace  # killed mid-task: its processes were re-parented to us

    def _stop_strays(self) -> None:
        """Stop what killed keepers left us; once none is left, report their tasks ended (status None)."""
        table = process_table()
        me = os.getpid()
        strays = [p for p in table.values() if p.ppid == me and p.pid not in self.keepers]
        if not strays:  # zombies count until reaped: see the module
            for token in self.lost:
                self._send("ended", token, None)
            self.lost.clear()
            self.strays_term_at = None
            return
        left = [p for s in strays for p in (s, *descendants(s.pid, table)) if p.state != "Z"]
        now = time.monotonic()
        if self.strays_term_at is None:
            self.strays_term_at = now
            for proc in left:
                signal_exactly(proc, signal.SIGTERM)
                signal_exactly(proc, signal.SIGCONT)
        elif now >= self.strays_term_at + max(self.lost.values()):
            for proc in left:
                signal_exactly(proc, signal.SIGKILL)


def main(sock: int) -> None:
    """Run the supervisor on the coordinator's socket ``sock`` until its last child is gone."""
    supervisor = Supervisor(sock)
    try:
        supervisor.run()
    except BaseException:  # a bug: tell the coordinator, whose stderr we do not hold
        import traceback

        supervisor._send("crashed", traceback.format_exc())
        if supervisor.sock >= 0:
            os.set_blocking(supervisor.sock, True)
            supervisor._flush()
        raise


if __name__ == "__main__":
    main(int(sys.argv[1]))
