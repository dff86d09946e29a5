"""Hostile tests of issue 14's resources: what a damaged history, a failing sampler and a
changing machine do to a run. Each test here failed before the fix beside it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import psutil
import pytest

from cli import config_machine
from cli.config import ConfigError
from cli.config_files import load_batch
from cli.config_machine import check_needs
from cli.usage import UsageSampler, machine_text
from queue_core import AgentTask, TaskQueue, repo_status
from queue_core.clocks import Clocks
from queue_core.durations import FILE, DurationHistory
from queue_core.errors import StateError
from queue_core.estimates import Remaining, Sample, run_eta
from queue_core.holds import Hold, Owner
from queue_core.machine import GIB, Limits, Reading
from queue_core.machine_rule import never_fits
from queue_core.registry import state_dir
from queue_core.status import RunView
from queue_core.waits import WaitReason

from ..conftest import WAIT, Gate, eventually, in_thread, wait_for
from .test_cli import invoke
from .test_machine_admission import Scripted, reading
from .test_usage import _FakeProcess, _FakePsutil


def sample(duration: float, *, task_id: str = "t1", at: float = 0.0) -> Sample:
    return Sample("a", task_id, "f1", duration, at)


def line(duration: object, at: object = 1.0, task_id: str = "t1") -> bytes:
    data = {"agent": "a", "task": task_id, "fingerprint": "f1", "duration_s": duration, "at": at}
    return json.dumps(data).encode() + b"\n"


# --- the durations file -----------------------------------------------------------------------


def test_a_fifo_in_place_of_the_durations_fails_the_write_at_once_instead_of_hanging_the_run(tmp_path: Path) -> None:
    """A run's task-end event records its duration: an open() that waits for a FIFO's reader
    held the durations lock and the event's thread for ever, and no signal ended the run."""
    os.mkfifo(tmp_path / FILE)
    history = DurationHistory(tmp_path)
    try:
        with pytest.raises(StateError, match="not a regular file"):
            in_thread(lambda: history.record(sample(1.0)))
    finally:  # a writer stuck in open() (before the fix) is let through, so no thread stays
        os.close(os.open(tmp_path / FILE, os.O_RDONLY | os.O_NONBLOCK))
    assert stat.S_ISFIFO((tmp_path / FILE).stat().st_mode)  # left as it was, never written through


def test_a_durations_file_far_past_its_bound_is_read_only_by_its_newest_part(tmp_path: Path) -> None:
    """The file of this version stays under ``max_bytes`` (it is compacted past it); a far bigger
    one (another tool's, a damaged copy) took a run 25 s to read at its start and as much again
    to compact on the thread of a task's end, which held back that thread's next task."""
    history = DurationHistory(tmp_path, max_bytes=4096)
    old = b"".join(line(1.0, at=float(i), task_id=f"old{i}") for i in range(2000))  # ~160 kB
    new = b"".join(line(9.0, at=5000.0 + i) for i in range(5))
    (tmp_path / FILE).write_bytes(old + new)
    samples = history.samples()
    assert len(samples) < 200  # what a bounded read holds, not the 2,005 lines
    assert [s.duration_s for s in samples[-5:]] == [9.0] * 5
    assert history.damaged == 0  # the line the bound cut in two is not damage
    history.record(sample(9.0, at=6000.0))  # compacted from that part too: the file is bounded again
    assert (tmp_path / FILE).stat().st_size <= 4096
    assert history.estimates().of("a", "t1", "f1") is not None


def test_a_line_cut_short_does_not_swallow_the_next_sample(tmp_path: Path) -> None:
    """A write cut short (a full disk) leaves a line without its newline: the next sample
    appended was glued to it and lost with it."""
    history = DurationHistory(tmp_path)
    history.record(sample(10.0))
    with (tmp_path / FILE).open("ab") as f:
        f.write(b'{"agent": "a", "task": "t1", "fing')
    history.record(sample(20.0, at=2.0))
    assert [s.duration_s for s in history.samples()] == [10.0, 20.0]
    assert history.damaged == 1


# --- estimates and the time left ------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "at"),
    [(1e308, 1.0), (1e12, 1.0), (5.0, float("nan")), (5.0, float("inf"))],
)
def test_a_sample_of_no_possible_run_is_damage(tmp_path: Path, duration: float, at: float) -> None:
    """1e308 seconds is a finite float: two such estimates summed gave an ETA of infinity,
    written as ``"ends_at": Infinity`` in the run's record and ``status --json``, which is no JSON."""
    (tmp_path / FILE).write_bytes(line(duration, at) + line(5.0))
    history = DurationHistory(tmp_path)
    assert [s.duration_s for s in history.samples()] == [5.0]
    assert history.damaged == 1


def test_the_time_left_is_unknown_rather_than_infinite() -> None:
    """The library takes any finite ``estimate_s``: their sum may still overflow."""
    left = [Remaining("a", "x", 1e308), Remaining("b", "y", 1e308)]
    assert run_eta(left, 1, lambda _agent: 1) is None


# --- a sampler that fails ---------------------------------------------------------------------


