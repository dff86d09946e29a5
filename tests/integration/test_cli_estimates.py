"""Estimates through the installed command: a second run of a batch knows how long each task took
the first time, says so, and starts the longest first."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from queue_core.durations import FILE
from queue_core.statedir import state_dir

from ..conftest import WAIT, git_repo

SCRIPT = Path(sys.executable).with_name("project-manager")

#: Three tasks of one agent, one at a time: each notes its id as it starts, then sleeps for its
#: description (its work, not a synchronisation). Listed shortest first, as a run without
#: history starts them.
BATCH = """
agents:
  worker: {{command: [sh, -c, 'echo "$PM_TASK_ID" >> {starts}; sleep "$PM_DESCRIPTION"']}}
tasks:
  - {{id: short, agent: worker, description: "0.1", files: [short.txt]}}
  - {{id: long, agent: worker, description: "1.2", files: [long.txt]}}
  - {{id: middle, agent: worker, description: "0.6", files: [middle.txt]}}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {})


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(SCRIPT), "delegate-multiple", *args, "--max-parallel", "1", "--repo", str(repo)]
    return subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ), cwd=repo, timeout=WAIT * 3)


def test_a_second_run_reports_estimates_and_starts_the_longest_task_first(repo: Path, tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"  # outside the repository: not a write outside the claims
    batch = tmp_path / "batch.yaml"
    batch.write_text(BATCH.format(starts=starts))

    first = _run(repo, "--file", str(batch), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert [t["estimate_s"] for t in json.loads(first.stdout)["tasks"]] == [None, None, None]
    assert starts.read_text().split() == ["short", "long", "middle"]  # no history: as listed
    assert len((state_dir(repo) / FILE).read_text().splitlines()) == 3  # each, as it ended

    plan = _run(repo, "--file", str(batch), "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    lines = plan.stdout.splitlines()
    assert lines[1] == "  long [worker] 1.2"  # the longest first, from its last run
    assert re.fullmatch(r"    estimate ~\d+ s, as its last run", lines[3])
    assert lines[5].startswith("  middle [worker]: worker busy (long)")

    starts.unlink()
    second = _run(repo, "--file", str(batch), "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    assert starts.read_text().split() == ["long", "middle", "short"]
    estimates = {t["id"]: t["estimate_s"] for t in json.loads(second.stdout)["tasks"]}
    assert 1.2 <= estimates["long"] < 1.2 + WAIT
    assert 0.6 <= estimates["middle"] < estimates["long"]
    assert 0.1 <= estimates["short"] < estimates["middle"]


def test_a_history_that_cannot_be_read_costs_a_warning_not_the_run(repo: Path, tmp_path: Path) -> None:
    state = state_dir(repo)
    state.mkdir(parents=True)
    (state / FILE).symlink_to(tmp_path / "elsewhere")
    done = _run(repo, "shell: true @a.txt", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a symlink, not a regular file; not read; no estimates this run" in done.stderr
    assert "durations are not recorded for estimates" in done.stderr
    assert json.loads(done.stdout)["tasks"][0]["estimate_s"] is None
    assert not (tmp_path / "elsewhere").exists()
