"""``project-manager init``: a commented ``project-manager.yaml`` for the agent CLIs on PATH.

The file must load with the loader every run uses; found agents are defined, the others are
there commented out; an existing file is never replaced unless asked.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli.config_files import _AGENT_KEYS, _REPO_KEYS, REPO_CONFIG, load_repo_config
from cli.init import AGENT_CLIS
from cli.presets import PRESETS, preset_command

from ..conftest import WAIT, git_repo
from .test_cli import invoke

SCRIPT = Path(sys.executable).with_name("project-manager")


def fake_path(tmp_path: Path, *presets: str) -> str:
    """A PATH where only the executables of ``presets`` are found (and git, for the repository)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for preset in presets:
        exe = bin_dir / PRESETS[preset][0]
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    git = shutil.which("git")
    assert git is not None
    (bin_dir / "git").symlink_to(git)
    return str(bin_dir)


def init(path: str, *args: str) -> tuple[int, str, str]:
    """``project-manager init ARGS`` with ``path`` as PATH."""
    return invoke("init", *args, env={"PATH": path})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"README": "x\n"})


def test_found_agents_are_defined_and_the_others_commented_out(tmp_path: Path, repo: Path) -> None:
    code, out, err = init(fake_path(tmp_path, "claude", "cursor"), "--repo", str(repo))
    assert code == 0, err
    agents = load_repo_config(repo).agents
    assert agents.keys() == {"claude_dev", "cursor_dev"}
    assert agents["claude_dev"].command == preset_command("claude")
    assert agents["cursor_dev"].command == PRESETS["cursor"]
    text = (repo / REPO_CONFIG).read_text()
    for missing in set(AGENT_CLIS) - {"claude", "cursor"}:
        assert f"  # {missing}_dev:\n  #   preset: {missing}\n" in text
    assert f"wrote {repo / REPO_CONFIG}" in out
    assert "commented out, not on PATH: codex, aider, gemini, opencode, goose\n" in out


def test_the_agents_commented_out_load_once_uncommented(tmp_path: Path, repo: Path) -> None:
    code, _, err = init(fake_path(tmp_path), "--repo", str(repo))
    assert code == 0, err
    text = (repo / REPO_CONFIG).read_text()
    entry = re.compile(r"  # (\w+:|  \w+: .*)")  # "  # codex_dev:", "  #   preset: codex"
    top = re.compile(r"# (\w+: \S.*)")  # "# keep_runs: 100   # how many ..."
    lines = [
        f"  {m[1]}" if (m := entry.fullmatch(line)) else m[1] if (m := top.fullmatch(line)) else line
        for line in text.splitlines()
    ]
    (repo / REPO_CONFIG).write_text("\n".join(lines))
    config = load_repo_config(repo)
    assert list(config.agents) == [*(f"{preset}_dev" for preset in AGENT_CLIS), "reviewer"]
    assert config.agents["reviewer"].command == ("my-review-tool", "--message={prompt}")
    assert (config.keep_runs, config.on_finish) == (100, ("notify-send", "project-manager: run ended"))
    assert config.hooks.run_end == (("notify-send", "project-manager: run ended"),)


def test_every_key_of_an_agent_and_of_the_file_is_explained(tmp_path: Path, repo: Path) -> None:
    """Before: on_finish, added to the file's keys with --notify, was not among them."""
    code, _, err = init(fake_path(tmp_path), "--repo", str(repo))
    assert code == 0, err
    comments = [line for line in (repo / REPO_CONFIG).read_text().splitlines() if line.lstrip().startswith("#")]
    for key in (*_AGENT_KEYS, *(key for key in _REPO_KEYS if key != "agents")):
        assert any(line.lstrip("# ").startswith(f"{key}:") for line in comments), key


def test_with_no_agent_on_path_the_file_loads_empty_and_a_shell_task_is_suggested(tmp_path: Path, repo: Path) -> None:
    code, out, err = init(fake_path(tmp_path), "--repo", str(repo))
    assert code == 0, err
    assert load_repo_config(repo).agents == {}
    assert 'delegate-multiple --dry-run "shell: ' in out


def test_the_file_goes_to_the_repository_top(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "src" / "app").mkdir(parents=True)
    monkeypatch.chdir(repo / "src" / "app")
    code, _, err = init(fake_path(tmp_path, "codex"))
    assert code == 0, err
    assert load_repo_config(repo).agents.keys() == {"codex_dev"}
    assert not (repo / "src" / "app" / REPO_CONFIG).exists()


def test_an_existing_file_is_refused_and_kept_unless_forced(tmp_path: Path, repo: Path) -> None:
    path = fake_path(tmp_path, "gemini")
    (repo / REPO_CONFIG).write_text("agents: {}\n")
    code, out, err = init(path, "--repo", str(repo))
    assert code == 2
    assert f"{repo / REPO_CONFIG} already exists; --force replaces it" in err
    assert out == ""
    assert (repo / REPO_CONFIG).read_text() == "agents: {}\n"
    code, _, err = init(path, "--repo", str(repo), "--force")
    assert code == 0, err
    assert load_repo_config(repo).agents.keys() == {"gemini_dev"}


def test_a_file_that_cannot_be_written_leaves_nothing_behind(tmp_path: Path, repo: Path) -> None:
    (repo / REPO_CONFIG).mkdir()  # a directory in its place: not replaced, even as root
    (repo / REPO_CONFIG / "keep").write_text("x")
    code, _, err = init(fake_path(tmp_path), "--repo", str(repo), "--force")
    assert code == 1
    assert f"cannot write {repo / REPO_CONFIG}" in err
    assert sorted(p.name for p in repo.iterdir()) == [".git", "README", REPO_CONFIG]
    assert (repo / REPO_CONFIG / "keep").read_text() == "x"


def test_the_installed_command_writes_the_file_and_the_command_it_suggests_works(tmp_path: Path, repo: Path) -> None:
    env = {**os.environ, "PATH": fake_path(tmp_path, "aider")}
    done = subprocess.run(
        [str(SCRIPT), "init"], cwd=repo, capture_output=True, text=True, timeout=WAIT, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    wrote, missing, suggested = done.stdout.splitlines()
    assert wrote == f"wrote {repo / REPO_CONFIG}: aider_dev (aider)"
    assert missing == "commented out, not on PATH: claude, codex, gemini, cursor, opencode, goose"
    assert suggested.startswith("next: project-manager delegate-multiple --dry-run ")
    argv = shlex.split(suggested.removeprefix("next: "))
    plan = subprocess.run(
        [str(SCRIPT), *argv[1:]], cwd=repo, capture_output=True, text=True, timeout=WAIT, env=env, check=False
    )
    assert plan.returncode == 0, plan.stderr
    assert "aider" in plan.stdout
