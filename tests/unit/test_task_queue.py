"""The design note's ten unit cases, then the queue's own behaviour (threads, futures, time).

Synchronisation is by events and barriers only: a dispatch decision is made before
``submit_task`` returns, so the state right after a submit is deterministic.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import CancelledError

import pytest

from queue_core import AgentTask, TaskEvent, TaskQueue, TaskSkippedError, TaskTimeoutError
from queue_core.errors import (
    AgentAlreadyRunningError,
    CapacityError,
    ClaimConflictError,
    DependencyCycleError,
    DuplicateTaskError,
    NotATaskError,
    QueueBrokenError,
    QueueShutdownError,
    UnknownDependencyError,
)

from ..conftest import WAIT, Gate, Recorder, wait_for


def waiting_reasons(queue: TaskQueue) -> dict[str, str]:
    return {w.id: w.reason_kind for w in queue.get_status().waiting}


# --- the design note's ten cases ------------------------------------------------------------


def test_submit_single_task(queue: TaskQueue) -> None:
    future = queue.submit_task(AgentTask("code_developer", "Task 1", ["coffee_maker/a.py"], lambda: 42))
    assert future.result(timeout=WAIT) == 42


def test_parallel_different_agents(queue: TaskQueue, recorder: Recorder) -> None:
    both_running = threading.Barrier(2, timeout=WAIT)  # breaks unless both run at once
    futures = [
        queue.submit_task(recorder.task("code_developer", "a", ["coffee_maker/a.py"], both_running.wait)),
        queue.submit_task(recorder.task("project_manager", "b", ["docs/roadmap/ROADMAP.md"], both_running.wait)),
    ]
    for future in futures:
        future.result(timeout=WAIT)
    recorder.assert_safe()


def test_singleton_conflict(queue: TaskQueue, recorder: Recorder) -> None:
    gate = Gate()
    first = recorder.task("code_developer", "Task 1", ["coffee_maker/a.py"], gate, id="t1")
    second = recorder.task("code_developer", "Task 2", ["coffee_maker/b.py"], id="t2")
    f1, f2 = queue.submit_task(first), queue.submit_task(second)
    wait_for(gate.started, "t1 to start")
    status = queue.get_status()
    assert status.running_agents == ["code_developer"]
    assert status.waiting[0].reason == "code_developer busy (t1)"
    gate.open()
    assert f2.result(timeout=WAIT) == "Task 2"
    assert f1.done()
    assert not recorder.overlapped("t1", "t2")
    recorder.assert_safe()


def test_file_conflict(queue: TaskQueue, recorder: Recorder) -> None:
    gate = Gate()
    f1 = queue.submit_task(recorder.task("code_developer", "Update X", ["coffee_maker/shared.py"], gate, id="t1"))
    f2 = queue.submit_task(recorder.task("architect", "Also X", ["./coffee_maker//shared.py"], id="t2"))
    wait_for(gate.started, "t1 to start")
    [waiting] = queue.get_status().waiting
    assert waiting.reason_kind == "claim"
    assert waiting.blocked_by == "t1"
    assert waiting.reason == "coffee_maker/shared.py overlaps coffee_maker/shared.py held by code_developer (t1)"
    gate.open()
    f2.result(timeout=WAIT)
    f1.result(timeout=WAIT)
    assert not recorder.overlapped("t1", "t2")
    recorder.assert_safe()


def test_sequential_fallback(recorder: Recorder) -> None:
    """Three agents on one directory run one at a time, in submission order."""
    with TaskQueue(max_parallel=4) as queue:
        gate = Gate()
        tasks = [
            recorder.task("architect", "spec", ["docs/"], gate, id="t1"),
            recorder.task("project_manager", "roadmap", ["docs/roadmap/ROADMAP.md"], id="t2"),
            recorder.task("assistant", "guides", ["docs/**/*.md"], id="t3"),
        ]
        futures = queue.submit_tasks(tasks)
        wait_for(gate.started, "t1 to start")
        assert waiting_reasons(queue) == {"t2": "claim", "t3": "claim"}
        gate.open()
        for future in futures:
            future.result(timeout=WAIT)
    order = sorted(recorder.spans, key=lambda s: s.start)
    assert [s.task_id for s in order] == ["t1", "t2", "t3"]
    assert all(a.end is not None and a.end < b.start for a, b in itertools.pairwise(order))
    recorder.assert_safe()


def test_task_completion_releases(queue: TaskQueue) -> None:
    queue.submit_task(AgentTask("code_developer", "a", ["src/a.py"], lambda: None, id="t1")).result(timeout=WAIT)
    status = queue.get_status()
    assert status.running_agents == []
    assert status.running_files == []
    # Free again: the same agent and file can start right now.
    queue.try_submit(AgentTask("code_developer", "again", ["src/a.py"], lambda: None)).result(timeout=WAIT)


def test_status_reporting(queue: TaskQueue) -> None:
    gates = [Gate(), Gate()]
    queue.submit_task(AgentTask("code_developer", "impl", ["coffee_maker/daemon.py"], gates[0], id="t1"))
    queue.submit_task(AgentTask("project_manager", "roadmap", ["docs/roadmap/ROADMAP.md"], gates[1], id="t2"))
    queue.submit_task(AgentTask("code_developer", "next", ["coffee_maker/other.py"], lambda: None, id="t3"))
    for gate in gates:
        wait_for(gate.started, "tasks to start")
    status = queue.get_status()
    assert status.running_agents == ["code_developer", "project_manager"]
    assert status.running_files == ["coffee_maker/daemon.py", "docs/roadmap/ROADMAP.md"]
    assert status.queued_tasks == 1
    assert [(r.id, r.files) for r in status.running] == [
        ("t1", ("coffee_maker/daemon.py",)),
        ("t2", ("docs/roadmap/ROADMAP.md",)),
    ]
    assert status.waiting[0].id == "t3"
    assert status.finished_tasks == 0
    for gate in gates:
        gate.open()
    assert queue.join(WAIT)
    status = queue.get_status()
    assert status.finished_tasks == 3
    assert status.counts["succeeded"] == 3
    assert status.queued_tasks == 0


def test_error_handling(queue: TaskQueue) -> None:
    def boom() -> None:
        raise ValueError("agent crashed")

    bad = queue.submit_task(AgentTask("code_developer", "crash", ["a.py"], boom))
    good = queue.submit_task(AgentTask("architect", "fine", ["a.py"], lambda: "ok"))
    with pytest.raises(ValueError, match="agent crashed"):
        bad.result(timeout=WAIT)
    assert good.result(timeout=WAIT) == "ok"
    assert queue.join(WAIT)
    status = queue.get_status()
    assert status.failed_tasks == 1
    assert status.counts["succeeded"] == 1


def test_shutdown_graceful() -> None:
    queue = TaskQueue(max_parallel=2)
    gate = Gate()
    running = queue.submit_task(AgentTask("a", "long", ["x"], gate))
    queued = queue.submit_task(AgentTask("a", "after", ["y"], lambda: "done"))
    wait_for(gate.started, "the first task")
    shutdown_done = threading.Event()

    def shut() -> None:
        queue.shutdown(wait=True)
        shutdown_done.set()

    threading.Thread(target=shut).start()
    with pytest.raises(QueueShutdownError, match="after shutdown"):
        queue.submit_task(AgentTask("b", "late", ["z"], lambda: None))
    assert not shutdown_done.is_set()  # still waiting for the running and the queued task
    gate.open()
    wait_for(shutdown_done, "shutdown to return")
    assert running.done()
    assert queued.result(timeout=0) == "done"  # queued work is finished, not dropped


def test_shutdown_cancel_pending() -> None:
    queue = TaskQueue(max_parallel=1)
    gate = Gate()
    running = queue.submit_task(AgentTask("a", "long", ["x"], gate))
    queued = queue.submit_task(AgentTask("b", "never", ["y"], lambda: None))
    wait_for(gate.started, "the first task")
    queue.shutdown(wait=False, cancel_pending=True)
    assert queued.cancelled()
    gate.open()
    queue.shutdown(wait=True)
    assert running.done()
    assert not running.cancelled()


def test_max_parallel_limit(recorder: Recorder) -> None:
    with TaskQueue(max_parallel=2) as queue:
        gates = [Gate() for _ in range(5)]
        futures = [queue.submit_task(recorder.task(f"agent{i}", f"t{i}", [f"f{i}"], g)) for i, g in enumerate(gates)]
        status = queue.get_status()
        assert len(status.running) == 2
        assert [w.reason for w in status.waiting] == ["max_parallel (2) reached"] * 3
        for gate in gates[:2]:
            wait_for(gate.started, "the first two tasks")
        for gate in gates:
            gate.open()
        for future in futures:
            future.result(timeout=WAIT)
    assert recorder.max_running == 2
    recorder.assert_safe()


# --- beyond the note ------------------------------------------------------------------------


def test_try_submit_names_the_holder(queue: TaskQueue) -> None:
    gate = Gate()
    queue.submit_task(AgentTask("code_developer", "a", ["src/a.py"], gate, id="t1"))
    wait_for(gate.started, "t1")
    with pytest.raises(AgentAlreadyRunningError) as agent_error:
        queue.try_submit(AgentTask("code_developer", "b", ["src/b.py"], lambda: None))
    assert agent_error.value.holder == "t1"
    with pytest.raises(ClaimConflictError) as claim_error:
        queue.try_submit(AgentTask("architect", "c", ["src/"], lambda: None, id="t3"))
    assert (claim_error.value.holder, claim_error.value.held_claim, claim_error.value.claim) == (
        "t1",
        "src/a.py",
        "src/",
    )
    assert "held by task 't1' (code_developer)" in str(claim_error.value)
    assert queue.get_status().queued_tasks == 0  # nothing was queued by the failed attempts
    gate.open()


def test_try_submit_capacity() -> None:
    with TaskQueue(max_parallel=1) as queue:
        gate = Gate()
        queue.submit_task(AgentTask("a", "a", ["a"], gate))
        with pytest.raises(CapacityError):
            queue.try_submit(AgentTask("b", "b", ["b"], lambda: None))
        gate.open()


def test_reads_are_shared_writes_are_not(queue: TaskQueue, recorder: Recorder) -> None:
    readers = threading.Barrier(2, timeout=WAIT)
    gate = Gate()
    f1 = queue.submit_task(recorder.task("a", "read", [], readers.wait, reads=["docs/"], id="r1"))
    f2 = queue.submit_task(recorder.task("b", "read", [], readers.wait, reads=["docs/x.md"], id="r2"))
    f1.result(timeout=WAIT), f2.result(timeout=WAIT)
    queue.submit_task(recorder.task("c", "read", [], gate, reads=["docs/"], id="r3"))
    writer = queue.submit_task(recorder.task("d", "write", ["docs/x.md"], id="w"))
    wait_for(gate.started, "the reader")
    assert waiting_reasons(queue) == {"w": "claim"}
    gate.open()
    writer.result(timeout=WAIT)
    recorder.assert_safe()


def test_priority_then_submission_order(recorder: Recorder) -> None:
    with TaskQueue(max_parallel=1) as queue:
        gate = Gate()
        queue.submit_task(recorder.task("busy", "first", ["x"], gate, id="first"))
        wait_for(gate.started, "first")
        for task_id, priority in [("low1", 0), ("high", 5), ("low2", 0), ("mid", 1)]:
            queue.submit_task(recorder.task(task_id, task_id, [task_id], priority=priority, id=task_id))
        gate.open()
        assert queue.join(WAIT)
    order = [s.task_id for s in sorted(recorder.spans, key=lambda s: s.start)]
    assert order == ["first", "high", "mid", "low1", "low2"]


def test_dependencies_run_in_order_and_failures_skip(queue: TaskQueue, recorder: Recorder) -> None:
    def fail() -> None:
        raise RuntimeError("no spec")

    futures = queue.submit_tasks(
        [
            recorder.task("developer", "build", ["src/"], id="build", depends_on=["spec"]),
            recorder.task("architect", "spec", ["docs/spec.md"], id="spec"),
            recorder.task("qa", "test", ["tests/"], id="test", depends_on=["build"]),
            recorder.task("writer", "doc", ["docs/guide.md"], fail, id="doc"),
            recorder.task("editor", "review", ["docs/review.md"], id="review", depends_on=["doc"]),
            recorder.task("publisher", "publish", ["site/"], id="publish", depends_on=["review", "test"]),
        ]
    )
    assert queue.join(WAIT)
    build, spec, test, doc, review, publish = futures
    assert spec.result() == "spec"
    assert build.result() == "build"
    assert test.result() == "test"
    assert recorder.span("spec").end < recorder.span("build").start  # type: ignore[operator]
    assert recorder.span("build").end < recorder.span("test").start  # type: ignore[operator]
    with pytest.raises(RuntimeError):
        doc.result()
    with pytest.raises(TaskSkippedError, match="dependency doc failed"):
        review.result()
    with pytest.raises(TaskSkippedError, match="dependency review skipped"):
        publish.result()
    assert {s.task_id for s in recorder.spans} == {"spec", "build", "test", "doc"}


def test_batch_is_validated_before_anything_runs(queue: TaskQueue) -> None:
    ran = threading.Event()
    ok = AgentTask("a", "ok", ["a"], ran.set, id="ok")
    with pytest.raises(DependencyCycleError) as cycle:
        queue.submit_tasks(
            [
                ok,
                AgentTask("b", "x", ["b"], ran.set, id="x", depends_on=["y"]),
                AgentTask("c", "y", ["c"], ran.set, id="y", depends_on=["x"]),
            ]
        )
    assert cycle.value.cycle in (["x", "y", "x"], ["y", "x", "y"])
    with pytest.raises(UnknownDependencyError, match="'nope'"):
        queue.submit_tasks([AgentTask("b", "x", ["b"], ran.set, depends_on=["nope"])])
    with pytest.raises(DuplicateTaskError):
        queue.submit_tasks([AgentTask("a", "1", ["a"], ran.set, id="d"), AgentTask("b", "2", ["b"], ran.set, id="d")])
    assert queue.get_status().queued_tasks == 0
    assert not ran.is_set()
    queue.submit_task(ok).result(timeout=WAIT)  # the rejected batch left its ids free


def test_retry_releases_claims_while_waiting(recorder: Recorder) -> None:
    attempts: list[int] = []
    retry_gate = threading.Event()
    other_ran = threading.Event()

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("rate limited")
        return "ok"

    with TaskQueue(max_parallel=2) as queue:
        # Back-off long enough that "other" runs in the gap, proving the claim was released.
        future = queue.submit_task(recorder.task("a", "flaky", ["f.py"], flaky, retries=2, retry_delay=0.2, id="flaky"))

        def other() -> None:
            other_ran.set()
            assert retry_gate.wait(WAIT)

        queue.submit_task(recorder.task("b", "other", ["f.py"], other, id="other"))
        wait_for(other_ran, "the other task to take the released file")
        assert waiting_reasons(queue)["flaky"] in ("retry", "claim")
        retry_gate.set()
        assert future.result(timeout=WAIT) == "ok"
    assert len(attempts) == 2
    recorder.assert_safe()


def test_timed_out_callable_keeps_its_claims_until_it_returns(queue: TaskQueue, recorder: Recorder) -> None:
    from queue_core import TaskTimeoutError

    gate = Gate()
    slow = queue.submit_task(recorder.task("a", "slow", ["f.py"], gate, timeout=0.05, id="slow"))
    after = queue.submit_task(recorder.task("b", "after", ["f.py"], id="after"))
    with pytest.raises(TaskTimeoutError):
        slow.result(timeout=WAIT)
    status = queue.get_status()
    assert status.running[0].timed_out is True
    assert status.running_files == ["f.py"]
    assert waiting_reasons(queue) == {"after": "claim"}
    gate.open()
    after.result(timeout=WAIT)
    assert queue.join(WAIT)
    assert queue.get_status().counts["timed_out"] == 1
    recorder.assert_safe()


def test_cancel_queued_task_and_future_cancel(queue: TaskQueue) -> None:
    gate = Gate()
    queue.submit_task(AgentTask("a", "hold", ["f"], gate, id="hold"))
    waiting = queue.submit_task(AgentTask("b", "wait", ["f"], lambda: None, id="wait"))
    dependent = queue.submit_task(AgentTask("c", "dep", ["g"], lambda: None, id="dep", depends_on=["wait"]))
    by_future = queue.submit_task(AgentTask("d", "wait2", ["f"], lambda: None, id="wait2"))
    assert queue.cancel("wait") is True
    assert waiting.cancelled()
    with pytest.raises(TaskSkippedError, match="dependency wait cancelled"):
        dependent.result(timeout=WAIT)
    assert by_future.cancel()  # a caller cancelling the future directly
    assert queue.get_status().queued_tasks == 0
    wait_for(gate.started, "hold to run")
    assert queue.cancel("hold") is False  # a plain callable, once running, cannot be stopped
    gate.open()
    assert queue.join(WAIT)
    with pytest.raises(KeyError):
        queue.cancel("no-such-task")


class StoppableWork:
    """An execute_fn with a stop() hook, like a subprocess agent."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()

    def __call__(self) -> str:
        self.started.set()
        assert self.stopped.wait(WAIT)
        return "stopped early"

    def stop(self) -> None:
        self.stopped.set()


