"""Claims that grow as the agent works, and the claim hook in front of Claude Code's edits.

Real runs of the CLI: a fake ``claude`` (tests/fake_agents/clis.py) reads its ``--settings``,
runs the PreToolUse hook before each scripted edit with the JSON Claude Code documents on stdin,
and obeys its exit code as Claude does (2 blocks; anything else lets the edit through). Tasks
meet at files they touch (``await``/``touch`` steps), never at a sleep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import WAIT, eventually, git_repo
from .conftest import running, shell_wait_for

SCRIPT = Path(sys.executable).with_name("project-manager")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"src/a.py": "a\n", "docs/x.md": "x\n", "README": "r\n"})


def _batch(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _running_task(repo: Path, task: str) -> dict[str, Any]:
    running = {t["id"]: t for run in _status(repo)["runs"] for t in run["running"]}
    return running.get(task, {})


def _edits(env: dict[str, str], task: str) -> list[dict[str, Any]]:
    path = Path(env["FAKE_AGENT_OUT"]) / f"{task}.edits"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _running(repo: Path, env: dict[str, str], *args: str) -> AbstractContextManager[subprocess.Popen[str]]:
    return running([str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo), "--no-live"], env=env, cwd=repo)


def _status(repo: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(SCRIPT), "status", "--json", "--repo", str(repo)], capture_output=True, text=True, timeout=WAIT, check=True
    )
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_edits_inside_claims_pass_held_ones_are_blocked_and_free_ones_become_claims(
    tmp_path: Path, repo: Path, fakes: dict[str, str]
) -> None:
    go, up = tmp_path / "go", tmp_path / "t1-edited"
    script = [
        {"tool": "Edit", "path": "src/a.py"},  # its own claim
        {"tool": "Write", "path": "docs/x.md"},  # held by t2
        {"tool": "Write", "path": "notes/new.md"},  # free: claimed now
        {"tool": "NotebookEdit", "path": "src/a.py"},  # notebook_path, its own claim
        {"touch": str(up)},
        {"await": str(go)},
    ]
    holder = shell_wait_for(go)
    batch = _batch(
        tmp_path,
        {
            "agents": {"holder": {"command": ["sh", "-c", holder]}},
            "tasks": [
                {"id": "t1", "agent": "claude", "description": "work", "files": ["src/a.py"]},
                {"id": "t2", "agent": "holder", "description": "hold", "files": ["docs/x.md"]},
            ],
        },
    )
    env = {**fakes, "FAKE_EDITS": json.dumps(script), "PM_HOOK_WAIT": "0.2"}  # the holder holds on
    with _running(repo, env, "--file", str(batch)) as proc:
        eventually("t1's edits", up.exists)
        eventually("the run to take on t1's added claim", lambda: _running_task(repo, "t1").get("added"))
        assert _running_task(repo, "t1")["added"] == ["notes/new.md"]
        assert "notes/new.md" in _running_task(repo, "t1")["files"]
        go.touch()
        out, _ = proc.communicate(timeout=WAIT * 3)
    assert proc.returncode == 0, out
    edits = {(e["tool"], e["path"]): e for e in _edits(fakes, "t1")}
    assert edits["Edit", "src/a.py"]["codes"] == [0]
    assert edits["Edit", "src/a.py"]["blocked"] is None
    assert edits["NotebookEdit", "src/a.py"]["codes"] == [0]
    blocked = edits["Write", "docs/x.md"]
    assert blocked["codes"] == [2]
    assert "docs/x.md" in blocked["blocked"]
    assert "held by task t2 (holder)" in blocked["blocked"]
    assert "do not edit it" in blocked["blocked"]
    logs = repo / ".git" / "project-manager" / "logs"
    (log,) = logs.glob("*/t1.log")
    assert "[project-manager] the claim hook blocked an edit: docs/x.md is held by task t2" in log.read_text()
    assert (repo / "docs/x.md").read_text() == "x\n"  # untouched
    assert edits["Write", "notes/new.md"]["codes"] == [0]
    assert (repo / "notes/new.md").exists()
    assert "notes/new.md" not in out  # its added claim covers it: no stray write reported


def test_deny_mode_blocks_an_unclaimed_edit_and_allow_mode_lets_it_be(
    tmp_path: Path, repo: Path, fakes: dict[str, str]
) -> None:
    script = [{"tool": "Write", "path": "notes/new.md"}, {"tool": "Write", "path": "src/a.py"}]
    batch = _batch(
        tmp_path,
        {
            "agents": {"strict": {"preset": "claude", "on_unclaimed_edit": "deny"}},
            "tasks": [{"id": "t1", "agent": "strict", "description": "work", "files": ["src/a.py"]}],
        },
    )
    env = {**fakes, "FAKE_EDITS": json.dumps(script)}
    with _running(repo, env, "--file", str(batch)) as proc:
        out, _ = proc.communicate(timeout=WAIT * 3)
    assert proc.returncode == 0, out
    edits = {e["path"]: e for e in _edits(fakes, "t1")}
    assert edits["notes/new.md"]["codes"] == [2]
    assert "not among this task's claims" in edits["notes/new.md"]["blocked"]
    assert "free" in edits["notes/new.md"]["blocked"]
    assert not (repo / "notes/new.md").exists()
    assert edits["src/a.py"]["codes"] == [0]


def _claimer(tmp_path: Path, me: str, other: str, path: str) -> list[str]:
    """A task that holds its own file, waits until the other task runs too, then claims ``path``
    (the other's) with a long wait, and records its exit code and when it asked and was answered."""
    record = tmp_path / f"{me}.claim"
    script = (
        f"touch {tmp_path / me}.up; {shell_wait_for(tmp_path / f'{other}.up')}; "
        f'start=$(date +%s.%N); "{SCRIPT}" claim --wait 30 {path}; code=$?; '
        f'echo "$code $start $(date +%s.%N)" > {record}'
    )
    return ["sh", "-c", script]


def test_two_tasks_claiming_each_other_s_file_one_is_refused_at_once_and_nothing_hangs(
    tmp_path: Path, repo: Path
) -> None:
    batch = _batch(
        tmp_path,
        {
            "agents": {
                "one": {"command": _claimer(tmp_path, "one", "two", "docs/x.md")},
                "two": {"command": _claimer(tmp_path, "two", "one", "src/a.py")},
            },
            "tasks": [
                {"id": "t1", "agent": "one", "description": "one", "files": ["src/a.py"]},
                {"id": "t2", "agent": "two", "description": "two", "files": ["docs/x.md"]},
            ],
        },
    )
    with _running(repo, dict(os.environ), "--file", str(batch)) as proc:
        out, _ = proc.communicate(timeout=WAIT * 3)
    assert proc.returncode == 0, out
    answers = {}
    for name in ("one", "two"):
        code, asked, answered = (tmp_path / f"{name}.claim").read_text().split()
        answers[name] = (int(code), float(asked), float(answered))
    codes = sorted(code for code, _, _ in answers.values())
    assert codes == [0, 4], answers  # one refused, the other granted once the refused one ended
    (refused,) = (a for a in answers.values() if a[0] == 4)
    (granted,) = (a for a in answers.values() if a[0] == 0)
    assert refused[2] < granted[2]  # refused while the other still waited: not after a timeout
    logs = "".join(log.read_text() for log in (repo / ".git" / "project-manager" / "logs").glob("*/t?.log"))
    assert "waiting for" in logs
    assert "would deadlock: it is held by task t" in logs


def test_dynamic_claims_of_two_cli_processes_never_overlap_in_time(
    tmp_path: Path, repo: Path, fakes: dict[str, str]
) -> None:
    """Run A claims notes/shared.md as it edits and keeps it until the test lets it end; run B,
    another process, edits the same file: its hook waits, and B writes only after A has ended."""
    a_edited, go = tmp_path / "a-edited", tmp_path / "go"
    first = [
        {"tool": "Write", "path": "notes/shared.md", "content": "A"},
        {"touch": str(a_edited)},
        {"await": str(go)},
        {"tool": "Edit", "path": "notes/shared.md", "content": "A again"},
    ]
    second = [{"tool": "Write", "path": "notes/shared.md", "content": "B"}]
    out_a, out_b = tmp_path / "out-a", tmp_path / "out-b"
    out_a.mkdir()
    out_b.mkdir()
    env_a = {**fakes, "FAKE_EDITS": json.dumps(first), "FAKE_AGENT_OUT": str(out_a)}
    env_b = {**fakes, "FAKE_EDITS": json.dumps(second), "FAKE_AGENT_OUT": str(out_b)}
    batch_a, batch_b = tmp_path / "a", tmp_path / "b"
    batch_a.mkdir()
    batch_b.mkdir()
    # Two agents of the claude preset: a run's agent type is not another's, and their files differ.
    for folder, agent, own in ((batch_a, "alpha", "src/a.py"), (batch_b, "beta", "README")):
        task = {"id": "t1", "agent": agent, "description": "edit", "files": [own]}
        _batch(folder, {"agents": {agent: {"preset": "claude"}}, "tasks": [task]})
    with _running(repo, env_a, "--file", str(batch_a / "batch.yaml")) as run_a:
        eventually("A's first edit", a_edited.exists)
        with _running(repo, env_b, "--file", str(batch_b / "batch.yaml")) as run_b:
            waits = repo / ".git" / "project-manager" / "claim-waits.json"
            eventually("B's hook waiting for A", lambda: '"claims":["notes/shared.md"]' in _read(waits))
            go.touch()
            out, _ = run_a.communicate(timeout=WAIT * 3)
            assert run_a.returncode == 0, out
            out, _ = run_b.communicate(timeout=WAIT * 3)
            assert run_b.returncode == 0, out
    (a1, a2) = _edits({"FAKE_AGENT_OUT": str(out_a)}, "t1")
    (b,) = _edits({"FAKE_AGENT_OUT": str(out_b)}, "t1")
    assert a1["codes"] == a2["codes"] == b["codes"] == [0]
    assert a2["ended"] < b["ended"]
    assert b["started"] < a2["started"]
    assert (repo / "notes/shared.md").read_text() == "A\nA again\nB\n"  # ...and wrote only after


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_a_worktree_task_s_added_claim_counts_in_its_merge_back_check(tmp_path: Path, repo: Path) -> None:
    """What a worktree task claimed as it ran, from inside its worktree, is merged; what it wrote
    without claiming is not (on_violation: fail)."""
    claimer = f'"{SCRIPT}" claim notes/extra.md && mkdir notes && echo x > notes/extra.md'
    stray = "mkdir -p notes && echo y > notes/stray.md"
    batch = _batch(
        tmp_path,
        {
            "isolation": "worktree",
            "agents": {"claimer": {"command": ["sh", "-c", claimer]}, "stray": {"command": ["sh", "-c", stray]}},
            "tasks": [
                {"id": "t1", "agent": "claimer", "description": "x", "files": ["src/a.py"]},
                {"id": "t2", "agent": "stray", "description": "y", "files": ["README"]},
            ],
        },
    )
    done = subprocess.run(
        [str(SCRIPT), "delegate-multiple", "--file", str(batch), "--repo", str(repo), "--json"],
        capture_output=True, text=True, timeout=WAIT * 6, cwd=repo, check=False,
    )  # fmt: skip
    tasks = {t["id"]: t for t in json.loads(done.stdout)["tasks"]}
    assert tasks["t1"]["status"] == "succeeded", done.stderr
    assert tasks["t1"]["merge"] == "merged"
    assert tasks["t1"]["unclaimed_writes"] == []
    assert (repo / "notes/extra.md").read_text() == "x\n"
    assert tasks["t2"]["merge"] == "rejected"
    assert tasks["t2"]["unclaimed_writes"] == ["notes/stray.md"]
    assert not (repo / "notes/stray.md").exists()
