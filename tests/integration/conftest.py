"""Fixtures of the integration tests that start worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ..conftest import WAIT
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


#: This checkout's code, whatever the installed ``project-manager`` runs, and the command that
#: runs it as ``python -c LAUNCH ARGS`` with ``PYTHONPATH=CODE``.
CODE = Path(__file__).parents[2]
LAUNCH = "import sys; sys.argv[0] = 'project-manager'; from cli.launch import main; main()"


@pytest.fixture
def pm(tmp_path: Path) -> Path:
    """A ``pm`` script that runs this checkout's project-manager (for agents' shell commands)."""
    path = tmp_path / "bin" / "pm"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f'#!/bin/sh\nPYTHONPATH="{CODE}" exec "{sys.executable}" -c "{LAUNCH}" "$@"\n')
    path.chmod(0o755)
    return path


def shell_wait_for(path: Path) -> str:
    """Shell: wait (bounded, 60 s) for ``path`` to exist: an agent's barrier with the test."""
    return f"n=0; until [ -e {path} ] || [ $n -ge 6000 ]; do sleep 0.01; n=$((n+1)); done"


@contextmanager
def running(argv: list[str], *, env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """``argv`` started, its stdout and stderr one text pipe; killed if it still runs at the end, and reaped."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT)
