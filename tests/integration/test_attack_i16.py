"""Hostile tests of issue 16 (worktree tasks on a Dask cluster) with real processes: a scheduler
and workers started by each test (``_dask.py``), killed, frozen or left without a worker that
can run what they started, and the installed command run against them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from queue_core import cluster as cluster_module
from queue_core.claims import Claim
from queue_core.cluster import Cluster, ClusterAgent
from queue_core.errors import QueueError, WorkerLostError
from queue_core.isolated import WorktreePlan

from ..conftest import WAIT, eventually, git, git_repo
from ._dask import DaskCluster

SCRIPT = Path(sys.executable).with_name("project-manager")
RUN_WAIT = 90.0  # a run on a cluster, on a loaded 2-core machine

pytestmark = pytest.mark.xdist_group("dask")  # with test_cluster.py's cluster, on one test worker

#: An agent that writes its pid, says it started, and waits for ever.
FOREVER = "echo $$ > {pid}; echo started > {ready}; exec sleep 600"


@pytest.fixture
def own(tmp_path: Path) -> Iterator[DaskCluster]:
    """A scheduler of the test's own, to kill or freeze; its workers are the test's to add."""
    found = DaskCluster(tmp_path / "dask")
    found.folder.mkdir()
    try:
        yield found.start()
    finally:
        if found.scheduler is not None and found.scheduler.poll() is None:
            found.scheduler.send_signal(signal.SIGCONT)  # a frozen one, to hear its SIGTERM
        found.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A scheduler and one worker for the tests that leave them as they found them."""
    found = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        found.start()
        found.add_worker("w")
        found.wait_for_workers(1)
        yield found
    finally:
        found.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _argv(repo: Path, *args: str) -> list[str]:
    return [str(SCRIPT), "delegate-multiple", "--repo", str(repo), "--no-live", *args]