class Unreadable:
    """psutil failing: /proc not mounted in a container, or a sandbox that denies it. With
    ``works``, the first readings succeed (a machine read for the plan, then not)."""

    works = 0

    def __init__(self, *_: Any) -> None:
        pass

    def read(self) -> Reading:
        if Unreadable.works > 0:
            Unreadable.works -= 1
            return Reading.of(20.0, 8 * GIB, 16 * GIB, 4)
        raise OSError(5, "simulated /proc failure")


def test_a_machine_that_cannot_be_read_before_the_run_is_a_clear_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_machine, "PsutilSampler", Unreadable)
    monkeypatch.setattr(Unreadable, "works", 0)
    code, out, err = invoke("delegate-multiple", "shell: true @a.txt", "--limit-memory", "90", "--repo", str(tmp_path))
    assert code == 2, err
    assert err.startswith("project-manager: error: ")
    assert "the machine: cannot read its CPU and memory" in err
    assert "simulated /proc failure" in err
    assert "Traceback" not in err + out
    assert not (tmp_path / ".project-manager" / "logs").exists()  # nothing ran


def test_a_sampler_that_fails_after_the_plans_reading_does_not_crash_an_auto_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue read the machine again for its auto count: that read failing raised out of the
    command with a traceback. It now starts from the plan's reading; later failures are logged."""
    monkeypatch.setattr(config_machine, "PsutilSampler", Unreadable)
    monkeypatch.setattr(Unreadable, "works", 1)
    code, out, err = invoke(
        "delegate-multiple", "shell: true @a.txt", "--max-parallel", "auto", "--json", "--repo", str(tmp_path)
    )
    assert code == 0, err
    report = json.loads(out)
    assert [t["status"] for t in report["tasks"]] == ["succeeded"]
    assert report["max_parallel"] == 4  # the plan's reading: 4 cores, 8 GiB available


# --- what another process's status reads ----------------------------------------------------


def test_a_reading_that_changes_why_tasks_wait_reaches_the_runs_record(tmp_path: Path) -> None:
    """``status`` in another terminal reads the run's record, written when the queue's state
    changes: a machine that went above a limit (or auto lowering max_parallel) changed what
    the waiting tasks are told, but the record said "max_parallel (1) reached" until some task
    started or ended, however long that took."""
    gate = Gate()
    sampler = Scripted(reading(memory=0), reading(memory=100))
    with TaskQueue(1, repo=tmp_path, machine=sampler, limits=Limits(memory=10)) as queue:
        queue.submit_task(AgentTask("a", "holds", ["a.py"], gate, id="a"))
        queue.submit_task(AgentTask("b", "waits", ["b.py"], lambda: None, id="b"))
        wait_for(gate.started, "a to start")

        def told() -> str:
            [run] = repo_status(tmp_path).runs
            return run.waiting[0].reason if run.waiting else ""

        eventually("the limit in the record", lambda: told().startswith("memory 50% > 10%"))
        assert told() == str(queue.get_status().waiting[0].reason)
        gate.open()
        assert queue.join(WAIT)


# --- needs and pools at their edges ---------------------------------------------------------


def test_a_need_of_a_hair_more_cores_than_the_machine_says_so_unrounded(tmp_path: Path) -> None:
    """``cpus: 2.0000001`` on 2 cores read "needs 2 cpus; this machine has 2"."""
    task = AgentTask("a", "d", ["x"], lambda: None, id="t", cpus=2.0000001)
    assert never_fits(task, Reading.of(10.0, 8 * GIB, 16 * GIB, 2)) == (
        "cpus",
        "needs 2.0000001 cpus; this machine has 2",
    )
    batch = tmp_path / "b.yaml"
    batch.write_text("tasks:\n  - {id: t, agent: shell, description: 'true', files: [x], cpus: 2.0000001}\n")
    with pytest.raises(ConfigError, match=r"b.yaml:2: tasks\[0\].cpus: task 't' needs 2.0000001 cpus;"):
        check_needs(load_batch(batch), lambda spec: spec.needs, Reading.of(10.0, 8 * GIB, 16 * GIB, 2))


@pytest.mark.parametrize("units", [0, -2, 1.5, True, "1"])
def test_a_hold_whose_pool_units_are_not_a_positive_integer_is_damage(units: object) -> None:
    """A hold that says it takes -2 units of a pool (claims.json damaged, or a foreign writer)
    was read as is: it freed two units that nobody had, and let others past the pool's count."""
    data = Hold(Owner("host", 42, 1.0, "run-a"), "t1", "dev", ("x.py",), (), 5.0).to_json()
    with pytest.raises((ValueError, TypeError)):
        Hold.from_json({**data, "pools": {"api": units}})


def test_a_stopped_run_blocking_a_task_twice_is_told_of_once() -> None:
    """B waited for run A's agent type and for the pool units A held; A was stopped, and the
    reason said "run A (pid 1) is stopped: resume it ..." after each of the two parts."""
    pool = WaitReason("pool", holder="A/a1", pool="api", limit=2, used=2, units=2)
    reason = WaitReason("agent", holder="A/a1", holder_agent="shell", also=(pool,))

    def annotate(part: str, holder: str | None) -> str:
        return f"{part}; run A is stopped" if holder == "A/a1" else part

    assert reason.describe(annotate=annotate) == "shell busy (A/a1); run A is stopped; pool api full (2/2, needs 2)"


