"""Claims a running task adds as it works (queue_core.taskclaims), and how a run takes them on.

The registry here is a real one on a git repository; holds are made through a Registry session
of this process, so their owner lives. Claims that wait run in threads, synchronised on the
waits file (claim-waits.json): nothing here sleeps.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queue_core import AgentTask, TaskQueue
from queue_core.claims import Access, Claim, normalise_path
from queue_core.claimsfile import contents, lacks_holds, parse
from queue_core.errors import ClaimDeadlockError, ClaimHeldError, ClaimRefusedError
from queue_core.holds import Hold, Owner, read_run_holds
from queue_core.processes import ProcessId
from queue_core.registry import Registry
from queue_core.scheduler import Scheduler
from queue_core.task import TaskState
from queue_core.taskclaims import TaskClaims, claimed_by, claimed_in, holder_text, holders, may_write, task_path

from ..conftest import WAIT, Gate, eventually, git_repo, in_thread, wait_for

#: Longer than any join below: a wait that is not ended early fails the test instead of passing late.
LONG = 6 * WAIT
A, B, C = Claim.parse("src/a.py"), Claim.parse("src/b.py"), Claim.parse("docs/c.md")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"src/a.py": "", "src/b.py": "", "docs/c.md": ""})


@pytest.fixture
def registry(repo: Path) -> Iterator[Registry]:
    reg = Registry(repo, "r1")
    yield reg
    reg.close()


@pytest.fixture
def other_run(repo: Path, registry: Registry) -> Iterator[Registry]:
    """A second run on the same repository (another process, as far as the registry can tell)."""
    reg = Registry(repo, "r2")
    yield reg
    reg.close()


def hold(
    registry: Registry,
    task: str,
    agent: str,
    writes: Sequence[str] = (),
    reads: Sequence[str] = (),
    owns: tuple[str, ...] | None = None,
) -> None:
    with registry.session() as session:
        session.add(task, agent, tuple(writes), tuple(reads), owns=owns)


def let_go(registry: Registry, task: str) -> None:
    with registry.session() as session:
        session.remove(task)


def holds_in(registry: Registry) -> dict[str, Hold]:
    """claims.json's holds, by key."""
    return {h.key: h for h in parse((registry.dir / "claims.json").read_bytes())[0]}


def waiting(registry: Registry) -> dict[str, list[str]]:
    """The waits file: hold key -> what it waits for."""
    path = registry.dir / "claim-waits.json"
    if not path.exists():
        return {}
    return {w["key"]: w["claims"] for w in json.loads(path.read_text())["waits"]}


