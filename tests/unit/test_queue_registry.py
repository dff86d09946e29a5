"""TaskQueue with ``repo=``: what happens when the registry itself fails."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from filelock import Timeout

from queue_core import AgentTask, ClaimConflictError, StateError, TaskQueue
from queue_core.registry import Registry

from ..conftest import WAIT, Gate, wait_for


def test_an_unreadable_registry_starts_nothing_then_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with TaskQueue(max_parallel=2, repo=tmp_path) as queue:
        assert queue.submit_task(AgentTask("a", "first", ["f"], lambda: 1)).result(timeout=WAIT) == 1
        claims = tmp_path / ".project-manager" / "claims.json"
        with Registry(tmp_path, "tamperer").session():  # the queue's lease has ended: it is on disk
            claims.unlink()
            claims.mkdir()  # neither readable as a file nor replaceable: every registry step fails
        with caplog.at_level(logging.ERROR, logger="queue_core"):
            future = queue.submit_task(AgentTask("b", "second", ["g"], lambda: 2))
        status = queue.get_status()
        assert status["running"] == []
        assert "claims.json" in status["registry_error"]
        assert not future.done()
        assert "cannot be updated" in caplog.text
        claims.rmdir()  # writable again: the queue retries on its own
        assert future.result(timeout=WAIT) == 2
        assert queue.get_status()["registry_error"] is None


class _Signal(logging.Handler):
    """Sets ``seen`` when a record is logged: a test waits for an event, not for time."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.set()


def test_a_lease_that_cannot_be_written_keeps_the_registry_locked_until_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks may start inside a lease before it is written; if the write then fails, nobody
    else may read the registry without them, and nothing more starts until it is written."""
    failing = threading.Event()
    write = Registry._write

    def flaky_write(self: Registry, path: Path, data: dict[str, Any], *, durable: bool = False) -> None:
        if failing.is_set():
            raise StateError(path, "cannot write: No space left on device")
        write(self, path, data, durable=durable)

    monkeypatch.setattr(Registry, "_write", flaky_write)
    signal = _Signal()
    logging.getLogger("queue_core").addHandler(signal)
    try:
        with TaskQueue(max_parallel=3, repo=tmp_path) as queue:
            first, second = Gate(), Gate()
            queue.submit_task(AgentTask("a", "runs throughout", ["a.txt"], first, id="first"))
            wait_for(first.started, "first")
            with Registry(tmp_path, "reader").session() as session:  # waits for the lease to be written
                assert [h.task for h in session.holds.values()] == ["first"]
            failing.set()
            queue.submit_task(
                AgentTask("b", "starts in a lease, or once it is written", ["b.txt"], second, id="second")
            )
            wait_for(signal.seen, "the failed write to be reported")

            outsider = Registry(tmp_path, "outsider", lock_timeout=0.05)
            with pytest.raises(Timeout):  # still locked: what runs is not on disk
                outsider.begin()
            third = queue.submit_task(AgentTask("c", "must wait for the write", ["c.txt"], lambda: 3, id="third"))
            status = queue.get_status()
            assert "No space left" in status["registry_error"]
            assert "third" not in [t["id"] for t in status["running"]]

            failing.clear()  # the timer writes the lease, unlocks, and starts what waits
            assert third.result(timeout=WAIT) == 3
            assert queue.get_status()["registry_error"] is None
            with Registry(tmp_path, "reader").session() as session:
                assert "first" in [h.task for h in session.holds.values()]
            first.open()
            second.open()
    finally:
        logging.getLogger("queue_core").removeHandler(signal)


def test_a_plain_path_naming_a_directory_covers_its_contents(tmp_path: Path) -> None:
    (tmp_path / "src" / "parser").mkdir(parents=True)
    with TaskQueue(max_parallel=2, repo=tmp_path) as queue:
        gate = Gate()
        queue.submit_task(AgentTask("a", "the parser package", ["src/parser"], gate, id="pkg"))
        wait_for(gate.started, "pkg")
        assert queue.get_status()["running_files"] == ["src/parser/"]
        with pytest.raises(ClaimConflictError, match="'src/parser/'"):
            queue.try_submit(AgentTask("b", "one module", ["src/parser/lexer.py"], lambda: None))
        queue.try_submit(AgentTask("c", "a file, not a directory", ["src/parser.py"], lambda: None)).result(WAIT)
        gate.open()
