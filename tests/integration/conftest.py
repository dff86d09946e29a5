"""Fixtures of the integration tests that start worker processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._stress import Child

#: The fake agent CLIs (tests/fake_agents/clis.py), and the tools they stand for.
CLIS = Path(__file__).parents[1] / "fake_agents" / "clis.py"
TOOLS = ("claude", "codex", "gemini", "aider", "cursor", "opencode", "goose")
#: The executable each preset runs, where it is not the preset's name.
EXECUTABLES = {"cursor": "cursor-agent"}


@pytest.fixture
def fakes(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH finds the fake tools first; what they saw goes to ``out``."""
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    out.mkdir()
    for tool in TOOLS:
        path = bin_dir / EXECUTABLES.get(tool, tool)
        path.write_text(f'#!/bin/sh\nFAKE_TOOL={tool} exec "{sys.executable}" "{CLIS}" "$@"\n')
        path.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_AGENT_OUT": str(out)}


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    """``spawn(name, mode, *args, wrap=())`` starts a worker; every child is killed and reaped at the end."""
    children: list[Child] = []

    def start(name: str, *args: str | Path, **kw: Any) -> Child:
        child = Child(tmp_path, name, *args, **kw)
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            child.close()
