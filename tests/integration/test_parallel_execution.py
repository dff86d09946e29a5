"""The design note's five integration cases, with real agent processes.

Each agent is a child Python process that announces itself, blocks on its stdin until the
test lets it go, then appends a line to each file it claims. Synchronisation is through
those pipes, never sleeps; the files it wrote show afterwards that nothing was clobbered.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from queue_core import AgentTask, TaskQueue

from ..conftest import WAIT, Recorder, wait_for

AGENT_SCRIPT = r"""
import os, sys
print("ready", flush=True)
sys.stdin.readline()
for path in sys.argv[2:]:
    if path.endswith("/"):
        path += "NOTES.md"  # a directory claim: write a file inside it
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as f:
        f.write(sys.argv[1] + "\n")
print("done", flush=True)
"""


class ProcessAgent:
    """execute_fn running one real agent process in ``repo`` on ``files``."""

    def __init__(self, repo: Path, name: str, files: list[str]):
        self.repo, self.name, self.files = repo, name, files
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> str:
        with subprocess.Popen(
            [sys.executable, "-c", AGENT_SCRIPT, self.name, *self.files],
            cwd=self.repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stdin is not None
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
            self.started.set()
            assert self.release.wait(WAIT), f"{self.name} never released"
            proc.stdin.write("go\n")
            proc.stdin.close()
            out = proc.stdout.read()
            assert proc.wait(WAIT) == 0
        return out.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path


def agent_task(
    recorder: Recorder, repo: Path, agent: str, files: list[str], **kw: object
) -> tuple[AgentTask, ProcessAgent]:
    worker = ProcessAgent(repo, kw.pop("name", agent), files)  # type: ignore[arg-type]
    return recorder.task(agent, f"{agent} work", files, worker, **kw), worker  # type: ignore[arg-type]


def lines(repo: Path, path: str) -> list[str]:
    return (repo / path).read_text().splitlines()


def test_code_developer_and_project_manager_parallel(repo: Path, recorder: Recorder) -> None:
    with TaskQueue(max_parallel=4) as queue:
        dev, dev_agent = agent_task(recorder, repo, "code_developer", ["coffee_maker/daemon.py"])
        pm, pm_agent = agent_task(recorder, repo, "project_manager", ["docs/roadmap/ROADMAP.md"])
        futures = [queue.submit_task(dev), queue.submit_task(pm)]
        wait_for(dev_agent.started, "code_developer")
        wait_for(pm_agent.started, "project_manager")  # both processes alive at once
        dev_agent.release.set()
        pm_agent.release.set()
        assert [f.result(timeout=WAIT) for f in futures] == ["done", "done"]
    assert lines(repo, "coffee_maker/daemon.py") == ["code_developer"]
    assert lines(repo, "docs/roadmap/ROADMAP.md") == ["project_manager"]
    recorder.assert_safe()


def test_three_agents_parallel(repo: Path, recorder: Recorder) -> None:
    specs = [
        ("code_developer", ["coffee_maker/daemon.py"]),
        ("project_manager", ["docs/roadmap/ROADMAP.md"]),
        ("architect", ["docs/architecture/specs/SPEC-046.md"]),
    ]
    with TaskQueue(max_parallel=4) as queue:
        pairs = [agent_task(recorder, repo, agent, files) for agent, files in specs]
        futures = [queue.submit_task(task) for task, _ in pairs]
        for _, worker in pairs:
            wait_for(worker.started, worker.name)
        assert sorted(queue.get_status().running_agents) == sorted(a for a, _ in specs)
        for _, worker in pairs:
            worker.release.set()
        for future in futures:
            future.result(timeout=WAIT)
    assert recorder.max_running == 3
    recorder.assert_safe()


def test_duplicate_agent_blocks(repo: Path, recorder: Recorder) -> None:
    with TaskQueue(max_parallel=4) as queue:
        first, first_agent = agent_task(recorder, repo, "code_developer", ["coffee_maker/a.py"], id="t1", name="one")
        second, second_agent = agent_task(recorder, repo, "code_developer", ["coffee_maker/b.py"], id="t2", name="two")
        f1, f2 = queue.submit_task(first), queue.submit_task(second)
        wait_for(first_agent.started, "the first code_developer")
        assert queue.get_status().waiting[0].reason == "code_developer busy (t1)"
        assert not second_agent.started.is_set()
        first_agent.release.set()
        second_agent.release.set()
        f1.result(timeout=WAIT), f2.result(timeout=WAIT)
    assert not recorder.overlapped("t1", "t2")
    recorder.assert_safe()


def test_overlapping_files_blocks(repo: Path, recorder: Recorder) -> None:
    with TaskQueue(max_parallel=4) as queue:
        dev, dev_agent = agent_task(recorder, repo, "code_developer", ["coffee_maker/shared.py"], id="t1")
        arch, arch_agent = agent_task(recorder, repo, "architect", ["coffee_maker/"], id="t2")
        f1, f2 = queue.submit_task(dev), queue.submit_task(arch)
        wait_for(dev_agent.started, "code_developer")
        [waiting] = queue.get_status().waiting
        assert (waiting.id, waiting.reason_kind, waiting.blocked_by) == ("t2", "claim", "t1")
        dev_agent.release.set()
        arch_agent.release.set()
        f1.result(timeout=WAIT), f2.result(timeout=WAIT)
    assert lines(repo, "coffee_maker/shared.py") == ["code_developer"]
    assert lines(repo, "coffee_maker/NOTES.md") == ["architect"]
    assert not recorder.overlapped("t1", "t2")
    recorder.assert_safe()


def test_end_to_end_workflow(repo: Path, recorder: Recorder) -> None:
    """Five tasks: three run at once, two wait (singleton, file) and then run."""
    specs = [
        ("t1", "code_developer", ["coffee_maker/daemon.py"]),
        ("t2", "project_manager", ["docs/roadmap/ROADMAP.md"]),
        ("t3", "architect", ["docs/architecture/"]),
        ("t4", "code_developer", ["coffee_maker/cli.py"]),
        ("t5", "assistant", ["docs/architecture/specs/SPEC-047.md"]),
    ]
    with TaskQueue(max_parallel=4) as queue:
        pairs = {tid: agent_task(recorder, repo, agent, files, id=tid, name=tid) for tid, agent, files in specs}
        futures = queue.submit_tasks([task for task, _ in pairs.values()])
        for tid in ("t1", "t2", "t3"):
            wait_for(pairs[tid][1].started, tid)
        waits = {w.id: w.reason for w in queue.get_status().waiting}
        assert waits == {
            "t4": "code_developer busy (t1)",
            "t5": "docs/architecture/specs/SPEC-047.md overlaps docs/architecture/ held by architect (t3)",
        }
        for _, worker in pairs.values():
            worker.release.set()
        assert [f.result(timeout=WAIT) for f in futures] == ["done"] * 5
    assert recorder.overlapped("t1", "t2")
    assert recorder.overlapped("t2", "t3")
    assert not recorder.overlapped("t1", "t4")
    assert not recorder.overlapped("t3", "t5")
    assert lines(repo, "docs/architecture/specs/SPEC-047.md") == ["t5"]
    recorder.assert_safe()
