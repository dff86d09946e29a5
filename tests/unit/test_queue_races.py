"""TaskQueue with ``repo=``: races between a registry step and the queue's other threads.

A registry step releases the queue's lock for its file I/O; each test here widens that window
(by holding a registry step on an event, or by failing a write: see ``_faults``, a queue over
parts that fail on cue) and checks that whatever happens in it is neither lost nor acted on
twice.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queue_core import AgentTask, SubprocessAgent, TaskQueue
from queue_core import engine as engine_module
from queue_core import registry_sync as sync_module
from queue_core import timer as timer_module
from queue_core.errors import AgentAlreadyRunningError, QueueShutdownError, StateError
from queue_core.registry import Hold, Owner, Registry

from ..conftest import WAIT, Gate, wait_for
from ._faults import FaultyQueue, Interrupt

# --- helpers ----------------------------------------------------------------------------------


class _Shutdown:
    """``shutdown(wait=True)`` on its own thread, so that a test can tell whether it returns."""

    def __init__(self, queue: TaskQueue) -> None:
        self.queue = queue
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-shutdown", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.queue.shutdown(wait=True)
        except BaseException as exc:  # noqa: BLE001 - handed to the test by returned()
            self.error = exc

    def returned(self) -> bool:
        """Whether it returned within WAIT; raises what it raised. A queue that hangs is
        forgotten, so that the interpreter's exit does not wait for it too."""
        self.thread.join(WAIT)
        if self.thread.is_alive():
            engine_module._live_engines.discard(self.queue._engine)
            return False
        if self.error is not None:
            raise self.error
        return True


@pytest.fixture
def make_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FaultyQueue]]:
    """Queues on ``tmp_path``; at the end their faults are cleared, then each is shut down."""
    queues: list[FaultyQueue] = []

    def make(**kwargs: Any) -> FaultyQueue:
        queues.append(FaultyQueue(repo=tmp_path, **kwargs))
        return queues[-1]

    yield make
    monkeypatch.undo()
    for queue in queues:  # a failing test may leave the registry failing: let the queues recover
        queue.faults.failing.clear()
        _Shutdown(queue).returned()


def _registry_lockable(repo: Path) -> bool:
    """Whether another run can take the registry's lock (raises StateError if not)."""
    with Registry(repo, "other", lock_timeout=WAIT).session():
        return True


# --- a step that refuses, or is overtaken ---------------------------------------------------


def test_a_refused_try_submit_still_starts_what_a_release_during_its_step_freed(
    monkeypatch: pytest.MonkeyPatch, make_queue: Callable[..., FaultyQueue]
) -> None:
    """A release that rides on a try_submit's step is dispatched even if that try_submit is
    refused: Q, waiting for a slot, starts when X ends, not when A does."""
    monkeypatch.setattr(sync_module, "LEASE_S", 0.0)  # every step reads the registry
    queue = make_queue(max_parallel=2)
    a, x = Gate(), Gate()
    a_left = threading.Event()

    def a_body() -> Any:
        try:
            return a()
        finally:
            a_left.set()

    queue.submit_task(AgentTask("a", "runs throughout", ["a.txt"], a_body, id="A"))
    queue.submit_task(AgentTask("x", "ends during the step", ["x.txt"], x, id="X"))
    wait_for(a.started, "A")
    wait_for(x.started, "X")
    q = queue.submit_task(AgentTask("q", "waits for a slot", ["q.txt"], a_left.is_set, id="Q"))
    x_finished = queue.sched.finished("X")

    def x_ends() -> None:
        x.open()
        wait_for(x_finished, "X's return to be recorded")

    me = threading.current_thread()
    queue.faults.hold_next_begin(lambda: threading.current_thread() is me, x_ends)
    with pytest.raises(AgentAlreadyRunningError):
        queue.try_submit(AgentTask("a", "refused: a runs", ["t.txt"], lambda: None, id="T"))
    assert q.result(timeout=WAIT) is False, "Q started only once A had ended"
    a.open()
    assert queue.join(WAIT)