def test_cancel_running_stoppable_task(queue: TaskQueue) -> None:
    work = StoppableWork()
    future = queue.submit_task(AgentTask("a", "long", ["f"], work, id="long"))
    wait_for(work.started, "the task")
    assert queue.cancel("long") is True
    with pytest.raises(CancelledError):
        future.result(timeout=WAIT)
    assert queue.get_status().counts["cancelled"] == 1


def test_timeout_stops_a_stoppable_task(queue: TaskQueue) -> None:
    from queue_core import TaskTimeoutError

    work = StoppableWork()
    future = queue.submit_task(AgentTask("a", "long", ["f"], work, timeout=0.05))
    with pytest.raises(TaskTimeoutError):
        future.result(timeout=WAIT)
    wait_for(work.stopped, "stop() to be called")
    assert queue.join(WAIT)


def test_events_and_a_failing_listener(caplog: pytest.LogCaptureFixture) -> None:
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def listen(event: object) -> None:
        with lock:
            events.append((event.kind, event.task_id))  # type: ignore[attr-defined]
        if event.kind == "started":  # type: ignore[attr-defined]
            raise RuntimeError("listener bug")

    with TaskQueue(max_parallel=2, on_event=listen) as queue:
        queue.submit_task(AgentTask("a", "ok", ["a"], lambda: None, id="ok")).result(timeout=WAIT)
        assert queue.join(WAIT)
    assert events == [("started", "ok"), ("succeeded", "ok")]
    assert "listener bug" in caplog.text  # logged, never raised into the queue


