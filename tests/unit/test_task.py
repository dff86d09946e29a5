"""AgentTask on its own: what it accepts, and the retry back-off."""

from __future__ import annotations

import math

import pytest

from queue_core import AgentTask


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
