"""``--help`` and ``-h`` of every command, as the installed script prints them at 80 and 100 columns.

What a newcomer met (issue 12): no ``-h``; ``<bool>``, ``<list[str]>``, ``<path>`` and ``<int
range> [x>=1]`` beside the options; a sentence of a docstring broken where its source line
ended ("2 bad input (nothing" / "ran)").
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from cli.app import app

from ..conftest import WAIT
from .test_cli import invoke

SCRIPT = Path(sys.executable).with_name("project-manager")
COMMANDS = ("", *typer.main.get_command(app).commands)
#: A type in angle brackets (``<bool>``, ``<list[str]>``, ``<int range>``), or a range in symbols.
PLACEHOLDER = re.compile(r"<[^>\s]*>|\bx\s*[<>]=?")


def help_text(command: str, option: str, columns: int) -> str:
    argv = [str(SCRIPT), *command.split(), option]
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def early_breaks(text: str) -> list[tuple[str, str]]:
    """Consecutive lines of one paragraph of prose where the next line's first word would have
    fit on the first: a line break the source put there, not the wrapping."""
    prose = text.split("\nOptions:")[0].split("\nArguments:")[0].split("\nCommands:")[0]
    lines = prose.splitlines()[1:]  # after the usage line
    width = max(len(line) for line in lines)
    return [
        (first, second)
        for first, second in itertools.pairwise(lines)
        if first.strip() and second.strip() and len(first.rstrip()) + 1 + len(second.split()[0]) <= width
    ]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("option", "columns"), [("-h", 80), ("--help", 100)])
def test_help_has_no_type_placeholders_and_no_sentence_broken_early(command: str, option: str, columns: int) -> None:
    text = help_text(command, option, columns)
    assert text.startswith(f"Usage: project-manager {command}".rstrip())
    assert PLACEHOLDER.findall(text) == [], text
    assert early_breaks(text) == [], text


def test_an_exit_code_sentence_stays_whole() -> None:
    for columns in (80, 100):
        assert "2 bad input (nothing ran)" in help_text("delegate-multiple", "--help", columns)


def test_options_name_what_they_take() -> None:
    text = help_text("delegate-multiple", "-h", 80)
    assert text.startswith("Usage: project-manager delegate-multiple [OPTIONS] [TASK]...\n")
    for shown in ("-f, --file FILE", "-j, --max-parallel N", "--repo DIR", "-h, --help"):
        assert shown in text
    assert re.search(r"^\s+--dry-run\s+Validate", text, re.MULTILINE)  # a flag shows no value
    assert "--keep-runs N" in help_text("clean", "-h", 80)


@pytest.mark.parametrize(("command", "option"), [("delegate-multiple", "--max-parallel"), ("clean", "--keep-runs")])
def test_a_count_below_1_is_refused_in_words(command: str, option: str) -> None:
    code, _, err = invoke(command, option, "0", "--repo", ".")
    assert code == 2
    assert "must be at least 1, got 0" in err


def test_the_command_list_gives_each_command_one_whole_line() -> None:
    listed = help_text("", "-h", 80).split("\nCommands:\n")[1].splitlines()
    assert [line.split()[0] for line in listed] == list(COMMANDS[1:])
    assert [line for line in listed if line.endswith("...")] == []  # no summary cut short


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=WAIT, env={**os.environ, **env})


def test_show_completion_prints_a_script_for_the_shell_named() -> None:
    # Typer's switch for tests: the shell is an argument, not found by looking at the parent process.
    done = run_script("--show-completion", "bash", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert done.returncode == 0, done.stderr
    assert "_PROJECT_MANAGER_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _project_manager_completion project-manager" in done.stdout


def test_the_completion_script_completes_commands_and_options() -> None:
    # What the bash script asks the command when TAB is pressed after "project-manager del".
    done = run_script(_PROJECT_MANAGER_COMPLETE="complete_bash", COMP_WORDS="project-manager del", COMP_CWORD="1")
    assert done.stdout.split() == ["delegate-multiple"]
    done = run_script(
        _PROJECT_MANAGER_COMPLETE="complete_bash", COMP_WORDS="project-manager clean --keep", COMP_CWORD="2"
    )
    assert done.stdout.split() == ["--keep-runs"]


def test_help_names_the_completion_options() -> None:
    text = help_text("", "-h", 80)
    assert "--install-completion" in text
    assert "--show-completion" in text
