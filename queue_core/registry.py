"""The on-disk claim registry that every process working on one repository shares.

Layout, under ``<repo>/.project-manager/`` (created owner-only, and ignoring itself for git):

* ``registry.lock`` — a ``filelock.FileLock`` (flock), never deleted: deleting a lock file
  lets two processes lock two different inodes at once.
* ``claims.json`` — every claim held by a running task of any process, with its owner.
* ``runs/<run>.json`` — each live run's status record, which ``status`` reads; and
  ``runs/<run>.holds``, its holds, written under the lock with every change to them, from
  which ``claims.json`` is rebuilt if it is ever damaged.
* ``history/<run>.json`` — a small record of each finished run.

Taking claims is one atomic step under the lock (:meth:`Registry.session`): read, drop holds
whose owner is gone, let the caller decide and record, write (temp file,
``os.replace``), unlock. An owner is its host, pid *and process start time*, so a pid reused
by an unrelated process is not mistaken for the owner; and the same for its *supervisor*,
the process that runs its agents (:mod:`queue_core.supervisor`). A hold lives while either
does: a run killed with SIGKILL keeps its claims until its supervisor has stopped every
process of its agents and exited, and then blocks nobody.

Waiting for the lock is never silent and never stuck: after ``LOCK_REPORT_S`` the waiter is
told who holds it (``on_lock_wait``), stopped or not, and :meth:`Registry.interrupt` ends the
wait at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .errors import StateError
from .processes import BOOT_ID, PID_NAMESPACE, ProcessId, describe_lock_holder

__all__ = [
    "STATE_DIR",
    "Hold",
    "Owner",
    "Registry",
    "RegistrySession",
    "live_holds",
    "new_run_id",
    "read_groups",
    "read_holds",
]

log = logging.getLogger("queue_core")

STATE_DIR = ".project-manager"
FORMAT = "project-manager/claims"
VERSION = 1
_HOST = socket.gethostname()
#: After waiting this long for the registry lock, a waiter is told who holds it.
LOCK_REPORT_S = 1.0
#: How often a wait for the lock looks whether it was interrupted, or its holder changed.
LOCK_POLL_S = 0.1


def new_run_id() -> str:
    """A run id that sorts by start time and is unique across processes and hosts."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}-{uuid.uuid4().hex[:6]}"


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

    def alive(self) -> bool:
        """Whether the run's process, its supervisor or a keeper of it still runs.

        One of an earlier boot of this host does not. One on another host or in another PID
        namespace is assumed alive: its processes cannot be seen from here.
        """
        if self.host == _HOST and self._other_boot():
            return False
        return not self.is_local or self.process.alive() or self.supervisor_alive()

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
    """One running task's claims, as recorded in the registry.

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

    @property
    def key(self) -> str:
        """Unique across processes: the run and the task id."""
        return f"{self.owner.run}/{self.task}"

    def to_json(self) -> dict[str, Any]:
        data = {
            "owner": self.owner.to_json(),
            "task": self.task,
            "agent": self.agent,
            "writes": list(self.writes),
            "reads": list(self.reads),
            "since": self.since,
        }
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
        )


def live_holds(holds: Iterable[Hold], runs_dir: Path, me: Owner | None = None) -> tuple[list[Hold], list[Hold]]:
    """``holds`` split into those that live and those to drop; ``runs_dir`` has the runs' groups files.

    A hold lives while its owner does (:meth:`Owner.alive`); that failing, while a process
    group that its run's groups file lists for its task has a live member. Each owner, and
    each groups file, is looked at once.
    """
    owners: dict[Owner, bool] = {} if me is None else {me: True}
    groups: dict[str, dict[str, list[ProcessId]]] = {}
    live: list[Hold] = []
    dead: list[Hold] = []
    for hold in holds:
        if hold.owner not in owners:
            owners[hold.owner] = hold.owner.alive()
        alive = owners[hold.owner]
        if not alive and hold.owner.is_local:
            run = hold.owner.run
            if run not in groups:
                groups[run] = read_groups(runs_dir / f"{run}.groups")
            alive = any(group.group_alive() for group in groups[run].get(hold.task, ()))
        (live if alive else dead).append(hold)
    return live, dead


def read_groups(path: Path) -> dict[str, list[ProcessId]]:
    """A run's groups file: the process group of each of its agents, by task id, as its keepers
    appended them (one JSON object a line; a line cut short by a crash is skipped)."""
    groups: dict[str, list[ProcessId]] = {}
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return groups
    for task, group in filter(None, map(_group_line, lines)):
        groups.setdefault(task, []).append(group)
    return groups


def _group_line(line: bytes) -> tuple[str, ProcessId] | None:
    try:
        entry = json.loads(line)
        return str(entry["task"]), ProcessId(int(entry["pgid"]), 0.0, int(entry["ticks"]))
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class RegistrySession:
    """The registry's live holds while its lock is held; changes are written when it ends."""

    owner: Owner
    holds: dict[str, Hold]
    changed: bool = False
    dropped: list[Hold] = field(default_factory=list)  # holds of dead owners, pruned on read

    def foreign(self) -> list[Hold]:
        """Holds of every other run (other processes, or other queues of this one)."""
        return [h for h in self.holds.values() if h.owner.run != self.owner.run]

    def mine(self) -> list[Hold]:
        return [h for h in self.holds.values() if h.owner.run == self.owner.run]

    def add(self, task: str, agent: str, writes: tuple[str, ...], reads: tuple[str, ...]) -> None:
        hold = Hold(self.owner, task, agent, writes, reads, time.time())
        self.holds[hold.key] = hold
        self.changed = True

    def remove(self, task: str) -> None:
        if self.holds.pop(f"{self.owner.run}/{task}", None) is not None:
            self.changed = True


