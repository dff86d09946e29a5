"""The README's examples run as pasted, so that they cannot rot (issue 12: the first command-line
example failed with "unknown agent 'code_developer'", the library snippet with "'implement' is
not defined")."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import WAIT, git_repo

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
SCRIPT = Path(sys.executable).with_name("project-manager")


def blocks(language: str, text: str = README) -> list[str]:
    """The fenced code blocks of ``language`` in ``text``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def section(title: str) -> str:
    """The README from the heading ``## title`` to the next heading of that level."""
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("code", blocks("python"))
def test_every_python_example_runs_as_pasted(tmp_path: Path, code: str) -> None:
    repo = git_repo(tmp_path / "repo", {"README": "x\n"})
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_first_command_line_example_plans_as_pasted_on_a_fresh_repository(tmp_path: Path) -> None:
    block = blocks("sh", section("The command line"))[0]
    lines = "".join(line for line in block.splitlines(keepends=True) if not line.startswith("#"))
    command = re.split(r"(?<!\\)\n", lines)[0].replace("\\\n", " ")  # the first, its lines joined
    argv = shlex.split(command, comments=True)
    assert argv[:2] == ["project-manager", "delegate-multiple"]
    repo = git_repo(tmp_path / "repo", {"README": "x\n"})
    # A dry run checks the agents and the claims but needs no agent installed.
    done = subprocess.run([str(SCRIPT), *argv[1:], "--dry-run"], cwd=repo, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