def test_a_task_whose_only_worker_dies_fails_instead_of_waiting_for_ever(tmp_path: Path, own: DaskCluster) -> None:
    """Before: Dask put the attempt back to wait for a worker with claude=1, and none came: the run
    waited for ever (a SIGTERM then took 35 s more). The run's base was on the other worker, b:
    the first task ran there alone, so its loss did not cancel the attempt."""
    own.add_worker("b")
    own.wait_for_workers(1)
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n"})
    pid, ready, gate = tmp_path / "pid", tmp_path / "ready", tmp_path / "gate.fifo"
    os.mkfifo(gate)
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        "isolation: worktree\n"
        "agents:\n  plain: {preset: shell}\n  dev: {preset: shell, resources: {claude: 1}}\n"
        "tasks:\n"
        f"  - {{id: first, agent: plain, files: [b.txt], description: 'read x < {gate}'}}\n"
        f"  - {{id: t1, agent: dev, files: [a.txt], retries: 1, depends_on: [first],"
        f" description: '{FOREVER.format(pid=pid, ready=ready)}'}}\n"
    )
    with subprocess.Popen(
        _argv(repo, "--json", "--file", str(batch), "--cluster", own.address),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            own.add_worker("a", {"claude": 1})
            own.wait_for_workers(2)
            with open(gate, "w") as f:  # waits for the first task's agent, on b
                f.write("go\n")
            eventually("t1's agent started on worker a", ready.exists)
            own.kill("a")
            out, err = proc.communicate(timeout=RUN_WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 1, err
    tasks = {t["id"]: t for t in json.loads(out)["tasks"]}
    assert (tasks["t1"]["status"], tasks["t1"]["attempts"]) == ("failed", 2)
    assert "no worker of the cluster" in tasks["t1"]["error"]  # the retry: nothing left to run it
    (log,) = (repo / ".git" / "project-manager" / "logs").glob("*/t1.log")
    assert "its worker died" in log.read_text()  # the first attempt: said lost, not waited on
    assert not _alive(int(pid.read_text()))
    assert git(repo, "show", "HEAD:a.txt") == "a\n"


def test_a_scheduler_killed_mid_run_stops_the_remote_agent_at_once_and_prints_no_traceback(
    tmp_path: Path, own: DaskCluster
) -> None:
    """Before: the worker's watcher thread died of the lost connection (a traceback in the worker's
    log) and nothing stopped the agent until the worker exited 30 s later; the coordinator
    printed Dask's own traceback of its failed reconnection."""
    own.add_worker("a")
    own.wait_for_workers(1)
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    pid, ready = tmp_path / "pid", tmp_path / "ready"
    argv = _argv(repo, "--isolation", "worktree", "--cluster", own.address)
    with subprocess.Popen(
        [*argv, f"shell: {FOREVER.format(pid=pid, ready=ready)} @a.txt"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            eventually("the agent started on the worker", ready.exists)
            assert own.scheduler is not None
            own.scheduler.kill()
            eventually("the remote agent stopped", lambda: not _alive(int(pid.read_text())))
            out, err = proc.communicate(timeout=RUN_WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 1, err
    assert "Traceback" not in err + out, err
    assert "its worker died, or the cluster lost the attempt" in out


def test_a_stop_returns_at_once_when_the_scheduler_is_frozen(
    tmp_path: Path, own: DaskCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: stop() asked the frozen scheduler to set the attempt's stop event and waited for
    its answer for ever, so a Ctrl-C (the engine's abort) or a timeout (the timer thread)
    never came back: the run could not end."""
    monkeypatch.setattr(cluster_module, "STOP_MARGIN_S", 1.0)
    monkeypatch.setattr(cluster_module, "CALL_TIMEOUT_S", 1.0)
    own.add_worker("a")
    own.wait_for_workers(1)
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    git(repo, "branch", "-M", "main")
    pid, ready = tmp_path / "pid", tmp_path / "ready"
    agent = ClusterAgent.for_task(
        ["sh", "-c", FOREVER.format(pid=pid, ready=ready)],
        task_id="t1",
        agent="dev",
        description="wait",
        files=["a.txt"],
        cwd=repo,
        log=tmp_path / "t1.log",
        run_id="20261129-000000-1-abcdef",
        grace_s=0.5,
    )
    assert isinstance(agent, ClusterAgent)
    agent.plan = WorktreePlan(repo, "20261129-000000-1-abcdef", "t1", "wait", "main", (Claim.parse("a.txt"),))
    agent.cluster = remote = Cluster.connect(own.address)
    ended: list[QueueError | int] = []
    attempt = threading.Thread(target=lambda: ended.append(_outcome(agent)))
    try:
        attempt.start()
        eventually("the agent started on the worker", ready.exists)
        assert own.scheduler is not None
        own.scheduler.send_signal(signal.SIGSTOP)
        stopper = threading.Thread(target=agent.stop)
        started = time.monotonic()
        stopper.start()
        stopper.join(WAIT)
        assert not stopper.is_alive(), "stop() waited for the frozen scheduler"
        assert time.monotonic() - started < 1.0
        attempt.join(WAIT)  # the wait for the worker's word is bounded: grace, margin, one call
        assert not attempt.is_alive(), "the attempt waited for the frozen scheduler"
        (error,) = ended
        assert isinstance(error, WorkerLostError)
    finally:
        if own.scheduler is not None:
            own.scheduler.send_signal(signal.SIGCONT)
        attempt.join(WAIT)
        remote.close()
    eventually("the agent stopped once the scheduler came back", lambda: not _alive(int(pid.read_text())))


def _outcome(agent: ClusterAgent) -> QueueError | int:
    try:
        return agent()
    except QueueError as exc:  # the test looks at it
        return exc


def test_local_workers_run_without_a_word_of_dasks_own(tmp_path: Path) -> None:
    """Before: with port 8787 taken (another Dask's dashboard), `--cluster local:N` printed Dask's
    UserWarning ("Port 8787 is already in use ...") over the run's own output."""
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 8787))
        taken.listen()
    except OSError:
        pass  # taken already: what the test needs
    try:
        done = subprocess.run(
            _argv(repo, "--isolation", "worktree", "--cluster", "local:1", "shell: echo b > a.txt @a.txt"),
            capture_output=True,
            text=True,
            timeout=RUN_WAIT,
            env={**os.environ, "PM_WORKER_ROOT": str(tmp_path / "workers")},
        )
    finally:
        taken.close()
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert git(repo, "show", "HEAD:a.txt") == "b\n"


def test_a_branch_the_agent_rewrote_comes_back_kept_and_its_log_is_named(tmp_path: Path, shared: DaskCluster) -> None:
    """Before: the worker could not finish the branch (it no longer descends from the base), so
    nothing came back: the task's branch named in --json did not exist here, its commits were
    only in the worker's cache, and --json gave no log (the agent had run, and its log was here)."""
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    argv = _argv(repo, "--json", "--isolation", "worktree", "--cluster", shared.address)
    done = subprocess.run(
        [*argv, "shell: echo mine > a.txt; git add a.txt; git commit -q --amend -m rewritten @a.txt"],
        capture_output=True,
        text=True,
        timeout=RUN_WAIT,
    )
    assert done.returncode == 1, done.stderr
    (task,) = json.loads(done.stdout)["tasks"]
    assert "no longer descends from" in task["error"]
    assert f"its branch {task['branch']} is kept" in task["error"]
    assert git(repo, "log", "-1", "--format=%s", task["branch"]) == "rewritten\n"
    assert git(repo, "show", f"{task['branch']}:a.txt") == "mine\n"
    assert task["log"] is not None
    assert "git commit -q --amend" in Path(task["log"]).read_text()
    assert git(repo, "show", "HEAD:a.txt") == "a\n"


def test_a_worktree_the_worker_cannot_finish_is_kept_there_and_said_where(tmp_path: Path, shared: DaskCluster) -> None:
    """Before: the error said what was unfinished, not that the worktree, with the agent's
    uncommitted work, was kept on the worker, nor where."""
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    argv = _argv(repo, "--json", "--isolation", "worktree", "--cluster", shared.address)
    merge = "git checkout -qb side; echo s > a.txt; git commit -qam s; git checkout -q -; echo m > a.txt"
    done = subprocess.run(
        [*argv, f"shell: {merge}; git commit -qam m; git merge side; echo left > notes.txt @a.txt @notes.txt"],
        capture_output=True,
        text=True,
        timeout=RUN_WAIT,
    )
    assert done.returncode == 1, done.stderr
    (task,) = json.loads(done.stdout)["tasks"]
    assert "unfinished operation (MERGE_HEAD)" in task["error"]
    said = f"its worktree is kept on {socket.gethostname()} at "
    assert said in task["error"]
    path = Path(task["error"].split(said)[1].split(";")[0])
    assert path.parent == shared.workers["w"].root / "worktrees"
    assert (path / "notes.txt").read_text() == "left\n"  # the uncommitted work, where it says
    assert task["log"] is not None


def test_a_worker_whose_scratch_folder_cannot_be_used_says_so_and_not_that_it_died(
    tmp_path: Path, own: DaskCluster
) -> None:
    """Before: the StateError (an OSError) of PM_WORKER_ROOT, a symlink here, escaped run_attempt
    and read as "its worker died, or the cluster lost the attempt" (so would a full disk's)."""
    (tmp_path / "elsewhere").mkdir()
    (own.folder / "root-s").symlink_to(tmp_path / "elsewhere")
    own.add_worker("s")
    own.wait_for_workers(1)
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    argv = _argv(repo, "--json", "--isolation", "worktree", "--cluster", own.address)
    done = subprocess.run([*argv, "shell: echo b > a.txt @a.txt"], capture_output=True, text=True, timeout=RUN_WAIT)
    assert done.returncode == 1, done.stderr
    (task,) = json.loads(done.stdout)["tasks"]
    assert "died" not in task["error"]
    assert "PM_WORKER_ROOT" in task["error"]
    assert "is a symlink" in task["error"]


def test_a_cached_clone_git_can_no_longer_use_is_made_anew(tmp_path: Path, shared: DaskCluster) -> None:
    """Before: once the worker's cached clone was broken (a crash, a disk error, a hand), every
    task of the repository on that worker failed ("git fetch failed: fatal: not a git
    repository") until someone found and removed it."""
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    argv = _argv(repo, "--isolation", "worktree", "--cluster", shared.address)
    first = subprocess.run([*argv, "shell: echo b > a.txt @a.txt"], capture_output=True, text=True, timeout=RUN_WAIT)
    assert first.returncode == 0, first.stderr
    repos = shared.workers["w"].root / "repos"
    for clone in repos.glob("*.git"):  # every repository's: which is this one's is the worker's business
        (clone / "HEAD").write_text("garbage\n")
        for pack in (clone / "objects").rglob("*"):
            if pack.is_file():
                pack.unlink()
    again = subprocess.run([*argv, "shell: echo c > a.txt @a.txt"], capture_output=True, text=True, timeout=RUN_WAIT)
    assert again.returncode == 0, again.stdout + again.stderr
    assert git(repo, "show", "HEAD:a.txt") == "c\n"
