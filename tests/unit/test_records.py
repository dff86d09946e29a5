"""Typed status, run records and outcomes (queue_core.records): JSON both ways, across versions."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from queue_core import AgentTask, QueueStatus, RepoStatus, TaskOutcome, TaskQueue, TaskState, repo_status
from queue_core import registry_sync as sync_module
from queue_core.records import SCHEMA, MergeOutcome, RunHistory, RunningTask, RunRecord, WaitingTask, schema_of
from queue_core.registry import state_dir
from queue_core.reports import AgentReport
from queue_core.runner import SubprocessAgent
from queue_core.status import AgentProcess, RunView, live_run_records

from ..conftest import WAIT, Gate, wait_for

#: runs/<run>.json as the version before these types wrote it (commit e5272e0), taken literally
#: from a run with a task running, one waiting for its file and two paused by a rate limit.
#: Owner pid, boot and times are this test's own, so that the run reads as alive here.
PREVIOUS_RECORD = """{"run":"old-run","repo":"/tmp/status11/repo","started_at":1795880937.604858,"status":\
{"running_agents":["code_developer"],"running_files":["src/app.py"],"queued_tasks":3,"max_parallel":2,"running":\
[{"id":"edit-app","agent":"code_developer","description":"edit the app","files":["src/app.py"],"reads":["docs/"],\
"attempt":1,"elapsed_s":0.5297536899997795,"timed_out":false,"pid":null,"started_at":1795880937.6056452}],"waiting":\
[{"id":"test-app","agent":"tester","description":"test the app","state":"queued","reason":"src/app.py overlaps \
src/app.py held by code_developer (edit-app)","reason_kind":"claim","blocked_by":"edit-app","reserved":false,\
"resumes_at":null},{"id":"limited","agent":"claude","description":"limited","state":"queued","reason":"claude \
rate-limited, resumes in 59m 59s","reason_kind":"rate_limit","blocked_by":null,"reserved":false,"resumes_at":\
1795884537.6294467},{"id":"next","agent":"claude","description":"after the limit","state":"queued","reason":"claude \
rate-limited, resumes in 59m 59s","reason_kind":"rate_limit","blocked_by":null,"reserved":false,"resumes_at":\
1795884537.6294467}],"counts":{"succeeded":0,"failed":0,"timed_out":0,"cancelled":0,"skipped":0,"rate_limited":0},\
"registry_error":null,"registry_wait":null,"finished_tasks":0,"failed_tasks":0},"owner":{"host":"vm","pid":18311,\
"started":1795880936.43,"run":"old-run","ticks":2954143,"supervisor":{"pid":18329,"started":1795880936.78,"ticks":\
2954178},"boot":"31d3ae0d-b3a0-495b-a0ad-3123eeb30afb","pid_ns":4026531836},"updated":1795880938.13542,"version":1}"""


def _live_status() -> QueueStatus:
    return QueueStatus(
        queued_tasks=2,
        max_parallel=4,
        running=(RunningTask("a", "dev", "do a", ("src/a.py",), ("docs/",), 2, 1.5, False, 4242),),
        waiting=(
            WaitingTask("b", "dev", "do b", "queued", "dev busy (a)", "agent", "a", True),
            WaitingTask("c", "claude", "do c", "queued", "claude rate-limited", "rate_limit", resumes_in_s=60.0),
        ),
        counts={"succeeded": 3, "failed": 1, "timed_out": 1, "skipped": 2},
        registry_error="disk full",
        registry_wait="pid 7",
    )


def test_a_status_goes_to_json_and_back_unchanged() -> None:
    status = _live_status()
    assert QueueStatus.from_json(json.loads(json.dumps(status.to_json()))) == status
    assert (status.finished_tasks, status.failed_tasks) == (7, 2)
    assert status.running_agents == ["dev"]
    assert status.running_files == ["src/a.py"]


def test_a_record_counts_in_wall_clock_time_and_goes_to_json_and_back_unchanged(tmp_path: Path) -> None:
    recorded = _live_status().recorded(1000.0)
    assert recorded.running[0].started_at == 998.5
    assert [(t.resumes_in_s, t.resumes_at) for t in recorded.waiting] == [(None, None), (None, 1060.0)]
    with TaskQueue(repo=tmp_path) as queue:
        assert queue.registry is not None
        record = RunRecord(queue.registry.run, queue.registry.owner, 1001.0, str(tmp_path), 900.0, recorded)
    data = json.loads(json.dumps(record.to_json()))
    assert data["version"] == SCHEMA
    assert "resumes_in_s" not in data["status"]["waiting"][0]
    assert RunRecord.from_json(data) == record


def test_a_record_of_the_previous_version_is_read(tmp_path: Path) -> None:
    data = json.loads(PREVIOUS_RECORD)
    record = RunRecord.from_json(data)
    assert record.status is not None
    assert (record.run, record.owner.pid, record.started_at) == ("old-run", 18311, 1795880937.604858)
    assert record.status.running_agents == ["code_developer"]
    assert record.status.queued_tasks == 3
    [running] = record.status.running
    assert (running.id, running.files, running.reads, running.started_at) == (
        "edit-app",
        ("src/app.py",),
        ("docs/",),
        1795880937.6056452,
    )
    assert [(t.id, t.reason_kind, t.resumes_at) for t in record.status.waiting] == [
        ("test-app", "claim", None),
        ("limited", "rate_limit", 1795884537.6294467),
        ("next", "rate_limit", 1795884537.6294467),
    ]
    # Written again, it is the same JSON: this version's records are what the previous one reads.
    assert record.to_json() == data
    del data["version"]  # older still: no version at all is version 1
    assert RunRecord.from_json(data) == record


def test_status_shows_a_live_run_of_the_previous_version(tmp_path: Path) -> None:
    data = json.loads(PREVIOUS_RECORD)
    with TaskQueue(repo=tmp_path, run_id="new-run") as queue:  # this process: its owner lives
        assert queue.registry is not None
        data["owner"] = {**queue.registry.owner.to_json(), "run": "old-run"}
        (state_dir(tmp_path) / "runs" / "old-run.json").write_text(json.dumps(data))
        status = repo_status(tmp_path)
    [run] = status.runs
    assert (run.run, run.queued) == ("old-run", 3)
    assert [t.id for t in run.waiting] == ["test-app", "limited", "next"]
    assert run.waiting[1].reason.startswith("claude rate-limited, resumes in")  # told from now
    assert status.skipped == ()


def test_a_record_of_a_newer_schema_is_skipped_with_a_note(tmp_path: Path) -> None:
    data = json.loads(PREVIOUS_RECORD)
    data["version"] = SCHEMA + 1
    assert schema_of(data) == SCHEMA + 1
    with pytest.raises(ValueError, match="version 2"):
        RunRecord.from_json(data)
    with TaskQueue(repo=tmp_path, run_id="new-run") as queue:
        assert queue.registry is not None
        data["owner"] = {**queue.registry.owner.to_json(), "run": "future-run"}
        path = state_dir(tmp_path) / "runs" / "future-run.json"
        path.write_text(json.dumps(data))
        status = repo_status(tmp_path)
        assert live_run_records(tmp_path) == []
    assert status.runs == ()
    assert status.skipped == (
        f"{path}: a run record of version 2, written by a newer project-manager (this one reads up to 1); skipped",
    )


@pytest.mark.parametrize(
    "damage",
    [
        {"version": "1"},
        {"version": 0},
        {"owner": None},
        {"owner": {"host": "h"}},
        {"status": {"running": [{"id": "a"}]}},
        {"status": {"waiting": "x"}},
        {"status": {"queued_tasks": 1.5}},
        {"status": {"counts": {"failed": None}}},
    ],
)
def test_a_damaged_record_is_a_value_error(damage: dict[str, object]) -> None:
    data = {**json.loads(PREVIOUS_RECORD), **damage}
    with pytest.raises(ValueError):  # noqa: PT011 - the message names what is damaged; any will do
        RunRecord.from_json(data)


def test_a_repo_status_goes_to_json_and_back_unchanged() -> None:
    recorded = _live_status().recorded(1000.0)
    run = RunView(
        "r1",
        41,
        "host",
        "orphaned",
        40,
        (AgentProcess(43, "sleep"),),
        "pid 7",
        900.0,
        1000.0,
        recorded.running,
        recorded.waiting,
        2,
        {"succeeded": 1},
    )
    status = RepoStatus((run, replace(run, run="r2", running=())), 12, ("runs/x.json: not a regular file; skipped",))
    data = json.loads(json.dumps(status.to_json()))
    assert (data["running_agents"], data["queued_tasks"]) == (["dev"], 4)
    assert RepoStatus.from_json(data) == status


def test_a_status_reads_as_the_design_notes_dict() -> None:
    """The design note (seed US-043) reads ``status["running_agents"]``: it stays; other keys warn."""
    status = _live_status()
    assert status["running_agents"] == ["dev"]
    assert status["running_files"] == ["src/a.py"]
    assert status["queued_tasks"] == 2
    with pytest.warns(DeprecationWarning, match=r"status\.waiting"):
        waiting = status["waiting"]
    assert waiting[1] == {**status.to_json()["waiting"][1], "resumes_in_s": 60.0}
    with pytest.raises(KeyError):
        status["no_such_key"]
    assert RepoStatus()["running_agents"] == []


def test_outcomes_carry_what_a_summary_needs(tmp_path: Path) -> None:
    claude_result = {"type": "result", "is_error": False, "total_cost_usd": 0.5, "usage": {"input_tokens": 7}}
    agent = SubprocessAgent(
        [sys.executable, "-c", f"print({json.dumps(json.dumps(claude_result))})"],
        tmp_path,
        tmp_path / "agent.log",
        report_format="claude",
    )
    failing = SubprocessAgent([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, tmp_path / "bad.log")
    gate = Gate()
    with TaskQueue(max_parallel=1) as queue:
        queue.submit_task(AgentTask("held", "holds the slot", ["x"], gate, id="first"))
        wait_for(gate.started, "first")
        queue.submit_tasks(
            [
                AgentTask("claude", "report", ["a"], agent, id="agent"),
                AgentTask("shell", "fail", ["b"], failing, id="failing", depends_on=["agent"]),
                AgentTask("shell", "skipped", ["c"], lambda: None, id="skipped", depends_on=["failing"]),
            ]
        )
        gate.open()
        assert queue.join(WAIT)
        outcomes = {o.id: o for o in queue.outcomes()}
    assert list(outcomes) == ["first", "agent", "failing", "skipped"]  # in submission order
    first = outcomes["first"]
    assert (first.description, first.status, first.attempts, first.exit_code, first.log, first.report) == (
        "holds the slot",
        TaskState.SUCCEEDED,
        1,
        None,
        None,
        None,
    )
    assert first.duration_s is not None
    ok = outcomes["agent"]
    assert (ok.status, ok.exit_code, ok.log) == (TaskState.SUCCEEDED, 0, str(tmp_path / "agent.log"))
    assert ok.report is not None
    assert (ok.report.cost_usd, ok.report.tokens, ok.report.error) == (0.5, {"input": 7, "output": 0}, None)
    bad = outcomes["failing"]
    assert (bad.status, bad.exit_code, bad.attempts) == (TaskState.FAILED, 3, 1)
    assert bad.reason is not None
    assert "3" in bad.reason
    skipped = outcomes["skipped"]
    assert skipped == TaskOutcome("skipped", "shell", "skipped", TaskState.SKIPPED, 0, None, skipped.reason)
    assert "failing" in (skipped.reason or "")


def test_the_history_record_keeps_its_keys(tmp_path: Path) -> None:
    agent = SubprocessAgent([sys.executable, "-c", "pass"], tmp_path, tmp_path / "agent.log", report_format="claude")
    with TaskQueue(repo=tmp_path, run_id="r") as queue:
        queue.submit_tasks(
            [AgentTask("shell", "agent", ["a"], agent, id="agent"), AgentTask("py", "fn", ["b"], lambda: 1, id="fn")]
        )
        assert queue.join(WAIT)
    history = json.loads((state_dir(tmp_path) / "history" / "r.json").read_text())
    assert list(history) == ["run", "started_at", "ended_at", "tasks", "version"]
    base = ["id", "agent", "status", "attempts", "duration_s", "reason"]
    agents = [*base, "error", "cost_usd", "tokens", "isolation"]  # isolation: added, for diff to say why
    assert [list(task) for task in history["tasks"]] == [agents, base]
    assert history["tasks"][0]["isolation"] == "shared"


def test_a_live_queue_writes_a_record_that_status_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_module, "RECORD_INTERVAL_S", 0.0)  # every step writes the record
    gate = Gate()
    with TaskQueue(max_parallel=2, repo=tmp_path, run_id="live") as queue:
        queue.submit_task(AgentTask("dev", "holds a", ["a"], gate, id="holder"))
        wait_for(gate.started, "holder")
        queue.submit_task(AgentTask("doc", "needs a", ["a"], lambda: None, id="waiter"))
        status, live = repo_status(tmp_path), queue.get_status()
        gate.open()
    [run] = status.runs
    assert [t.id for t in run.running] == [t.id for t in live.running] == ["holder"]
    assert run.running[0].started_at is not None
    assert [(t.id, t.reason) for t in run.waiting] == [(t.id, t.reason) for t in live.waiting]
    assert run.waiting[0].reason == "a overlaps a held by dev (holder)"


def test_estimates_and_the_time_left_go_to_json_and_back_and_into_a_record() -> None:
    status = replace(
        _live_status(),
        running=(RunningTask("a", "dev", elapsed_s=30.0, estimate_s=120.0),),
        eta_s=600.0,
    )
    data = json.loads(json.dumps(status.to_json()))
    assert (data["running"][0]["estimate_s"], data["eta_s"]) == (120.0, 600.0)
    assert QueueStatus.from_json(data) == status
    recorded = status.recorded(1000.0)
    assert (recorded.eta_s, recorded.ends_at) == (None, 1600.0)
    data = json.loads(json.dumps(recorded.to_json(recorded=True)))
    assert "eta_s" not in data
    assert data["ends_at"] == 1600.0
    assert QueueStatus.from_json(data) == recorded


def test_a_status_without_estimates_has_no_keys_for_them() -> None:
    """As before estimates: the previous version's records are written again unchanged (above)."""
    data = _live_status().to_json()
    assert "eta_s" not in data
    assert "ends_at" not in data
    assert "estimate_s" not in data["running"][0]