def test_task_without_files_claims_its_owned_paths() -> None:
    from queue_core import FileOwnership

    ownership = FileOwnership({"code_developer": ["src/**"], "assistant": []})
    with TaskQueue(max_parallel=4, ownership=ownership) as queue:
        gate = Gate()
        queue.submit_task(AgentTask("code_developer", "anything in src", [], gate, id="dev"))
        wait_for(gate.started, "dev")
        assert queue.get_status().running_files == ["src/**"]
        with pytest.raises(ClaimConflictError):
            queue.try_submit(AgentTask("architect", "x", ["src/x.py"], lambda: None))
        queue.try_submit(AgentTask("assistant", "read-only helper", [], lambda: None)).result(timeout=WAIT)
        with pytest.raises(ClaimConflictError):  # an unregistered agent owns everything
            queue.try_submit(AgentTask("stranger", "?", [], lambda: None))
        gate.open()


# --- regressions found in review ------------------------------------------------------------


def test_a_rejected_duplicate_id_leaves_the_live_task_alone(queue: TaskQueue) -> None:
    gate = Gate(result="first")
    first = queue.submit_task(AgentTask("a", "first", ["x"], gate, id="t1"))
    with pytest.raises(DuplicateTaskError):
        queue.submit_task(AgentTask("b", "impostor", ["y"], lambda: None, id="t1"))
    gate.open()
    assert first.result(timeout=WAIT) == "first"
    assert queue.join(WAIT)


