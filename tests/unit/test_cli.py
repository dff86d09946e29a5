"""The CLI through typer's CliRunner: commands, exit codes, bad input, dry runs, JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

from ..conftest import EMPTY_STATUS

runner = CliRunner()
PY = sys.executable


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The command's exit code, stdout and stderr; ``env`` added to the environment."""
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


def test_help_lists_the_commands() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    assert "delegate-multiple" in out
    assert "status" in out


def test_string_tasks_run_in_parallel_and_report_json(repo: Path) -> None:
    code, out, err = invoke(
        "delegate-multiple",
        "shell: echo one > one.txt @one.txt",
        "shell: echo two > two.txt @two.txt",
        "--repo",
        str(repo),
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)  # stdout is exactly one JSON object
    assert [t["status"] for t in report["tasks"]] == ["succeeded", "succeeded"]
    assert {t["id"] for t in report["tasks"]} == {"t1", "t2"}
    assert all(Path(t["log"]).exists() for t in report["tasks"])
    assert (repo / "one.txt").read_text() == "one\n"
    assert set(report) == {"run_id", "wall_s", "sum_s", "speedup", "cost_usd", "tasks"}


def test_a_failing_task_exits_1_and_says_so(repo: Path) -> None:
    code, out, _ = invoke("delegate-multiple", "shell: exit 3 @x", "shell: true @y", "--repo", str(repo))
    assert code == 1
    assert "FAILED" in out  # the event line
    assert "1/2 succeeded" in out


def test_bad_yaml_exits_2_naming_file_line_and_field_and_runs_nothing(repo: Path) -> None:
    batch = repo / "batch.yaml"
    batch.write_text(
        "tasks:\n"
        "  - id: a\n"
        "    agent: shell\n"
        "    description: touch ran.txt\n"
        "    file: [a.py]\n"  # a typo for files: must not silently drop the claim
    )
    code, _, err = invoke("delegate-multiple", "--file", str(batch), "--repo", str(repo))
    assert code == 2
    assert "batch.yaml:5" in err
    assert "file" in err
    assert not (repo / "ran.txt").exists()


@pytest.mark.parametrize("task_id", ["../../../../escaped", "{outside}/escaped"])
def test_a_task_id_that_is_a_path_exits_2_and_runs_nothing(repo: Path, task_id: str) -> None:
    """Before: the log, named after the id, was written outside the repository."""
    task_id = task_id.format(outside=repo.parent)  # absolute
    batch = repo / "batch.yaml"
    batch.write_text(f"tasks:\n  - id: {task_id}\n    agent: shell\n    description: touch ran.txt\n")
    code, _, err = invoke("delegate-multiple", "--file", str(batch), "--repo", str(repo))
    assert code == 2
    assert "batch.yaml:2: tasks[0].id: expected 1 to 100 letters" in err
    assert not (repo / "ran.txt").exists()
    assert not list(repo.parent.rglob("escaped.log"))


@pytest.mark.parametrize(
    ("task", "phrase"),
    [
        ("shell: touch ran.txt @/etc/passwd", "absolute"),
        ("shell: touch ran.txt @../outside.py", "leaves the repository"),
        ("no colon here", "argument 1"),
        ("nosuchagent: touch ran.txt @x", "nosuchagent"),
    ],
)
def test_bad_string_tasks_exit_2_and_run_nothing(repo: Path, task: str, phrase: str) -> None:
    code, _, err = invoke("delegate-multiple", task, "--repo", str(repo))
    assert code == 2
    assert phrase in err
    assert not (repo / "ran.txt").exists()


