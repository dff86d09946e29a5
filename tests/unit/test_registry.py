"""The on-disk claim registry (queue_core.registry), from one process.

Files, modes and atomic writes; owners and how a dead or reused pid is told apart; damaged
registry files; an unusable state directory; and two TaskQueues of one process on one
repository, which are two runs and respect each other through the registry. Child processes
are real and synchronised through their pipes; nothing here sleeps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from queue_core import AgentTask, TaskQueue
from queue_core.clocks import Clocks
from queue_core.errors import ClaimConflictError, StateError
from queue_core.records import QueueStatus, RunHistory, RunRecord
from queue_core.registry import FORMAT, RECOVERY_S, VERSION, Hold, Owner, Registry
from queue_core.status import live_run_records

from ..conftest import WAIT, Gate, wait_for
from ._state import Child

STATE = ".project-manager"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def claims_path(repo: Path) -> Path:
    return repo / STATE / "claims.json"


def write_claims(repo: Path, holds: list[Hold]) -> None:
    """Write claims.json by hand, in the registry's own format."""
    data = {"format": FORMAT, "version": VERSION, "holds": [h.to_json() for h in holds]}
    claims_path(repo).write_text(json.dumps(data))


def _record(registry: Registry) -> RunRecord:
    """A record of ``registry``'s run with an idle queue's status."""
    return RunRecord(registry.run, registry.owner, time.time(), str(registry.repo), time.time(), QueueStatus(0, 1))


