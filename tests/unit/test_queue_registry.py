"""TaskQueue with ``repo=``: what happens when the registry itself fails."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from queue_core import AgentTask, ClaimConflictError, TaskQueue

from ..conftest import WAIT, Gate, wait_for


def test_an_unwritable_registry_starts_nothing_then_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with TaskQueue(max_parallel=2, repo=tmp_path) as queue:
        assert queue.submit_task(AgentTask("a", "first", ["f"], lambda: 1)).result(timeout=WAIT) == 1
        claims = tmp_path / ".project-manager" / "claims.json"
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
