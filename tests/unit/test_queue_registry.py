"""TaskQueue with ``repo=``: what happens when the registry itself fails."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from queue_core import AgentTask, TaskQueue, repo_status
from queue_core import registry_sync as sync_module
from queue_core.errors import ClaimConflictError, StateError
from queue_core.registry import Registry

from ..conftest import WAIT, Gate, eventually, wait_for
from ._faults import FaultyQueue


def test_a_registry_replaced_by_a_directory_is_put_aside_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: a claims.json that was no regular file failed every step until a person removed it."""
    with TaskQueue(max_parallel=2, repo=tmp_path) as queue:
        assert queue.submit_task(AgentTask("a", "first", ["f"], lambda: 1)).result(timeout=WAIT) == 1
        claims = tmp_path / ".project-manager" / "claims.json"
        with Registry(tmp_path, "tamperer").session():  # the queue's lease has ended: it is on disk
            claims.unlink()
            claims.mkdir()
        with caplog.at_level(logging.WARNING, logger="queue_core"):
            assert queue.submit_task(AgentTask("b", "second", ["g"], lambda: 2)).result(timeout=WAIT) == 2
        assert "damaged or lost (it is not a regular file)" in caplog.text
        assert claims.is_file()
        assert [p.is_dir() for p in claims.parent.glob("claims.json.damaged-*")] == [True]


