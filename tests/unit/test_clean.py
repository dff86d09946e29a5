"""``project-manager clean``, and the state directory of repeated CLI runs staying bounded.

Through typer's CliRunner; live owners are real child processes (see test_retention).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from queue_core.processes import ProcessId
from queue_core.registry import state_dir

from ._state import HOUR, Child, child, dead, finished, names, owner, record, state, tree

__all__ = ["child", "dead", "state"]  # fixtures: used by name

runner = CliRunner()


def test_the_state_directory_stays_bounded_over_repeated_loads(tmp_path: Path) -> None:
    """Before: three repeats of a 4 x 200-task load grew the state directory from 807 to 2,415 files."""
    repo = tmp_path / "repo"
    repo.mkdir()
    batch = tmp_path / "batch.yaml"
    tasks = "".join(f"  - {{id: t{i}, agent: shell, description: 'echo {i}', files: [f{i}]}}\n" for i in range(4))
    batch.write_text(f"keep_runs: 3\ntasks:\n{tasks}")
    counts = []
    for _ in range(3):
        for _ in range(4):
            result = runner.invoke(app, ["delegate-multiple", "--file", str(batch), "--repo", str(repo)])
            assert result.exit_code == 0, result.stdout + result.stderr
        counts.append(sum(len(files) + len(dirs) for _, dirs, files in os.walk(state_dir(repo))))
    state = state_dir(repo)
    assert len(names(state / "history")) == 3
    assert len(names(state / "logs")) == 3
    assert names(state / "runs") == set()
    assert counts[0] == counts[1] == counts[2], counts


def clean(repo: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["clean", "--repo", str(repo), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def repo(state: Path) -> Path:
    return state.parent


def test_clean_dry_run_changes_nothing_and_says_what_it_would_remove(repo: Path, state: Path, dead: ProcessId) -> None:
    now = time.time()
    for i in range(3):
        finished(state, f"r{i}", now - 10 + i)
    record(state, owner("killed", dead))
    before = tree(state)
    code, out, err = clean(repo, "--keep-runs", "1", "--dry-run")
    assert code == 0, err
    assert tree(state) == before  # not even a run record of its own, nor claims.json
    assert "would remove run r0" in out
    assert "would remove run r1" in out
    assert "would remove run killed" in out
    assert "r2" not in out.replace("would remove run r2", "")  # the newest stays
    assert "kept the newest 1 finished run" in out


def test_clean_removes_what_it_says_and_never_touches_a_live_run(repo: Path, state: Path, child: Child) -> None:
    now = time.time()
    live = owner("live-run", child.id)
    record(state, live, mtime=now - 10 * HOUR)
    finished(state, "live-run", 0, mtime=now - 10 * HOUR, history=False)
    for i in range(3):
        finished(state, f"r{i}", now - 10 + i)
    code, out, err = clean(repo, "--keep-runs", "1")
    assert code == 0, err
    assert f"kept run live-run: its process (pid {child.pid}) still runs" in out
    assert "removed run r0" in out
    assert "removed run r1" in out
    assert names(state / "logs") == {"live-run", "r2"}
    assert names(state / "runs") == {"live-run.json"}
    assert names(state / "history") == {"r2.json"}


def test_clean_with_nothing_to_remove_says_so(repo: Path, state: Path) -> None:
    finished(state, "r0", time.time())
    code, out, _ = clean(repo)
    assert code == 0
    assert "nothing to remove" in out
    assert names(state / "logs") == {"r0"}


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_clean_with_a_bad_keep_runs_exits_2_and_removes_nothing(repo: Path, state: Path, value: str) -> None:
    finished(state, "r0", time.time() - 10)
    finished(state, "r1", time.time())
    code, _, err = clean(repo, "--keep-runs", value)
    assert code == 2
    assert "keep-runs" in err
    assert names(state / "logs") == {"r0", "r1"}


def test_clean_exits_1_when_the_registry_cannot_be_used(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (repo / ".project-manager").symlink_to(tmp_path / "elsewhere")
    code, _, err = clean(repo)
    assert code == 1
    assert "symlink" in err


def test_clean_follows_keep_runs_in_the_repositorys_config(repo: Path, state: Path) -> None:
    (repo / "project-manager.yaml").write_text("keep_runs: 2\n")
    now = time.time()
    for i in range(4):
        finished(state, f"r{i}", now - 10 + i)
    code, _, err = clean(repo)
    assert code == 0, err
    assert names(state / "logs") == {"r2", "r3"}


def test_clean_with_a_bad_repository_config_exits_2_naming_file_line_and_field(repo: Path, state: Path) -> None:
    (repo / "project-manager.yaml").write_text("agents: {}\nkeep_runs: 0\n")
    finished(state, "r0", time.time())
    code, _, err = clean(repo)
    assert code == 2
    assert "project-manager.yaml:2: keep_runs: must be at least 1, got 0" in err
    assert names(state / "logs") == {"r0"}


def test_clean_help_names_its_options() -> None:
    result = runner.invoke(app, ["clean", "--help"])
    assert result.exit_code == 0
    for option in ("--keep-runs", "--dry-run", "--force", "--pool", "--repo"):
        assert option in result.stdout


def test_clean_history_forgets_the_durations_and_only_with_history(repo: Path, state: Path) -> None:
    from queue_core.durations import FILE, DurationHistory
    from queue_core.estimates import Sample

    history = DurationHistory(state)
    for i in range(3):
        history.record(Sample("a", f"t{i}", f"f{i}", 1.0, float(i)))
    code, out, err = clean(repo)
    assert code == 0, err
    assert (state / FILE).exists()  # without --history, the durations stay
    code, out, err = clean(repo, "--history", "--dry-run")
    assert code == 0, err
    assert f"would remove {FILE}: the durations of 3 task run(s), which estimates are made from" in out
    assert (state / FILE).exists()
    code, out, err = clean(repo, "--history")
    assert code == 0, err
    assert f"removed {FILE}: the durations of 3 task run(s), which estimates are made from" in out
    assert not (state / FILE).exists()
    code, out, err = clean(repo, "--history")
    assert code == 0, err
    assert "no durations to remove" in out
