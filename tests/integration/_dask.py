"""A real Dask cluster on 127.0.0.1 for the cluster tests: a ``dask scheduler`` and ``dask worker``
processes started by the test, each worker with a ``PM_WORKER_ROOT`` of its own far from the
repository, all torn down (SIGTERM, then SIGKILL) whatever happens. Workers run without a nanny,
so that killing a worker's pid kills the worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..conftest import WAIT

distributed = pytest.importorskip("distributed", reason="the cluster tests need the [dask] extra")

#: Starting a scheduler and workers takes seconds on a loaded 2-core machine.
START_WAIT = 60.0


@dataclass
class Worker:
    name: str
    root: Path
    process: subprocess.Popen[bytes]
    resources: Mapping[str, int]


@dataclass
class DaskCluster:
    """A scheduler and its workers; :meth:`add_worker`, :meth:`kill`, :meth:`close`."""

    folder: Path
    scheduler: subprocess.Popen[bytes] | None = None
    address: str = ""
    workers: dict[str, Worker] = field(default_factory=dict)

    def start(self) -> DaskCluster:
        file = self.folder / "scheduler.json"
        self.scheduler = _spawn(
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
            self.folder / "scheduler.log",
            {},
        )
        deadline = time.monotonic() + START_WAIT
        while not file.exists() or not file.read_text().strip():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dask scheduler did not start: {(self.folder / 'scheduler.log').read_text()}")
            time.sleep(0.05)  # a bounded poll on another process's file
        self.address = json.loads(file.read_text())["address"]
        return self

    def add_worker(self, name: str, resources: Mapping[str, int] | None = None) -> Worker:
        root = self.folder / f"root-{name}"
        argv = ["worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
        if resources:
            argv += ["--resources", ",".join(f"{k}={v}" for k, v in resources.items())]
        process = _spawn(argv, self.folder / f"worker-{name}.log", {"PM_WORKER_ROOT": str(root)})
        worker = self.workers[name] = Worker(name, root, process, dict(resources or {}))
        return worker

    def wait_for_workers(self, count: int) -> None:
        with distributed.Client(self.address, timeout=START_WAIT) as client:
            client.wait_for_workers(count, timeout=START_WAIT)

    def kill(self, name: str) -> None:
        worker = self.workers[name]
        worker.process.kill()
        worker.process.wait(WAIT)

    def close(self) -> None:
        processes = [w.process for w in self.workers.values()]
        if self.scheduler is not None:
            processes.append(self.scheduler)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            _end(process)

    def which(self, path: str) -> str | None:
        """The worker whose root ``path`` lies in."""
        return next((w.name for w in self.workers.values() if path.startswith(str(w.root))), None)


def _spawn(argv: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_" + argv[0], *argv[1:]],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )


def _end(process: subprocess.Popen[bytes]) -> None:
    """Wait for a process sent SIGTERM, SIGKILL it if it lingers."""
    try:
        process.wait(WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(WAIT)