class _Signal(logging.Handler):
    """Sets ``seen`` when a record is logged: a test waits for an event, not for time."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.set()


def test_a_lease_that_cannot_be_written_keeps_the_registry_locked_until_it_is(tmp_path: Path) -> None:
    """Tasks may start inside a lease before it is written; if the write then fails, nobody
    else may read the registry without them, and nothing more starts until it is written."""
    signal = _Signal()
    logging.getLogger("queue_core").addHandler(signal)
    try:
        with FaultyQueue(max_parallel=3, repo=tmp_path) as queue:
            failing = queue.faults.failing
            first, second = Gate(), Gate()
            queue.submit_task(AgentTask("a", "runs throughout", ["a.txt"], first, id="first"))
            wait_for(first.started, "first")
            with Registry(tmp_path, "reader").session() as session:  # waits for the lease to be written
                assert [h.task for h in session.holds.values()] == ["first"]
            outsider = Registry(tmp_path, "outsider", lock_timeout=0.05)
            failing.set()
            queue.submit_task(
                AgentTask("b", "starts in a lease, or once it is written", ["b.txt"], second, id="second")
            )
            wait_for(signal.seen, "the failed write to be reported")

            with pytest.raises(StateError, match="not free"):  # still locked: what runs is not on disk
                outsider.begin()
            third = queue.submit_task(AgentTask("c", "must wait for the write", ["c.txt"], lambda: 3, id="third"))
            status = queue.get_status()
            assert "No space left" in status.registry_error
            assert "third" not in [t.id for t in status.running]

            failing.clear()  # the timer writes the lease, unlocks, and starts what waits
            assert third.result(timeout=WAIT) == 3
            assert queue.get_status().registry_error is None
            with Registry(tmp_path, "reader").session() as session:
                assert "first" in [h.task for h in session.holds.values()]
            first.open()
            second.open()
    finally:
        logging.getLogger("queue_core").removeHandler(signal)


@pytest.mark.parametrize("exists", [True, False])
def test_a_plain_path_covers_what_is_below_it_whether_or_not_it_exists(tmp_path: Path, exists: bool) -> None:
    """A forgotten slash is never unsafe, even on a directory the first task is to create."""
    if exists:
        (tmp_path / "src" / "parser").mkdir(parents=True)
    with TaskQueue(max_parallel=2, repo=tmp_path) as queue:
        gate = Gate()
        queue.submit_task(AgentTask("a", "the parser package", ["src/parser"], gate, id="pkg"))
        wait_for(gate.started, "pkg")
        assert queue.get_status().running_files == ["src/parser"]  # as written
        with pytest.raises(ClaimConflictError, match="'src/parser'"):
            queue.try_submit(AgentTask("b", "one module", ["src/parser/lexer.py"], lambda: None))
        queue.try_submit(AgentTask("c", "a file, not a directory", ["src/parser.py"], lambda: None)).result(WAIT)
        gate.open()


def test_a_step_waits_for_the_registry_without_the_queues_lock_and_decides_for_all_who_asked(tmp_path: Path) -> None:
    """Group commit: while one step waits for the registry's lock (another process holds it),
    the queue still answers, and the dispatches asked for meanwhile ride on that step."""
    in_begin, proceed = threading.Event(), threading.Event()

    def slow_begin() -> None:
        in_begin.set()
        assert proceed.wait(WAIT), "the test never let the step go on"

    with FaultyQueue(max_parallel=3, repo=tmp_path) as queue:
        queue.faults.hold_next_begin(lambda: True, slow_begin)
        # How many registry reads came before each start, counted as the scheduler starts it: a
        # body would read later, after the step at the lease's end, 10 ms on a loaded machine.
        queue.sched.reads = lambda: queue.faults.begins
        futures: list[Future[Any]] = []

        def body() -> int:
            return 1

        first = threading.Thread(target=lambda: futures.append(queue.submit_task(AgentTask("a", "1", ["a"], body))))
        first.start()
        wait_for(in_begin, "the first step to wait for the registry")

        batch = [AgentTask("b", "2", ["b"], body), AgentTask("c", "3", ["c"], body)]
        more = threading.Thread(target=lambda: futures.extend(queue.submit_tasks(batch)))
        more.start()
        wait_for(queue.sched.batch_added, "the second submit")

        answered: list[dict[str, Any]] = []
        asker = threading.Thread(target=lambda: answered.append(queue.get_status()))
        asker.start()
        asker.join(WAIT)
        assert answered, "get_status waited for the registry step"
        assert answered[0].queued_tasks == 3
        assert answered[0].running == ()

        proceed.set()
        for thread in (first, more):
            thread.join(WAIT)
            assert not thread.is_alive()
        assert [f.result(timeout=WAIT) for f in futures] == [1, 1, 1]
        assert sorted(queue.sched.started_after.values()) == [1, 1, 1]  # one step started all three


def test_steps_within_a_lease_read_nothing_and_other_processes_wait_for_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module, "LEASE_S", 10 * WAIT)  # only the queue's end ends this lease
    outsider = Registry(tmp_path, "outsider", lock_timeout=0.05)
    with FaultyQueue(max_parallel=2, repo=tmp_path) as queue:
        first, second = Gate(), Gate()
        queue.submit_task(AgentTask("a", "first", ["a.txt"], first, id="first"))
        wait_for(first.started, "first")
        queue.submit_task(AgentTask("b", "second", ["b.txt"], second, id="second"))
        wait_for(second.started, "second")
        assert queue.faults.begins == 1  # the second start was decided in memory, within the lease
        with pytest.raises(StateError, match="not free"):
            outsider.begin()  # locked: nobody reads the registry before the lease is written
        first.open()
        second.open()
        assert queue.join(WAIT)
    # Shutting down ended the lease: written, then unlocked.
    with outsider.session() as session:
        assert session.holds == {}
    assert len(list((tmp_path / ".project-manager" / "history").glob("*.json"))) == 1


def test_try_submit_raises_when_the_registry_cannot_be_read(tmp_path: Path) -> None:
    with FaultyQueue(max_parallel=2, repo=tmp_path) as queue:
        queue.faults.unreadable = True
        with pytest.raises(StateError, match=r"claims\.json"):
            queue.try_submit(AgentTask("a", "now or never", ["f"], lambda: 1, id="a"))
        queue.faults.unreadable = False
        assert queue.try_submit(AgentTask("a", "now or never", ["f"], lambda: 1, id="a")).result(WAIT) == 1


def test_a_status_record_describes_the_best_ranked_waiting_tasks_and_counts_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module, "RECORD_INTERVAL_S", 0.0)  # every step writes the record
    with TaskQueue(max_parallel=1, repo=tmp_path) as queue:
        gate = Gate()
        queue.submit_task(AgentTask("holder", "holds f", ["f"], gate, id="holder"))
        wait_for(gate.started, "holder")
        many = sync_module.RECORD_WAITING_MAX + 50
        queue.submit_tasks([AgentTask(f"w{i}", "needs f", ["f"], lambda: None, id=f"w{i}") for i in range(many)])
        status = repo_status(tmp_path)
        [run] = status.runs
        assert status.queued_tasks == run.queued == many
        assert [t.id for t in run.waiting] == [f"w{i}" for i in range(sync_module.RECORD_WAITING_MAX)]
        gate.open()
        assert queue.join(WAIT)


def test_a_step_that_starts_nothing_unlocks_the_registry_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a busy queue keeps a lease: one whose task waits for another run lets it in at once."""
    monkeypatch.setattr(sync_module, "LEASE_S", 10 * WAIT)
    other = Registry(tmp_path, "other-run", lock_timeout=0.05)
    with other.session() as session:
        session.add("theirs", "b", ("f",), ())
    with TaskQueue(max_parallel=2, repo=tmp_path) as queue:
        try:
            future = queue.submit_task(AgentTask("a", "needs f", ["f"], lambda: "ran", id="mine"))
            assert queue.get_status().waiting[0].reason_kind == "claim"
            with other.session() as session:  # not locked: the lock_timeout would raise
                session.remove("theirs")
            assert future.result(timeout=WAIT) == "ran"
        finally:
            queue.shutdown(wait=False, cancel_pending=True)  # a failure must not wait for "mine"


