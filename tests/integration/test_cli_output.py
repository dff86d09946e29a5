"""The installed command's output, read as a newcomer reads it (issue 12): the agent's log, the
summary at 80 and 100 columns, timeouts, the task time of retried tasks, a reader that goes away."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from queue_core.statedir import state_dir

from ..conftest import WAIT, git_repo

SCRIPT = Path(sys.executable).with_name("project-manager")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {})


def _run(repo: Path, *args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    """The command, run to its end without a terminal (``COLUMNS`` as given, else unset)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    argv = [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=repo, timeout=WAIT * 3)


def _logs(repo: Path) -> Path:
    [run] = (state_dir(repo) / "logs").iterdir()
    return run


def test_the_log_begins_with_the_command_quoted_for_a_posix_shell(repo: Path) -> None:
    """Before: the argv in Windows quoting (subprocess.list2cmdline): ``$ sh -c "echo 'a b'"``."""
    done = _run(repo, """shell: echo "it's" 'a  b' @x""")
    assert done.returncode == 0, done.stdout + done.stderr
    first = (_logs(repo) / "t1.log").read_text().splitlines()[0]
    assert first == "$ " + shlex.join(["sh", "-c", """echo "it's" 'a  b'"""])