def test_a_history_entry_reads_back_as_it_was_written_merge_and_total_included() -> None:
    merge = MergeOutcome("pm/r/t1", "merged", 3, 12, 1, "merged into main")
    retried = TaskOutcome(
        "t1", "dev", "", TaskState.SUCCEEDED, 2, 1.5, "boom", report=AgentReport(None, 0.25, 10, 5),
        total_s=4.0, isolation="worktree", merge=merge,
    )  # fmt: skip
    once = TaskOutcome("t2", "py", "", TaskState.FAILED, 1, 3.0, "ValueError: x", total_s=3.0)
    history = RunHistory("r", 1.0, 10.0, (retried, once))
    data = json.loads(json.dumps(history.to_json()))
    assert data["tasks"][0]["merge"] == merge.to_json()
    assert "total_s" not in data["tasks"][1]  # one attempt: its duration is its total
    assert "merge" not in data["tasks"][1]
    assert RunHistory.from_json(data) == history


def test_a_retried_task_s_history_keeps_the_time_of_all_its_attempts(tmp_path: Path) -> None:
    flaky = "import pathlib, sys; p = pathlib.Path('ran'); sys.exit(0 if p.exists() else p.write_text('x') and 1)"
    agent = SubprocessAgent([sys.executable, "-c", flaky], tmp_path, tmp_path / "agent.log")
    with TaskQueue(repo=tmp_path, run_id="r") as queue:
        queue.submit_task(AgentTask("shell", "flaky", ["a"], agent, id="flaky", retries=1, retry_delay=0.0))
        assert queue.join(WAIT)
    data = json.loads((state_dir(tmp_path) / "history" / "r.json").read_text())
    (task,) = RunHistory.from_json(data).tasks
    assert (task.status, task.attempts) == (TaskState.SUCCEEDED, 2)
    assert task.total_s is not None
    assert task.duration_s is not None
    assert task.total_s > task.duration_s
