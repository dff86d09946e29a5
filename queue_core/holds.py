"""Who holds claims in the registry, and whether they still live.

An owner is a run: its process, and its supervisor, which runs its agents. Whether it lives is
asked of its processes where they can be seen (the same host, boot and PID namespace), never of
a bare pid elsewhere: a pid of another host or container names another process here, or none.
Such an owner proves it lives by its heartbeat, the modification time of its run record
(``runs/<run>.json``), which a live run touches every ``HEARTBEAT_S``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clocks import REAL, Clocks
from .errors import NotRegularFileError
from .processes import BOOT_ID, PID_NAMESPACE, ProcessId
from .statedir import read_regular

__all__ = [
    "HEARTBEAT_S",
    "STALE_AFTER_S",
    "Hold",
    "Owner",
    "heartbeat_age",
    "judge_run",
    "live_holds",
    "read_groups",
    "read_run_holds",
    "why_alive",
]

_HOST = socket.gethostname()
#: How often a live run touches its run record.
HEARTBEAT_S = 1.0
#: A run that cannot be checked directly is dead once its heartbeat is this old (the default).
STALE_AFTER_S = 15.0


@dataclass(frozen=True)
class Owner:
    """The run holding claims, and the processes that vouch for it: never trust a bare pid.

    ``started`` and ``ticks`` tell the run's process apart from a later one with its pid (see
    :class:`~queue_core.processes.ProcessId`). ``supervisor`` is the process that runs the
    run's agents (:mod:`queue_core.supervisor`); it leads a process group that its keepers
    share, and it and they outlive every process of the run's agents.
    """

    host: str
    pid: int
    started: float
    run: str
    ticks: int = 0
    supervisor: ProcessId | None = None
    boot: str = ""  # the boot of the machine its pids belong to ("": not recorded)
    pid_ns: int = 0  # the PID namespace its pids belong to (0: not recorded)

    @classmethod
    def current(cls, run: str, supervisor: ProcessId | None = None) -> Owner:
        me = ProcessId.of(os.getpid())
        return cls(_HOST, me.pid, me.started, run, me.ticks, supervisor, BOOT_ID, PID_NAMESPACE)

    @property
    def process(self) -> ProcessId:
        return ProcessId(self.pid, self.started, self.ticks)

    @property
    def is_local(self) -> bool:
        """Whether its pids are this process's: the same host, boot and PID namespace."""
        return self.host == _HOST and not self._other_boot() and not self._other_namespace()

    def alive(self, runs_dir: Path | None = None, stale_after: float = STALE_AFTER_S, clocks: Clocks = REAL) -> bool:
        """Whether the run's process, its supervisor or a keeper of it still runs.

        One of an earlier boot of this host does not. One on another host or in another PID
        namespace cannot be seen from here: it lives while its heartbeat in ``runs_dir`` is at
        most ``stale_after`` seconds old by ``clocks`` (without ``runs_dir``, it is assumed to).
        """
        if self.host == _HOST and self._other_boot():
            return False
        if not self.is_local:
            return runs_dir is None or heartbeat_age(runs_dir, self.run, clocks) <= stale_after
        return self.process.alive() or self.supervisor_alive()

    def _other_boot(self) -> bool:
        return bool(self.boot and BOOT_ID and self.boot != BOOT_ID)

    def _other_namespace(self) -> bool:
        return bool(self.pid_ns and PID_NAMESPACE and self.pid_ns != PID_NAMESPACE)

    def supervisor_alive(self) -> bool:
        """Whether the supervisor, or a keeper in its process group, still runs: agents may."""
        return self.supervisor is not None and self.supervisor.group_alive()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "run": self.run,
            "ticks": self.ticks,
        }
        if self.supervisor is not None:
            data["supervisor"] = self.supervisor.to_json()
        if self.boot:
            data["boot"] = self.boot
        if self.pid_ns:
            data["pid_ns"] = self.pid_ns
        return data

    @classmethod
    def from_json(cls, data: Any) -> Owner:
        supervisor = data.get("supervisor")
        return cls(
            str(data["host"]),
            int(data["pid"]),
            float(data["started"]),
            str(data["run"]),
            int(data.get("ticks", 0)),
            None if supervisor is None else ProcessId.from_json(supervisor),
            str(data.get("boot", "")),
            int(data.get("pid_ns", 0)),
        )