def test_try_submit_raises_queue_shutdown_if_the_queue_closes_during_its_step(
    monkeypatch: pytest.MonkeyPatch, make_queue: Callable[..., FaultyQueue]
) -> None:
    """A queue closed while try_submit waits for the registry starts nothing more: the task
    never runs, and shutdown(wait=True) returns."""
    monkeypatch.setattr(sync_module, "LEASE_S", 0.0)
    queue = make_queue(max_parallel=1)
    assert queue.submit_task(AgentTask("a", "leaves a worker", ["a.txt"], lambda: 1)).result(timeout=WAIT) == 1
    engine = queue._engine
    closed = threading.Event()
    wake_all = engine._wake_all

    def wake_all_and_tell() -> None:  # shutdown calls it under the lock, once closed
        wake_all()
        closed.set()

    monkeypatch.setattr(engine, "_wake_all", wake_all_and_tell)
    shutdowns: list[_Shutdown] = []

    def shut_down() -> None:
        shutdowns.append(_Shutdown(queue))
        wait_for(closed, "the queue to close")

    me = threading.current_thread()
    queue.faults.hold_next_begin(lambda: threading.current_thread() is me, shut_down)
    ran = threading.Event()
    with pytest.raises(QueueShutdownError):
        queue.try_submit(AgentTask("b", "too late", ["b.txt"], ran.set, id="T"))
    assert shutdowns[0].returned()
    assert not ran.is_set()


def test_a_retry_started_during_a_timer_pass_is_neither_failed_nor_stopped_by_that_pass(
    monkeypatch: pytest.MonkeyPatch, make_queue: Callable[..., FaultyQueue]
) -> None:
    """The timer expires attempt 1. Whichever comes first ends it: the timer's stop(), or a
    registry step of the timer's, held open until attempt 1's return is recorded (a step lets
    go of the queue's lock, so the retry may start in it). Either way the retry runs untouched:
    its result is the future's, and no stop() of that pass reaches it."""
    monkeypatch.setattr(sync_module, "LEASE_S", 0.0)  # every step reads the registry
    now = [0.0]
    queue = make_queue(max_parallel=1, clock=lambda: now[0])

    class Body:
        """Attempt 1 runs until ended; attempt 2 succeeds. Stoppable, as SubprocessAgent is."""

        def __init__(self) -> None:
            self.attempt = 0
            self.first = Gate()
            self.stopped: list[int] = []  # the attempt the scheduler had started, at each stop()

        def __call__(self) -> Any:
            self.attempt += 1
            if self.attempt == 1:
                self.first()
                raise RuntimeError("attempt 1 ended")
            return "attempt 2"

        def stop(self) -> None:
            self.stopped.append(queue._engine.sched.entry("T").attempts)
            self.first.open()

    body = Body()
    future = queue.submit_task(
        AgentTask("a", "times out once", ["a.txt"], body, id="T", timeout=1.0, retries=1, retry_delay=0.0)
    )
    wait_for(body.first.started, "attempt 1")
    first_finished = queue.sched.finished("T")

    def attempt_1_ends() -> None:
        body.first.open()
        wait_for(first_finished, "attempt 1's return to be recorded")

    queue.faults.hold_next_begin(lambda: threading.current_thread().name == "TaskQueue-timer", attempt_1_ends)
    engine = queue._engine
    with engine.lock:
        now[0] = 2.0  # past attempt 1's deadline
        engine.timer.wake()
    assert future.result(timeout=WAIT) == "attempt 2"
    assert 2 not in body.stopped, "the timer's stop for attempt 1 reached attempt 2"


@pytest.mark.parametrize("with_repo", [True, False])
def test_the_event_of_a_failed_attempt_that_will_be_retried_is_retrying_even_if_it_restarts_at_once(
    tmp_path: Path, with_repo: bool
) -> None:
    events: list[tuple[str, int]] = []
    attempts: list[int] = []

    def fails_once() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("attempt 1 failed")
        return "ok"

    repo = tmp_path if with_repo else None
    with TaskQueue(max_parallel=1, repo=repo, on_event=lambda e: events.append((e.kind, e.attempt))) as queue:
        future = queue.submit_task(AgentTask("a", "t", ["a.txt"], fails_once, id="T", retries=1, retry_delay=0.0))
        assert future.result(timeout=WAIT) == "ok"
        assert queue.join(WAIT)
    assert ("retrying", 1) in events


