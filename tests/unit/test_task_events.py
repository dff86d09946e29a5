"""What a TaskEvent carries of the attempt that ended: its exit code, the agent's report and the
time of every attempt so far, taken under the engine's lock as the attempt ended."""

from __future__ import annotations

from pathlib import Path

from queue_core import AgentTask, RateLimitedError, SubprocessAgent
from queue_core.errors import AgentExitError
from queue_core.reports import AgentReport

from .test_engine import Stepped


class Reported(SubprocessAgent):
    """An agent command that is never run: the test says how each attempt ended."""

    def end_attempt(self, code: int, cost: float) -> AgentExitError | None:
        self._exit_code = code
        self.report = AgentReport(cost_usd=cost, input_tokens=10, output_tokens=1).after(self.report)
        return AgentExitError(code, self.log) if code else None


def test_an_attempts_end_carries_its_exit_code_the_agents_report_and_the_time_of_every_attempt(tmp_path: Path) -> None:
    s = Stepped()
    agent = Reported(["agent"], tmp_path, tmp_path / "A.log")
    s.engine.submit([AgentTask("a", "task A", ["x"], agent, id="A", retries=1, retry_delay=1.0, retry_jitter=0.0)])
    s.clock.now = 2.0
    s.run("A", error=agent.end_attempt(3, 0.25))
    s.clock.now = 3.0
    s.engine.tick()  # the retry starts at 3.0
    s.clock.now = 4.5
    s.run("A", error=agent.end_attempt(0, 0.5))
    retrying, succeeded = (e for e in s.events if e.kind != "started")
    assert (retrying.kind, retrying.exit_code, retrying.total_s, retrying.duration_s) == ("retrying", 3, 2.0, 2.0)
    assert retrying.report == AgentReport(cost_usd=0.25, input_tokens=10, output_tokens=1)
    assert (succeeded.kind, succeeded.exit_code, succeeded.total_s, succeeded.duration_s) == ("succeeded", 0, 3.5, 1.5)
    assert succeeded.report is not None
    assert succeeded.report.cost_usd == 0.75
    assert succeeded.report.tokens == {"input": 20, "output": 2}


def test_a_callables_events_and_a_task_that_never_ran_carry_none_of_them() -> None:
    s = Stepped()
    s.engine.submit(
        [AgentTask("a", "A", ["x"], lambda: None, id="A"), AgentTask("b", "B", ["x"], lambda: None, id="B")]
    )
    assert s.engine.cancel("B")
    s.run("A")
    for event in s.events:
        assert (event.exit_code, event.report) == (None, None)
    by_kind = {(e.task_id, e.kind): e for e in s.events}
    assert by_kind["B", "cancelled"].total_s is None
    assert by_kind["A", "succeeded"].total_s == 0.0


def test_a_task_to_run_again_says_when_on_the_queues_clock() -> None:
    s = Stepped()
    s.engine.submit([AgentTask("a", "A", ["x"], lambda: None, id="A", retries=1, retry_delay=1.0, retry_jitter=0.0)])
    s.engine.submit([AgentTask("b", "B", ["y"], lambda: None, id="B")])
    s.clock.now = 2.0
    s.run("A", error=RuntimeError("flaky"))
    s.run("B", error=RateLimitedError("429", retry_after=30.0))
    retrying, paused = (e for e in s.events if e.kind in ("retrying", "paused"))
    assert (retrying.kind, retrying.resumes_at) == ("retrying", 3.0)
    assert (paused.kind, paused.resumes_at) == ("paused", 32.0)
    assert all(e.resumes_at is None for e in s.events if e.kind not in ("retrying", "paused"))
