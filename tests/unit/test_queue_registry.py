"""TaskQueue with ``repo=``: what happens when the registry itself fails."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from queue_core import AgentTask, TaskQueue

from ..conftest import WAIT


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