# --- a registry that cannot be written ------------------------------------------------------


def test_a_registry_that_cannot_be_written_is_retried_without_spinning(
    monkeypatch: pytest.MonkeyPatch, make_queue: Callable[..., FaultyQueue]
) -> None:
    """While a task runs and a start cannot be written, and after it ended: a spinning retry
    made about 60,000 attempts in 0.3 s; a paced one makes a few dozen."""
    queue = make_queue(max_parallel=2)
    unwritable = queue.faults
    gate = Gate(result=1)
    future = queue.submit_task(AgentTask("a", "runs", ["a.txt"], gate, id="T"))
    wait_for(gate.started, "T")
    unwritable.failing.set()
    later = queue.submit_task(AgentTask("b", "cannot start while its hold cannot be written", ["b.txt"], lambda: 2))
    wait_for(unwritable.failed, "the write of U's start to fail")
    assert unwritable.attempts_in(0.3) < 500
    gate.open()
    assert future.result(timeout=WAIT) == 1
    assert unwritable.attempts_in(0.3) < 500
    unwritable.failing.clear()
    assert later.result(timeout=WAIT) == 2  # the disk has room again: it runs


def test_an_agent_runs_only_once_its_hold_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_queue: Callable[..., FaultyQueue]
) -> None:
    """Before: a task started inside a lease ran before the lease was written; had the run been
    killed then, its lock would have gone with it and the hold been lost while the agent ran.
    (A plain callable dies with the run: it may still start on the lease.)"""
    monkeypatch.setattr(sync_module, "LEASE_S", 10 * WAIT)  # every start is within the lease
    look = 'grep -q "\\"task\\":\\"$PM_TASK_ID\\"" .project-manager/claims.json'
    queue = make_queue(max_parallel=4)
    futures = [
        queue.submit_task(
            AgentTask(
                f"a{i}",
                "look",
                [f"f{i}"],
                SubprocessAgent.for_task(
                    ["sh", "-c", look],
                    task_id=f"t{i}",
                    agent=f"a{i}",
                    description="look",
                    files=[f"f{i}"],
                    cwd=tmp_path,
                    log=tmp_path / f"t{i}.log",
                ),
                id=f"t{i}",
            )
        )
        for i in range(8)
    ]
    assert [future.result(timeout=WAIT) for future in futures] == [0] * 8


def test_shutdown_returns_once_no_task_runs_and_unlocks_a_registry_that_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_queue: Callable[..., FaultyQueue]
) -> None:
    """Nothing of this run is left to record: shutdown does not wait for the disk, and leaves
    the registry to the other runs."""
    queue = make_queue(max_parallel=2)
    unwritable = queue.faults
    gate = Gate(result=1)
    future = queue.submit_task(AgentTask("a", "runs", ["a.txt"], gate, id="T"))
    wait_for(gate.started, "T")
    unwritable.failing.set()
    gate.open()
    assert future.result(timeout=WAIT) == 1
    wait_for(unwritable.failed, "the write after T's release to fail")
    assert _Shutdown(queue).returned()
    assert _registry_lockable(tmp_path)


def test_try_submit_raises_the_registry_error_while_the_registry_cannot_be_written(
    monkeypatch: pytest.MonkeyPatch, make_queue: Callable[..., FaultyQueue]
) -> None:
    """try_submit starts the task now or raises: never queues it for later."""
    queue = make_queue(max_parallel=2)
    unwritable = queue.faults
    unwritable.failing.set()
    blocker = Gate()
    queue.submit_task(AgentTask("p", "started in a lease that cannot be written", ["p.txt"], blocker, id="P"))
    wait_for(unwritable.failed, "the lease write to fail")
    ran = threading.Event()
    with pytest.raises(StateError, match="No space left"):
        queue.try_submit(AgentTask("a", "now or never", ["a.txt"], ran.set, id="T"))
    unwritable.failing.clear()
    blocker.open()
    assert queue.join(WAIT)
    assert not ran.is_set()