def test_status_tells_each_runs_max_parallel_as_it_is_now(tmp_path: Path) -> None:
    """With ``--max-parallel auto`` the count moves during a run; ``status --json`` gave it
    nowhere but inside a waiting task's reason, and not at all while none waited."""
    gate = Gate()
    with TaskQueue("auto", repo=tmp_path, machine=Scripted(Reading.of(10.0, 5 * GIB, 32 * GIB, 8))) as queue:
        queue.submit_task(AgentTask("a", "holds", ["a.py"], gate, id="a"))
        wait_for(gate.started, "a to start")
        eventually("a running in the record", lambda: bool(repo_status(tmp_path).runs[0].running))
        [run] = repo_status(tmp_path).runs
        assert run.max_parallel == queue.max_parallel == 2  # 5 GiB available: 2 GiB a task
        assert run.to_json()["max_parallel"] == 2
        assert RunView.from_json(run.to_json()) == run
        gate.open()
        assert queue.join(WAIT)


# --- clean --history --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["garbage", "fifo", "directory", "symlink"])
def test_clean_history_removes_whatever_is_in_the_place_of_the_durations(tmp_path: Path, kind: str) -> None:
    """A file of damaged lines was left in place ("no durations to remove", exit 0), and a
    FIFO, a directory or a symlink made clean --history fail (exit 1), though --history is
    how a person gets rid of it: each is removed as an entry now (a symlink's target stays)."""
    state = state_dir(tmp_path)
    state.mkdir(parents=True)
    path, target = state / FILE, tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    if kind == "garbage":
        path.write_bytes(b"garbage\n")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
        (path / "x").write_text("x")
    else:
        path.symlink_to(target)
    code, out, err = in_thread(lambda: invoke("clean", "--history", "--dry-run", "--repo", str(tmp_path)))
    assert code == 0, err
    assert f"would remove {FILE}: " in out
    assert os.path.lexists(path)
    code, out, err = in_thread(lambda: invoke("clean", "--history", "--repo", str(tmp_path)))
    assert code == 0, err
    assert f"removed {FILE}: " in out
    assert not os.path.lexists(path)
    assert target.read_text() == "keep me\n"


def test_status_json_tells_how_long_a_task_has_run_until_now_not_until_its_record(tmp_path: Path) -> None:
    """A run writes its record when something changes; ``status --json`` gave each running
    task's ``elapsed_s`` as of that write: 0.05 s for a task that had run for minutes."""
    gate = Gate()
    with TaskQueue(2, repo=tmp_path) as queue:
        queue.submit_task(AgentTask("a", "holds", ["a.py"], gate, id="a"))
        wait_for(gate.started, "a to start")
        eventually("a running in the record", lambda: bool(repo_status(tmp_path).runs[0].running))
        [task] = repo_status(tmp_path).runs[0].running
        assert task.started_at is not None
        later = Clocks(wall=lambda: task.started_at + 100.0)  # type: ignore[operator]
        [task] = repo_status(tmp_path, clocks=later).runs[0].running
        assert task.elapsed_s == pytest.approx(100.0)
        gate.open()
        assert queue.join(WAIT)


# --- the view's own psutil --------------------------------------------------------------------


class _BrokenPs(_FakePsutil):
    """psutil whose machine-wide reads fail: no /proc/meminfo in a container, a sandbox."""

    def virtual_memory(self) -> Any:
        raise OSError(5, "simulated /proc failure")

    def cpu_percent(self, interval: float | None) -> float:
        raise psutil.AccessDenied()


def test_the_views_sampler_never_raises_when_psutil_fails() -> None:
    """A run on a terminal drew its first frame with psutil's reading: a failure was a traceback
    before anything ran (with no limits, needs or auto asked for); later, the draw thread took
    the OSError for a terminal gone, and dropped every event line after it."""
    agent = _FakeProcess(11, started=90.0, cpu=10.0)
    sampler = UsageSampler(_BrokenPs(2, _FakeProcess(10, started=0.0, children=(agent,)), agent), clock=lambda: 100.0)
    machine = sampler.machine()
    assert machine_text(machine) == "machine  CPU and memory not known (2 cores)"
    assert sampler.trees({"agents": 10}, with_roots=False)["agents"].memory == 2**20  # the trees still read


def test_a_durations_file_of_exactly_the_read_bound_is_read_whole(tmp_path: Path) -> None:
    """The bounded read's own edge: its first version took a file of exactly the bound for cut."""
    history = DurationHistory(tmp_path, max_bytes=100)
    first = line(1.0, task_id="a")
    data = first + line(2.0, task_id="b")
    (tmp_path / FILE).write_bytes(data + b" " * (2 * 100 - len(data) - 1) + b"\n")  # 200 bytes: not cut
    assert [s.duration_s for s in history.samples()] == [1.0, 2.0]
