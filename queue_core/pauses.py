"""Rate-limit pauses: the agent types that start nothing until a time, after a rate limit.

A rate limit is the agent's (its account's), not one task's: every task of the agent type
waits for the pause to end, and the limits of the agent in a row make the pauses grow (see
``AgentTask.rate_limit_backoff``) until the run of limits passes ``rate_limit_max_wait``.
"""

from __future__ import annotations

import heapq
import math

from .task import RATE_LIMIT_MAX_BACKOFF_S, AgentTask
from .waits import seconds_text

__all__ = ["Pauses"]


class Pauses:
    """Which agent types are paused and until when, and each one's run of limits in a row."""

    def __init__(self) -> None:
        self.until: dict[str, float] = {}  # agent -> when its pause ends: read it, never change it
        self._ends: list[tuple[float, str]] = []  # (end, agent), lazily pruned
        # agent -> (since, limits, until): its rate limits in a row, and when the last pause ended
        self._runs: dict[str, tuple[float, int, float]] = {}

    def next_end(self) -> float | None:
        """When the first pause ends, None if none is paused."""
        ends = self._ends
        while ends and self.until.get(ends[0][1]) != ends[0][0]:
            heapq.heappop(ends)
        return ends[0][0] if ends else None

    def resume(self, now: float) -> list[str]:
        """End the pauses due by ``now``; returns their agent types."""
        resumed: list[str] = []
        while self._ends and self._ends[0][0] <= now:
            end, agent = heapq.heappop(self._ends)
            if self.until.get(agent) == end:
                del self.until[agent]
                resumed.append(agent)
        return resumed

    def clear(self) -> None:
        """End every pause at once (the runs of limits are kept, as for pauses that end)."""
        self.until.clear()
        self._ends.clear()

    def answered(self, agent: str) -> None:
        """An attempt of ``agent`` got an answer: its run of limits is over."""
        self._runs.pop(agent, None)

    def limited(
        self, task: AgentTask, started_at: float, now: float, error: str | None, retry_after: float | None
    ) -> str | None:
        """An attempt of ``task`` that started at ``started_at`` hit a rate limit at ``now``: pause
        its agent type, for ``retry_after`` seconds if the agent named a reset (but no less than
        the back-off if it was limited just before: a reset of "now", again and again, must not
        spin), else for its back-off. Returns None, or, if the pause would take the agent's run
        of limits past the task's ``rate_limit_max_wait``, why the task ends instead (then the
        agent is not paused further).
        """
        agent = task.agent_type
        since, limits, until = self._runs.get(agent, (now, 0, now))
        if started_at > until + RATE_LIMIT_MAX_BACKOFF_S:
            since, limits = now, 0  # nothing of the agent ran for a while (its tasks cancelled): a new run of limits
        limits += 1
        delay = task.rate_limit_delay_for(limits)
        # The reset the agent named (not NaN, not negative, not infinite: a 400-digit Retry-After
        # reads as inf); if it proved wrong just before, no less than the back-off. So a pause
        # always ends at a time that can be told (with rate_limit_max_wait=inf, "never" could not).
        if retry_after is not None and 0 <= retry_after < math.inf:
            delay = max(retry_after, delay if limits > 1 else 0.0)
        end = max(now + delay, self.until.get(agent, now))
        if end - since > task.rate_limit_max_wait:
            self._runs[agent] = (since, limits, now)
            return (
                f"rate-limited for {seconds_text(now - since)}; waiting longer would pass "
                f"rate_limit_max_wait ({seconds_text(task.rate_limit_max_wait)}): {error or 'rate limited'}"
            )
        self._runs[agent] = (since, limits, end)
        if self.until.get(agent) != end:
            self.until[agent] = end
            heapq.heappush(self._ends, (end, agent))
        return None