def test_a_lease_left_over_at_the_end_of_a_run_is_never_written_without_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_queue: Callable[..., FaultyQueue]
) -> None:
    """A lease that no timer ended (at interpreter exit no thread starts) is ended once by
    the sync's finish(); a later step reads the registry afresh, under its lock, and keeps the hold
    another run took meanwhile."""
    monkeypatch.setattr(timer_module, "start_thread", lambda thread: False)
    queue = make_queue(max_parallel=2)
    unwritable = queue.faults
    assert queue.submit_task(AgentTask("a", "t", ["a.txt"], lambda: 1, id="T")).result(timeout=WAIT) == 1
    assert queue.join(WAIT)
    engine = queue._engine
    sync = engine.sync
    assert isinstance(sync, sync_module.RegistrySync)
    with engine.lock:
        assert sync.lease is None
        sync.lease = sync.registry.begin()  # as a step that recorded T's release leaves it
        sync.lease.changed = True
    assert _Shutdown(queue).returned()  # the sync's finish() ends the lease

    with Registry(tmp_path, "other-run").session() as session:
        session.add("X", "b", ("b.txt",), ())
    queue.shutdown(wait=False, cancel_pending=True)  # steps again
    assert unwritable.unlocked_writes == 0
    holds = json.loads((tmp_path / ".project-manager" / "claims.json").read_text())["holds"]
    assert [h["task"] for h in holds] == ["X"]


def test_a_second_shutdown_returns_only_once_the_first_has_dropped_the_runs_holds(
    tmp_path: Path, make_queue: Callable[..., FaultyQueue]
) -> None:
    """Two threads shut down at once (the CLI's batch thread and, on Ctrl-C, its main thread):
    the one that comes second must not return while the first still drops the run's holds,
    or the process exits (its batch thread is a daemon) with them still in claims.json."""
    queue = make_queue(max_parallel=1)
    assert queue.submit_task(AgentTask("a", "t", ["a.txt"], lambda: 1, id="T")).result(timeout=WAIT) == 1
    second: list[_Shutdown] = []
    waited: list[bool] = []

    def meanwhile() -> None:
        second.append(_Shutdown(queue))
        second[0].thread.join(0.5)  # a measure of time, not a synchronisation: it must still wait
        waited.append(second[0].thread.is_alive())

    queue.faults.in_finish_run = meanwhile
    queue.shutdown(wait=True)
    assert second[0].returned()
    holds = json.loads((tmp_path / ".project-manager" / "claims.json").read_text())["holds"]
    assert holds == []
    assert waited == [True], "the second shutdown returned while the first still finished the run"


# --- exceptions inside a registry step ------------------------------------------------------


class _UnknowableError(Exception):
    """A hold's owner whose liveness cannot be checked."""


def test_begin_unlocks_the_registry_if_checking_an_owner_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path, "mine")
    owner = Owner(socket.gethostname(), os.getpid(), 1.0, "odd")  # wrong start time: dead
    hold = Hold(owner, "z", "z", ("z",), (), 0.0)
    registry.path.write_text(json.dumps({"format": "project-manager/claims", "version": 1, "holds": [hold.to_json()]}))
    alive = Owner.alive

    def alive_or_raise(self: Owner, *args: Any) -> bool:
        if self.run == "odd":
            raise _UnknowableError(self)
        return alive(self, *args)

    monkeypatch.setattr(Owner, "alive", alive_or_raise)
    with pytest.raises(_UnknowableError):
        registry.begin()
    monkeypatch.undo()
    assert _registry_lockable(tmp_path)


def test_an_interrupt_inside_a_registry_commit_neither_leaks_the_lock_nor_orphans_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_queue: Callable[..., FaultyQueue]
) -> None:
    """The interrupt reaches the caller; the task the step started still runs, and the
    registry is written and unlocked for the other runs."""
    monkeypatch.setattr(sync_module, "LEASE_S", 0.0)  # the submit's own step writes the registry
    Registry(tmp_path, "first").finish_run(None)  # claims.json is made: the next write is the commit's
    queue = make_queue(max_parallel=2)
    queue.faults.interrupt_write_on = threading.current_thread()
    ran = threading.Event()
    with pytest.raises(Interrupt):
        queue.submit_task(AgentTask("a", "t", ["a.txt"], ran.set, id="T"))
    wait_for(ran, "T to run")
    assert queue.join(WAIT)
    assert _registry_lockable(tmp_path)
