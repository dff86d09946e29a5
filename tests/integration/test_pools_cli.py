"""Quota pools across processes: two runs of the installed script share a pool of two.

The agents write when they start and end, by the clock (``date +%s%N``) of the one machine, so
the intervals they write lie within the times they held their units: if those never overlap
more than two at a time, neither do the units. That the runs do reach two together is proven
by a meeting: a task of one run reads a FIFO that a task of the other run writes, and neither
can end unless both run at the same time; no sleep anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..conftest import git_repo

SCRIPT = Path(sys.executable).with_name("project-manager")
#: A busy loop long enough that tasks started together are seen together.
_WORK = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"


def _stamp(kind: str, task: str) -> str:
    return f"echo {kind} {task} $(date +%s%N) >> ../events.txt"


def _batch(path: Path, run: str, meet: str) -> Path:
    """Three tasks of three agents of ``run``, each taking a unit of pool api; the first of
    them runs ``meet`` (its side of the meeting) between its stamps, the others a busy loop."""
    lines = ["agents:"] + [f"  {run}{i}: {{preset: shell, pools: [api]}}" for i in (1, 2, 3)] + ["tasks:"]
    for i in (1, 2, 3):
        task = f"{run}{i}"
        script = "; ".join([_stamp("start", task), meet if i == 1 else _WORK, _stamp("end", task)])
        lines += [
            f"  - id: {task}",
            f"    agent: {task}",
            f"    description: '{script}'",
            f"    files: [{task}.txt]",
            "    timeout: 60s",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_runs_sharing_a_pool_of_two_never_run_more_than_two_of_its_tasks_and_do_run_two(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"README": "x\n", "project-manager.yaml": "pools: {api: 2}\n"})
    os.mkfifo(repo / "meet.fifo")
    batches = [
        _batch(tmp_path / "a.yaml", "a", "cat meet.fifo > /dev/null"),  # blocks until b1 writes
        _batch(tmp_path / "b.yaml", "b", "echo met > meet.fifo"),  # blocks until a1 reads
    ]
    runs = [
        subprocess.Popen(
            [
                str(SCRIPT),
                "delegate-multiple",
                "--file",
                str(batch),
                "--repo",
                str(repo),
                "--max-parallel",
                "4",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for batch in batches
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert [t["status"] for t in json.loads(out)["tasks"]] == ["succeeded"] * 3
    events = [line.split() for line in (tmp_path / "events.txt").read_text().splitlines()]
    assert len(events) == 12
    running: set[str] = set()
    most = 0
    for kind, task, _ in sorted(events, key=lambda event: (int(event[2]), event[0] == "start")):
        if kind == "start":
            running.add(task)
            assert len(running) <= 2, f"{sorted(running)} ran at once, with a pool of 2"
            most = max(most, len(running))
        else:
            running.remove(task)
    assert most == 2  # and a1 with b1, across the runs: they met
