"""The presets, run for real through the CLI against fakes that parse argv as the tools do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import WAIT
from .conftest import TOOLS

SCRIPT = Path(sys.executable).with_name("project-manager")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


def _run(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo), "--no-live"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT * 6, env=env, cwd=repo)


@pytest.mark.parametrize("tool", TOOLS)
def test_a_preset_edits_unattended_and_an_option_like_description_stays_text(
    repo: Path, fakes: dict[str, str], tool: str
) -> None:
    """Before: `claude -p` and the others ran without a mode that allows edits (denied, exit 0:
    succeeded with nothing done), and a description starting with '-' was read as an option."""
    done = _run(repo, fakes, f"{tool}: --help me fix it @src/a.py", "-j", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads((Path(fakes["FAKE_AGENT_OUT"]) / "t1.json").read_text())
    assert seen["unattended"], seen["argv"]
    assert str(seen["prompt"]).startswith("--help me fix it\n\n")
    assert (repo / "edited" / "t1").read_text() == tool


def test_the_agent_is_told_what_it_may_modify_and_read(repo: Path, fakes: dict[str, str]) -> None:
    batch = repo / "batch.yaml"
    batch.write_text(
        "tasks:\n  - {id: t, agent: aider, description: tidy, files: [src/a.py, 'docs/*.md'], reads: [README.md]}\n"
    )
    done = _run(repo, fakes, "--file", str(batch))
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads((Path(fakes["FAKE_AGENT_OUT"]) / "t.json").read_text())
    assert seen["prompt"] == (
        "tidy\n\nFiles and directories you may modify: src/a.py, docs/*.md. Files you may only read: README.md. "
        "Do not create, modify or delete anything else."
    )
    assert seen["files"] == ["src/a.py", "docs/*.md"]


def test_prompt_and_args_per_agent(repo: Path, fakes: dict[str, str]) -> None:
    batch = repo / "batch.yaml"
    batch.write_text(
        "agents:\n"
        "  quick: {preset: claude, prompt: '{description}', args: ['--output-format', 'json']}\n"
        "tasks:\n"
        "  - {id: t, agent: quick, description: just this, files: [a]}\n"
    )
    done = _run(repo, fakes, "--file", str(batch))
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads((Path(fakes["FAKE_AGENT_OUT"]) / "t.json").read_text())
    assert seen["prompt"] == "just this"
    assert seen["output"] == "json"  # the later --output-format wins; args go before the prompt's --


def test_a_claim_that_starts_with_a_dash_is_refused(repo: Path, fakes: dict[str, str]) -> None:
    done = _run(repo, fakes, "aider: fix @-rf")
    assert done.returncode == 2
    assert "may not start with '-'" in done.stderr + done.stdout
    assert list(Path(fakes["FAKE_AGENT_OUT"]).iterdir()) == []


def test_a_dry_run_shows_each_argv_and_works_without_the_tools(repo: Path) -> None:
    """Before: a dry run refused to plan without the agents' binaries, and never showed what would run."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no claude, no codex here
    done = _run(repo, env, "claude: fix it @src/a.py", "codex: test it @tests/", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "$ claude -p --permission-mode acceptEdits" in done.stdout
    assert "$ codex exec --sandbox workspace-write --json --" in done.stdout
    assert "not found on PATH: claude (preset agent 'claude'), codex (preset agent 'codex')" in done.stderr
    done = _run(repo, env, "claude: fix it @src/a.py", "codex: test it @tests/", "--dry-run", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    plan = json.loads(done.stdout)
    assert [t["id"] for t in plan["tasks"]] == ["t1", "t2"]
    first = plan["tasks"][0]
    assert first["argv"][:3] == ["claude", "-p", "--permission-mode"]
    assert first["argv"][-1].startswith("fix it\n\nFiles and directories you may modify: src/a.py.")
    assert (first["files"], first["reads"], first["depends_on"]) == (["src/a.py"], [], [])
    assert plan["starts"] == ["t1", "t2"]
    assert plan["missing"] == ["claude", "codex"]


def test_a_preset_name_redefined_by_the_repository_is_announced(repo: Path, fakes: dict[str, str]) -> None:
    (repo / "project-manager.yaml").write_text("agents:\n  claude: {command: [sh, -c, 'echo hi']}\n")
    done = _run(repo, fakes, "claude: hello @a")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "project-manager.yaml redefines the preset 'claude': it runs sh -c 'echo hi'" in done.stderr


#: What each fake reports as its error: behind exit 0, except Cursor, which documents a failure as a
#: message on stderr and a non-zero exit (cursor.com/docs/cli/reference/output-format).
ERRORS = {
    "claude": "error_max_turns",
    "codex": "stream error",
    "gemini": "model not found",
    "aider": "litellm.APIConnectionError: Connection error.",
    "opencode": "boom",
    "goose": "Request failed: 400 Bad Request",
}


@pytest.mark.parametrize("tool", TOOLS)
def test_an_error_the_agent_reports_behind_exit_0_fails_the_task(repo: Path, fakes: dict[str, str], tool: str) -> None:
    """Before: a failed turn behind exit 0 was reported as succeeded (and aider's errors were not read)."""
    done = _run(repo, {**fakes, "FAKE_REPORT": "error"}, f"{tool}: fix @a", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    [task] = json.loads(done.stdout)["tasks"]
    assert task["status"] == "failed"
    if tool == "cursor":
        assert task["exit_code"] == 1
        return
    assert task["exit_code"] == 0
    assert task["error"] == ERRORS[tool]


def _quick_back_off(repo: Path, tool: str = "aider", **keys: str) -> None:
    """A project-manager.yaml that gives ``tool`` a back-off of a tenth of a second, for a limit with no reset."""
    settings = "".join(f"\n    {key}: {value}" for key, value in {"rate_limit_backoff": "0.1", **keys}.items())
    (repo / "project-manager.yaml").write_text(f"agents:\n  {tool}:\n    preset: {tool}{settings}\n")


@pytest.mark.parametrize("tool", TOOLS)
def test_a_rate_limit_pauses_the_agent_then_the_task_runs_again_without_a_retry(
    repo: Path, fakes: dict[str, str], tool: str
) -> None:
    """Before: a rate limit behind exit 0 (or claude's exit 1) failed the task, or passed for success."""
    _quick_back_off(repo, tool)
    done = _run(repo, {**fakes, "FAKE_REPORT": "limit-once"}, f"{tool}: fix @a", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [task] = json.loads(done.stdout)["tasks"]
    assert (task["status"], task["error"]) == ("succeeded", None)
    assert (Path(fakes["FAKE_AGENT_OUT"]) / "t1.runs").read_text() == "run\nrun\n"
    assert f"paused    t1 [{tool}]: the agent was rate-limited" in done.stderr
    assert (repo / "edited" / "t1").read_text() == tool


def test_an_agent_limited_beyond_its_max_wait_fails_as_rate_limited(repo: Path, fakes: dict[str, str]) -> None:
    _quick_back_off(repo, rate_limit_backoff="10s", rate_limit_max_wait="1s")
    done = _run(repo, {**fakes, "FAKE_REPORT": "limit"}, "aider: fix @a", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    [task] = json.loads(done.stdout)["tasks"]
    assert task["status"] == "rate_limited"
    assert task["error"] == 'litellm.RateLimitError: AnthropicException - {"type":"rate_limit_error"}'
    summary = _run(repo, {**fakes, "FAKE_REPORT": "limit"}, "aider: fix @a")
    [row] = [line for line in summary.stdout.splitlines() if line.startswith("t1 ")]
    assert row.split()[2] == "rate_limited"
    assert "  rate-limited for 0s; wait" in row  # the reason, cut to fit the terminal
    assert "RATE LIMITED t1 [aider]" in summary.stdout


def test_cost_and_tokens_the_agents_report_are_in_the_summary_and_json(repo: Path, fakes: dict[str, str]) -> None:
    env = {**fakes, "FAKE_REPORT": "ok"}
    tasks_args = ("claude: a @a", "codex: b @b", "aider: c @c", "cursor: d @d", "opencode: e @e", "goose: f @f")
    done = _run(repo, env, *tasks_args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    tasks = {t["agent"]: t for t in report["tasks"]}
    assert (tasks["claude"]["cost_usd"], tasks["claude"]["tokens"]) == (0.0125, {"input": 1000, "output": 200})
    assert (tasks["codex"]["cost_usd"], tasks["codex"]["tokens"]) == (None, {"input": 300, "output": 40})
    assert (tasks["aider"]["cost_usd"], tasks["aider"]["tokens"], tasks["aider"]["error"]) == (0.01, None, None)
    assert (tasks["cursor"]["cost_usd"], tasks["cursor"]["tokens"], tasks["cursor"]["error"]) == (None, None, None)
    assert (tasks["opencode"]["cost_usd"], tasks["opencode"]["tokens"]) == (0.02, {"input": 800, "output": 90})
    assert (tasks["goose"]["cost_usd"], tasks["goose"]["tokens"]) == (None, {"input": 600, "output": 100})
    assert report["cost_usd"] == pytest.approx(0.0425)
    history = json.loads((repo / ".project-manager" / "history" / f"{report['run_id']}.json").read_text())
    costs = {t["agent"]: t["cost_usd"] for t in history["tasks"]}
    assert costs == {"claude": 0.0125, "codex": None, "aider": 0.01, "cursor": None, "opencode": 0.02, "goose": None}
    done = _run(repo, env, "claude: a @a")
    assert "cost $0.0125" in done.stdout