def test_an_abort_during_a_lease_writes_it_since_what_started_on_it_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: abort() unlocked a lease unwritten while the callable started on it ran on, and
    another run took its file at once."""
    monkeypatch.setattr(sync_module, "LEASE_S", 10 * WAIT)  # only the abort ends this lease
    gate = Gate()
    queue = TaskQueue(max_parallel=2, repo=tmp_path)
    try:
        queue.submit_task(AgentTask("a", "cannot be stopped", ["hot.txt"], gate, id="a1"))
        wait_for(gate.started, "a1")
        queue.abort()  # Ctrl-C
        with Registry(tmp_path, "other").session() as session:  # once the lease has ended
            assert [h.task for h in session.holds.values()] == ["a1"]
    finally:
        gate.open()
        queue.shutdown(wait=True)


def test_a_run_beats_while_what_it_started_runs_after_an_abort(tmp_path: Path) -> None:
    """Before: an aborted run stopped beating while its callable ran on: runs in other
    containers took it for dead after stale_after and took its file."""
    gate = Gate()
    queue = TaskQueue(max_parallel=2, repo=tmp_path)
    try:
        queue.submit_task(AgentTask("a", "cannot be stopped", ["hot.txt"], gate, id="a1"))
        wait_for(gate.started, "a1")
        queue.abort()
        assert queue.registry is not None
        record = queue.registry.dir / "runs" / f"{queue.registry.run}.json"
        before = record.stat().st_mtime_ns
        eventually("a heartbeat", lambda: record.stat().st_mtime_ns != before)
    finally:
        gate.open()
        queue.shutdown(wait=True)


def test_a_run_that_only_waits_beats_too(tmp_path: Path) -> None:
    """Before: only a run with tasks running beat, so one waiting in another container lost
    its place in line once the holder's task outlasted stale_after."""
    gate = Gate()
    with TaskQueue(max_parallel=1, repo=tmp_path) as holder, TaskQueue(max_parallel=1, repo=tmp_path) as waiter:
        holder.submit_task(AgentTask("a", "holds", ["hot.txt"], gate, id="a1"))
        wait_for(gate.started, "a1")
        registry = waiter.registry
        assert registry is not None
        beat = threading.Event()
        heartbeat = registry.heartbeat
        registry.heartbeat = lambda: (heartbeat(), beat.set())  # type: ignore[method-assign]
        waiter.submit_task(AgentTask("b", "waits", ["hot.txt"], lambda: None, id="b1"))
        wait_for(beat, "the waiting run to beat")
        gate.open()
