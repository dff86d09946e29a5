"""``delegate-multiple --notify`` through the installed command: the bell on the terminal once the
run ended, and ``on_finish:`` of project-manager.yaml run with the run's outcome."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from queue_core.registry import state_dir
from tests.unit.test_notify import RECORD

from ..conftest import WAIT
from ._terminal import on_terminal

SCRIPT = Path(sys.executable).with_name("project-manager")


def _repo(tmp_path: Path, on_finish: Sequence[str] | str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "project-manager.yaml").write_text(f"on_finish: {json.dumps(on_finish)}\n")  # JSON is YAML
    return repo


def _on_terminal(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal; its exit code and everything it showed."""
    with on_terminal(argv, size=(24, 80)) as terminal:
        shown = terminal.read_to_end()
        return terminal.proc.wait(WAIT), shown.decode(errors="replace")


def test_notify_rings_the_bell_once_the_summary_is_out_and_runs_on_finish(tmp_path: Path) -> None:
    repo = _repo(tmp_path, RECORD)
    argv = [str(SCRIPT), "delegate-multiple", "shell: true @a", "shell: false @b", "--notify", "--repo", str(repo)]
    code, shown = _on_terminal(argv)
    assert code == 1
    assert shown.rindex("\a") > shown.index("1/2 succeeded")
    env = json.loads((repo / "finish.json").read_text())
    assert (env["PM_EXIT_CODE"], env["PM_TOTAL"], env["PM_SUCCEEDED"], env["PM_FAILED"]) == ("1", "2", "1", "1")
    assert (state_dir(repo) / "history" / f"{env['PM_RUN_ID']}.json").is_file()


def test_without_notify_there_is_no_bell_and_no_on_finish(tmp_path: Path) -> None:
    repo = _repo(tmp_path, RECORD)
    code, shown = _on_terminal([str(SCRIPT), "delegate-multiple", "shell: true @a", "--repo", str(repo)])
    assert code == 0
    assert "\a" not in shown
    assert not (repo / "finish.json").exists()


def test_a_failing_on_finish_is_a_warning_and_the_exit_code_stands(tmp_path: Path) -> None:
    repo = _repo(tmp_path, [sys.executable, "-c", "import sys; sys.exit('no display')"])
    done = subprocess.run(
        [str(SCRIPT), "delegate-multiple", "shell: true @a", "--notify", "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "exited with code 1: no display; the run's exit code stands" in done.stderr
    assert "\a" not in done.stdout + done.stderr  # no terminal: no bell


def test_an_on_finish_written_as_a_shell_string_is_refused_before_anything_runs(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "notify-send done")
    done = subprocess.run(
        [str(SCRIPT), "delegate-multiple", "shell: touch ran @ran", "--notify", "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{repo / 'project-manager.yaml'}:1: on_finish: expected a command as a list" in done.stderr
    assert not (repo / "ran").exists()