class Background:
    """A call in a thread of its own, whose outcome the test collects with a bounded join."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.box: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.box["error"] = exc

    def result(self) -> Any:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the claim did not return"
        if "error" in self.box:
            raise self.box["error"]
        return self.box["result"]


def wait_in_thread(registry: Registry, task: str, claims: Sequence[Claim], stop: threading.Event) -> Background:
    """Task ``task`` of ``registry``'s run asks for ``claims`` in a thread, waiting (until ``stop``);
    returns once its wait is on file."""
    key = f"{registry.run}/{task}"
    waiter = Background(lambda: TaskClaims(registry.dir, registry.run, task).claim(claims, wait=LONG, stop=stop))
    eventually(f"{key} to wait", lambda: key in waiting(registry))
    return waiter


@contextmanager
def waiting_in_thread(registry: Registry, task: str, claims: Sequence[Claim]) -> Iterator[None]:
    """Task ``task`` waits for ``claims`` in a thread during the body; then stops waiting, not granted."""
    stop = threading.Event()
    waiter = wait_in_thread(registry, task, claims, stop)
    try:
        yield
    finally:
        stop.set()
    with pytest.raises(ClaimHeldError):
        waiter.result()


# --- granted ----------------------------------------------------------------------------------


def test_a_free_claim_is_granted_and_recorded_in_the_registry_the_runs_holds_and_its_claimed_file(
    registry: Registry,
) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    granted = TaskClaims(registry.dir, "r1", "t1").claim([B])
    assert (granted.added, granted.had) == (("src/b.py",), ())

    mine = holds_in(registry)["r1/t1"]
    assert (mine.writes, mine.added) == (("src/a.py", "src/b.py"), ("src/b.py",))
    [recorded] = read_run_holds(registry.runs_dir / "r1.holds")
    assert (recorded.writes, recorded.added) == (("src/a.py", "src/b.py"), ("src/b.py",))
    assert claimed_by(registry.dir, "r1", "t1") == (("src/b.py",), ())
    assert may_write(registry.dir, "r1", "t1", Claim.parse("src/b.py")) == (True, None)


def test_a_claim_already_covered_is_had_and_writes_nothing(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/", "src/a.py"], ["docs/"])
    before = {p.name: p.read_bytes() for p in (registry.dir / "claims.json", registry.runs_dir / "r1.holds")}
    granted = TaskClaims(registry.dir, "r1", "t1").claim([B, A])
    assert (granted.added, granted.had) == ((), ("src/b.py", "src/a.py"))
    read = TaskClaims(registry.dir, "r1", "t1").claim([C, Claim.parse("src/x/y.py")], Access.READ)
    assert (read.added, read.had) == ((), ("docs/c.md", "src/x/y.py"))  # a write claim allows reading
    assert {p.name: p.read_bytes() for p in (registry.dir / "claims.json", registry.runs_dir / "r1.holds")} == before
    assert not (registry.runs_dir / "r1.claimed").exists()
    assert claimed_by(registry.dir, "r1", "t1") == ((), ())


def test_a_read_claim_is_recorded_as_a_read(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    granted = TaskClaims(registry.dir, "r1", "t1").claim([C], Access.READ)
    assert granted.added == ("docs/c.md",)
    mine = holds_in(registry)["r1/t1"]
    assert (mine.writes, mine.reads, mine.added) == (("src/a.py",), ("docs/c.md",), ("docs/c.md",))
    assert claimed_by(registry.dir, "r1", "t1") == ((), ("docs/c.md",))
    # Read only: writing it is not among the task's claims, and asking to write it is a new claim.
    assert may_write(registry.dir, "r1", "t1", C) == (False, None)
    assert TaskClaims(registry.dir, "r1", "t1").claim([C]).added == ("docs/c.md",)


def test_claimed_in_gathers_every_task_over_attempts_and_skips_a_line_cut_short(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(registry, "t2", "tester")
    TaskClaims(registry.dir, "r1", "t1").claim([B])
    TaskClaims(registry.dir, "r1", "t2").claim([C], Access.READ)
    with open(registry.runs_dir / "r1.claimed", "a", encoding="utf-8") as out:
        out.write('{"task": "t1", "writes": ["src/cut')  # a kill mid-write
    assert claimed_in(registry.dir, "r1") == {"t1": (("src/b.py",), ()), "t2": ((), ("docs/c.md",))}
    assert claimed_in(registry.dir, "no-such-run") == {}
    assert claimed_by(registry.dir, "r1", "t3") == ((), ())


# --- held by another --------------------------------------------------------------------------


def test_a_claim_held_by_another_task_of_the_run_is_refused_naming_it_and_nothing_is_granted(
    registry: Registry,
) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(registry, "t2", "tester", ["src/b.py"])
    before = holds_in(registry)["r1/t1"]
    with pytest.raises(ClaimHeldError, match=r"^src/b\.py is held by task t2 \(tester\)$") as caught:
        TaskClaims(registry.dir, "r1", "t1").claim([C, B])  # all or none: docs/c.md is free
    assert isinstance(caught.value.holder, Hold)
    assert caught.value.holder.key == "r1/t2"
    assert holds_in(registry)["r1/t1"] == before
    assert may_write(registry.dir, "r1", "t1", B)[1] == caught.value.holder


def test_a_claim_held_by_a_task_of_another_run_names_that_run(registry: Registry, other_run: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(other_run, "u1", "writer", ["docs/"])
    with pytest.raises(ClaimHeldError, match=r"^docs/c\.md is held by task u1 \(writer\) of run r2$") as caught:
        TaskClaims(registry.dir, "r1", "t1").claim([C])
    assert isinstance(caught.value.holder, Hold)
    assert holder_text(caught.value.holder, "r2") == "task u1 (writer)"
    assert holder_text(caught.value.holder, "r1") == "task u1 (writer) of run r2"


def test_reads_are_shared_with_reads_but_not_with_writes(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(registry, "t2", "tester", ["src/b.py"], ["docs/"])
    mine = TaskClaims(registry.dir, "r1", "t1")
    assert mine.claim([C], Access.READ).added == ("docs/c.md",)  # t2 only reads docs/
    with pytest.raises(ClaimHeldError, match="held by task t2"):
        mine.claim([Claim.parse("docs/d.md")])  # a write overlaps t2's read
    with pytest.raises(ClaimHeldError, match="held by task t2"):
        mine.claim([B], Access.READ)  # a read overlaps t2's write
    assert [h.task for h in holders(registry.dir, Claim.parse("docs/"))] == ["t1", "t2"]  # reads or writes


# --- refused ----------------------------------------------------------------------------------


def test_a_task_that_is_not_running_is_refused(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    with pytest.raises(ClaimRefusedError, match="task ghost of run r1 is not running"):
        TaskClaims(registry.dir, "r1", "ghost").claim([B])
    with pytest.raises(ClaimRefusedError, match="not running"):
        TaskClaims(registry.dir, "r9", "t1").claim([B])  # the same task id in another run


def test_a_claim_beyond_what_the_agent_owns_is_refused(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"], owns=("src/**",))
    hold(registry, "t2", "reader", [], owns=())
    with pytest.raises(ClaimRefusedError, match=r"docs/c\.md is not among what agent coder owns \(src/\*\*\)"):
        TaskClaims(registry.dir, "r1", "t1").claim([B, C])
    assert holds_in(registry)["r1/t1"].writes == ("src/a.py",)
    assert TaskClaims(registry.dir, "r1", "t1").claim([Claim.parse("src/new/x.py")]).added == ("src/new/x.py",)
    with pytest.raises(ClaimRefusedError, match=r"owns \(nothing\)"):
        TaskClaims(registry.dir, "r1", "t2").claim([C], Access.READ)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("../outside.txt", "lies outside the repository"),
        ("src/../../outside.txt", "lies outside the repository"),
        ("/etc/hostname", "lies outside the repository"),
        (".", "is the repository itself"),
        ("src/..", "is the repository itself"),
        (".git", "in the repository's .git directory"),
        (".git/config", "in the repository's .git directory"),
        ("escape/file.txt", "lies outside the repository"),  # a symlink to a folder outside
        ("", "is no path"),
        ("src/a\0.py", "is no path"),
    ],
)
def test_task_path_refuses_what_is_not_a_path_of_the_work_tree(repo: Path, tmp_path: Path, raw: str, why: str) -> None:
    (tmp_path / "outside").mkdir()
    (repo / "escape").symlink_to(tmp_path / "outside")
    with pytest.raises(ClaimRefusedError, match=why):
        task_path(raw, repo, repo)


def test_task_path_resolves_dots_and_symlinks_inside_the_repository_to_the_real_path(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "lib").symlink_to("src")
    (repo / "alias.py").symlink_to(repo / "src" / "a.py")
    assert task_path("a/../src/b.py", repo, repo).text == "src/b.py"
    assert task_path("lib/a.py", repo, repo).text == "src/a.py"
    assert task_path("alias.py", repo, repo).text == "src/a.py"
    assert task_path("b.py", repo / "src", repo).text == "src/b.py"  # relative to the folder it runs in
    assert task_path(str(repo / "docs"), tmp_path, repo).text == "docs"
    assert task_path("src/new/file.py", repo, repo).text == "src/new/file.py"  # need not exist yet
    top = tmp_path / "top-link"
    top.symlink_to(repo)
    assert task_path("src/a.py", top, top).text == "src/a.py"  # the repository reached through a link


def test_task_path_refuses_the_state_directory_inside_the_work_tree(tmp_path: Path) -> None:
    """Outside git the state directory is .project-manager in the work tree: the registry's, no task's."""
    state = tmp_path / ".project-manager"
    (state / "runs").mkdir(parents=True)
    with pytest.raises(ClaimRefusedError, match="lies in project-manager's state directory"):
        task_path(".project-manager/runs", tmp_path, tmp_path, state)
    assert task_path("notes.md", tmp_path, tmp_path, state).text == "notes.md"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.text(st.sampled_from("ab.-_*?[]\\ !"), min_size=1, max_size=5), min_size=1, max_size=3))
def test_task_path_names_exactly_the_path_however_its_names_are_spelt(tmp_path: Path, names: list[str]) -> None:
    """Wildcards in a file name are taken literally: the claim covers the path and no sibling."""
    parts = [n.strip() for n in names]
    rel = "/".join(parts)
    if any(p in ("", ".", "..") for p in parts) or normalise_path(rel) != rel:
        return  # not a path as Claim.covers reads one (it reads "**/**" as "**")
    claim = task_path(rel, tmp_path, tmp_path)
    assert claim.covers(rel)
    assert not claim.covers("/".join([*parts[:-1], parts[-1] + "x"]))


def test_a_file_with_brackets_in_its_name_is_held_once_claimed(registry: Registry, repo: Path) -> None:
    """Before: the escaped text of its claim was read as a path; never held, it was granted again at each ask."""
    hold(registry, "t1", "coder", ["src/a.py"])
    page = task_path("app/[id]/page.tsx", repo, repo)
    assert page.covers("app/[id]/page.tsx")
    assert TaskClaims(registry.dir, "r1", "t1").claim([page]).added == (page.text,)
    assert may_write(registry.dir, "r1", "t1", page) == (True, None)
    again = TaskClaims(registry.dir, "r1", "t1").claim([page])
    assert (again.added, again.had) == ((), (page.text,))
    assert holds_in(registry)["r1/t1"].writes == ("src/a.py", page.text)


def test_a_pattern_is_not_had_because_a_held_pattern_matches_its_text(registry: Registry) -> None:
    """Before: src/?.py 'covered' the text src/*.py, which was answered as had though src/ab.py was free."""
    hold(registry, "t1", "coder", ["src/?.py"])
    granted = TaskClaims(registry.dir, "r1", "t1").claim([Claim.parse("src/*.py")])
    assert (granted.added, granted.had) == (("src/*.py",), ())


def test_a_pattern_beyond_what_the_agent_owns_is_refused(registry: Registry) -> None:
    """Before: owning src/?.py let an agent claim src/*.py, whose text it 'covered'."""
    hold(registry, "t1", "coder", [], owns=("src/?.py",))
    with pytest.raises(ClaimRefusedError, match="not among what agent coder owns"):
        TaskClaims(registry.dir, "r1", "t1").claim([Claim.parse("src/*.py")])


# --- waiting ----------------------------------------------------------------------------------


def test_a_waiting_claim_is_granted_once_the_holder_lets_go(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(registry, "t2", "tester", ["src/b.py"])
    stop = threading.Event()
    waiter = wait_in_thread(registry, "t1", [B], stop)
    assert waiting(registry) == {"r1/t1": ["src/b.py"]}
    let_go(registry, "t2")
    granted = waiter.result()
    assert granted.added == ("src/b.py",)
    assert holds_in(registry)["r1/t1"].writes == ("src/a.py", "src/b.py")
    assert waiting(registry) == {}  # its wait is over


def test_stop_ends_a_wait_early_as_held(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(registry, "t2", "tester", ["src/b.py"])
    stop = threading.Event()
    waiter = wait_in_thread(registry, "t1", [B], stop)
    stop.set()
    with pytest.raises(ClaimHeldError, match=r"src/b\.py is held by task t2 \(tester\) \(waited up to 60 s\)"):
        waiter.result()
    assert waiting(registry) == {}
    assert holds_in(registry)["r1/t1"].writes == ("src/a.py",)


def test_a_wait_ends_refused_when_the_task_itself_ends_meanwhile(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(registry, "t2", "tester", ["src/b.py"])
    waiter = wait_in_thread(registry, "t1", [B], threading.Event())
    let_go(registry, "t1")
    with pytest.raises(ClaimRefusedError, match="not running"):
        waiter.result()
    assert waiting(registry) == {}


# --- deadlocks --------------------------------------------------------------------------------


def test_two_tasks_asking_for_each_others_files_the_second_is_refused_at_once(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(registry, "t2", "tester", ["src/b.py"])
    with waiting_in_thread(registry, "t1", [B]):
        with pytest.raises(ClaimDeadlockError) as caught:
            in_thread(lambda: TaskClaims(registry.dir, "r1", "t2").claim([A], wait=LONG))
        assert str(caught.value) == (
            "waiting for src/a.py would deadlock: it is held by task t1 (coder), "
            "which waits for src/b.py, which this task holds"
        )
        assert [h.key for h in caught.value.cycle] == ["r1/t1"]  # type: ignore[attr-defined]
        assert waiting(registry) == {"r1/t1": ["src/b.py"]}  # the first still waits, for one that does not
        # Asked without a wait, it is plainly held: no wait, no deadlock.
        with pytest.raises(ClaimHeldError, match=r"^src/a\.py is held by task t1 \(coder\)$"):
            TaskClaims(registry.dir, "r1", "t2").claim([A])


def test_a_deadlock_names_the_path_of_the_holder_on_the_cycle_not_of_another_holder(registry: Registry) -> None:
    """Before: t2 asked for src/c.py (held by t3, who waits for nobody) and src/a.py (held by t1,
    who waits for t2's file): the message named src/c.py, the first path held, not the cycle's."""
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(registry, "t2", "tester", ["src/b.py"])
    hold(registry, "t3", "writer", ["src/c.py"])
    with (
        waiting_in_thread(registry, "t1", [B]),
        pytest.raises(ClaimDeadlockError, match=r"^waiting for src/a\.py would deadlock: it is held by task t1"),
    ):
        in_thread(lambda: TaskClaims(registry.dir, "r1", "t2").claim([Claim.parse("src/c.py"), A], wait=LONG))


def test_a_cycle_of_three_across_two_runs_is_refused_naming_every_task_on_it(
    registry: Registry, other_run: Registry
) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(registry, "t2", "tester", ["src/b.py"])
    hold(other_run, "u1", "writer", ["docs/c.md"])
    # t1 waits for t2, t2 for u1 of r2
    with waiting_in_thread(registry, "t1", [B]), waiting_in_thread(registry, "t2", [C]):
        with pytest.raises(ClaimDeadlockError) as caught:
            in_thread(lambda: TaskClaims(other_run.dir, "r2", "u1").claim([A], wait=LONG))
        assert str(caught.value) == (
            "waiting for src/a.py would deadlock: it is held by task t1 (coder) of run r1, which waits for "
            "src/b.py, held by task t2 (tester) of run r1, which waits for docs/c.md, which this task holds"
        )
        assert [h.key for h in caught.value.cycle] == ["r1/t1", "r1/t2"]  # type: ignore[attr-defined]
        assert "r2/u1" not in waiting(registry)


@pytest.mark.parametrize("alive", [True, False])
def test_a_wait_of_a_process_that_is_gone_is_no_edge_of_the_wait_for_graph(
    registry: Registry, dead: ProcessId, alive: bool
) -> None:
    """A waits file written by hand: t1 waits for t2's file, in this process or in one that exited."""
    hold(registry, "t1", "coder", ["src/a.py"])
    hold(registry, "t2", "tester", ["src/b.py"])
    process = ProcessId.of(os.getpid()) if alive else dead
    wait = {"key": "r1/t1", "claims": ["src/b.py"], "access": "write", **process.to_json()}
    (registry.dir / "claim-waits.json").write_text(json.dumps({"waits": [wait]}))
    stop = threading.Event()
    stop.set()  # the wait is entered (or refused) at the first step, then ends at once
    asking = TaskClaims(registry.dir, "r1", "t2")
    if alive:
        with pytest.raises(ClaimDeadlockError, match="which this task holds"):
            asking.claim([A], wait=LONG, stop=stop)
    else:
        with pytest.raises(ClaimHeldError, match=r"held by task t1 \(coder\) \(waited up to 60 s\)"):
            asking.claim([A], wait=LONG, stop=stop)
        assert waiting(registry) == {}  # the dead one's entry was dropped when the file was written again


# --- the registry cannot be trusted -------------------------------------------------------------


def _deleted(registry: Registry) -> None:
    (registry.dir / "claims.json").unlink()


def _damaged(registry: Registry) -> None:
    (registry.dir / "claims.json").write_bytes(b"\x00garbage{")


def _recovering(registry: Registry) -> None:
    path = registry.dir / "claims.json"
    data = json.loads(path.read_text())
    data["recovering_until"] = time.time() + 3600
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("spoil", "why"),
    [(_deleted, "is missing"), (_damaged, "is damaged"), (_recovering, "is being recovered")],
)
def test_nothing_is_granted_while_the_registry_is_missing_damaged_or_recovered(
    registry: Registry, spoil: Callable[[Registry], None], why: str
) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    spoil(registry)
    stop = threading.Event()
    stop.set()
    for wait in (0.0, LONG):
        with pytest.raises(ClaimHeldError, match=why) as caught:
            TaskClaims(registry.dir, "r1", "t1").claim([B], wait=wait, stop=stop)
        assert caught.value.holder is None
    assert not (registry.runs_dir / "r1.claimed").exists()


def test_a_state_directory_removed_whole_is_not_made_again(registry: Registry) -> None:
    hold(registry, "t1", "coder", ["src/a.py"])
    shutil.rmtree(registry.dir)
    stop = threading.Event()
    stop.set()
    for wait in (0.0, LONG):
        with pytest.raises(ClaimHeldError, match="is missing") as caught:
            TaskClaims(registry.dir, "r1", "t1").claim([B], wait=wait, stop=stop)
        assert caught.value.holder is None
    assert not registry.dir.exists()
    assert may_write(registry.dir, "r1", "t1", A) == (False, None)
    assert claimed_in(registry.dir, "r1") == {}


# --- the scheduler ----------------------------------------------------------------------------


def _task(tid: str, agent: str, files: Sequence[str] = (), **kwargs: Any) -> AgentTask:
    return AgentTask(agent, f"do {tid}", list(files), lambda: None, id=tid, **kwargs)


def _sched() -> Scheduler:
    return Scheduler(4, rng=random.Random(0), max_bypass=0)


def test_a_task_overlapping_a_claim_added_to_a_running_one_waits_until_that_one_ends() -> None:
    sched = _sched()
    sched.add(_task("t1", "coder", ["src/a.py"]), 0.0)
    assert [e.id for e in sched.dispatch(0.0)] == ["t1"]
    added = sched.add_claims("t1", [(B, Access.WRITE), (C, Access.READ)])
    assert added == ((B, Access.WRITE), (C, Access.READ))
    assert sched.add_claims("t1", [(B, Access.WRITE)]) == ()  # held already

    sched.add(_task("t2", "tester", ["src/b.py"]), 1.0)
    sched.add(_task("t3", "reader", [], reads=["docs/c.md"]), 1.0)  # reads share with reads
    sched.add(_task("t4", "writer", ["docs/"]), 1.0)
    assert [e.id for e in sched.dispatch(1.0)] == ["t3"]
    reason = sched.wait_reason(sched.entry("t2"))
    assert reason is not None
    assert (reason.kind, reason.holder) == ("claim", "t1")

    sched.finish("t1", TaskState.SUCCEEDED, 2.0)
    sched.finish("t3", TaskState.SUCCEEDED, 2.0)
    assert {e.id for e in sched.dispatch(2.0)} == {"t2", "t4"}
    entry = sched.entry("t1")
    assert entry.added == ()
    assert entry.claims == entry.declared() == ((A, Access.WRITE),)


def test_claims_added_by_a_failed_attempt_are_not_held_by_its_retry() -> None:
    sched = _sched()
    sched.add(_task("t1", "coder", ["src/a.py"], retries=1, retry_delay=0.0), 0.0)
    sched.dispatch(0.0)
    sched.add_claims("t1", [(B, Access.WRITE)])
    sched.add(_task("t2", "tester", ["src/b.py"]), 0.0)
    assert sched.dispatch(0.0) == []
    sched.finish("t1", TaskState.FAILED, 1.0, "boom")
    entry = sched.entry("t1")
    assert entry.state is TaskState.RETRY_WAIT
    assert (entry.added, entry.claims) == ((), ((A, Access.WRITE),))
    assert {e.id for e in sched.dispatch(1.0)} == {"t1", "t2"}  # the retry holds src/a.py only
    assert sched.entry("t1").held(Access.WRITE) == (A,)


def test_add_claims_to_a_task_that_is_not_running_raises_key_error() -> None:
    sched = _sched()
    sched.add(_task("t1", "coder", ["src/a.py"]), 0.0)
    with pytest.raises(KeyError):
        sched.add_claims("t1", [(B, Access.WRITE)])  # queued, not started
    sched.dispatch(0.0)
    sched.finish("t1", TaskState.SUCCEEDED, 1.0)
    with pytest.raises(KeyError):
        sched.add_claims("t1", [(B, Access.WRITE)])  # finished
    with pytest.raises(KeyError):
        sched.add_claims("nobody", [(B, Access.WRITE)])


# --- a run takes on what its tasks added --------------------------------------------------------


def _ends(gate: Gate, ended: threading.Event) -> Callable[[], Any]:
    def body() -> Any:
        try:
            return gate()
        finally:
            ended.set()

    return body


def test_a_run_adopts_a_claim_its_running_task_added_and_starts_nothing_over_it(repo: Path) -> None:
    with TaskQueue(max_parallel=4, repo=repo) as queue:
        assert queue.registry is not None
        first, t1_ended = Gate(), threading.Event()
        queue.submit_task(AgentTask("coder", "holds src/a.py", ["src/a.py"], _ends(first, t1_ended), id="t1"))
        wait_for(first.started, "t1")
        TaskClaims(queue.registry.dir, queue.registry.run, "t1").claim([B])  # as its agent would

        t2 = queue.submit_task(AgentTask("tester", "needs src/b.py", ["src/b.py"], t1_ended.is_set, id="t2"))
        status = queue.get_status()
        assert [t.id for t in status.running] == ["t1"]
        assert [(t.id, t.blocked_by) for t in status.waiting] == [("t2", "t1")]
        eventually(
            "t1's added claim to show in the status",
            lambda: (lambda t: "src/b.py" in t.files and t.added == ("src/b.py",))(queue.get_status().running[0]),
        )
        first.open()
        assert t2.result(timeout=WAIT) is True  # it started once t1 had ended


def test_a_heartbeat_makes_the_run_adopt_a_claim_added_while_nothing_else_happens(repo: Path) -> None:
    with TaskQueue(max_parallel=4, repo=repo) as queue:
        assert queue.registry is not None
        gate = Gate()
        queue.submit_task(AgentTask("coder", "holds src/a.py", ["src/a.py"], gate, id="t1"))
        wait_for(gate.started, "t1")
        TaskClaims(queue.registry.dir, queue.registry.run, "t1").claim([C], Access.READ)
        eventually(
            "the heartbeat's step to adopt docs/c.md", lambda: queue.get_status().running[0].reads == ("docs/c.md",)
        )
        assert queue.get_status().running[0].added == ("docs/c.md",)
        gate.open()


def test_a_retry_holds_none_of_what_the_failed_attempt_added(repo: Path) -> None:
    """The run writes its task's hold again for a new attempt: the registry forgets the added claims."""
    gate = Gate()
    attempts: list[int] = []
    registry_box: dict[str, Registry] = {}

    def body() -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            reg = registry_box["reg"]
            TaskClaims(reg.dir, reg.run, "t1").claim([B])
            raise RuntimeError("first attempt fails")
        return gate()

    with TaskQueue(max_parallel=4, repo=repo) as queue:
        assert queue.registry is not None
        registry_box["reg"] = queue.registry
        queue.submit_task(AgentTask("coder", "a", ["src/a.py"], body, id="t1", retries=1, retry_delay=0.0))
        wait_for(gate.started, "the second attempt")
        reader = Registry(repo, "reader")
        try:
            with reader.session() as session:  # after the run's lease is written
                [mine] = [h for h in session.holds.values() if h.task == "t1"]
        finally:
            reader.close()
        assert (mine.writes, mine.added) == (("src/a.py",), ())
        assert claimed_by(queue.registry.dir, queue.registry.run, "t1") == (("src/b.py",), ())  # it did claim it
        gate.open()


def test_a_write_added_after_a_read_of_the_same_path_holds_back_the_runs_readers(repo: Path) -> None:
    """Before: a run that had adopted the read knew the text already, and never took the write on."""
    with TaskQueue(max_parallel=4, repo=repo) as queue:
        assert queue.registry is not None
        first, t1_ended = Gate(), threading.Event()
        queue.submit_task(AgentTask("coder", "holds src/a.py", ["src/a.py"], _ends(first, t1_ended), id="t1"))
        wait_for(first.started, "t1")
        claims = TaskClaims(queue.registry.dir, queue.registry.run, "t1")
        try:
            claims.claim([C], Access.READ)
            # Any step adopts it: that of a task that comes and goes.
            queue.submit_task(AgentTask("other", "a step", ["x"], lambda: None)).result(timeout=WAIT)
            assert queue.get_status().running[0].added == ("docs/c.md",)
            assert claims.claim([C]).added == ("docs/c.md",)  # now to write it
            reader = queue.submit_task(
                AgentTask("tester", "reads it", [], t1_ended.is_set, id="t2", reads=["docs/c.md"])
            )
            assert [t.id for t in queue.get_status().running] == ["t1"]
        finally:
            first.open()
        assert reader.result(timeout=WAIT) is True


# --- the heartbeat's look ----------------------------------------------------------------------


def _raw(holds: list[Hold]) -> bytes:
    return json.dumps(contents(holds, [], 0.0, 1, time.time())).encode()


def test_lacks_holds_tells_when_a_hold_of_the_run_lists_an_added_claim_the_run_does_not_know() -> None:
    me, them = Owner.current("r1"), Owner.current("r2")
    now = time.time()
    t1 = Hold(me, "t1", "coder", ("src/a.py", "src/b.py"), (), now, added=("src/b.py",))
    u1 = Hold(them, "t1", "coder", ("docs/",), (), now, added=("docs/",))
    raw = _raw([t1, u1])
    assert lacks_holds(raw, "r1", ["t1"], now, {"t1": set()}) is True
    assert lacks_holds(raw, "r1", ["t1"], now, {"t1": {("src/b.py", "write")}}) is False
    assert lacks_holds(raw, "r1", ["t1"], now, {"t1": {("src/b.py", "read")}}) is True  # known to read only
    assert lacks_holds(raw, "r1", ["t1"], now, {"t1": {("src/b.py", "write"), ("more", "read")}}) is False
    assert lacks_holds(raw, "r1", ["t1"], now, None) is False  # nothing said of what is known: no news
    assert lacks_holds(raw, "r1", ["t1"], now, {}) is False
    assert lacks_holds(raw, "r1", ["t1", "t2"], now, {"t1": {("src/b.py", "write")}}) is True  # a hold is lost
    assert lacks_holds(raw, "r2", ["t1"], now, {"t1": set()}) is True  # the other run's own
    assert lacks_holds(_raw([u1]), "r1", [], now, {"t1": set()}) is False  # another run's added claims
