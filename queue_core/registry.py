"""The on-disk claim registry that every process working on one repository shares.

Layout, in the repository's state directory (see :mod:`queue_core.statedir`: under the git
common directory, or ``<repo>/.project-manager/``):

* the directory itself is the lock (see :mod:`queue_core.statelock`), and a claims.json written
  in another directory is not trusted (see _read).
* ``claims.json`` (see :mod:`queue_core.claimsfile`) — every claim held by a running task of
  any process, with its owner; the line (``waiting``): tasks that wait for another run, oldest
  first, which runs let go first (see :meth:`RegistrySession.set_waiting`); and, after it was
  lost, until when nobody may take new claims (``recovering_until``).
* ``runs/<run>.json`` — each live run's status record, which ``status`` reads, and whose
  modification time is the run's heartbeat; ``runs/<run>.holds``, its holds, written under
  the lock with every change to them, from which ``claims.json`` is rebuilt if it is lost or
  damaged; ``runs/<run>.groups``, its agents' process groups (see :func:`live_holds`);
  ``runs/<run>.claimed``, what its tasks claimed as they ran (see :mod:`queue_core.taskclaims`),
  and ``claim-waits.json``, such claims that wait.
* ``history/<run>.json`` — a small record of each finished run; ``logs/<run>/`` its agents' logs.

Taking claims is one atomic step under the lock (:meth:`Registry.session`): read, drop holds
whose owner is gone, let the caller decide and record, write (temp file, ``os.replace``),
unlock. An owner is the process of a run (see :mod:`queue_core.holds`): a pid reused by an
unrelated process is not mistaken for it, a run killed with SIGKILL keeps its claims until its
supervisor has stopped every process of its agents, and a run id given twice names two runs.

A registry that vanished never reads as "nothing is held". A step that finds ``claims.json``
missing rebuilds it from the runs' ``.holds`` files (a dead run's agents may still run). Every
live registry holds the beacon (see :class:`~queue_core.statelock.Beacon`); while another holds
it, nobody takes a new claim for ``RECOVERY_S`` after a rebuild, while live runs, which look at
their holds every ``HEARTBEAT_S``, write back any that were lost.

Waiting for the lock is never silent and never stuck: after ``statelock.LOCK_REPORT_S`` the
waiter is told who holds it (``on_lock_wait``), stopped or not, and :meth:`Registry.interrupt`
ends the wait at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import legacy, retention
from .claimsfile import FORMAT, VERSION, contents, lacks_holds, parse, read_holds
from .clocks import REAL, Clocks
from .errors import NotRegularFileError, RunAliveError, StateError
from .holds import HEARTBEAT_S, STALE_AFTER_S, Hold, Owner, live_holds, read_groups, read_run_holds, why_alive
from .line import Place, Wanted, alive_by, live_places, set_places
from .processes import ProcessId
from .records import RunHistory, RunRecord
from .retention import DAMAGED_KEPT, DEFAULT_KEEP_RUNS, check_keep_runs
from .runid import check_run_id, new_run_id, take_run_id, time_stamp
from .statedir import (
    create_private,
    encode_json,
    locate,
    make_state_dir,
    read_regular,
    state_dir,
    work_tree_top,
    write_private,
)
from .statelock import Beacon, RegistryLock

# Names that other modules and tests import from here, where they were first defined, too.
__all__ = [
    "FORMAT",
    "VERSION",
    "Hold",
    "Owner",
    "Registry",
    "RegistrySession",
    "live_holds",
    "new_run_id",
    "read_groups",
    "read_holds",
    "state_dir",
]

log = logging.getLogger("queue_core")

#: After claims.json was found lost while other runs live, nobody takes a new claim this long:
#: time for each of them to write back its holds (they look every HEARTBEAT_S).
RECOVERY_S = 3 * HEARTBEAT_S


@dataclass
class RegistrySession:
    """The registry's live holds, and its line, while its lock is held; changes are written when it ends.

    ``waiting`` is the line (see :mod:`queue_core.line`): places of live runs, oldest first.
    """

    owner: Owner
    holds: dict[str, Hold]
    waiting: list[Place] = field(default_factory=list)
    changed: bool = False  # this run's holds changed
    dropped: list[Hold] = field(default_factory=list)  # holds of dead owners, pruned on read
    line_changed: bool = False  # the line changed: written with the holds
    recovering: float = 0.0  # wall time until which nobody may take a new claim (0: none)
    clocks: Clocks = REAL  # tells when a hold or a place was taken

    def foreign(self) -> list[Hold]:
        """Holds of every other run (other processes, or other queues of this one)."""
        return [h for h in self.holds.values() if h.owner.run != self.owner.run]

    def mine(self) -> list[Hold]:
        return [h for h in self.holds.values() if h.owner.run == self.owner.run]

    def add(
        self,
        task: str,
        agent: str,
        writes: tuple[str, ...],
        reads: tuple[str, ...],
        pools: tuple[tuple[str, int], ...] = (),
        added: tuple[str, ...] = (),
        owns: tuple[str, ...] | None = None,
    ) -> None:
        hold = Hold(self.owner, task, agent, writes, reads, self.clocks.wall(), pools, added, owns)
        self.holds[hold.key] = hold
        self.changed = True

    def remove(self, task: str) -> None:
        if self.holds.pop(f"{self.owner.run}/{task}", None) is not None:
            self.changed = True

    def set_waiting(self, wanted: Sequence[Wanted]) -> None:
        """Make this run's places in line held by ``wanted``, best-ranked first (see line.set_places)."""
        line = set_places(self.waiting, self.owner, wanted, self.clocks.wall())
        if line != self.waiting:
            self.waiting = line
            self.line_changed = True


