"""Hostile tests of issue 14 with the installed script, real processes and real signals: quota
pools held by the agents of a run whose coordinator and supervisor were killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..conftest import WAIT, eventually, git_repo
from .test_cli_faults import CHECK, FAMILY, SCRIPT, _alive, _pids_from, _read_until, _status


def _run(repo: Path, batch: Path) -> subprocess.Popen[str]:
    argv = [str(SCRIPT), "delegate-multiple", "--file", str(batch), "--repo", str(repo), "--no-live"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_pool_unit_stays_held_while_the_agents_of_a_run_killed_with_its_supervisor_live(tmp_path: Path) -> None:
    """Run A's agent takes the one unit of pool api and leaves a child that ignores SIGTERM; A
    and its supervisor (with its keepers) are killed with SIGKILL, so nothing will stop the
    child. Run B's task takes the unit too (another file, another agent): it must wait until
    the agents are gone, and ``status`` must say that nobody is stopping them. Before: status
    said "its supervisor (pid N) is stopping its agents" of a supervisor that was dead."""
    repo = git_repo(tmp_path / "repo", {"README": "x\n", "project-manager.yaml": "pools: {api: 1}\n"})
    report = tmp_path / "report.fifo"
    os.mkfifo(report)
    fifo = os.open(report, os.O_RDONLY | os.O_NONBLOCK)
    command = [sys.executable, str(FAMILY), str(report), "ignore-term", "wait"]
    first = tmp_path / "a.yaml"
    first.write_text(
        f"agents:\n  fam: {{command: {json.dumps(command)}, stop_grace: 60s, pools: [api]}}\n"
        "tasks:\n  - {id: A, agent: fam, description: leaves a child, files: [a.py]}\n"
    )
    run_a = _run(repo, first)
    pids: tuple[int, ...] = ()
    run_b = None
    try:
        pids = _pids_from(fifo)
        [view] = _status(repo)["runs"]
        supervisor = view["supervisor_pid"]
        run_a.kill()
        run_a.communicate(timeout=WAIT)
        os.killpg(supervisor, signal.SIGKILL)  # the supervisor and its keepers: one process group
        eventually("the supervisor's end", lambda: not _alive(supervisor))
        # The supervisor, told of A's death, may have sent the agents' group SIGTERM before it was
        # killed in turn, or not: the agent is killed here either way, and its child, which
        # ignores SIGTERM, lives on holding the unit.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[0], signal.SIGKILL)
        eventually("the agent's end", lambda: not _alive(pids[0]))
        [view] = _status(repo)["runs"]
        assert (view["state"], view["supervisor_pid"]) == ("orphaned", None)
        assert [p["pid"] for p in view["processes"]] == [pids[1]]
        text = _status(repo, json_out=False)
        assert "ORPHANED, its process and its supervisor died; nothing stops its agents" in text
        assert "is stopping" not in text

        (tmp_path / "check.py").write_text(CHECK)
        checker = [sys.executable, str(tmp_path / "check.py"), str(tmp_path / "b.out"), *map(str, pids)]
        second = tmp_path / "b.yaml"
        second.write_text(
            f"agents:\n  checker: {{command: {json.dumps(checker)}, pools: [api]}}\n"
            "tasks:\n  - {id: B, agent: checker, description: check, files: [b.py]}\n"
        )
        run_b = _run(repo, second)
        _read_until(run_b, "died, and so did its supervisor")  # it waits for the unit, and says why
        assert not (tmp_path / "b.out").exists()
        os.kill(pids[1], signal.SIGKILL)
        out, err = run_b.communicate(timeout=WAIT)
        assert run_b.returncode == 0, out + err
        assert (tmp_path / "b.out").read_text().split()[1:] == ["False", "False"]  # B ran once they were gone
    finally:
        os.close(fifo)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for run in (run_a, run_b):
            if run is not None and run.poll() is None:
                run.kill()
                run.communicate(timeout=WAIT)
