"""AgentTask on its own: what it accepts, and the retry back-off."""

from __future__ import annotations

import math

import pytest

from queue_core import AgentTask
from queue_core.errors import InvalidTaskError, InvalidTaskIdError


@pytest.mark.parametrize(
    ("delay", "backoff", "max_delay", "expected"),
    [
        (1.0, 2.0, 60.0, 60.0),
        (0.0, 2.0, 60.0, 0.0),  # no delay stays none, however far the back-off has grown
        (1.0, 2.0, math.inf, math.inf),
        (1.0, math.inf, 60.0, 60.0),
        (math.inf, 2.0, 60.0, 60.0),
        (1.0, 1.0, 60.0, 1.0),
    ],
)
@pytest.mark.parametrize("attempt", [1025, 10**9])
def test_the_back_off_of_a_late_retry_is_capped_without_overflowing(
    delay: float, backoff: float, max_delay: float, expected: float, attempt: int
) -> None:
    """Before: retry_delay * retry_backoff ** (attempt - 1) raised OverflowError near attempt 1025."""
    task = AgentTask(
        "a",
        "t",
        ["x"],
        lambda: None,
        retry_delay=delay,
        retry_backoff=backoff,
        retry_max_delay=max_delay,
        retry_jitter=0.0,
    )
    assert task.retry_delay_for(attempt, 0.5) == expected


def test_the_back_off_grows_until_its_cap() -> None:
    task = AgentTask("a", "t", ["x"], lambda: None, retry_delay=1.0, retry_max_delay=5.0, retry_jitter=0.5)
    assert [task.retry_delay_for(n, 0.5) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert task.retry_delay_for(2, 0.0) == 1.0
    assert task.retry_delay_for(3, 0.99) == 5.0  # the jitter never passes the cap


@pytest.mark.parametrize("task_id", ["t1", "task-123-4", "fix_parser.v2", "A", "-x", "x" * 100, "1"])
def test_a_task_id_is_a_plain_name(task_id: str) -> None:
    assert AgentTask("a", "t", ["x"], lambda: None, id=task_id).id == task_id


@pytest.mark.parametrize(
    "task_id",
    ["../../../../escaped", "/abs/escaped", "a/b", ".hidden", "..", "", " ", "a b", "x" * 101, "caf\u00e9", "a\nb"],
)
def test_a_task_id_that_could_name_another_path_is_refused(task_id: str) -> None:
    """Before: logs are named after ids, and '../../../../escaped' wrote escaped.log outside the repository."""
    with pytest.raises(InvalidTaskIdError) as info:
        AgentTask("a", "t", ["x"], lambda: None, id=task_id)
    error = info.value
    assert isinstance(error, InvalidTaskError)
    assert isinstance(error, ValueError)
    assert (error.task_id, error.field) == (task_id, "id")
    assert str(error) == (
        f"field 'id': expected 1 to 100 letters, digits, '.', '_' or '-', not starting with '.', got {task_id!r}"
    )


def test_a_task_id_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidTaskError, match="must be a string"):
        AgentTask("a", "t", ["x"], lambda: None, id=7)  # type: ignore[arg-type]


@pytest.mark.parametrize("estimate", [0, 0.5, 3600, None])
def test_an_estimate_is_seconds_or_none(estimate: float | None) -> None:
    assert AgentTask("a", "d", [], lambda: None, estimate_s=estimate).estimate_s == estimate


@pytest.mark.parametrize("estimate", [-1.0, float("nan"), float("inf"), True, "60"])
def test_an_estimate_that_is_not_a_number_of_seconds_is_refused(estimate: object) -> None:
    with pytest.raises(InvalidTaskError, match="estimate_s"):
        AgentTask("a", "d", [], lambda: None, estimate_s=estimate)  # type: ignore[arg-type]