class Registry:
    """The claim registry of the repository at ``repo``, seen from one run of this process.

    ``run`` (default: a fresh id) names the run: letters, digits, ``._-``, at most 100
    characters. If a live run of another process already has it, this one is ``run-2`` (or
    ``-3``...): an id names one process. ``stale_after`` is how old the heartbeat of a run
    that cannot be checked directly (another host or container) may be before it is dead.
    ``keep_runs`` is how many finished runs keep their history and logs: the end of the run
    prunes the state directory (see :mod:`queue_core.retention`). ``clocks`` tell every time
    it reads: lock waits, heartbeats' ages, when a hold was taken, a recovery's end.

    Raises StateError, naming the path, if the state directory cannot be created or written
    (or an older version's runs hold claims in its old place), ValueError for a bad ``run``
    or ``keep_runs``.
    """

    def __init__(
        self,
        repo: str | os.PathLike[str],
        run: str | None = None,
        *,
        lock_timeout: float = 60.0,
        supervisor: ProcessId | None = None,
        on_lock_wait: Callable[[str | None], None] | None = None,
        stale_after: float = STALE_AFTER_S,
        keep_runs: int = DEFAULT_KEEP_RUNS,
        clocks: Clocks = REAL,
    ):
        self.keep_runs = check_keep_runs(keep_runs)
        if run is not None:
            check_run_id(run)
        self.repo = Path(repo).resolve()
        top = work_tree_top(self.repo)
        if top is not None and top != self.repo:
            # Its state directory is the work tree's, where claims count from the top: claims
            # counted from here would name other paths, and miss the runs they overlap.
            raise StateError(self.repo, f"it lies inside the git work tree {top}: give that as the repository")
        self.dir = locate(self.repo)
        self.stale_after = stale_after
        self.clocks = clocks
        #: Called with who holds the lock once a wait for it has taken statelock.LOCK_REPORT_S
        #: (and again if that changes), from the waiting thread; then with None once the lock is
        #: taken. Not when the wait failed (interrupt, timeout). It must not take a lock that a
        #: caller of begin() may hold.
        self.on_lock_wait = on_lock_wait
        self.path = self.dir / "claims.json"
        self.runs_dir = self.dir / "runs"
        self.history_dir = self.dir / "history"
        #: What was found damaged and repaired, for the caller to show; never printed here.
        self.notices: list[str] = []
        #: stamp() right after this process last wrote claims.json.
        self.last_stamp: tuple[int, int, int] | None = None
        self._lock = RegistryLock(self.dir, timeout=lock_timeout, clocks=clocks)  # from begin() to commit()
        self._recovering_until = 0.0  # wall time: claims.json was lost; no new claim before it
        make_state_dir(self.dir)
        if notice := legacy.migrate(self.repo, self.dir, stale_after=stale_after, clocks=clocks):
            self.notices.append(notice)
        # Seen by any step that finds claims.json lost: a live registry is here. Held after the
        # look, which must not count this one.
        self._beacon = Beacon(self.dir.parent, clocks=clocks)
        try:
            if not os.path.lexists(self.path) and not self._beacon.others_live():
                # A first claims.json (or one lost while no run lived): from now on a missing one
                # is a lost one. What dead runs' agents still hold is in it.
                create_private(self.path, encode_json(self._contents(self._recorded_holds())))
            self._beacon.hold()
            self._record = take_run_id(  # the run record last written, to write again if lost
                run or new_run_id(clocks),
                supervisor,
                self.runs_dir,
                lock=self._lock,
                on_lock_wait=on_lock_wait,
                stale_after=stale_after,
                clocks=clocks,
            )
            self.owner = self._record.owner
        except BaseException:
            self.close()
            raise

    @property
    def run(self) -> str:
        return self.owner.run

    def close(self) -> None:
        """Let go of the beacon: this registry is no longer live (done by finish_run)."""
        self._beacon.close()

    def begin(self) -> RegistrySession:
        """Lock the registry and read its live holds; end with :meth:`commit` or :meth:`abort`.

        The queue splits a step this way so that it can decide with its own lock held while
        the file I/O on either side runs without it. ``recovering`` is set on a session while
        nobody may take a new claim (see the module's docstring).
        """
        self._lock.acquire(self.on_lock_wait)
        try:
            holds, line = self._read()
            live, dropped = live_holds(holds, self.runs_dir, self.owner, self.stale_after, clocks=self.clocks)
            waiting = live_places(line, alive_by(self.runs_dir, self.stale_after, clocks=self.clocks))
        except BaseException:
            self._lock.release()
            raise
        session = RegistrySession(self.owner, {h.key: h for h in live}, waiting, dropped=dropped, clocks=self.clocks)
        session.line_changed = len(waiting) != len(line)  # dead runs' places leave at the next write
        if self._recovering_until > self.clocks.wall():
            session.recovering = self._recovering_until
        return session

    def commit(self, session: RegistrySession) -> None:
        """Write what ``session`` changed, then unlock.

        If a write fails, the error propagates and the registry stays locked: commit again,
        or abort. A caller whose tasks already run on the strength of ``session`` must not
        let anyone read the registry without them.
        """
        self.write(session)
        self._lock.release()

    def write(self, session: RegistrySession) -> None:
        """Write what ``session`` changed and keep the lock: what runs from now on is on disk.

        Raises StateError if it cannot be written; the registry stays locked.
        """
        if session.changed or session.dropped or session.line_changed:
            self._write_holds(session.holds.values(), session.waiting)
        if session.changed:  # our own copy, exact at every step, for a rebuild
            self._write(self._holds_path, {"holds": [h.to_json() for h in session.mine()]}, locked=True)
        session.changed = session.line_changed = False
        session.dropped = []
        self.last_stamp = self.stamp()  # still locked: nobody else's write can hide behind ours

    def abort(self, session: RegistrySession) -> None:
        """Unlock without writing anything ``session`` changed."""
        self._lock.release()

    def interrupt(self) -> None:
        """Make every wait for the lock, now (within statelock.LOCK_POLL_S) and from now on, fail
        with StateError.

        For a process about to exit (Ctrl-C while another process holds the lock): its holds
        stay in the registry, as its own, until it has exited.
        """
        self._lock.interrupt()

    def lost_holds(
        self, running: Iterable[str], added: Mapping[str, AbstractSet[tuple[str, str]]] | None = None
    ) -> bool:
        """Whether claims.json lacks a hold of a task id in ``running``, or is being recovered; or
        a hold of one lists a claim it added as it ran that ``added`` (task -> the (claim, "write"
        or "read") known) lacks.

        Read without the lock, for a heartbeat: a step (which writes this run's holds back, and
        takes such claims on) is due if so.
        """
        try:
            raw = read_regular(self.path)
        except OSError:
            return True
        return lacks_holds(raw, self.run, running, self.clocks.wall(), added)

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

    # --- runs -----------------------------------------------------------------------------

    def write_run_record(self, record: RunRecord) -> None:
        """Replace this run's record (atomically; not fsynced: claims.json is the authority)."""
        self._record = record
        data = record.to_json()
        try:
            self._write(self._record_path, data)
        except StateError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError):
                raise
            make_state_dir(self.dir)  # removed whole: made again, as the next step would
            self._write(self._record_path, data)

    def heartbeat(self) -> None:
        """Tell other hosts and containers this run lives: touch its record, or write it again if lost."""
        try:
            os.utime(self._record_path, follow_symlinks=False)
        except FileNotFoundError:
            make_state_dir(self.dir)
            self.write_run_record(replace(self._record, updated=self.clocks.wall()))

    def release_run(self, run: str) -> int:
        """Drop every hold of ``run``, a run a person knows is dead; returns how many there were.

        Raises RunAliveError, saying why, while the run's process, its supervisor or one of its
        agents lives, or a run of another host or container has a heartbeat younger than
        ``stale_after``; StateError if the registry cannot be written; ValueError for a ``run``
        that is no run id.
        """
        check_run_id(run)
        with self.session() as session:
            if run == self.run:
                raise RunAliveError(self.path, f"run {run} is this one")
            live = [h for h in session.holds.values() if h.owner.run == run]
            if live:  # the step has dropped the holds of dead owners already
                owner = live[0].owner
                if owner.alive(self.runs_dir, self.stale_after, self.clocks):
                    why = why_alive(owner, self.runs_dir, self.stale_after, self.clocks)
                else:
                    why = f"it died, but an agent of its task {live[0].task} still runs"
                raise RunAliveError(self.path, f"run {run}: {why}")
            released = [h for h in session.dropped if h.owner.run == run]
            for suffix in (".json", ".holds", ".groups", ".claimed"):  # in the step: a new run may take the id after it
                with contextlib.suppress(OSError):
                    os.unlink(self.runs_dir / f"{run}{suffix}")
        return len(released)

    def finish_run(self, history: RunHistory | None) -> None:
        """Drop any hold this run still has, and replace its record by a small history record (if any).

        If the lock cannot be had (interrupted, or a timeout), the holds stay, as this live
        process's, until it exits; the history is written all the same. Raises StateError if
        the history cannot be written (the holds are gone even so). With a history, the state
        directory is then pruned to the newest ``keep_runs`` runs; that never fails the run.
        """
        try:
            with self.session() as session:
                for hold in session.mine():
                    session.remove(hold.task)
                session.set_waiting(())
            done = [self._record_path, self._holds_path, self.groups_path, self.claimed_path]
        except OSError as exc:
            level = logging.DEBUG if self.interrupted else logging.WARNING
            log.log(level, "this run's holds stay in the registry until this process exits: %s", exc)
            done = [self._record_path]  # the .holds file rebuilds them if need be
        try:
            if history is not None:
                self._write(self.history_dir / f"{self.run}.json", history.to_json())
        finally:
            for path in done:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            if history is not None and self._holds_path in done and not self.interrupted:
                self._prune()
            self.close()

    def _prune(self) -> None:
        """Keep the state directory bounded (see queue_core.retention); log, never raise, what fails."""
        try:
            report = retention.prune(self)
        except Exception as exc:  # noqa: BLE001 - pruning old records must never fail the run that ends
            log.warning("could not prune the state directory %s: %s", self.dir, exc)
            return
        if report.failed:
            log.warning("could not remove %d entries of the state directory: %s", len(report.failed), report.failed[0])

    @property
    def locked(self) -> bool:
        """Whether this Registry holds the lock: a step of it is under way."""
        return self._lock.locked

    @property
    def interrupted(self) -> bool:
        """Whether :meth:`interrupt` was called."""
        return self._lock.interrupted

    @property
    def groups_path(self) -> Path:
        """This run's groups file: its agents' process groups, appended by their keepers (see live_holds)."""
        return self.runs_dir / f"{self.run}.groups"

    @property
    def claimed_path(self) -> Path:
        """This run's claims added by its tasks as they ran (see queue_core.taskclaims)."""
        return self.runs_dir / f"{self.run}.claimed"

    @property
    def _holds_path(self) -> Path:
        return self.runs_dir / f"{self.run}.holds"

    @property
    def _record_path(self) -> Path:
        return self.runs_dir / f"{self.run}.json"

    # --- files ----------------------------------------------------------------------------

    def _read(self) -> tuple[list[Hold], list[Place]]:
        """The holds and the line in claims.json; rebuilt if it is damaged, or lost while other runs live."""
        try:
            raw = read_regular(self.path)
        except NotRegularFileError as exc:
            return self._rebuild(f"it is {exc.strerror}"), []
        except OSError as exc:
            raise StateError(self.path, f"cannot read the claim registry: {exc.strerror or exc}") from exc
        if raw is None:  # lost, or none yet: what the runs' own records say is held, is
            return self._rebuild("it is missing"), []
        try:
            holds, line, self._recovering_until, written_in = parse(raw)
        except (ValueError, KeyError, TypeError) as exc:
            problem = "it is empty" if not raw.strip() else str(exc) or type(exc).__name__
            return self._rebuild(problem), []
        if written_in not in (None, self._lock.inode()):
            # The state directory was swapped for a copy (moved, restored): a step of another run
            # may hold the lock on the old one, its holds not written yet.
            return self._rebuild("it was written in another state directory"), []
        return holds, line

    def _rebuild(self, problem: str) -> list[Hold]:
        """Keep a damaged registry aside and rebuild it from the live runs' own records.

        While another run lives, nobody takes a new claim for RECOVERY_S: a run whose own
        records went too writes its holds back meanwhile.
        """
        if os.path.lexists(self.path):
            # Named like a run id: sorted by time, unique across processes.
            aside = self.path.with_name(f"claims.json.damaged-{new_run_id(self.clocks)}")
            os.replace(self.path, aside)
            for old in sorted(self.dir.glob("claims.json.damaged-*"))[:-DAMAGED_KEPT]:
                with contextlib.suppress(OSError):
                    (shutil.rmtree if old.is_dir() and not old.is_symlink() else os.unlink)(old)
            kept = f"kept it as {aside.name} and rebuilt"
        else:
            kept = "rebuilt"
        holds = self._recorded_holds()
        self._recovering_until = self.clocks.wall() + RECOVERY_S if self._beacon.others_live() else 0.0
        # Written now, under the lock: whatever the session does next, no claim is lost.
        self._write_holds(holds)
        if kept == "rebuilt" and not holds and not self._recovering_until:
            return holds  # none yet (a new repository), or nothing was lost
        notice = (
            f"{self.path} was damaged or lost ({problem}); {kept} it from the records of "
            f"{len({h.owner.run for h in holds})} live run(s) ({len(holds)} claim(s))"
        )
        if self._recovering_until:
            notice += f"; no new task starts for {RECOVERY_S:.0f} s while live runs write back their holds"
        self.notices.append(notice)
        log.warning("%s", notice)
        return holds

    def _recorded_holds(self) -> list[Hold]:
        """The live holds that the runs' own ``.holds`` files name."""
        holds: list[Hold] = []
        for path in sorted(self.runs_dir.glob("*.holds")):
            # One that is no regular file, damaged, or gone meanwhile names none: its run writes back.
            run_holds = read_run_holds(path)
            holds.extend(live_holds(run_holds, self.runs_dir, stale_after=self.stale_after, clocks=self.clocks)[0])
        return holds

    def _write_holds(self, holds: Iterable[Hold], line: Iterable[Place] = ()) -> None:
        self._write(self.path, self._contents(holds, line), locked=True)

    def _contents(self, holds: Iterable[Hold], line: Iterable[Place] = ()) -> dict[str, Any]:
        """claims.json's content now: ``holds``, ``line``, a recovery under way, and which directory it is for."""
        return contents(holds, line, self._recovering_until, self._lock.inode(), self.clocks.wall())

    def _write(self, path: Path, data: dict[str, Any], *, locked: bool = False) -> None:
        """Replace ``path`` atomically (see write_private); raises StateError.

        ``locked``: written with the lock held (claims.json, this run's .holds), from holds that
        are exact. Then a directory in its place is moved aside first, as a read does with a
        damaged claims.json: a step that could never write would never let go of the lock.
        """
        raw = encode_json(data)
        try:
            try:
                write_private(path, raw)
            except IsADirectoryError:
                if not locked or not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise
                aside = path.with_name(f"{path.name}.damaged-{time_stamp(self.clocks)}-{uuid.uuid4().hex[:6]}")
                os.replace(path, aside)
                notice = f"{path} was a directory; kept it as {aside.name} and wrote the file"
                self.notices.append(notice)
                log.warning("%s", notice)
                write_private(path, raw)
        except OSError as exc:
            raise StateError(path, f"cannot write: {exc.strerror or exc}") from exc
