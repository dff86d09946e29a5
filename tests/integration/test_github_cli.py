"""A run on GitHub Actions (``GITHUB_ACTIONS=true``) through the installed command: each task's log
in a group whose workflow commands GitHub ignores, failures annotated, the job summary appended
to a temporary ``GITHUB_STEP_SUMMARY``; stdout JSON only with --json; nothing of it elsewhere,
and the live view unharmed on a terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_github import EVIL, commands_obeyed

from ..conftest import WAIT, git_repo
from ._terminal import on_terminal

SCRIPT = Path(sys.executable).with_name("project-manager")

BATCH = f"""
agents:
  talker: {{command: [printf, "%s\\\\n", {json.dumps(EVIL)}, "::error::evil at the end"]}}
  broken: {{command: [sh, -c, "echo '::warning::fake'; echo 'the end of it'; exit 3"]}}
tasks:
  - {{id: talk, agent: talker, description: prints workflow commands, files: [a.txt]}}
  - {{id: broken, agent: broken, description: fails, files: [b.txt]}}
"""
EARLIER = "# an earlier step's summary\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = git_repo(tmp_path / "repo", {})
    (repo / "batch.yaml").write_text(BATCH)
    return repo


def _env(tmp_path: Path, actions: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    summary = tmp_path / "step_summary.md"
    summary.write_text(EARLIER)
    if actions:
        env.update(GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    return env


def _run(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(SCRIPT), "delegate-multiple", "--file", "batch.yaml", *args, "--repo", str(repo)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=repo, env=env, timeout=WAIT * 3)


def _our_commands(output: str) -> list[str]:
    """The workflow commands GitHub would obey, the tokens of stop-commands replaced by TOKEN."""
    obeyed = commands_obeyed(output)
    return [line if not line.startswith("::stop-commands::") else "::stop-commands::TOKEN" for line in obeyed]


def test_each_task_shows_its_log_in_a_group_that_issues_no_command_and_a_failure_is_annotated(
    repo: Path, tmp_path: Path
) -> None:
    done = _run(repo, _env(tmp_path))
    assert done.returncode == 1, done.stderr
    for line in ("::error::evil", "::add-mask::secret", "::endgroup::", "::error::evil at the end", "::warning::fake"):
        assert line in done.stdout.splitlines()  # at column 0, as the agent wrote it: shown, never obeyed
    obeyed = _our_commands(done.stdout)
    annotation = "::error title=broken::the agent exited with code 3"
    assert sorted(obeyed) == sorted(
        [
            "::group::talk (talker): succeeded",
            "::group::broken (broken): failed",
            *["::stop-commands::TOKEN", "::endgroup::"] * 2,
            annotation,
        ]
    ), done.stdout
    for i in (i for i, line in enumerate(obeyed) if line.startswith("::group::")):
        assert obeyed[i + 1 : i + 3] == ["::stop-commands::TOKEN", "::endgroup::"]
    broken = done.stdout.split("::group::broken (broken): failed\n", 1)[1]
    assert broken.splitlines()[2:4] == ["::warning::fake", "the end of it"]
    assert done.stdout.index(annotation) > done.stdout.index("FAILED    broken [broken]")
    assert "1/2 succeeded" in done.stdout.split(annotation, 1)[1]  # the summary comes last, as ever


def test_the_job_summary_is_appended_to_the_file_github_names(repo: Path, tmp_path: Path) -> None:
    done = _run(repo, _env(tmp_path))
    assert done.returncode == 1, done.stderr
    summary = (tmp_path / "step_summary.md").read_text()
    assert summary.startswith(EARLIER + "\n### project-manager run ")
    table = [line for line in summary.splitlines() if line.startswith("|")]
    assert table[:2] == ["| task | agent | status | duration | attempts | error |", "|---|---|---|---|---|---|"]
    talk, broken = sorted(table[2:], reverse=True)
    assert re.fullmatch(r"\| talk \| talker \| succeeded \| \d+\.\ds \| 1 \|  \|", talk)
    assert re.fullmatch(r"\| broken \| broken \| failed \| \d+\.\ds \| 1 \| the agent exited with code 3 \|", broken)
    assert re.search(r"\n1/2 succeeded; wall \d+\.\ds, task time \d+\.\ds\n$", summary)


def test_with_json_stdout_is_json_only_and_the_groups_go_to_stderr(repo: Path, tmp_path: Path) -> None:
    done = _run(repo, _env(tmp_path), "--json")
    assert done.returncode == 1, done.stderr
    run = json.loads(done.stdout)
    assert [task["status"] for task in run["tasks"]] == ["succeeded", "failed"]
    assert "::error title=broken::the agent exited with code 3" in commands_obeyed(done.stderr)
    assert "::error::evil" in done.stderr.splitlines()
    assert "### project-manager run " + run["run_id"] in (tmp_path / "step_summary.md").read_text()


def test_a_summary_file_that_cannot_be_written_is_a_warning_and_the_run_stands(repo: Path, tmp_path: Path) -> None:
    env = {**_env(tmp_path), "GITHUB_STEP_SUMMARY": str(tmp_path / "gone" / "summary.md")}
    done = _run(repo, env)
    assert done.returncode == 1, done.stderr  # the tasks' code: one failed
    assert "project-manager: warning: cannot append the job summary to " in done.stderr
    assert "1/2 succeeded" in done.stdout
    del env["GITHUB_STEP_SUMMARY"]
    done = _run(repo, env)
    assert "project-manager: warning: GITHUB_STEP_SUMMARY is not set: no job summary written" in done.stderr


def test_off_github_actions_nothing_of_it_is_printed_or_written(repo: Path, tmp_path: Path) -> None:
    done = _run(repo, _env(tmp_path, actions=False))
    assert done.returncode == 1, done.stderr
    ours = ("::group::", "::stop-commands::", "::error title=")
    assert not [line for line in done.stdout.splitlines() + done.stderr.splitlines() if line.startswith(ours)]
    assert (tmp_path / "step_summary.md").read_text() == EARLIER


def test_on_a_terminal_the_live_view_runs_as_ever_and_the_job_summary_is_written(repo: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    argv = [str(SCRIPT), "delegate-multiple", "--file", str(repo / "batch.yaml"), "--repo", str(repo)]
    with on_terminal(argv, size=(24, 80), env=env) as terminal:
        shown = terminal.read_to_end().decode(errors="replace")
        code = terminal.proc.wait(WAIT)
    assert code == 1, shown
    assert "::group::" not in shown
    assert "::stop-commands::" not in shown
    assert "1/2 succeeded" in shown
    assert "\x1b[?25l" in shown  # the live view took the terminal (the cursor hidden)
    assert "| broken | broken | failed |" in (tmp_path / "step_summary.md").read_text()