@dataclass(frozen=True)
class Hold:
    """One running task's claims, and the units of quota pools it takes, as recorded in the registry.

    The process groups of its agent (one per attempt) are in its run's groups file, appended
    there before the agent ran: while one has a live member, the hold lives even if its run
    and supervisor died (see :func:`live_holds`).
    """

    owner: Owner
    task: str
    agent: str
    writes: tuple[str, ...]
    reads: tuple[str, ...]
    since: float  # wall-clock time it was taken
    #: The units of quota pools it takes: (pool, units) pairs (see queue_core.pools).
    pools: tuple[tuple[str, int], ...] = ()
    #: Which of ``writes`` and ``reads`` the task claimed as it ran (see queue_core.taskclaims).
    added: tuple[str, ...] = ()
    #: What its agent owns, if not everything: a claim it adds must lie inside (see FileOwnership).
    owns: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        """Unique across processes: the run and the task id."""
        return f"{self.owner.run}/{self.task}"

    def to_json(self) -> dict[str, Any]:
        """As claims.json has it; ``pools``, ``added`` and ``owns`` only if set, so that a hold
        without is written as before, and an older version, which reads the keys it knows, reads
        it still."""
        data: dict[str, Any] = {
            "owner": self.owner.to_json(),
            "task": self.task,
            "agent": self.agent,
            "writes": list(self.writes),
            "reads": list(self.reads),
            "since": self.since,
        }
        if self.pools:
            data["pools"] = dict(self.pools)
        if self.added:
            data["added"] = list(self.added)
        if self.owns is not None:
            data["owns"] = list(self.owns)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Hold:
        return cls(
            Owner.from_json(data["owner"]),
            str(data["task"]),
            str(data["agent"]),
            tuple(str(w) for w in data["writes"]),
            tuple(str(r) for r in data["reads"]),
            float(data["since"]),
            _pools_of(data.get("pools", {})),
            tuple(str(a) for a in data.get("added", ())),
            None if data.get("owns") is None else tuple(str(o) for o in data["owns"]),
        )


def _pools_of(value: Any) -> tuple[tuple[str, int], ...]:
    """A hold's ``pools``; raises ValueError (TypeError) for anything but names to units, as for
    any other field of a damaged hold."""
    if not isinstance(value, dict):
        raise ValueError(f"pools must map pool names to units, got {type(value).__name__}")
    for pool, units in value.items():
        # Units below 1 would free what nobody holds: others would pass the pool's count.
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"pool {pool!r}: expected a positive number of units, not {units!r}")
    return tuple((str(pool), units) for pool, units in value.items())


def live_holds(
    holds: Iterable[Hold],
    runs_dir: Path,
    me: Owner | None = None,
    stale_after: float = STALE_AFTER_S,
    *,
    clocks: Clocks = REAL,
) -> tuple[list[Hold], list[Hold]]:
    """``holds`` split into those that live and those to drop; ``runs_dir`` has the runs' own files.

    A hold lives while its owner does (:meth:`Owner.alive`); that failing, while a process
    group that its run's groups file lists for its task has a live member. A hold of an owner
    that cannot be seen from here whose run record is gone lives ``stale_after`` seconds from
    when it was taken: its heartbeat may be on the way. Ages are told by ``clocks``' wall clock.
    Each owner, and each groups file, is looked at once.
    """
    owners: dict[Owner, bool] = {} if me is None else {me: True}
    groups: dict[str, dict[str, list[ProcessId]]] = {}
    live: list[Hold] = []
    dead: list[Hold] = []
    for hold in holds:
        if hold.owner not in owners:
            owners[hold.owner] = hold.owner.alive(runs_dir, stale_after, clocks)
        alive = owners[hold.owner]
        if not alive and hold.owner.is_local:
            run = hold.owner.run
            if run not in groups:
                groups[run] = read_groups(runs_dir / f"{run}.groups")
            alive = any(group.group_alive() for group in groups[run].get(hold.task, ()))
        elif not alive and heartbeat_age(runs_dir, hold.owner.run, clocks) == float("inf"):
            alive = clocks.wall() - hold.since <= stale_after
        (live if alive else dead).append(hold)
    return live, dead


def heartbeat_age(runs_dir: Path, run: str, clocks: Clocks = REAL) -> float:
    """Seconds since ``run`` last touched its record in ``runs_dir``, by ``clocks``; infinite if it has none."""
    try:
        return max(0.0, clocks.wall() - os.lstat(runs_dir / f"{run}.json").st_mtime)
    except OSError:
        return float("inf")


def read_groups(path: Path) -> dict[str, list[ProcessId]]:
    """A run's groups file: the process group of each of its agents, by task id, as its keepers
    appended them (one JSON object a line; a line cut short by a crash is skipped)."""
    groups: dict[str, list[ProcessId]] = {}
    try:
        raw = read_regular(path)
    except OSError:  # unreadable, or not a regular file: nothing it says can be known
        return groups
    lines = [] if raw is None else raw.splitlines()
    for task, group in filter(None, map(_group_line, lines)):
        groups.setdefault(task, []).append(group)
    return groups


