"""RegistrySync: each decision of a queue given ``repo`` a step in the repository's registry.

Other runs' holds and places in line are mirrored into the scheduler as external holders
before each decision, and this run's holds made to match what runs here after it (see
:mod:`queue_core.registry`, :mod:`queue_core.line`). On the timer, other processes are
watched, the lease ended and the heartbeat beaten; the run's status record is kept for
``status`` in other processes. This is the only code that lets go of the engine's lock: for
the registry's file I/O, in ``_released``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from .claims import Access, claim_texts
from .errors import StateError
from .holds import HEARTBEAT_S, Hold, Owner, live_holds
from .line import Place, Wanted, ahead, alive_by, live_places, parse_claims
from .processes import STOPPED_HINT, process_state
from .records import RunHistory, RunRecord, TaskOutcome
from .registry import Registry, RegistrySession
from .results import call_quietly
from .scheduler import Scheduler, TaskEntry
from .sync import Decide, SyncHost
from .task import TaskState, is_supervised

__all__ = ["RegistrySync", "lock_wait_notice"]

log = logging.getLogger("queue_core")

#: Seconds between looks at the registry while a task waits for another process's claim.
FOREIGN_CHECK_S = 0.02
#: Shortest interval between two writes of a run's status record (status shows it).
RECORD_INTERVAL_S = 0.05
#: How long a busy queue keeps the registry locked after reading it, so that the steps that
#: follow (one per task start and end) cost no file I/O; the lease is written and unlocked when
#: it ends, and the next one waits as long again, so that other processes get their turn.
LEASE_S = 0.01
#: How many waiting tasks a status record describes (best-ranked first); all are counted.
RECORD_WAITING_MAX = 100
#: Seconds between looks at whether the processes holding what tasks here wait for are stopped or dead.
HOLDER_CHECK_S = 1.0


class RegistrySync:
    """Each decision a step in the repository's registry, shared by every run on it.

    A busy queue shares one step among several decisions (group commit, see ``step``) and
    keeps the registry locked for a short lease (see ``_decide``), so that most steps cost no
    file I/O. The lease and heartbeat run on the registry's clocks (real ones, unless a test
    gives others), whatever the scheduler's clock: other processes wait in real time, and
    would wait for ever on a test's frozen clock. Records carry the wall clock's time:
    another process reads them.
    """

    def __init__(
        self,
        registry: Registry,
        host: SyncHost,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.host = host
        self.on_notice = on_notice
        self.clocks = clocks = registry.clocks
        registry.on_lock_wait = self._on_lock_wait
        self.started_at = clocks.wall()
        self.error: OSError | None = None  # the last registry failure, until one works
        self.lock_wait: str | None = None  # who holds the registry lock, once a wait is long
        self.step_done = threading.Condition(host.lock)  # a registry step ended
        self.committing = False  # a thread is in a registry step (see step)
        self.dispatch_wanted = False  # a dispatch was asked for that no step has decided yet
        self.lease: RegistrySession | None = None  # the registry, still locked after a step
        self.lease_ends = 0.0  # monotonic time when the lease is written and unlocked
        self.lease_gap_ends = 0.0  # monotonic time before which no new lease is kept
        self.external_holds: dict[str, Hold] = {}  # external holder id -> its hold
        self.places_ahead: dict[str, Place] = {}  # other runs' places in line this run honours, by holder id
        self.holder_notes: dict[Owner, str] = {}  # external owners that are stopped or dead, and why
        self.next_foreign_check = 0.0  # scheduler-clock time of the next look at other processes
        self.next_holder_check = 0.0  # scheduler-clock time of the next look at the holders' processes
        self.next_heartbeat = float("inf")  # monotonic time of the next heartbeat
        self.record_written_at = float("-inf")  # scheduler-clock time the status record was last written
        self.record_pending = False  # the status changed since then
        self.looks_recorded = 0  # the machine's readings (MachineRule.looks) taken when it was
        # The workers of its running cluster tasks when it was last written: one learnt since is news.
        self.workers_recorded: tuple[str | None, ...] = ()
        self.recovery_reported = 0.0  # the end (wall time) of the last recovery window logged
        # Of the tasks the last heartbeat vouched for, what each added as it ran, as known here.
        self.beat_added: dict[str, set[tuple[str, str]]] = {}
        self.run_finished = False  # finish() has begun: no record is written any more
        self.finished = threading.Event()  # finish() has ended

    @property
    def sched(self) -> Scheduler:
        return self.host.sched

    # --- steps --------------------------------------------------------------------------------

    def step(self, decide: Decide, *, shared: bool) -> list[TaskEntry] | None:
        """A step in the registry: a group commit for a dispatch, or a step of its own.

        A registry step does its file I/O without the queue's lock, so while one runs, other
        threads finish tasks and ask for a dispatch; they wait for that step to end, and the
        first of them then leads one step that decides for all of them: one lock, read and
        write for several releases and starts.
        """
        if shared:
            self.dispatch_wanted = True
        self.step_done.wait_for(lambda: not self.committing)
        if shared and not self.dispatch_wanted:  # a step that began after the request has decided for it
            return None
        return self._decide(decide)

    def stopped(self) -> None:
        if self.lease is not None:  # what started on it runs on, and other runs must see it
            session, self.lease = self.lease, None
            self._record_mine(session)
            self._end_lease(session, [], leased=True)

    def _decide(self, decide: Decide) -> list[TaskEntry]:
        """Run ``decide`` as one atomic registry step (lock held, and no step running).

        Under the registry's file lock: read the holds of every process, dropping dead owners'
        (the queue's lock is released for the I/O); mirror the other processes' holds into the
        scheduler; decide; make this run's holds match what runs here (so a release is recorded
        by whichever step next writes). If something started, keep the registry locked for the
        steps that follow, until LEASE_S has passed since it was read: those steps read
        nothing, and the lease is written when it ends. But if an agent process started, write
        the registry first: were this process killed, its lock would go with it and anything
        unwritten be lost, while the agent, stopped by the supervisor only within
        milliseconds, would run without a hold. Returns what started.
        """
        assert not self.committing
        self.committing = True
        try:
            session = self.lease
            self.lease = None
            leased = session is not None  # kept from an earlier step
            if session is None:
                try:
                    with _released(self.host.lock):
                        session = self.registry.begin()
                except OSError as exc:  # StateError: unreadable, the lock not had, ...
                    self._failed(exc)
                    return []
                self.lease_ends = self.clocks.monotonic() + LEASE_S
            try:
                self.dispatch_wanted = False
                self._sync(session)
                self._adopt(session)
                # While a lost registry is recovered, nothing starts; what runs is written back.
                started = [] if session.recovering else decide(self.host.clock())
                self._record_mine(session)
                # Our places just changed: one may now come before a place of another run that we
                # honoured, and conflict with it. Let that one go at once: no other step may come.
                while not session.recovering and self._sync(session):
                    more = self.sched.dispatch(self.host.clock())
                    self._record_mine(session)
                    started += more
                    if not more:
                        break
                if self.sched.unfinished:
                    self.next_heartbeat = min(self.next_heartbeat, self.clocks.monotonic() + HEARTBEAT_S)
                    self.host.wake_timer()  # it beats while tasks run or wait
            except BaseException:  # a bug: still, never drop a locked registry; the timer ends it
                self.lease = session
                self.host.wake_timer()
                raise
            # An agent process would outlive us: it starts only once its hold is on disk. A plain
            # callable dies with this process, and may start on the lease, written at its end.
            on_disk_first = any(is_supervised(e.task.execute_fn) for e in started)
            if started and self._may_keep_lease() and (not on_disk_first or self._write_lease(session)):
                self.lease = session
                self.host.wake_timer()  # it may have looked while the lease was written: time it now
                self._record_changed()
                return started
            started = self._end_lease(session, started, leased=leased)
            if session.recovering and self.error is None:
                wait = session.recovering - self.clocks.wall()
                error = StateError(self.registry.path, f"it was lost; no task starts for {wait:.1f} s")
                if session.recovering == self.recovery_reported:  # said at its first step: not at each
                    self.error = error
                    self.host.wake_timer()
                else:
                    self.recovery_reported = session.recovering
                    self._failed(error)
            return started
        finally:
            self.committing = False
            self.step_done.notify_all()

    def _write_lease(self, session: RegistrySession) -> bool:
        """Write the registry and keep it locked (lock released for the I/O); False if it failed."""
        try:
            with _released(self.host.lock):
                self.registry.write(session)
        except OSError:  # _end_lease tries again, and deals with a failure
            return False
        return True

    def _record_mine(self, session: RegistrySession) -> None:
        """Make this run's holds in ``session`` exactly the tasks running here, and its places in
        line the tasks waiting for another run."""
        running = {e.id: e for e in self.sched.running}
        for hold in session.mine():
            entry = running.get(hold.task)
            if entry is None:
                session.remove(hold.task)  # released
            elif set(hold.added) == {c.text for c, _ in entry.added}:
                del running[hold.task]  # as recorded
            else:  # another attempt of it, which has not claimed what the last one added
                session.remove(hold.task)
        ownership = self.sched.ownership
        for entry in running.values():  # started
            session.add(
                entry.id,
                entry.agent,
                claim_texts(entry.held(Access.WRITE)),
                claim_texts(entry.held(Access.READ)),
                entry.pools,
                tuple(c.text for c, _ in entry.added),
                tuple(ownership.get_owned_paths(entry.agent)) if entry.agent in ownership.agents() else None,
            )
        waiting = [] if self.host.aborted else self.sched.waiting_on_external(self.sched.max_parallel)
        known = self._external()
        session.set_waiting(
            [
                Wanted(
                    e.id,
                    e.agent,
                    claim_texts(e.writes),
                    claim_texts(e.reads),
                    frozenset(known[h].owner.run for h in holders),
                    e.pools,
                )
                for e, holders in waiting
            ]
        )

    def _may_keep_lease(self) -> bool:
        """Whether a step that started tasks keeps the registry locked.

        A busy queue does: what started will end soon and ask for steps. Not within
        LEASE_S of the last lease's end, though: a busy queue would lock the registry again
        at once, and another process, which retries every few milliseconds, might never get
        in. Nor without a timer thread to end the lease.
        """
        now = self.clocks.monotonic()
        return self.error is None and self.lease_gap_ends <= now < self.lease_ends and self.host.wake_timer()

    def _end_lease(self, session: RegistrySession, started: list[TaskEntry], *, leased: bool) -> list[TaskEntry]:
        """Write the registry and unlock it (lock released for the I/O).

        ``started`` are this step's starts, not handed out yet; ``leased``, whether the
        registry was kept locked from an earlier step (then the next lease waits LEASE_S, see
        _may_keep_lease). If the write fails, they go back to the queue (but those stopped or
        timed out meanwhile, which end without running). If tasks still run on the strength of
        the unwritten lease, the registry stays locked, since nobody may read it without them,
        and the write is tried again every FOREIGN_CHECK_S; nothing starts until it works. If
        none runs, the registry is unlocked unwritten: what it still says can only hold others
        back, never let them in. An interruption (not an OSError) keeps the lease for the timer
        to write at once.
        """
        try:
            with _released(self.host.lock):
                self.registry.commit(session)
        except BaseException as exc:  # OSError: disk full, ...; or an interruption
            kept = [e for e in started if e.stop_requested or e.timed_out]
            for entry in started:
                if entry not in kept:
                    self.sched.unstart(entry.id)
            self._record_mine(session)
            if not isinstance(exc, OSError):  # interrupted: the timer steps again at once
                self.lease = session
                self.lease_ends = self.clocks.monotonic()
                self.host.wake_timer()
                raise
            if self.sched.running:
                self.lease = session
                self.lease_ends = self.clocks.monotonic() + FOREIGN_CHECK_S  # the next try
            else:
                self.registry.abort(session)
            self._failed(exc)
            return kept
        self.error = None
        if leased:
            self.lease_gap_ends = self.clocks.monotonic() + LEASE_S
        self._record_changed()
        return started

    def _lease_left(self) -> float:
        """Seconds until the lease must end, or its write be tried again. A lease of a queue
        that is done, or aborted, ends at once."""
        if self.error is None and (self.host.aborted or self.host.done()):
            return 0.0
        return self.lease_ends - self.clocks.monotonic()

    def _failed(self, error: OSError) -> None:
        """A registry step failed: say so once, and let the timer try again."""
        if self.error is None and not self.registry.interrupted:
            log.error("no task starts until the claim registry can be used", exc_info=error)
        self.error = error
        self.host.wake_timer()

    # --- other runs ---------------------------------------------------------------------------

    def _external(self) -> dict[str, Hold | Place]:
        """What the scheduler's external holders stand for, by holder id: other runs' holds, and
        their places in line this run honours."""
        return {**self.external_holds, **self.places_ahead}

    def _sync(self, session: RegistrySession) -> bool:
        """Make the scheduler's external holders the other runs' holds, and their places in line
        that this run honours (see queue_core.line): tasks here wait for those as for a hold.

        Returns whether a place honoured until now no longer is.
        """
        holds = {f"{h.task} in run {h.owner.run}": h for h in session.foreign()}
        places = {
            f"{p.task} in run {p.owner.run}, ahead in line": p
            for p in ahead(session.waiting, session.owner.run, _stopped)
        }
        known = self._external()
        now: dict[str, Hold | Place] = {**holds, **places}
        let_go = False
        for holder in self.sched.external_holders:
            if holder not in now or _claimed(now[holder]) != _claimed(known[holder]):
                self.sched.release_external(holder)  # gone, or another task of that id
                known.pop(holder)
                let_go = let_go or holder in self.places_ahead
        for holder, item in now.items():
            if holder not in known:
                writes, reads = parse_claims(item.writes), parse_claims(item.reads)
                claims = (*((c, Access.WRITE) for c in writes), *((c, Access.READ) for c in reads))
                self.sched.hold_external(holder, item.agent, claims, in_line=holder in places, pools=item.pools)
        self.external_holds = holds  # their latest: a hold may name its agent's group now
        self.places_ahead = places
        if now:
            self.host.wake_timer()
        return let_go

    def _adopt(self, session: RegistrySession) -> None:
        """Make the claims that tasks here added as they ran (``project-manager claim``, recorded
        in their holds by another process: see queue_core.taskclaims) the scheduler's too, before
        it decides: no task here may start that overlaps them."""
        for hold in session.mine():
            if not hold.added:
                continue
            try:
                entry = self.sched.entry(hold.task)
            except KeyError:
                continue
            if entry.state is not TaskState.RUNNING:
                continue  # its attempt ended: the hold goes at this step
            known = {(c.text, how) for c, how in entry.added}
            writes = set(hold.writes)
            added = {(text, Access.WRITE if text in writes else Access.READ) for text in hold.added}
            claims = [
                (claim, how)
                for text, how in sorted(added - known, key=lambda item: item[0])
                for claim in parse_claims((text,))  # one another version wrote claims everything
            ]
            if claims:
                self.sched.add_claims(entry.id, claims)
                self._record_changed()

    def annotate(self, reason: str, holder: str | None) -> str:
        hold = None if holder is None else self.external_holds.get(holder)
        note = None if hold is None else self.holder_notes.get(hold.owner)
        return reason if note is None else f"{reason}; {note}"

    def group_record(self, task_id: str) -> tuple[Path, str]:
        return self.registry.groups_path, task_id

    def _waiting_on_others(self) -> bool:
        """Whether some task here may be waiting for another process or the registry."""
        if self.host.aborted:
            return False
        if self.error is not None:
            return True
        return bool(self.external_holds or self.places_ahead) and self.sched.unfinished > len(self.sched.running)

    def _others_changed(self) -> bool:
        """Whether another process wrote the registry or died since we last looked.

        This is how a release in another process is noticed: while a task here waits on one,
        the timer looks every FOREIGN_CHECK_S seconds — one stat() of claims.json, and
        whether each holder's processes live — and sleeps in between, so no CPU spins.
        """
        if self.error is not None or self.registry.stamp() != self.registry.last_stamp:
            return True
        runs_dir, stale_after = self.registry.runs_dir, self.registry.stale_after
        if live_holds(self.external_holds.values(), runs_dir, stale_after=stale_after, clocks=self.clocks)[1]:
            return True
        places = self.places_ahead.values()
        return len(live_places(places, alive_by(runs_dir, stale_after, clocks=self.clocks))) < len(places)

    def _on_lock_wait(self, holder: str | None) -> None:
        """The registry lock: held elsewhere this long and by whom; or None, taken at last.

        Called by the thread that waits for the lock, without the queue's lock.
        """
        with self.host.lock:
            self.lock_wait = holder
            if not self.run_finished:
                self._record_changed()
        if self.on_notice is not None:
            lock_wait_notice(self.on_notice, holder)

    def _check_holders(self) -> list[str]:
        """Look whether other runs' processes that tasks here wait for are stopped or dead.

        Returns the notices of what changed. A stopped run cannot release its claims; a run that
        died keeps them while its supervisor stops its agents, which the status says too.
        """
        notes: dict[Owner, str] = {}
        for owner in {hold.owner for hold in self.external_holds.values() if hold.owner.is_local}:
            state = process_state(owner.pid) if owner.process.alive() else None
            if state == "stopped":
                notes[owner] = f"run {owner.run} (pid {owner.pid}) is stopped: {STOPPED_HINT}"
            elif state is None and owner.supervisor is not None and owner.supervisor_alive():
                notes[owner] = (
                    f"run {owner.run} (pid {owner.pid}) died; its supervisor (pid {owner.supervisor.pid}) is stopping "
                    "its agents, and their claims are held until they are gone"
                )
            elif state is None:
                notes[owner] = (
                    f"run {owner.run} (pid {owner.pid}) died, and so did its supervisor; its agents' processes still "
                    "run and hold their claims until they are gone: end them (see status)"
                )
        changed = [note for owner, note in notes.items() if self.holder_notes.get(owner) != note]
        self.holder_notes = notes
        if changed:
            self._record_changed()
        return changed

    # --- the timer's duties -------------------------------------------------------------------

    def idle(self) -> bool:
        return self.lease is None and not self.committing

    def poll(self, now: float) -> tuple[bool, list[str]]:
        """Look at the other processes when due, and whether the lease must end: a dispatch is
        due if either says so (a step past the lease's end writes and unlocks it)."""
        changed = False
        notices: list[str] = []
        if self._waiting_on_others() and now >= self.next_foreign_check:
            self.next_foreign_check = now + FOREIGN_CHECK_S
            changed = self._others_changed()
            if now >= self.next_holder_check:
                self.next_holder_check = now + HOLDER_CHECK_S
                notices = self._check_holders()
                # A run ahead in line that was stopped loses its turn at the next step.
                changed = changed or any(_stopped(place.owner) for place in self.places_ahead.values())
        lease_over = self.lease is not None and self._lease_left() <= 0
        return changed or lease_over, notices

    def flush(self) -> None:
        machine = self.sched.machine
        if machine is not None and machine.looks != self.looks_recorded and not self.run_finished:
            # A reading changes what waiting tasks are told ("memory 93% > 90%") and auto's count.
            self.looks_recorded = machine.looks
            self._record_changed()
        workers = tuple(getattr(entry.task.execute_fn, "worker", None) for entry in self.sched.running)
        if workers != self.workers_recorded and not self.run_finished:
            self.workers_recorded = workers  # a cluster task's worker, known once it started there
            self._record_changed()
        if self.record_pending and self.host.clock() >= self.record_written_at + RECORD_INTERVAL_S:
            self._write_record()

    def _beating(self) -> bool:
        """Whether this run must show it lives: it holds claims, or waits in line.

        Aborted too, while what it started runs on: a callable cannot be stopped.
        """
        return self.sched.unfinished > 0

    def beat(self) -> list[str] | None:
        """The tasks whose holds a due heartbeat vouches for: none while a lease keeps the
        registry locked (what it started is not on disk yet, by design) or after an abort
        (whose step could not take the lock)."""
        if not self._beating() or self.clocks.monotonic() < self.next_heartbeat:
            return None
        self.next_heartbeat = self.clocks.monotonic() + HEARTBEAT_S
        if self.lease is not None or self.host.aborted:
            return []
        running = self.sched.running
        self.beat_added = {e.id: {(c.text, how.value) for c, how in e.added} for e in running}
        return [e.id for e in running]

    def delay(self, now: float) -> float | None:
        wakes = []
        if self._waiting_on_others():
            wakes.append(self.next_foreign_check - now)
        if self.record_pending:
            wakes.append(self.record_written_at + RECORD_INTERVAL_S - now)
        if self._beating():  # in real time, like the lease: other processes read it
            wakes.append(self.next_heartbeat - self.clocks.monotonic())
        if self.lease is not None:
            wakes.append(self._lease_left())
        return min(wakes, default=None)

    def heartbeat(self, running: list[str]) -> bool:
        """Touch this run's record; True if the registry lost holds of ``running`` (a step writes
        them back), or one of them claimed more as it ran (a step takes it on: see _adopt)."""
        try:
            self.registry.heartbeat()
        except OSError:
            log.warning("could not touch this run's record: other hosts may take it for dead", exc_info=True)
        return bool(running) and self.registry.lost_holds(running, self.beat_added)

    def interrupt(self) -> None:
        self.registry.interrupt()

    # --- the run's records --------------------------------------------------------------------

    def _record_changed(self) -> None:
        """The run's status changed: write its record now, or soon.

        Writing the whole status at every step would make a big batch quadratic, so a record
        is written at most every RECORD_INTERVAL_S; the timer writes the last change.
        """
        if self.host.clock() - self.record_written_at >= RECORD_INTERVAL_S:
            self._write_record()
        else:
            self.record_pending = True
            self.host.wake_timer()

    def _write_record(self) -> None:
        """Replace this run's status record, which ``repo_status`` reads."""
        self.record_written_at = self.host.clock()
        self.record_pending = False
        wall = self.clocks.wall()
        status = self.host.snapshot(RECORD_WAITING_MAX).recorded(wall)
        record = RunRecord(
            self.registry.run,
            self.registry.owner,
            wall,
            repo=str(self.registry.repo),
            started_at=self.started_at,
            status=status,
        )
        try:
            self.registry.write_run_record(record)
        except OSError:  # only a view: the claims themselves are on disk
            log.warning("could not write this run's status record", exc_info=True)

    def finish(self, tasks: Callable[[], list[TaskOutcome]]) -> None:
        """Leave a history record and drop this run's registry entries, once.

        Two threads may shut down at once (the CLI's, on Ctrl-C): the second returns only when
        the first is done, since the process may exit then, and the first be a daemon thread.
        """
        with self.host.lock:
            first, self.run_finished = not self.run_finished, True
        if not first:
            self.finished.wait()
            return
        try:
            self._finish(tasks)
        finally:
            self.finished.set()

    def _finish(self, tasks: Callable[[], list[TaskOutcome]]) -> None:
        with self.host.lock:
            self.step_done.wait_for(lambda: not self.committing)
            if self.lease is not None:  # no timer could end it (at interpreter shutdown)
                # Nothing runs any more: unlocked unwritten, the lease can only hold others back,
                # and finish_run below drops every hold of this run anyway.
                session, self.lease = self.lease, None
                self.registry.abort(session)
            finished = tasks()
        history = RunHistory(self.registry.run, self.started_at, self.clocks.wall(), finished)
        try:
            self.registry.finish_run(history)
        except OSError:  # the history record could not be written: a record, not a claim
            log.warning("could not write this run's history record", exc_info=True)


def lock_wait_notice(on_notice: Callable[[str], None], holder: str | None) -> None:
    """Tell ``on_notice`` who holds the registry lock a step waits for, or that it is free again."""
    text = "the registry lock is free again" if holder is None else f"waiting for the registry: {holder}"
    call_quietly(functools.partial(on_notice, text))


def _claimed(item: Hold | Place) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[tuple[str, int], ...]]:
    return item.agent, item.writes, item.reads, item.pools


def _stopped(owner: Owner) -> bool:
    """Whether a run here is stopped (SIGSTOP, Ctrl-Z): it cannot take its turn in line."""
    return owner.is_local and process_state(owner.pid) == "stopped"


@contextlib.contextmanager
def _released(lock: threading.Lock) -> Iterator[None]:
    """Release a held lock for the body, and take it again however the body ends."""
    lock.release()
    try:
        yield
    finally:
        lock.acquire()