def test_timeout_of_a_task_started_by_the_worker_that_freed_it(queue: TaskQueue) -> None:
    """B starts on the worker whose task A just returned; its deadline must still be watched."""
    from queue_core import TaskTimeoutError

    gate, stuck = Gate(), threading.Event()
    queue.submit_task(AgentTask("a", "A", ["x"], gate, id="A"))
    second = queue.submit_task(AgentTask("a", "B", ["y"], lambda: stuck.wait(WAIT), id="B", timeout=0.05))
    gate.open()
    with pytest.raises(TaskTimeoutError):
        second.result(timeout=WAIT)
    stuck.set()


def test_waiting_on_the_queue_from_its_own_threads_does_not_deadlock() -> None:
    queue = TaskQueue(max_parallel=1)
    outcomes: list[str] = []
    shutdown_returned = threading.Event()

    def on_first_done(_: object) -> None:
        try:
            queue.join()
        except RuntimeError as exc:
            outcomes.append(str(exc))
        queue.shutdown(wait=True)  # cannot wait for itself: returns, the work still finishes
        shutdown_returned.set()

    gate = Gate()
    first = queue.submit_task(AgentTask("a", "first", ["x"], gate))
    second = queue.submit_task(AgentTask("a", "second", ["y"], lambda: "second"))
    first.add_done_callback(on_first_done)
    gate.open()
    wait_for(shutdown_returned, "shutdown from a callback to return")
    assert second.result(timeout=WAIT) == "second"
    assert outcomes == ["join() from a task, callback or listener of this queue would wait for itself"]
    queue.shutdown(wait=True)