def _group_line(line: bytes) -> tuple[str, ProcessId] | None:
    try:
        entry = json.loads(line)
        return str(entry["task"]), ProcessId(int(entry["pgid"]), 0.0, int(entry["ticks"]))
    except (ValueError, KeyError, TypeError):
        return None


def judge_run(
    runs_dir: Path, run: str, *, stale_after: float = STALE_AFTER_S, doubt_s: float = 0.0, clocks: Clocks = REAL
) -> tuple[bool, str]:
    """Whether ``run`` lives, by its files in ``runs_dir``, and why; or why it is dead.

    It lives while the owner its record names does (:meth:`Owner.alive`), while a process
    group in its groups file has a live member (on this host), or while a hold in its holds
    file lives (:func:`live_holds`), as the registry judges its holds. A record that cannot be
    read, or is damaged or no regular file but younger than ``doubt_s``, counts as alive: when
    in doubt, keep. Ages are told by ``clocks``' wall clock.
    """
    owner = None
    record = runs_dir / f"{run}.json"
    try:
        raw = read_regular(record)
        owner = None if raw is None else Owner.from_json(json.loads(raw)["owner"])
    except (NotRegularFileError, ValueError, KeyError, TypeError) as exc:  # not what its run wrote
        what = exc.strerror if isinstance(exc, NotRegularFileError) else "damaged"
        with contextlib.suppress(OSError):
            age = clocks.wall() - os.lstat(record).st_mtime
            if age < doubt_s:
                return True, f"its record is {what}, but only {age:.0f} s old"
    except OSError as exc:
        return True, f"its record cannot be read ({exc.strerror or exc})"
    if owner is not None and owner.alive(runs_dir, stale_after, clocks):
        return True, why_alive(owner, runs_dir, stale_after, clocks)
    if owner is None or owner.is_local:
        for task, groups in read_groups(runs_dir / f"{run}.groups").items():
            for group in groups:
                if group.group_alive():
                    return True, f"an agent of its task {task} (process group {group.pid}) still runs"
    holds = read_run_holds(runs_dir / f"{run}.holds")
    live = live_holds(holds, runs_dir, stale_after=stale_after, clocks=clocks)[0]
    if live:
        if live[0].owner.alive(runs_dir, stale_after, clocks):
            return True, why_alive(live[0].owner, runs_dir, stale_after, clocks)
        return True, f"it holds claims for its task {live[0].task}"
    return False, _why_dead(owner or (holds[0].owner if holds else None), runs_dir, stale_after, clocks)


def why_alive(owner: Owner, runs_dir: Path, stale_after: float, clocks: Clocks = REAL) -> str:
    """Why ``owner``, which lives (Owner.alive), does: a sentence for a person."""
    if not owner.is_local:
        where = owner.host if owner.host != _HOST else "another PID namespace"
        age = heartbeat_age(runs_dir, owner.run, clocks)
        return (
            f"it runs on {where} (pid {owner.pid} there), and its heartbeat is {age:.0f} s old; "
            f"it is dead after {stale_after:.0f} s without one"
        )
    supervisor = owner.supervisor
    if supervisor is None or owner.process.alive():
        return f"its process (pid {owner.pid}) still runs"
    if supervisor.alive():
        return f"its supervisor (pid {supervisor.pid}) still runs"
    return f"a keeper of its supervisor (process group {supervisor.pid}) still runs"


def _why_dead(owner: Owner | None, runs_dir: Path, stale_after: float, clocks: Clocks) -> str:
    if owner is None:
        return "no live process is recorded for it"
    if owner.host == _HOST and owner._other_boot():
        return f"its process (pid {owner.pid}) ran before this machine last booted"
    if not owner.is_local:
        age = heartbeat_age(runs_dir, owner.run, clocks)
        beat = "none" if age == float("inf") else f"{age:.0f} s old"
        return f"it ran on {owner.host}, and its heartbeat is {beat} (dead after {stale_after:.0f} s)"
    if owner.supervisor is None:
        return f"its process (pid {owner.pid}) is gone"
    return f"its process (pid {owner.pid}) and its supervisor (pid {owner.supervisor.pid}) are gone"


def read_run_holds(path: Path) -> list[Hold]:
    """The holds in a run's holds file; none if it is absent, damaged or not a regular file."""
    try:
        return [Hold.from_json(item) for item in json.loads(read_regular(path) or b"")["holds"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