class Registry:
    """The claim registry of the repository at ``repo``, seen from one run of this process.

    Raises StateError, naming the path, if the state directory cannot be created or written.
    """

    def __init__(
        self,
        repo: str | os.PathLike[str],
        run: str | None = None,
        *,
        lock_timeout: float = 60.0,
        supervisor: ProcessId | None = None,
        on_lock_wait: Callable[[str | None], None] | None = None,
    ):
        self.repo = Path(repo).resolve()
        self.dir = self.repo / STATE_DIR
        self.owner = Owner.current(run or new_run_id(), supervisor)
        #: Called with who holds the lock once a wait for it has taken LOCK_REPORT_S (and again
        #: if that changes), from the waiting thread; then with None once the lock is taken. Not
        #: when the wait failed (interrupt, timeout). It must not take a lock that a caller of
        #: begin() may hold.
        self.on_lock_wait = on_lock_wait
        self._interrupted = threading.Event()
        self.path = self.dir / "claims.json"
        self.runs_dir = self.dir / "runs"
        self.history_dir = self.dir / "history"
        #: What was found damaged and repaired, for the caller to show; never printed here.
        self.notices: list[str] = []
        #: stamp() right after this process last wrote claims.json.
        self.last_stamp: tuple[int, int, int] | None = None
        _make_state_dir(self.dir, self.runs_dir, self.history_dir)
        self._step = threading.Lock()  # held from begin() to commit() or abort(), by any thread
        self._lock = FileLock(
            self.dir / "registry.lock",
            timeout=lock_timeout,
            mode=0o600,
            # Not per thread: a queue may end a step in another thread than the one that began it.
            # So the lock is reentrant across this process's threads, and _step is what keeps
            # two steps through this Registry apart.
            thread_local=False,
            poll_interval=0.005,  # a contended flock is retried this often (a syscall, no spinning)
            preserve_lock_file=True,
            fallback_to_soft=False,  # a soft lock is not released when its owner is killed
        )

    @property
    def run(self) -> str:
        return self.owner.run

    def begin(self) -> RegistrySession:
        """Lock the registry and read its live holds; end with :meth:`commit` or :meth:`abort`.

        The queue splits a step this way so that it can decide with its own lock held while
        the file I/O on either side runs without it.
        """
        self._acquire()
        try:
            live, dropped = live_holds(self._read(), self.runs_dir, self.owner)  # this process runs: no need to ask
        except BaseException:
            self._unlock()
            raise
        return RegistrySession(self.owner, {hold.key: hold for hold in live}, dropped=dropped)

    def commit(self, session: RegistrySession) -> None:
        """Write what ``session`` changed, then unlock.

        If a write fails, the error propagates and the registry stays locked: commit again,
        or abort. A caller whose tasks already run on the strength of ``session`` must not
        let anyone read the registry without them.
        """
        self.write(session)
        self._unlock()

    def write(self, session: RegistrySession) -> None:
        """Write what ``session`` changed and keep the lock: what runs from now on is on disk.

        Raises StateError if it cannot be written; the registry stays locked.
        """
        if session.changed or session.dropped:
            self._write_holds(session.holds.values())
        if session.changed:  # our own copy, exact at every step, for a rebuild
            self._write(self._holds_path, {"holds": [h.to_json() for h in session.mine()]})
        session.changed = False
        session.dropped = []
        self.last_stamp = self.stamp()  # still locked: nobody else's write can hide behind ours

    def abort(self, session: RegistrySession) -> None:
        """Unlock without writing anything ``session`` changed."""
        self._unlock()

    def interrupt(self) -> None:
        """Make every wait for the lock, now (within LOCK_POLL_S) and from now on, fail with StateError.

        For a process about to exit (Ctrl-C while another process holds the lock): its holds
        stay in the registry, as its own, until it has exited.
        """
        self._interrupted.set()

    def _acquire(self) -> None:
        """Take this Registry's step lock, then the file lock; report a long wait, end on interrupt."""
        started = time.monotonic()
        reported: str | None = None
        while not self._step.acquire(timeout=self._poll(started)):
            self._waited(started)  # another step of this run waits for the file lock, and says so
        try:
            while True:
                try:
                    self._lock.acquire(timeout=self._poll(started))
                    break
                except Timeout:
                    if self._waited(started) and self.on_lock_wait is not None:
                        message = describe_lock_holder(Path(self._lock.lock_file))
                        if message != reported:
                            self.on_lock_wait(message)
                            reported = message
        except BaseException:
            self._step.release()
            raise
        if reported is not None and self.on_lock_wait is not None:
            self.on_lock_wait(None)

    def _poll(self, started: float) -> float:
        return max(0.0, min(LOCK_POLL_S, started + self._lock.timeout - time.monotonic()))

    def _waited(self, started: float) -> bool:
        """After one poll of a lock wait: raise if interrupted or timed out; whether to report it."""
        if self._interrupted.is_set():
            raise StateError(self._lock.lock_file, "the wait for the registry lock was interrupted")
        waited = time.monotonic() - started
        if waited >= self._lock.timeout:
            raise Timeout(str(self._lock.lock_file))
        return waited >= LOCK_REPORT_S

    def _unlock(self) -> None:
        self._lock.release()
        self._step.release()

    @contextlib.contextmanager
    def session(self) -> Iterator[RegistrySession]:
        """One step under the lock: yields the live holds; writes them back if they changed."""
        session = self.begin()
        committed = False
        try:
            yield session
            self.commit(session)
            committed = True
        finally:
            if not committed:
                self.abort(session)

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever claims.json is replaced: (inode, size, mtime in ns), None if absent."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    # --- run records ----------------------------------------------------------------------

    def write_run_record(self, record: dict[str, Any]) -> None:
        """Replace this run's record (atomically; not fsynced: claims.json is the authority)."""
        record = {**record, "owner": self.owner.to_json(), "updated": time.time(), "version": VERSION}
        self._write(self.runs_dir / f"{self.run}.json", record)

    def finish_run(self, history: dict[str, Any]) -> None:
        """Drop any hold this run still has, and replace its record by a small history record.

        If the lock cannot be had (interrupted, or a timeout), the holds stay, as this live
        process's, until it exits; the history is written all the same.
        """
        try:
            with self.session() as session:
                for hold in session.mine():
                    session.remove(hold.task)
            done = [self.runs_dir / f"{self.run}.json", self._holds_path, self.groups_path]
        except OSError as exc:
            level = logging.DEBUG if self.interrupted else logging.WARNING
            log.log(level, "this run's holds stay in the registry until this process exits: %s", exc)
            done = [self.runs_dir / f"{self.run}.json"]  # the .holds file rebuilds them if need be
        self._write(self.history_dir / f"{self.run}.json", {**history, "version": VERSION})
        for path in done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @property
    def interrupted(self) -> bool:
        """Whether :meth:`interrupt` was called."""
        return self._interrupted.is_set()

    @property
    def groups_path(self) -> Path:
        """This run's groups file: its agents' process groups, appended by their keepers (see live_holds)."""
        return self.runs_dir / f"{self.run}.groups"

    @property
    def _holds_path(self) -> Path:
        return self.runs_dir / f"{self.run}.holds"

    # --- files ----------------------------------------------------------------------------

    def _read(self) -> list[Hold]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateError(self.path, f"cannot read the claim registry: {exc.strerror or exc}") from exc
        try:
            return _parse_holds(raw)
        except (ValueError, KeyError, TypeError) as exc:
            problem = "it is empty" if not raw.strip() else str(exc) or type(exc).__name__
            return self._rebuild(problem)

    def _rebuild(self, problem: str) -> list[Hold]:
        """Keep a damaged registry aside and rebuild it from the live runs' own records."""
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        aside = self.path.with_name(f"claims.json.damaged-{stamp}")
        os.replace(self.path, aside)
        holds: list[Hold] = []
        for path in sorted(self.runs_dir.glob("*.holds")):
            try:
                items = json.loads(path.read_text())["holds"]
                run_holds = [Hold.from_json(item) for item in items]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            holds.extend(live_holds(run_holds, self.runs_dir)[0])
        # Written now, under the lock: whatever the session does next, no claim is lost.
        self._write_holds(holds)
        notice = (
            f"{self.path} was damaged ({problem}); kept it as {aside.name} and rebuilt it from the "
            f"records of {len({h.owner.run for h in holds})} live run(s) ({len(holds)} claim(s))"
        )
        self.notices.append(notice)
        log.warning("%s", notice)
        return holds

    def _write_holds(self, holds: Iterable[Hold]) -> None:
        data = {"format": FORMAT, "version": VERSION, "holds": [h.to_json() for h in holds]}
        self._write(self.path, data)

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        """Replace ``path`` atomically: readers see the old content or the new, never a mix.

        Not fsynced: a hold needs to outlive its process, which the page cache does, not a
        crash of the machine, after which none of its processes runs (an empty or torn file
        after a power cut is rebuilt, see _rebuild). An fsync per start cost a millisecond.
        """
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            text = json.dumps(data, separators=(",", ":"))  # dumps, not dump: only dumps uses the C encoder
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StateError(path, f"cannot write: {exc.strerror or exc}") from exc


def read_holds(repo: str | os.PathLike[str]) -> list[Hold]:
    """What ``repo``'s claims.json says now, read without the lock: for a view, never for a decision.

    Empty if there is no registry, or it cannot be read or parsed.
    """
    try:
        return _parse_holds((Path(repo) / STATE_DIR / "claims.json").read_bytes())
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _parse_holds(raw: bytes) -> list[Hold]:
    """The holds in a claims.json; raises ValueError (KeyError, TypeError) if it is not one."""
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("not a project-manager claim registry")
    if data.get("version") != VERSION:
        raise ValueError(f"format version {data.get('version')!r}; this version reads {VERSION}")
    return [Hold.from_json(item) for item in data["holds"]]


def _make_state_dir(state: Path, *subdirs: Path) -> None:
    try:
        state.mkdir(mode=0o700, exist_ok=True)
        for sub in subdirs:
            sub.mkdir(mode=0o700, exist_ok=True)
        ignore = state / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# project-manager's state: never commit it\n*\n")
        probe = state / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise StateError(state, f"cannot create or write the state directory: {exc.strerror or exc}") from exc
