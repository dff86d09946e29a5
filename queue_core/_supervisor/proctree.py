"""The process table as one process sees it: trees, groups, and signals that cannot hit a reused pid.

On Linux, from ``/proc``: each process's parent, group, state and *start time in clock ticks
since boot*, which tells a reused pid apart and, unlike a wall-clock time, does not move when
the clock is stepped. Without ``/proc`` (macOS), from ``ps``, with no start times (0): a
reused pid cannot be told apart there.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

#: The names the supervisor and its keepers give themselves (``ps``, ``/proc/PID/comm``).
SUPERVISOR_NAME, KEEPER_NAME = "pm-supervisor", "pm-keeper"


class Proc:
    """One process as the table saw it."""

    __slots__ = ("pgid", "pid", "ppid", "start", "state")

    def __init__(self, pid: int, ppid: int, pgid: int, start: int, state: str):
        self.pid, self.ppid, self.pgid, self.start, self.state = pid, ppid, pgid, start, state


def read_proc(pid: int) -> Proc | None:
    """``pid``'s entry in ``/proc``, or None if there is no such process (or no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name, in parentheses, may itself hold spaces and parentheses.
    rest = data[data.rindex(b")") + 2 :].split()
    state = rest[0].decode()
    if state == "Z" and threads_run_on(pid):
        state = "R"  # its main thread exited, and only that: the process runs, and takes signals
    return Proc(pid, int(rest[1]), int(rest[2]), int(rest[19]), state)


def threads_run_on(pid: int) -> bool:
    """Whether a process that ``/proc`` shows as a zombie has threads left besides its main one."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


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
    """Without /proc: ``ps``, less the ``ps`` process itself (it is our child while it runs)."""
    import subprocess  # only here: every fork of the supervisor copies what it imported

    try:
        with subprocess.Popen(
            ["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "pgid=", "-o", "state="],  # noqa: S607 - fixed argv
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as ps:
            out, _ = ps.communicate(timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {}
    table = {}
    for line in out.splitlines():
        pid, ppid, pgid, state = line.split()[:4]
        if int(pid) != ps.pid:
            table[int(pid)] = Proc(int(pid), int(ppid), int(pgid), 0, state.decode()[:1])
    return table


def descendants(root: int, table: dict[int, Proc]) -> list[Proc]:
    """The processes below ``root`` in ``table``, zombies included, parents before their children."""
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
    """Send ``sig`` to ``proc``, and to no other process that may have taken its pid since.

    Where pidfds exist the signal goes through one, opened before the pid is checked; without
    start times (no /proc) it goes by pid.
    """
    try:
        fd = os.pidfd_open(proc.pid) if proc.start and hasattr(os, "pidfd_open") else -1
    except OSError:  # gone; or no pidfds here (old kernel, seccomp): check, then kill
        fd = -1
    try:
        now = read_proc(proc.pid)
        if proc.start and (now is None or now.start != proc.start):
            return  # gone, or the pid is another process's now
        if fd >= 0:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(proc.pid, sig)
    except OSError:  # it exited meanwhile
        pass
    finally:
        if fd >= 0:
            os.close(fd)


def group_alive(pgid: int, start: int) -> bool:
    """Whether process group ``pgid``, whose leader started at ``start`` ticks, has a live member.

    A group's id is its leader's pid, and Linux does not reuse a pid while a group of that id
    has a member. So if a process now has pid ``pgid`` but another start time, the old group is
    empty. A zombie is no member: it runs nothing, and where init does not reap orphans (some
    containers) it may stay a zombie for good. (A process whose main thread alone exited is
    no zombie: see read_proc.)
    """
    leader = read_proc(pgid)
    if leader is not None and start and leader.start != start:
        return False
    if leader is not None and leader.state != "Z":
        return True
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's members: look at them below
        pass
    return any(p.pgid == pgid and p.state != "Z" for p in process_table().values())


def pids(procs: Iterable[Proc]) -> str:
    """``"12, 13 and 4 more"``, for a log line."""
    found = [str(p.pid) for p in procs]
    return ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
