"""Worktree tasks on a Dask cluster (issue 16): what a task costs there, and what the repository's
journey costs.

1. TASKS trivial worktree tasks (each ``sh -c`` writing its own file; two at a time: an agent
   with ``instances: 2``, ``--max-parallel 2``) through the installed command, on a small
   repository: run here (the anchor: local worktrees), with ``--cluster local:2`` (two worker
   processes started by the run), and on a ``dask scheduler`` with two ``dask worker``
   processes (one thread each) started by the bench on 127.0.0.1. The wall time of each run,
   and per task (wall / TASKS: two run at once), against the local run.
2. On a generated repository of FILES committed files: the base bundle the coordinator makes
   once per run (its size and time), a worker's first fetch of it into a new bare clone, and
   the small bundle of one merged task's commit.

The Dask parts need the ``[dask]`` extra; without it they are left out, saying so. In ``make
bench`` (run_all) and alone: ``python -m bench.cluster``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from queue_core.changes import GitCalls
from queue_core.cluster import make_bundle

from ._common import Section, fast_tmp, ms, print_section, table

TASKS = 200
FILES = 20_000
SCRIPT = Path(sys.executable).with_name("project-manager")
_GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run([*_GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _repo(path: Path, files: int) -> Path:
    for i in range(files):
        folder = path / "src" / f"d{i % 200}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m{i}.py").write_text(f"x = {i}\n")
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.name", "bench")
    _git(path, "config", "user.email", "bench@example.invalid")
    _git(path, "config", "gc.auto", "0")  # no gc detached in the background, under the clean-up
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "bench")
    return path


def _batch(path: Path) -> Path:
    tasks = "".join(
        f"  - {{id: t{i}, agent: dev, files: [t{i}.txt], description: 'echo {i} > t{i}.txt'}}\n" for i in range(TASKS)
    )
    path.write_text("isolation: worktree\nagents:\n  dev: {preset: shell, instances: 2}\ntasks:\n" + tasks)
    return path


def _run(repo: Path, batch: Path, *cluster: str) -> float:
    """One run of the batch; its wall time. Every task must have merged."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(SCRIPT), "delegate-multiple", "--file", str(batch), "--json", "--max-parallel", "2", "--repo", str(repo),
         *cluster],
        capture_output=True, text=True, timeout=3600, env={**os.environ, "PM_WORKER_ROOT": str(repo.parent / "wroot")},
    )  # fmt: skip
    wall = time.perf_counter() - t0
    tasks = json.loads(done.stdout)["tasks"] if done.stdout else []
    failed = [(task["id"], task["error"]) for task in tasks if task["merge"] != "merged"]
    assert not failed, (cluster, failed[:5])
    assert done.returncode == 0, (cluster, done.stderr[-500:])
    return wall


class _Cluster:
    """A scheduler and two workers on 127.0.0.1, as tests/integration/_dask.py starts them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> str:
        file = self.folder / "scheduler.json"
        self._spawn("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(file))
        while not file.exists() or not file.read_text().strip():
            time.sleep(0.05)  # a poll on the scheduler's file, bounded by the workers' wait below
        address: str = json.loads(file.read_text())["address"]
        for name in ("a", "b"):
            self._spawn("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name,
                        root=self.folder / f"root-{name}")  # fmt: skip
        import distributed

        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        return address

    def _spawn(self, kind: str, *args: str, root: Path | None = None) -> None:
        env = {**os.environ, **({"PM_WORKER_ROOT": str(root)} if root else {})}
        with open(self.folder / f"{kind}-{len(self.processes)}.log", "wb") as log:
            argv = [sys.executable, "-m", f"distributed.cli.dask_{kind}", *args]
            self.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))

    def __exit__(self, *_: object) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            _end(process)


def _end(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def _tasks(tmp: Path) -> str:
    rows = []
    runs = {"here (local worktrees, the anchor)": ()}
    runs["`--cluster local:2`"] = ("--cluster", "local:2")
    walls = {}
    with _Cluster(tmp) as address:
        runs["a scheduler + 2 workers (`--cluster tcp://...`)"] = ("--cluster", address)
        for name, cluster in runs.items():
            repo = _repo(tmp / f"repo-{len(walls)}", 50)
            walls[name] = _run(repo, _batch(tmp / f"batch-{len(walls)}.yaml"), *cluster)
    anchor = walls["here (local worktrees, the anchor)"]
    for name, wall in walls.items():
        rows.append((name, f"{wall:.1f} s", ms(wall / TASKS), f"{wall / anchor:.2f}x"))
    return (
        f"{TASKS} trivial worktree tasks (`sh -c` writing its own file), two at a time, each merged back, "
        "through the installed command on a 50-file repository; one run each, wall time including the "
        "run's start (a local cluster's two worker processes too) and its end.\n\n"
        + table(["where", "wall", "per task", "vs here"], rows)
    )


def _bundles(tmp: Path) -> str:
    git = GitCalls()
    repo = _repo(tmp / "big", FILES)
    base = _git(repo, "rev-parse", "HEAD").strip()
    t0 = time.perf_counter()
    whole = make_bundle(repo, base, None, git)
    made = time.perf_counter() - t0
    clone = tmp / "clone.git"
    _git(tmp, "init", "-q", "--bare", str(clone))
    bundle = tmp / "base.bundle"
    bundle.write_bytes(whole)
    t0 = time.perf_counter()
    _git(clone, "fetch", "-q", "--no-tags", str(bundle), "+refs/*:refs/pm-cache/x/*")
    fetched = time.perf_counter() - t0
    (repo / "src" / "d0" / "m0.py").write_text("x = 'changed'\n")
    _git(repo, "commit", "-q", "-am", "one task")
    tip = _git(repo, "rev-parse", "HEAD").strip()
    t0 = time.perf_counter()
    step = make_bundle(repo, tip, base, git)
    stepped = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in (repo / ".git").rglob("*") if f.is_file())
    rows = [
        ("the run's base bundle (made once a run)", f"{len(whole) / 1e6:.2f} MB", ms(made)),
        ("a worker's first fetch of it (new bare clone)", "", ms(fetched)),
        ("a bundle of one merged task's commit", f"{len(step) / 1e3:.1f} kB", ms(stepped)),
    ]
    return (
        f"A repository of {FILES:,} committed files ({size / 1e6:.1f} MB in .git) in "
        f"{fast_tmp() or tempfile.gettempdir()}.\n\n" + table(["", "size", "time"], rows)
    )


def run() -> Section:
    with tempfile.TemporaryDirectory(prefix="pm-bench-cluster-", dir=fast_tmp()) as folder:
        tmp = Path(folder)
        try:
            import distributed  # noqa: F401 - only whether the extra is there
        except ImportError:
            return Section("Worktree tasks on a Dask cluster", "Left out: the [dask] extra is not installed.\n")
        body = _tasks(tmp) + "\n" + _bundles(tmp)
    return Section("Worktree tasks on a Dask cluster", body)


if __name__ == "__main__":
    print_section(run())
