"""Paths as git reads them, through the installed command run from a subdirectory of a real
repository: claims typed on the command line count from the current directory, claims in a
batch file and agents' commands from the repository root (where agents run).

The parsing rules themselves (trailing claims, quoting, warnings) are tested one by one in
tests/unit/test_task_args.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..conftest import git_repo

SCRIPT = Path(sys.executable).with_name("project-manager")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with an agent script of its own, defined in project-manager.yaml."""
    root = git_repo(
        tmp_path / "repo",
        {
            "src/app/parser.py": "",
            "scripts/agent.sh": '#!/bin/sh\necho "$PM_TASK_ID ran in $(pwd -P)" > ran.txt\n',
            "project-manager.yaml": (
                "agents:\n  local: {command: [scripts/agent.sh]}\n  missing: {command: [scripts/none.sh]}\n"
            ),
        },
    )
    (root / "scripts" / "agent.sh").chmod(0o755)
    return root


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "delegate-multiple", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )


def plan(cwd: Path, *args: str) -> dict[str, Any]:
    done = run(cwd, *args, "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_claims_typed_in_a_subdirectory_are_relative_to_it(repo: Path) -> None:
    """Before: ``@parser.py`` claimed the root's parser.py, and ``@../x.py`` was refused."""
    task = "shell: true @parser.py @../x.py @*.py @docs/ @../../README.md"
    (entry,) = plan(repo / "src" / "app", task)["tasks"]
    assert entry["files"] == ["src/app/parser.py", "src/x.py", "src/app/*.py", "src/app/docs/", "README.md"]


def test_the_agent_gets_the_repo_relative_claims_in_its_argv_and_prompt(repo: Path) -> None:
    done = run(repo / "src" / "app", "shell: printf '%s\\n' \"$PM_FILES\" > files.txt @parser.py")
    assert done.returncode == 0, done.stderr
    assert (repo / "files.txt").read_text() == "src/app/parser.py\n"  # written at the root: the agent runs there


def test_a_claim_that_leaves_the_repository_from_a_subdirectory_exits_2_and_runs_nothing(repo: Path) -> None:
    done = run(repo / "src" / "app", "shell: touch ran.txt @../../../x.py")
    assert done.returncode == 2
    assert done.stderr == (
        "project-manager: error: argument 1: files[0]: invalid path '../../../x.py' (from src/app): "
        "the path leaves the repository root\n"
    )
    assert not list(repo.rglob("ran.txt"))


def test_claims_in_a_batch_file_stay_relative_to_the_repository_root(repo: Path) -> None:
    batch = repo / "src" / "batch.yaml"
    batch.write_text("tasks:\n  - {id: a, agent: shell, description: 'true', files: [docs/a.md]}\n")
    (entry,) = plan(repo / "src", "--file", "batch.yaml")["tasks"]
    assert entry["files"] == ["docs/a.md"]


def test_from_outside_the_repository_claims_count_from_its_root(repo: Path, tmp_path: Path) -> None:
    (entry,) = plan(tmp_path, "shell: true @src/app/parser.py", "--repo", str(repo))["tasks"]
    assert entry["files"] == ["src/app/parser.py"]


def test_a_quoted_claim_keeps_its_space_and_a_middle_at_word_is_text_with_a_warning(repo: Path) -> None:
    """Before: the quoted path claimed nothing, and ``@alice`` stayed text without a word."""
    done = run(repo / "src", 'shell: ask @alice about it @"docs/a b.md"', "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)["tasks"]
    assert entry["files"] == ["src/docs/a b.md"]
    assert entry["argv"] == ["sh", "-c", "ask @alice about it"]
    assert done.stderr == (
        "project-manager: warning: argument 1: '@alice' is in the middle of the description, "
        "so it is not a claim; put claims at the end\n"
    )


def test_a_trailing_at_word_that_names_no_file_is_claimed_with_a_warning(repo: Path) -> None:
    """ "review the PR by @alice": a trailing @word is a claim, but one that names nothing in the
    repository and looks like no path (no / and no .) is more likely a person: say so, and how
    to keep it as text. A claim of a new file with a name like a path is not warned about."""
    done = run(repo, "shell: review the PR by @alice", "shell: write it @docs/new.md @NOTES", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout)["tasks"]
    assert first["files"] == ["alice"]
    assert second["files"] == ["docs/new.md", "NOTES"]
    assert done.stderr == (
        "project-manager: warning: argument 1: @alice claims 'alice', which is not in the repository; "
        "if it is not a file, put it in quotes ('@alice') to keep it in the description\n"
        "project-manager: warning: argument 2: @NOTES claims 'NOTES', which is not in the repository; "
        "if it is not a file, put it in quotes ('@NOTES') to keep it in the description\n"
    )
    from_below = run(repo / "src", "shell: review the PR by @alice", "shell: edit @app", "--dry-run", "--json")
    assert from_below.returncode == 0, from_below.stderr
    assert from_below.stderr == (
        "project-manager: warning: argument 1: @alice claims 'src/alice', which is not in the repository; "
        "if it is not a file, put it in quotes ('@alice') to keep it in the description\n"
    )


def test_an_unterminated_quote_exits_2_naming_the_argument(repo: Path) -> None:
    done = run(repo, "shell: true @a.py", 'shell: touch ran.txt @"docs/a b.md')
    assert done.returncode == 2
    assert done.stderr == (
        "project-manager: error: argument 2: files[0]: unterminated quote in '@\"docs/a b.md': close it with \"\n"
    )
    assert not (repo / "ran.txt").exists()


def test_a_repo_relative_agent_command_runs_from_a_subdirectory(repo: Path) -> None:
    """Before: "executable 'scripts/agent.sh' of agent 'local' was not found on PATH" (exit 2)."""
    done = run(repo / "src" / "app", "local: go @x.py", "--no-live")
    assert done.returncode == 0, done.stderr
    assert (repo / "ran.txt").read_text() == f"t1 ran in {repo.resolve()}\n"


def test_the_dry_run_looks_a_repo_relative_command_up_from_the_repository_root(repo: Path) -> None:
    result = plan(repo / "src" / "app", "local: go @x.py", "missing: go @y.py")
    assert result["missing"] == ["scripts/none.sh"]
    # Before: "not found on PATH: scripts/none.sh", though PATH was never looked at for it.
    done = run(repo / "src" / "app", "missing: go @y.py", "shell: true @z.py", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "project-manager: warning: not found in the repository, from its root: scripts/none.sh (agent 'missing')\n"
    )


def test_a_missing_repo_relative_command_exits_2_saying_where_it_was_looked_for(repo: Path) -> None:
    done = run(repo / "src", "missing: go @y.py")
    assert done.returncode == 2
    assert done.stderr == (
        f"project-manager: error: {repo.resolve() / 'project-manager.yaml'}:3: agents.missing.command[0]: "
        "executable 'scripts/none.sh' of agent 'missing' was not found (a command with a / is looked up "
        "from the repository root, where agents run)\n"
    )
