"""Task arguments as typed on the command line: which ``@words`` are claims, quoting, paths
relative to the current directory, and where an agent's command is looked up.

The end-to-end runs of the same rules, from a subdirectory of a real repository, are in
tests/integration/test_cli_paths.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.config import AgentSpec, Batch, ConfigError, find_executable, parse_task_string, validate_batch

# --- an agent's command ---------------------------------------------------------------------------


@pytest.fixture
def scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with an executable scripts/agent.sh, and the current directory in src/."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "src").mkdir()
    (repo / "scripts" / "agent.sh").write_text("#!/bin/sh\n")
    (repo / "scripts" / "agent.sh").chmod(0o755)
    monkeypatch.chdir(repo / "src")
    return repo


def test_a_command_with_a_slash_is_found_from_the_repository_root(scripts: Path) -> None:
    assert find_executable("scripts/agent.sh", scripts) == str(scripts / "scripts" / "agent.sh")
    assert find_executable("./scripts/agent.sh", scripts) == str(scripts / "scripts" / "agent.sh")
    assert find_executable("agent.sh", scripts) is None  # a bare name: on PATH only
    assert find_executable("scripts/none.sh", scripts) is None
    assert find_executable("/bin/sh", scripts) == "/bin/sh"


def test_validate_batch_says_where_a_command_with_a_slash_was_looked_up(scripts: Path) -> None:
    agents = {"dev": AgentSpec("dev", ("scripts/none.sh",))}
    batch = Batch(None, agents, (parse_task_string("dev: go", 1),))
    with pytest.raises(ConfigError) as info:
        validate_batch(batch, agents, lambda program: find_executable(program, scripts))
    assert info.value.message == (
        "executable 'scripts/none.sh' of agent 'dev' was not found (a command with a / is looked up "
        "from the repository root, where agents run)"
    )