def test_join_waits_until_results_and_events_are_delivered() -> None:
    in_listener, leave_listener = threading.Event(), threading.Event()

    def slow_listener(event: object) -> None:
        if event.kind == "succeeded":  # type: ignore[attr-defined]
            in_listener.set()
            assert leave_listener.wait(WAIT)

    with TaskQueue(max_parallel=1, on_event=slow_listener) as queue:
        future = queue.submit_task(AgentTask("a", "x", ["x"], lambda: 1))
        wait_for(in_listener, "the listener")
        assert future.done()
        assert queue.join(timeout=0.01) is False  # the event is still being delivered
        leave_listener.set()
        assert queue.join(WAIT)


def test_a_dropped_queue_finishes_its_work_and_frees_its_threads() -> None:
    import gc

    queue = TaskQueue(max_parallel=2)
    futures = [queue.submit_task(AgentTask(f"a{i}", "x", [f"f{i}"], lambda: "done")) for i in range(4)]
    threads = list(queue._engine.executor.workers)
    del queue
    gc.collect()
    assert [f.result(timeout=WAIT) for f in futures] == ["done"] * 4
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()


def test_a_timeout_of_centuries_neither_overflows_nor_stops_the_timer() -> None:
    """Before: the timer thread died of OverflowError, and with it every later timeout and retry."""
    with TaskQueue(max_parallel=1) as queue:
        assert queue.submit_task(AgentTask("a", "t", ["x"], lambda: 1, timeout=1e10)).result(timeout=WAIT) == 1
        gate = Gate()
        late = queue.submit_task(AgentTask("a", "t", ["x"], gate, timeout=0.2))
        with pytest.raises(TaskTimeoutError):
            late.result(timeout=WAIT)  # the timer still runs
        gate.open()