@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)])
def test_a_claim_through_a_symlink_out_of_the_repository_exits_2_and_runs_nothing(
    repo: Path, tmp_path: Path, dry_run: tuple[str, ...]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo / "linked").symlink_to(elsewhere)
    tasks = ("shell: touch ran.txt @ran.txt", "shell: touch linked/evil.py @linked/evil.py")
    code, _, err = invoke("delegate-multiple", *tasks, "--repo", str(repo), *dry_run)
    assert code == 2
    assert "'linked/evil.py'" in err
    assert str(elsewhere.resolve()) in err
    assert "outside the repository" in err
    assert not (repo / "ran.txt").exists()
    assert not (elsewhere / "evil.py").exists()


def test_no_tasks_is_bad_input(repo: Path) -> None:
    code, _, err = invoke("delegate-multiple", "--repo", str(repo))
    assert code == 2
    assert "no tasks" in err


def test_dry_run_prints_the_plan_and_runs_nothing(repo: Path) -> None:
    code, out, _ = invoke(
        "delegate-multiple",
        "shell: touch a.txt @shared.py",
        "shell: touch b.txt @other.py",
        "--repo",
        str(repo),
        "--dry-run",
    )
    assert code == 0
    assert "Would start now" in out
    assert "t1 [shell]" in out
    assert "t2 [shell]: shell busy (t1)" in out
    assert not (repo / "a.txt").exists()


def test_a_hostile_description_reaches_the_agent_as_text(repo: Path) -> None:
    batch = repo / "batch.yaml"
    batch.write_text(
        "agents:\n"
        "  echoer:\n"
        f'    command: [{json.dumps(PY)}, -c, \'import sys; open("seen.txt", "w").write(sys.argv[1])\', '
        "'{description}']\n"
        "tasks:\n"
        "  - id: t\n"
        "    agent: echoer\n"
        "    description: '$(touch pwned); rm -rf x'\n"
        "    files: [seen.txt]\n"
    )
    code, _, err = invoke("delegate-multiple", "--file", str(batch), "--repo", str(repo))
    assert code == 0, err
    assert (repo / "seen.txt").read_text() == "$(touch pwned); rm -rf x"
    assert not (repo / "pwned").exists()


def test_status_says_plainly_when_nothing_runs(repo: Path) -> None:
    code, out, _ = invoke("status", "--repo", str(repo))
    assert code == 0
    assert "Nothing runs in" in out
    code, out, _ = invoke("status", "--repo", str(repo), "--json")
    # No dead run left a worktree, and no pool keeps one.
    assert json.loads(out) == {**EMPTY_STATUS, "leftover_worktrees": [], "idle_pool_worktrees": []}


@pytest.mark.parametrize("command", [["status"], ["delegate-multiple", "shell: x"], ["clean", "--dry-run"]])
def test_a_repo_that_does_not_exist_is_bad_input(tmp_path: Path, command: list[str]) -> None:
    """Before: ``status --repo /nonexistent`` said "Nothing runs in /nonexistent." and exited 0."""
    missing = tmp_path / "nonexistent"
    code, out, err = invoke(*command, "--repo", str(missing))
    assert code == 2
    assert f"--repo {missing}: no such directory" in err
    assert out == ""
    assert not missing.exists()


def test_outside_a_git_repository_a_command_needs_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the current directory was taken for the repository, silently."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above it
    code, out, err = invoke("status")
    assert code == 2
    assert "not a git repository; give --repo" in err
    code, out, _ = invoke("status", "--repo", str(tmp_path))  # named, a plain folder is fine
    assert code == 0
    assert "Nothing runs in" in out


def test_ids_given_to_string_tasks_never_clash_with_a_file_tasks_id(repo: Path) -> None:
    """Before: the first string task was numbered t1 whatever the batch file held, and the run
    was refused as a duplicate id."""
    batch = repo / "batch.yaml"
    batch.write_text("tasks:\n  - id: t1\n    agent: shell\n    description: true\n")
    code, out, err = invoke(
        "delegate-multiple", "--file", str(batch), "shell: true", "shell: true", "--repo", str(repo), "--json"
    )
    assert code == 0, err
    assert sorted(t["id"] for t in json.loads(out)["tasks"]) == ["t1", "t2", "t3"]
