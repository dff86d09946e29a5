"""Hostile unit tests of issue 15: what the installed-command tests in
tests/integration/test_attack_i15.py found, at the level of the functions that decide."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import junit
from cli.config import ConfigError
from cli.events import check_copy
from queue_core.statedir import is_inside
from queue_core.task import TaskState, ended_error

from ..conftest import git_repo


def _targets(state: Path, outside: Path) -> list[Path]:
    """Paths that land in ``state``: typed, through ``..``, through a symlink, to a file to be."""
    (state / "logs" / "run").mkdir(parents=True)
    (state / "claims.json").write_text("{}")
    link = outside / "link.jsonl"
    link.symlink_to(state / "claims.json")
    dir_link = outside / "state-link"
    dir_link.symlink_to(state)
    return [
        state / "claims.json",
        state / "logs" / "run" / "t1.log",
        state / "logs" / "missing" / ".." / "new.xml",
        state,
        link,
        dir_link / "history.json",
    ]


def test_a_path_in_the_state_directory_is_refused_for_events_and_junit(tmp_path: Path) -> None:
    state = tmp_path / "repo" / ".git" / "project-manager"
    outside = tmp_path / "out"
    outside.mkdir()
    for target in _targets(state, outside):
        assert is_inside(target, state), target
        with pytest.raises(ConfigError, match="is inside the state directory"):
            check_copy(str(target), state)
        with pytest.raises(ConfigError, match="is inside the state directory"):
            junit.check_path(target, state)
    assert (state / "claims.json").read_text() == "{}"


def test_a_path_beside_the_state_directory_is_not_in_it(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {})
    state = repo / ".git" / "project-manager"
    for target in (repo / "events.jsonl", repo / ".git" / "project-manager-2.jsonl", tmp_path / "x.xml"):
        assert not is_inside(target, state), target
        check_copy(str(target), state)
        junit.check_path(target, state)
    check_copy("-", state)  # stdout


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (TaskState.SUCCEEDED, None),
        (TaskState.FAILED, "my own words"),
        (TaskState.TIMED_OUT, "my own words"),
        (TaskState.RATE_LIMITED, "my own words"),
        (TaskState.CANCELLED, "not retried: fail-fast after t3 failed"),
        (TaskState.SKIPPED, "not retried: fail-fast after t3 failed"),
    ],
)
def test_a_task_skipped_or_cancelled_is_told_why_not_its_earlier_error(state: TaskState, expected: str | None) -> None:
    """--json, the journal, ``show``, JUnit and the hooks gave a task that fail-fast cancelled
    while it waited to retry the error its first attempt reported, as if that ended it."""
    assert ended_error(state, "not retried: fail-fast after t3 failed", "my own words") == expected
    assert ended_error(state, None, None) is None