def test_an_attempt_that_fails_as_the_queue_is_aborted_is_not_retried() -> None:
    """Before: a task failing between abort()'s steps went to its retry, and ran again, for
    minutes after Ctrl-C."""
    gate = Gate()
    attempts: list[int] = []

    def fails() -> None:
        attempts.append(1)
        gate()
        raise RuntimeError("failed")

    queue = TaskQueue(max_parallel=1)
    future = queue.submit_task(AgentTask("a", "fails", ["x"], fails, retries=3, retry_delay=0.0))
    wait_for(gate.started, "the first attempt")
    queue.abort()  # a plain callable cannot be stopped: it fails once it is let go
    gate.open()
    queue.shutdown(wait=True)
    assert attempts == [1]
    assert future.cancelled() or isinstance(future.exception(timeout=WAIT), CancelledError)


def test_a_task_retried_past_the_back_off_s_float_range_still_finishes() -> None:
    """Before: retry 1025's back-off raised OverflowError in the worker, whose death left the
    future unresolved and join() waiting for ever."""
    attempts: list[int] = []

    def fails() -> None:
        attempts.append(1)
        raise RuntimeError("still failing")

    with TaskQueue(max_parallel=1) as queue:
        future = queue.submit_task(AgentTask("a", "fails", ["x"], fails, retries=1100, retry_delay=0.0))
        assert isinstance(future.exception(timeout=WAIT), RuntimeError)
        assert queue.join(WAIT)
    assert len(attempts) == 1101


