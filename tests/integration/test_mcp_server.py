"""``project-manager mcp``: the official SDK's client talks to the server over stdio, as an agent
inside a task would (the task's PM_* environment, a real registry)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from queue_core.registry import Registry

from ..conftest import WAIT, git_repo

mcp = pytest.importorskip("mcp", reason="the [mcp] extra is not installed")
anyio = pytest.importorskip("anyio")

SCRIPT = Path(sys.executable).with_name("project-manager")


def _text(result: Any) -> str:
    return "\n".join(block.text for block in result.content)


async def _session(env: dict[str, str], cwd: Path, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=str(SCRIPT), args=["mcp"], env=env, cwd=cwd)
    with anyio.fail_after(WAIT * 3):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            results: list[Any] = [sorted(tool.name for tool in tools.tools)]
            for name, arguments in calls:
                results.append(await session.call_tool(name, arguments))
            return results


def test_the_tools_claim_check_and_say_who_holds_for_the_task_they_run_in(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"src/a.py": "a\n"})
    registry = Registry(repo, run="r1")
    try:
        with registry.session() as session:
            session.add("t1", "codex", ("src/a.py",), ())
            session.add("t2", "claude", ("docs/",), ())
        env = {
            **os.environ,
            "PM_RUN_ID": "r1",
            "PM_TASK_ID": "t1",
            "PM_STATE_DIR": str(registry.dir),
            "PM_REPO": str(repo),
        }
        calls = [
            ("claim", {"paths": ["notes/todo.md"]}),
            ("claim", {"paths": ["docs/x.md"]}),
            ("check", {"path": "notes/todo.md"}),
            ("check", {"path": "docs/x.md"}),
            ("who_holds", {"path": "docs"}),
        ]
        tools, granted, held, mine, theirs, holders = anyio.run(_session, env, repo, calls)
    finally:
        registry.finish_run(None)
    assert tools == ["check", "claim", "who_holds"]
    assert not granted.is_error
    assert _text(granted) == "claimed notes/todo.md to write"
    assert held.is_error
    assert "docs/x.md is held by task t2 (claude)" in _text(held)
    assert _text(mine) == "notes/todo.md: this task may write it"
    assert _text(theirs) == "docs/x.md: held by task t2 (claude)"
    assert "task t2 (claude) holds docs/ to write" in _text(holders)


def test_outside_a_task_the_server_does_not_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}
    done = subprocess.run([str(SCRIPT), "mcp"], env=env, capture_output=True, text=True, timeout=WAIT, check=False)
    assert done.returncode == 2
    assert "not inside a task of project-manager" in done.stderr