def stray_temp_files(repo: Path) -> list[Path]:
    return [p for p in (repo / STATE).rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def dead_owner() -> Owner:
    """The owner of a process that ran, exited and was reaped."""
    child = Child()
    owner = Owner(socket.gethostname(), child.pid, child.id.started, "dead-run")
    assert owner.alive()
    child.end()
    return owner


# --- files and modes ------------------------------------------------------------------------


def test_state_dir_is_owner_only_and_ignored_by_git(tmp_path: Path) -> None:
    Registry(tmp_path)
    state = tmp_path / STATE
    assert mode(state) == 0o700
    assert mode(state / "runs") == 0o700
    assert mode(state / "history") == 0o700
    assert "*" in (state / ".gitignore").read_text().splitlines()


def test_a_second_registry_keeps_an_existing_state_dir(tmp_path: Path) -> None:
    first = Registry(tmp_path, "one")
    with first.session() as session:
        session.add("t", "a", ("f",), ())
    Registry(tmp_path, "two")
    assert [h["task"] for h in json.loads(claims_path(tmp_path).read_text())["holds"]] == ["t"]
    assert "*" in (tmp_path / STATE / ".gitignore").read_text().splitlines()


def test_the_state_is_owner_only_and_its_lock_is_the_directory_no_file_to_delete(tmp_path: Path) -> None:
    """Before: the lock was a file, and deleting it let two processes lock two inodes at once."""
    registry = Registry(tmp_path, "run-1")
    with registry.session() as session:
        session.add("t1", "code_developer", ("src/a.py",), ("docs/",))
    registry.write_run_record(_record(registry))
    state = tmp_path / STATE
    assert mode(state) == 0o700
    assert mode(state / "claims.json") == 0o600
    assert mode(state / "runs" / "run-1.json") == 0o600
    assert not (state / "registry.lock").exists()
    held = registry.begin()
    try:
        with pytest.raises(StateError, match="not free"):
            Registry(tmp_path, "run-2", lock_timeout=0.05).begin()
    finally:
        registry.abort(held)


def test_registry_files_have_the_documented_format(tmp_path: Path) -> None:
    registry = Registry(tmp_path, "run-1")
    with registry.session() as session:
        session.add("t1", "code_developer", ("src/a.py",), ("docs/",))
    data = json.loads(claims_path(tmp_path).read_text())
    assert data["format"] == "project-manager/claims"
    assert data["version"] == 1
    [hold] = data["holds"]
    assert hold["task"] == "t1"
    assert hold["agent"] == "code_developer"
    assert hold["writes"] == ["src/a.py"]
    assert hold["reads"] == ["docs/"]
    owner = hold["owner"]
    assert (owner["host"], owner["pid"], owner["run"]) == (socket.gethostname(), os.getpid(), "run-1")
    assert owner["started"] == round(psutil.Process().create_time(), 2)
    assert Hold.from_json(hold).owner == registry.owner


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    registry = Registry(tmp_path, "run-1")
    for i in range(5):
        with registry.session() as session:
            session.add(f"t{i}", "a", (f"f{i}",), ())
        registry.write_run_record(_record(registry))
    before = claims_path(tmp_path).stat().st_ino
    with registry.session() as session:
        session.remove("t0")
    assert claims_path(tmp_path).stat().st_ino != before  # replaced, never rewritten in place
    registry.finish_run(RunHistory("run-1", 1.0, 2.0))
    assert stray_temp_files(tmp_path) == []
    assert json.loads(claims_path(tmp_path).read_text())["holds"] == []
    assert (tmp_path / STATE / "history" / "run-1.json").exists()
    assert not (tmp_path / STATE / "runs" / "run-1.json").exists()


def test_a_failed_write_names_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    registry = Registry(tmp_path, "run-1")
    record = tmp_path / STATE / "runs" / "run-1.json"
    record.unlink()
    record.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(StateError) as caught:
        registry.write_run_record(_record(registry))
    assert caught.value.path == str(record)
    assert str(record) in str(caught.value)
    assert stray_temp_files(tmp_path) == []


def test_an_unchanged_session_does_not_rewrite_the_registry(tmp_path: Path) -> None:
    registry = Registry(tmp_path, "run-1")
    with registry.session() as session:
        session.add("t1", "a", ("f",), ())
    stamp = registry.stamp()
    with registry.session() as session:
        assert list(session.holds) == ["run-1/t1"]
    assert registry.stamp() == stamp


# --- sessions and owners --------------------------------------------------------------------


def test_session_sees_its_own_and_other_runs_holds(tmp_path: Path) -> None:
    one, two = Registry(tmp_path, "one"), Registry(tmp_path, "two")
    with one.session() as session:
        session.add("t1", "a", ("src/",), ())
    with two.session() as session:
        assert [h.key for h in session.foreign()] == ["one/t1"]
        assert session.mine() == []
        session.add("t2", "b", ("docs/",), ("src/a.py",))
    with one.session() as session:
        assert [h.key for h in session.mine()] == ["one/t1"]
        assert [h.key for h in session.foreign()] == ["two/t2"]
        session.remove("t2")  # only removes this run's own holds
        session.remove("t1")
    with two.session() as session:
        assert list(session.holds) == ["two/t2"]
        assert session.dropped == []


def test_owner_alive_for_this_process() -> None:
    owner = Owner.current("r")
    assert owner.pid == os.getpid()
    assert owner.alive()


def test_owner_dead_after_its_process_exited(dead_owner: Owner) -> None:
    assert not dead_owner.alive()


def test_owner_with_a_reused_pid_is_dead(child: Child) -> None:
    real = Owner(socket.gethostname(), child.pid, child.id.started, "r")
    assert real.alive()
    for delta in (-3600.0, -1.0, 0.01, 3600.0):
        assert not Owner(real.host, real.pid, round(real.started + delta, 2), "r").alive()
    this = Owner.current("r")
    assert not Owner(this.host, this.pid, this.started - 10.0, "r").alive()


def test_owner_on_another_host_is_assumed_alive(dead_owner: Owner) -> None:
    assert Owner("some-other-host.invalid", dead_owner.pid, dead_owner.started, "r").alive()


def test_owner_killed_but_not_yet_reaped_is_dead(child: Child) -> None:
    """A zombie runs nothing (registry._start_time says so): its claims must not block."""
    owner = Owner(socket.gethostname(), child.pid, child.id.started, "r")
    child.kill_unreaped()
    assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
    assert not owner.alive()


def test_session_drops_holds_of_dead_and_reused_owners(tmp_path: Path, dead_owner: Owner) -> None:
    registry = Registry(tmp_path, "me")
    this = Owner.current("live-run")
    reused = Owner(this.host, this.pid, this.started - 100.0, "reused-run")
    holds = [
        Hold(this, "alive", "a", ("x",), (), time.time()),
        Hold(dead_owner, "dead", "b", ("y",), (), time.time()),
        Hold(reused, "reused", "c", ("z",), (), time.time()),
    ]
    write_claims(tmp_path, holds)
    with registry.session() as session:
        assert list(session.holds) == ["live-run/alive"]
        assert sorted(h.task for h in session.dropped) == ["dead", "reused"]
    # The pruning is written back, even though the caller changed nothing.
    assert [h["task"] for h in json.loads(claims_path(tmp_path).read_text())["holds"]] == ["alive"]


def test_a_reused_pid_does_not_block_a_queue(tmp_path: Path) -> None:
    this = Owner.current("ghost-run")
    reused = Owner(this.host, this.pid, this.started - 3600.0, "ghost-run")
    Registry(tmp_path)
    write_claims(tmp_path, [Hold(reused, "ghost", "code_developer", ("src/x.py",), (), time.time())])
    with TaskQueue(max_parallel=2, repo=tmp_path) as queue:
        assert queue.try_submit(AgentTask("code_developer", "x", ["src/x.py"], lambda: "ran")).result(WAIT) == "ran"


# --- damaged registry files -----------------------------------------------------------------

DAMAGED = {
    "truncated": b'{"format": "project-manager/claims", "version": 1, "holds": [{"owner": {"host": "h", "pi',
    "empty": b"",
    "garbage-bytes": b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x80 not json \xc3\x28\x00",
    "garbage-text": b"this is not a claim registry\n",
    "other-format": b'{"format": "something/else", "version": 1, "holds": []}',
    "future-version": json.dumps(
        {"format": "project-manager/claims", "version": 2, "claims": [{"who": "someone", "paths": ["**"]}]}
    ).encode(),
    "holds-not-a-list": b'{"format": "project-manager/claims", "version": 1, "holds": 42}',
    "hold-missing-owner": b'{"format": "project-manager/claims", "version": 1, "holds": [{"task": "t"}]}',
}


@pytest.fixture
def live_run(tmp_path: Path, dead_owner: Owner) -> Hold:
    """A live run (this process) recorded under runs/ with one hold; and a dead run's record."""
    live = Registry(tmp_path, "live-run")
    with live.session() as session:  # writes claims.json and the run's own runs/live-run.holds
        session.add("t-live", "code_developer", ("src/app.py",), ("docs/",))
        hold = session.holds["live-run/t-live"]
    live.write_run_record(_record(live))
    dead = Hold(dead_owner, "t-dead", "tester", ("tests/",), (), time.time())
    record = {"run": "dead-run", "owner": dead_owner.to_json(), "version": VERSION}
    (tmp_path / STATE / "runs" / "dead-run.json").write_text(json.dumps(record))
    (tmp_path / STATE / "runs" / "dead-run.holds").write_text(json.dumps({"holds": [dead.to_json()]}))
    assert [r.owner.run for r in live_run_records(tmp_path)] == ["live-run"]
    return hold


def damage(repo: Path, kind: str) -> bytes:
    content = DAMAGED[kind]
    claims_path(repo).write_bytes(content)
    return content


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_a_damaged_registry_is_kept_aside_and_rebuilt_from_live_runs(
    tmp_path: Path, live_run: Hold, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    original = damage(tmp_path, kind)
    registry = Registry(tmp_path, "other-run")
    with caplog.at_level(logging.WARNING, logger="queue_core"), registry.session() as session:
        assert list(session.holds) == ["live-run/t-live"]  # the dead run's hold is not revived
        assert session.holds["live-run/t-live"] == live_run
        assert [h.key for h in session.foreign()] == ["live-run/t-live"]
    [aside] = (tmp_path / STATE).glob("claims.json.damaged-*")
    assert aside.read_bytes() == original
    [notice] = registry.notices
    assert str(claims_path(tmp_path)) in notice
    assert aside.name in notice
    warnings = [r for r in caplog.records if r.name == "queue_core" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [notice]


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbage-bytes", "future-version"])
def test_a_rebuilt_registry_loses_no_claim(tmp_path: Path, live_run: Hold, kind: str) -> None:
    """After the rebuild, the live run's hold blocks every later acquire, not only the first."""
    damage(tmp_path, kind)
    with Registry(tmp_path, "other-run").session() as session:
        assert list(session.holds) == ["live-run/t-live"]
    with Registry(tmp_path, "third-run").session() as session:
        assert list(session.holds) == ["live-run/t-live"]
    with TaskQueue(max_parallel=2, repo=tmp_path) as queue:
        for attempt in range(2):
            with pytest.raises(ClaimConflictError, match="t-live"):
                queue.try_submit(AgentTask("tester", "conflicts", ["src/app.py"], lambda: None, id=f"c{attempt}"))
    data = json.loads(claims_path(tmp_path).read_text())
    assert [h["task"] for h in data["holds"]] == ["t-live"]


def test_a_damaged_registry_seen_first_by_a_queue_still_blocks(tmp_path: Path, live_run: Hold) -> None:
    damage(tmp_path, "truncated")
    with TaskQueue(max_parallel=2, repo=tmp_path) as queue:
        assert queue.registry is not None
        with pytest.raises(ClaimConflictError, match="t-live"):
            queue.try_submit(AgentTask("tester", "conflicts", ["src/app.py"], lambda: None, id="c1"))
        assert len(queue.registry.notices) == 1
        with pytest.raises(ClaimConflictError, match="t-live"):
            queue.try_submit(AgentTask("tester", "conflicts", ["src/app.py"], lambda: None, id="c2"))
        # Not conflicting: runs, and the rebuilt registry keeps the live hold beside it.
        assert queue.try_submit(AgentTask("tester", "free", ["src/other.py"], lambda: 7, id="ok")).result(WAIT) == 7


def test_every_damaged_copy_is_kept(tmp_path: Path, live_run: Hold) -> None:
    """Two damaged registries in a row (within one second, in one process) leave two copies."""
    registry = Registry(tmp_path, "other-run")
    for kind in ("truncated", "garbage-text"):
        damage(tmp_path, kind)
        with registry.session() as session:
            session.add(f"after-{kind}", "tester", ("tests/",), ())  # so the rebuilt registry is written
    kept = sorted(p.read_bytes() for p in (tmp_path / STATE).glob("claims.json.damaged-*"))
    assert kept == sorted([DAMAGED["truncated"], DAMAGED["garbage-text"]])
    assert len(registry.notices) == 2


# --- an unusable state directory --------------------------------------------------------------


@pytest.fixture
def unwritable_repo(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A repository whose state directory cannot be created; yields (repo, state dir path).

    A read-only repository (0o500) where that stops this user; as root, where chmod stops
    nothing, ``.project-manager`` is made a regular file, so creating the directory fails.
    """
    repo = tmp_path / "repo"
    repo.mkdir()
    state = repo.resolve() / STATE
    repo.chmod(0o500)
    try:
        probe = repo / "probe"
        try:
            probe.mkdir()
        except PermissionError:
            pass  # chmod works for this user
        else:
            probe.rmdir()
            repo.chmod(0o700)
            state.write_text("a file where the state directory should be\n")
        yield repo, state
    finally:
        repo.chmod(0o700)


def test_registry_on_an_unwritable_repo_raises_state_error(unwritable_repo: tuple[Path, Path]) -> None:
    repo, state = unwritable_repo
    with pytest.raises(StateError) as caught:
        Registry(repo)
    assert caught.value.path == str(state)
    assert str(state) in str(caught.value)
    assert isinstance(caught.value, OSError)


def test_task_queue_on_an_unwritable_repo_raises_state_error(unwritable_repo: tuple[Path, Path]) -> None:
    repo, state = unwritable_repo
    with pytest.raises(StateError) as caught:
        TaskQueue(max_parallel=2, repo=repo)
    assert caught.value.path == str(state)
    assert str(state) in str(caught.value)


def test_state_dir_that_is_a_file_raises_state_error_for_root_too(tmp_path: Path) -> None:
    (tmp_path / STATE).write_text("not a directory\n")
    with pytest.raises(StateError) as caught:
        TaskQueue(max_parallel=2, repo=tmp_path)
    assert caught.value.path == str(tmp_path.resolve() / STATE)


# --- two runs in one process ----------------------------------------------------------------


@pytest.fixture
def two_queues(tmp_path: Path) -> Iterator[tuple[TaskQueue, TaskQueue]]:
    first = TaskQueue(max_parallel=4, repo=tmp_path)
    second = TaskQueue(max_parallel=4, repo=tmp_path)
    try:
        yield first, second
    finally:
        second.shutdown(wait=True, cancel_pending=True)
        first.shutdown(wait=True, cancel_pending=True)


def run_of(queue: TaskQueue) -> str:
    assert queue.registry is not None
    return queue.registry.run


def test_two_queues_in_one_process_are_distinct_runs(two_queues: tuple[TaskQueue, TaskQueue]) -> None:
    first, second = two_queues
    assert run_of(first) != run_of(second)


@pytest.mark.parametrize(
    ("held", "wanted", "kind"),
    [
        (("code_developer", ["src/a.py"], []), ("code_developer", ["docs/b.md"], []), "agent"),
        (("code_developer", ["src/"], []), ("tester", ["src/pkg/m.py"], []), "claim"),
        (("code_developer", ["src/*.py"], []), ("tester", [], ["src/m.py"]), "claim"),
        (("code_developer", [], ["src/m.py"]), ("tester", ["src/"], []), "claim"),
    ],
    ids=["same-agent", "write-write", "read-vs-write", "write-vs-read"],
)
def test_a_foreign_hold_blocks_a_queue_in_the_same_process(
    two_queues: tuple[TaskQueue, TaskQueue],
    held: tuple[str, list[str], list[str]],
    wanted: tuple[str, list[str], list[str]],
    kind: str,
) -> None:
    first, second = two_queues
    gate = Gate(result="first")
    f1 = first.submit_task(AgentTask(held[0], "holder", held[1], gate, id="holder", reads=held[2]))
    wait_for(gate.started, "the holder to start")
    second_started = threading.Event()

    def body() -> str:
        second_started.set()
        return "second"

    f2 = second.submit_task(AgentTask(wanted[0], "waiter", wanted[1], body, id="waiter", reads=wanted[2]))
    [waiting] = second.get_status().waiting
    assert waiting.id == "waiter"
    assert waiting.reason_kind == kind
    assert f"holder in run {run_of(first)}" in waiting.reason
    assert not second_started.is_set()
    gate.open()
    assert f1.result(timeout=WAIT) == "first"
    assert f2.result(timeout=WAIT) == "second"


@pytest.mark.parametrize(
    ("held", "wanted"),
    [
        (("code_developer", ["src/a.py"], []), ("tester", ["src/b.py"], [])),
        (("code_developer", ["src/a.py"], ["docs/"]), ("tester", ["tests/"], ["docs/x.md"])),
    ],
    ids=["disjoint-writes", "shared-reads"],
)
def test_queues_in_one_process_run_compatible_tasks_together(
    two_queues: tuple[TaskQueue, TaskQueue],
    held: tuple[str, list[str], list[str]],
    wanted: tuple[str, list[str], list[str]],
) -> None:
    first, second = two_queues
    both = threading.Barrier(2, timeout=WAIT)  # breaks unless both run at once
    f1 = first.submit_task(AgentTask(held[0], "one", held[1], both.wait, reads=held[2]))
    f2 = second.submit_task(AgentTask(wanted[0], "two", wanted[1], both.wait, reads=wanted[2]))
    f1.result(timeout=WAIT)
    f2.result(timeout=WAIT)


def test_a_waiting_task_starts_when_the_other_run_releases(tmp_path: Path) -> None:
    with TaskQueue(max_parallel=2, repo=tmp_path) as second, TaskQueue(max_parallel=2, repo=tmp_path) as first:
        gate = Gate()
        first.submit_task(AgentTask("code_developer", "holder", ["src/"], gate, id="holder"))
        wait_for(gate.started, "the holder to start")
        started = threading.Event()
        future = second.submit_task(AgentTask("tester", "waiter", ["src/x.py"], started.set, id="waiter"))
        assert second.get_status().queued_tasks == 1
        gate.open()
        first.shutdown(wait=True)  # the run ends: its holds are gone from the registry
        wait_for(started, "the waiter to start after the other run ended")
        future.result(timeout=WAIT)
        assert json.loads(claims_path(tmp_path).read_text())["holds"] == []


def test_an_owner_of_an_earlier_boot_is_dead_and_one_of_another_pid_namespace_is_assumed_alive() -> None:
    """Before: a run in another PID namespace with the same hostname had its pids read as ours."""
    me = Owner.current("r")
    assert me.boot
    assert me.pid_ns
    assert me.alive()
    assert not dataclasses.replace(me, boot="another-boot").alive()  # nothing survives a reboot
    elsewhere = dataclasses.replace(me, pid=1, started=1.0, ticks=1, pid_ns=me.pid_ns + 1)
    assert not elsewhere.is_local
    assert elsewhere.alive()  # its processes cannot be seen from here
    assert Owner.from_json(json.loads(json.dumps(elsewhere.to_json()))) == elsewhere


def test_the_id_of_a_dead_run_is_taken_under_the_lock(tmp_path: Path) -> None:
    """Before: a dead run's id was taken without it; two runs taking it could each move the
    other's fresh record aside and both be that id, and a prune could remove the new record."""
    holder = Registry(tmp_path, "holder")
    runs = tmp_path / ".project-manager" / "runs"
    (runs / "reused.json").write_text("{}")  # a damaged record: its run vouches for nothing
    with holder.session():
        with pytest.raises(StateError, match="not free"):
            Registry(tmp_path, "reused", lock_timeout=0.05)
        assert Registry(tmp_path, "fresh", lock_timeout=0.05).run == "fresh"  # a new id needs no lock
    assert Registry(tmp_path, "reused").run == "reused"


_DIES_LEAVING_AN_AGENT = """
import json, os, sys
from queue_core.registry import Registry
registry = Registry(sys.argv[1], "ci-42")
with registry.session() as session:
    session.add("t1", "x", ("hot.txt",), ())
with open(registry.groups_path, "a") as f:
    f.write(json.dumps({"task": "t1", "pgid": int(sys.argv[2]), "ticks": int(sys.argv[3])}) + "\\n")
os._exit(0)  # as if killed: its agent's process group lives on
"""


@pytest.fixture
def orphaned_agent(tmp_path: Path) -> Iterator[None]:
    """Run ci-42 took hot.txt for an agent, then died as if killed; its agent's process group lives on."""
    from queue_core._supervisor.proctree import read_proc

    with subprocess.Popen(["sleep", "60"], start_new_session=True) as agent:
        try:
            ticks = read_proc(agent.pid).start
            argv = [sys.executable, "-c", _DIES_LEAVING_AN_AGENT, str(tmp_path), str(agent.pid), str(ticks)]
            subprocess.run(argv, check=True, timeout=WAIT)
            yield
        finally:
            agent.kill()


@pytest.mark.usefixtures("orphaned_agent")
def test_a_run_id_given_again_is_not_the_dead_run_whose_agent_still_runs(tmp_path: Path) -> None:
    """Before: the new ci-42 took the dead ci-42's hold for its own, ignored it, and dropped it."""
    with TaskQueue(repo=tmp_path, run_id="ci-42") as queue:
        assert queue.registry is not None
        assert queue.registry.run == "ci-42-2"
        with pytest.raises(ClaimConflictError):
            queue.try_submit(AgentTask("y", "writes hot.txt", ["hot.txt"], lambda: None, id="t2"))


@pytest.mark.usefixtures("orphaned_agent")
def test_a_lost_registry_keeps_the_hold_of_an_orphaned_agent(tmp_path: Path) -> None:
    """Before: with no live registry to hold the beacon, a missing claims.json read as "nothing is
    held", though the dead run's .holds and .groups said its agent still ran."""
    (tmp_path / ".project-manager" / "claims.json").unlink()
    with TaskQueue(repo=tmp_path) as queue, pytest.raises(ClaimConflictError):
        queue.try_submit(AgentTask("y", "writes hot.txt", ["hot.txt"], lambda: None, id="t2"))


def test_a_run_record_is_written_again_into_a_state_directory_removed_whole(tmp_path: Path) -> None:
    """Before: every status write after `rm -rf` of the state directory logged a traceback until a step."""
    import shutil

    registry = Registry(tmp_path, "r")
    shutil.rmtree(registry.dir)
    registry.write_run_record(_record(registry))
    assert json.loads((registry.runs_dir / "r.json").read_text())["run"] == "r"


# --- time, told by the registry's clocks ------------------------------------------------------

#: A wall time long past: a registry that read the real clock instead would judge every age wrong.
T0 = 1_000_000_000.0


class ManualClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_remote_runs_hold_goes_stale_when_the_wall_clock_passes_stale_after(tmp_path: Path) -> None:
    """A hold of a run that cannot be checked directly lives by its heartbeat's age, by the
    registry's wall clock: moved past ``stale_after``, the hold is dropped, without sleeping."""
    wall = ManualClock(T0)
    registry = Registry(tmp_path, "me", stale_after=15.0, clocks=Clocks(ManualClock(0.0), wall))
    remote = Owner("elsewhere.invalid", 4242, 1.0, "remote")
    write_claims(tmp_path, [Hold(remote, "t", "code_developer", ("src/x.py",), (), T0)])
    beat = registry.runs_dir / "remote.json"
    beat.write_text(json.dumps({"run": "remote", "owner": remote.to_json(), "updated": T0, "version": VERSION}))
    os.utime(beat, (T0, T0))

    wall.now = T0 + 14.0
    with registry.session() as session:
        assert [h.key for h in session.foreign()] == ["remote/t"]
    wall.now = T0 + 16.0
    with registry.session() as session:
        assert session.foreign() == []
        assert [h.key for h in session.dropped] == ["remote/t"]


def test_the_recovery_of_a_lost_registry_ends_when_the_wall_clock_passes_it(tmp_path: Path) -> None:
    """While another registry lives, a lost claims.json stops new claims for RECOVERY_S by the
    registry's wall clock, and no longer once it has passed: the window is stepped, not slept."""
    wall = ManualClock(T0)
    clocks = Clocks(ManualClock(0.0), wall)
    bystander = Registry(tmp_path, "bystander", clocks=clocks)  # live: a lost claims.json is recovered, not ignored
    registry = Registry(tmp_path, "me", clocks=clocks)
    registry.path.unlink()

    session = registry.begin()
    registry.abort(session)
    assert session.recovering == T0 + RECOVERY_S
    wall.now = T0 + RECOVERY_S - 0.5
    assert registry.lost_holds(()), "a heartbeat must step while the registry is recovered"
    with registry.session() as session:
        assert session.recovering == T0 + RECOVERY_S
    wall.now = T0 + RECOVERY_S + 0.5
    assert not registry.lost_holds(())
    with registry.session() as session:
        assert session.recovering == 0.0
    bystander.close()