@pytest.mark.parametrize("step", ["finish", "expire"])
def test_an_unexpected_error_in_a_queue_thread_fails_the_futures_and_lets_join_return(
    step: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the worker (finish) or the timer (expire) must not leave futures unresolved.

    The scheduler's state may be half-updated, so the queue stops: every unresolved future
    fails, nothing more starts, join() and shutdown() return.
    """
    queue = TaskQueue(max_parallel=1)
    sched = queue._engine.sched
    real = getattr(sched, step)

    def raise_once(*args: object) -> object:
        monkeypatch.setattr(sched, step, real)
        raise RuntimeError("injected")

    monkeypatch.setattr(sched, step, raise_once)  # expire runs only once a deadline is due
    gate = Gate()
    first = queue.submit_task(AgentTask("a", "first", ["x"], gate, timeout=0.05 if step == "expire" else None))
    second = queue.submit_task(AgentTask("a", "second", ["x"], lambda: 2))  # waits for the first
    if step == "finish":
        gate.open()
    assert queue.join(WAIT)
    for future in (first, second):
        error = future.exception(timeout=WAIT)
        assert isinstance(error, QueueBrokenError)
        assert isinstance(error.__cause__, RuntimeError)
    assert "injected" in caplog.text
    with pytest.raises(QueueShutdownError):
        queue.submit_task(AgentTask("b", "late", ["y"], lambda: 3))
    gate.open()
    queue.shutdown(wait=True)


@pytest.mark.parametrize(
    ("submit", "argument", "message"),
    [
        ("submit_task", "str", "submit_task() expects an AgentTask, got str"),
        ("submit_task", None, "submit_task() expects an AgentTask, got NoneType"),
        ("try_submit", "str", "try_submit() expects an AgentTask, got str"),
        ("submit_tasks", "ab", "submit_tasks() expects a sequence of AgentTasks, got str"),
        ("submit_tasks", {"a": 1}, "submit_tasks() expects a sequence of AgentTasks, got dict"),
        ("submit_tasks", "a task", "submit_tasks() expects a sequence of AgentTasks, got AgentTask"),
        ("submit_tasks", ["a task", "x"], "submit_tasks() expects a sequence of AgentTasks, got str at index 1"),
    ],
)
def test_the_submit_methods_say_what_they_expect(queue: TaskQueue, submit: str, argument: object, message: str) -> None:
    """Before: submit_task("str") raised AttributeError from deep inside the scheduler."""
    ran = threading.Event()
    task = AgentTask("a", "t", ["x"], ran.set, id="t")
    if argument == "a task":
        argument = task
    elif isinstance(argument, list):
        argument = [task, *argument[1:]]
    with pytest.raises(NotATaskError) as info:
        getattr(queue, submit)(argument)
    assert isinstance(info.value, TypeError)
    assert str(info.value) == message
    assert queue.get_status().queued_tasks == 0
    assert not ran.is_set()
    queue.submit_task(task).result(timeout=WAIT)  # nothing of a refused call was queued


def test_events_carry_what_a_summary_needs() -> None:
    """Issue 11: a listener learns the description and, at the end, the last attempt's duration."""
    events: list[TaskEvent] = []

    def boom() -> None:
        raise RuntimeError("boom")

    with TaskQueue(2, on_event=events.append) as queue:
        ok = queue.submit_task(AgentTask("a", "write the parser", ["p.py"], lambda: 1, id="ok"))
        bad = queue.submit_task(AgentTask("b", "break", ["q.py"], boom, id="bad"))
        skipped = queue.submit_task(AgentTask("c", "after bad", ["r.py"], lambda: 1, id="skip", depends_on=["bad"]))
        assert ok.result(WAIT) == 1
        with pytest.raises(RuntimeError):
            bad.result(WAIT)
        with pytest.raises(TaskSkippedError):
            skipped.result(WAIT)
        queue.join(WAIT)
    by = {(e.task_id, e.kind): e for e in events}
    assert by["ok", "started"].description == "write the parser"
    assert by["ok", "started"].duration_s is None
    assert by["ok", "succeeded"].description == "write the parser"
    duration = by["ok", "succeeded"].duration_s
    assert duration is not None
    assert duration >= 0
    assert by["bad", "failed"].error == "RuntimeError: boom"
    assert by["bad", "failed"].duration_s is not None
    assert (by["skip", "skipped"].description, by["skip", "skipped"].duration_s) == ("after bad", None)


def test_the_timer_started_for_a_timed_task_lives_until_the_queue_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    """At interpreter exit (Python 3.12+) no thread starts. Before: the timer ended whenever
    nothing was timed, and could not come back for a retry due later, which never ran."""
    from queue_core import timer as timer_module

    gate = Gate()
    calls: list[int] = []

    def fails_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            gate()
            raise RuntimeError("once")
        return "ok"

    queue = TaskQueue(max_parallel=1)
    try:
        future = queue.submit_task(AgentTask("a", "retried", ["x"], fails_once, retries=1, retry_delay=0.01))
        wait_for(gate.started, "the first attempt")
        monkeypatch.setattr(timer_module, "start_thread", lambda thread: False)  # as at exit
        gate.open()
        assert future.result(timeout=WAIT) == "ok"
    finally:
        queue.shutdown(wait=True, cancel_pending=True)  # a retry never run is cancelled: no hang
