"""Hypothesis: random batches on real threads never break a rule, and every task ends.

The recorder checks the safety invariant inside every task body, at the moment it starts:
no other running body shares its agent type or an overlapping claim (unless both only read).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queue_core import TaskQueue, TaskState

from ..conftest import WAIT, Recorder

AGENTS = ["code_developer", "architect", "project_manager", "assistant"]
PATHS = ["src/a.py", "src/b.py", "src/", "src/*.py", "src/**/*.md", "docs/x.md", "docs/", "**/x.md", "README.md"]


@dataclass(frozen=True)
class Spec:
    agent: str
    writes: list[str]
    reads: list[str]
    priority: int
    depends_on: list[int]
    behaviour: str  # "ok", "fail" (every attempt) or "flaky" (first attempt fails)
    retries: int


@st.composite
def batches(draw: st.DrawFn) -> tuple[int, list[Spec]]:
    size = draw(st.integers(1, 12))
    specs = [
        Spec(
            agent=draw(st.sampled_from(AGENTS)),
            writes=draw(st.lists(st.sampled_from(PATHS), max_size=2)),
            reads=draw(st.lists(st.sampled_from(PATHS), max_size=1)),
            priority=draw(st.integers(0, 2)),
            depends_on=draw(st.lists(st.integers(0, index - 1), max_size=2, unique=True)) if index else [],
            behaviour=draw(st.sampled_from(["ok", "ok", "ok", "fail", "flaky"])),
            retries=draw(st.integers(0, 1)),
        )
        for index in range(size)
    ]
    return draw(st.integers(1, 4)), specs


def make_body(spec: Spec, attempts: list[int]) -> object:
    def body() -> str:
        attempts.append(1)
        time.sleep(0.0002)  # simulated work, so that bodies really overlap in time
        if spec.behaviour == "fail" or (spec.behaviour == "flaky" and len(attempts) == 1):
            raise RuntimeError("agent failed")
        return "ok"

    return body


@settings(
    max_examples=int(os.environ.get("PM_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(batches())
def test_random_batches_keep_every_rule(batch: tuple[int, list[Spec]]) -> None:
    max_parallel, specs = batch
    recorder = Recorder()
    attempts: dict[str, list[int]] = {f"t{i}": [] for i in range(len(specs))}
    tasks = [
        recorder.task(
            spec.agent,
            f"t{i}",
            spec.writes,
            make_body(spec, attempts[f"t{i}"]),  # type: ignore[arg-type]
            reads=spec.reads,
            priority=spec.priority,
            depends_on=[f"t{d}" for d in spec.depends_on],
            retries=spec.retries,
            retry_delay=0.0,
            id=f"t{i}",
        )
        for i, spec in enumerate(specs)
    ]
    queue = TaskQueue(max_parallel=max_parallel, rng=random.Random(0))
    futures = queue.submit_tasks(tasks)
    assert queue.join(WAIT), "the batch did not finish"
    queue.shutdown()

    recorder.assert_safe()
    assert recorder.max_running <= max_parallel
    assert all(f.done() for f in futures)

    state: dict[str, TaskState] = {}
    for i, spec in enumerate(specs):  # dependencies come first, so their state is known
        tid = f"t{i}"
        deps = [f"t{d}" for d in spec.depends_on]
        if any(state[d] is not TaskState.SUCCEEDED for d in deps):
            expected = TaskState.SKIPPED
            runs = 0
        elif spec.behaviour == "ok" or (spec.behaviour == "flaky" and spec.retries >= 1):
            expected = TaskState.SUCCEEDED
            runs = 1 if spec.behaviour == "ok" else 2
        else:
            expected = TaskState.FAILED
            runs = spec.retries + 1
        state[tid] = expected
        assert len(attempts[tid]) == runs, tid
        future = futures[i]
        if expected is TaskState.SUCCEEDED:
            assert future.result(timeout=0) == "ok"
        else:
            assert future.exception(timeout=0) is not None
        spans = [s for s in recorder.spans if s.task_id == tid]
        assert len(spans) == runs
        for dep in deps if spans else []:  # every attempt started after its dependencies had finished
            dep_end = max(s.end for s in recorder.spans if s.task_id == dep)  # type: ignore[type-var]
            assert all(s.start > dep_end for s in spans)  # type: ignore[operator]
    counts = queue.get_status().counts
    assert counts["succeeded"] == sum(s is TaskState.SUCCEEDED for s in state.values())
    assert counts["skipped"] == sum(s is TaskState.SKIPPED for s in state.values())
    assert counts["failed"] == sum(s is TaskState.FAILED for s in state.values())
