"""Worktree tasks on a real Dask cluster (issue 16): a ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1, each with a PM_WORKER_ROOT of its own, driven through the installed
command. Each agent writes where it ran ($PM_WORKTREE) to a file beside the repository: the
tests prove it ran under a worker's root, never in the user's checkout, until the merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from queue_core.processes import process_state

from ..conftest import WAIT, eventually, git, git_repo
from ._dask import DaskCluster

SCRIPT = Path(sys.executable).with_name("project-manager")
RUN_WAIT = 90.0  # a run on a cluster, on a loaded 2-core machine

pytestmark = pytest.mark.xdist_group("dask")  # one cluster for the module, on one test worker


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """Worker a (claude=1) and worker b (gpu=1), one thread each: one task at a time each."""
    found = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        found.start()
        found.add_worker("a", {"claude": 1})
        found.add_worker("b", {"gpu": 1})
        found.wait_for_workers(2)
        yield found
    finally:
        found.close()


def run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=RUN_WAIT,
    )


def where(tmp_path: Path, task: str) -> str:
    """What the agent of ``task`` wrote: the worktree it ran in."""
    return (tmp_path / f"where-{task}").read_text().strip()


def test_two_instances_run_at_once_on_two_workers_and_are_merged_back(tmp_path: Path, cluster: DaskCluster) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n", "notes.txt": "mine\n"})
    (repo / "notes.txt").write_text("my unsaved notes\n")
    meet_a, meet_b = tmp_path / "a.fifo", tmp_path / "b.fifo"

    def said(task: str) -> str:
        return f"echo $PM_WORKTREE > {tmp_path}/where-{task}"

    os.mkfifo(meet_a)
    os.mkfifo(meet_b)
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        "agents:\n"
        "  dev: {preset: shell, instances: 2, isolation: worktree}\n"
        "tasks:\n"
        f"  - {{id: one, agent: dev, files: [a.txt], timeout: 60s, description: '{said('one')};"
        f"   echo x > {meet_b}; read x < {meet_a}; echo one > a.txt'}}\n"
        f"  - {{id: two, agent: dev, files: [b.txt], timeout: 60s, description: '{said('two')};"
        f"   read x < {meet_b}; echo y > {meet_a}; echo two > b.txt'}}\n"
    )
    done = run(repo, "--file", str(batch), "--json", "--cluster", cluster.address)
    assert done.returncode == 0, done.stderr
    tasks = {t["id"]: t for t in json.loads(done.stdout)["tasks"]}
    assert {t["merge"] for t in tasks.values()} == {"merged"}
    # They met while both ran, one thread a worker: on the two workers, each under its own root.
    assert {cluster.which(where(tmp_path, "one")), cluster.which(where(tmp_path, "two"))} == {"a", "b"}
    assert tasks["one"]["worker"] != tasks["two"]["worker"]
    assert tasks["one"]["worker"].startswith("tcp://127.0.0.1:")
    assert (git(repo, "show", "HEAD:a.txt"), git(repo, "show", "HEAD:b.txt")) == ("one\n", "two\n")
    assert (repo / "a.txt").read_text() == "one\n"  # merged into the checkout, the user's notes left alone
    assert git(repo, "status", "--porcelain") == " M notes.txt\n"
    assert len(git(repo, "worktree", "list").splitlines()) == 1  # no worktree here: they were on the workers
    assert "refs/pm-transfer" not in git(repo, "for-each-ref")  # the bundles' refs went with them
    assert "$ sh -c 'echo $PM_WORKTREE" in (Path(tasks["one"]["log"])).read_text()  # its log came back


def test_an_agents_resources_send_its_tasks_only_to_workers_that_have_them(
    tmp_path: Path, cluster: DaskCluster
) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n"})
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        "isolation: worktree\n"
        "agents:\n"
        "  trainer: {preset: shell, instances: 2, resources: {gpu: 1}}\n"
        "tasks:\n"
        f"  - {{id: one, agent: trainer, files: [a.txt], description: 'echo $PM_WORKTREE > {tmp_path}/where-one;"
        " echo one > a.txt'}\n"
        f"  - {{id: two, agent: trainer, files: [b.txt], description: 'echo $PM_WORKTREE > {tmp_path}/where-two;"
        " echo two > b.txt'}\n"
    )
    done = run(repo, "--file", str(batch), "--json", "--cluster", cluster.address)
    assert done.returncode == 0, done.stderr
    assert (cluster.which(where(tmp_path, "one")), cluster.which(where(tmp_path, "two"))) == ("b", "b")
    assert git(repo, "show", "HEAD:b.txt") == "two\n"


def test_a_task_whose_resources_no_worker_has_fails_saying_so(tmp_path: Path, cluster: DaskCluster) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    (repo / "project-manager.yaml").write_text(
        "agents:\n  dev: {preset: shell, isolation: worktree, resources: {tpu: 2}}\n"
    )
    done = run(repo, "dev: echo x > a.txt @a.txt", "--json", "--cluster", cluster.address)
    assert done.returncode == 1, done.stderr
    (task,) = json.loads(done.stdout)["tasks"]
    assert task["status"] == "failed"
    assert "no worker of the cluster" in task["error"]
    assert "tpu=2" in task["error"]


def test_shared_checkout_tasks_run_here_and_say_so(tmp_path: Path, cluster: DaskCluster) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    done = run(repo, f"shell: echo $PWD > {tmp_path}/where-t1 @a.txt", "--json", "--cluster", cluster.address)
    assert done.returncode == 0, done.stderr
    assert "1 task(s) in the shared checkout run here, not on the cluster (t1)" in done.stderr
    assert where(tmp_path, "t1") == str(repo)
    assert json.loads(done.stdout)["tasks"][0]["worker"] is None


def test_the_log_streams_while_the_task_runs_and_status_names_its_worker(tmp_path: Path, cluster: DaskCluster) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    gate = tmp_path / "gate.fifo"
    os.mkfifo(gate)
    argv = [str(SCRIPT), "delegate-multiple", "--repo", str(repo), "--no-live", "--cluster", cluster.address]
    argv += ["--isolation", "worktree", f"shell: echo first line; read x < {gate}; echo done > a.txt @a.txt"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            logs = repo / ".git" / "project-manager" / "logs"
            eventually("the agent's first line in the local log", lambda: "first line\n" in _log_text(logs))

            def running() -> list[dict[str, object]]:
                out = subprocess.run(
                    [str(SCRIPT), "status", "--json", "--repo", str(repo)], capture_output=True, text=True, timeout=WAIT
                )
                return [t for r in json.loads(out.stdout)["runs"] for t in r["running"]]

            eventually("status --json naming the task's worker", lambda: any("worker" in t for t in running()))
            (task,) = running()
            assert str(task["worker"]).startswith("tcp://127.0.0.1:")
            assert task["pid"] is None  # another machine's pid would mean nothing here
            with open(gate, "w") as f:
                f.write("go\n")
            _, err = proc.communicate(timeout=RUN_WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert git(repo, "show", "HEAD:a.txt") == "done\n"
    assert _log_text(logs).count("first line\n") == 1  # streamed, then the rest: nothing twice


def _log_text(logs: Path) -> str:
    return "".join(p.read_text() for p in logs.glob("*/t1.log"))


def _pids(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()] if path.exists() else []


def _all_gone(pids: list[int]) -> bool:
    # process_state: one that ends while it is looked at is gone (pid_exists, then NoSuchProcess
    # raced once in CI), and so is a zombie.
    return all(process_state(pid) is None for pid in pids)


#: An agent that starts a child, writes both pids, says it started, and waits for ever (ignoring nothing).
TREE = "sleep 600 & echo $$ $! > {pids}; echo started > {ready}; wait"


def test_a_timeout_stops_the_remote_agent_and_its_children(tmp_path: Path, cluster: DaskCluster) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    pids, ready = tmp_path / "pids", tmp_path / "ready"
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        "isolation: worktree\n"
        "agents:\n  dev: {preset: shell, stop_grace: 1s}\n"
        "tasks:\n  - {id: t1, agent: dev, files: [a.txt], timeout: 3s,"
        f" description: '{TREE.format(pids=pids, ready=ready)}'}}\n"
    )
    done = run(repo, "--file", str(batch), "--json", "--cluster", cluster.address)
    assert done.returncode == 1, done.stderr
    (task,) = json.loads(done.stdout)["tasks"]
    assert task["status"] == "timed_out"
    assert len(_pids(pids)) == 2
    eventually("the remote agent's tree gone", lambda: _all_gone(_pids(pids)))


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_the_coordinators_end_stops_its_remote_agents(tmp_path: Path, cluster: DaskCluster, how: int) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    pids, ready = tmp_path / "pids", tmp_path / "ready"
    argv = [str(SCRIPT), "delegate-multiple", "--repo", str(repo), "--no-live", "--cluster", cluster.address]
    argv += ["--isolation", "worktree", f"shell: {TREE.format(pids=pids, ready=ready)} @a.txt"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            eventually("the remote agent started", ready.exists)
            proc.send_signal(how)
            proc.communicate(timeout=RUN_WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == (130 if how == signal.SIGINT else -signal.SIGKILL)
    eventually("the remote agent's tree gone", lambda: _all_gone(_pids(pids)))
    assert git(repo, "show", "HEAD:a.txt") == "a\n"  # nothing merged


def test_a_worker_killed_mid_task_fails_the_attempt_and_the_retry_runs_on_the_other(tmp_path: Path) -> None:
    own = DaskCluster(tmp_path / "dask")
    own.folder.mkdir()
    try:
        own.start()
        own.add_worker("a")
        own.add_worker("b")
        own.wait_for_workers(2)
        repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
        pids, ready = tmp_path / "pids", tmp_path / "ready"
        # The first attempt waits for ever; the second writes and ends.
        description = (
            f"if [ -e {tmp_path}/attempted ]; then echo again > a.txt; exit 0; fi; touch {tmp_path}/attempted;"
            f" echo $PM_WORKTREE > {tmp_path}/where-first; {TREE.format(pids=pids, ready=ready)}"
        )
        batch = tmp_path / "batch.yaml"
        batch.write_text(
            "isolation: worktree\nagents:\n  dev: {preset: shell}\n"
            "tasks:\n  - id: t1\n    agent: dev\n    files: [a.txt]\n    retries: 1\n"
            f"    description: {json.dumps(description)}\n"
        )
        argv = [str(SCRIPT), "delegate-multiple", "--repo", str(repo), "--json", "--file", str(batch)]
        with subprocess.Popen(
            [*argv, "--cluster", own.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            try:
                eventually("the first attempt started", ready.exists)
                first = own.which(where(tmp_path, "first"))
                assert first is not None
                own.kill(first)
                out, err = proc.communicate(timeout=RUN_WAIT)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == 0, err
        (task,) = json.loads(out)["tasks"]
        assert (task["status"], task["attempts"], task["merge"]) == ("succeeded", 2, "merged")
        assert git(repo, "show", "HEAD:a.txt") == "again\n"
        eventually("the killed worker's agent tree gone", lambda: _all_gone(_pids(pids)))
        log = Path(task["log"]).read_text()
        assert "died" in log or "lost" in log or "died" in err
    finally:
        own.close()


def test_worktreeinclude_files_travel_with_the_task_and_are_never_committed(
    tmp_path: Path, cluster: DaskCluster
) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n", ".gitignore": ".env\n", ".worktreeinclude": ".env\n"})
    (repo / ".env").write_text("TOKEN=local-secret\n")
    done = run(repo, "--isolation", "worktree", "--cluster", cluster.address, "shell: cat .env > a.txt @a.txt")
    assert done.returncode == 0, done.stderr
    assert git(repo, "show", "HEAD:a.txt") == "TOKEN=local-secret\n"
    assert ".env" not in git(repo, "ls-tree", "-r", "--name-only", "HEAD").split()


def test_an_agent_missing_here_is_looked_up_on_the_worker(tmp_path: Path, cluster: DaskCluster) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    (repo / "project-manager.yaml").write_text(
        "agents:\n  dev: {command: [no-such-agent-here, '{prompt}'], isolation: worktree}\n"
    )
    done = run(repo, "dev: do it @a.txt", "--json", "--cluster", cluster.address)
    assert done.returncode == 1, done.stderr  # not refused before the run: the worker may have it
    (task,) = json.loads(done.stdout)["tasks"]
    assert task["status"] == "failed"
    assert "on worker tcp://127.0.0.1:" in task["error"]
    assert "no-such-agent-here" in task["error"]


def test_local_workers_started_for_the_run_have_the_resources_its_agents_need(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    (repo / "project-manager.yaml").write_text(
        "agents:\n  dev: {preset: shell, isolation: worktree, resources: {gpu: 2}}\n"
    )
    argv = ["dev: echo $PM_WORKTREE > a.txt @a.txt", "--json", "--cluster", "local:1"]
    done = subprocess.run(
        [str(SCRIPT), "delegate-multiple", *argv, "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=RUN_WAIT,
        env={**os.environ, "PM_WORKER_ROOT": str(tmp_path / "root")},
    )
    assert done.returncode == 0, done.stderr
    assert git(repo, "show", "HEAD:a.txt").startswith(f"{tmp_path / 'root'}/worktrees/")
