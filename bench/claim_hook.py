"""The claim hook's cost per edit (issue 17): Claude Code runs it before every edit.

The hook command, exactly as the ``claude`` preset's ``--settings`` has it, run as Claude Code
runs a command hook (through ``sh -c``, the tool call as JSON on stdin), on a repository whose
registry holds the task's hold among HOLDS others:

1. an edit inside the task's claims (the fast path: an interpreter's start, one read of
   claims.json), EDITS times: p50 and p99, against the anchors of the same run: ``sh -c true``
   (what any command hook costs) and ``python -I -S -c pass`` (the interpreter's start);
2. an edit of a free file outside the claims (the hook starts ``project-manager claim``, which
   grants it), CLAIMS times, each a new file;
3. ``project-manager claim`` alone, and ``check``, for comparison.

Alone: ``python -m bench.claim_hook``; in ``make bench`` (run_all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli.presets import claude_settings
from queue_core.registry import Registry

from ._common import Check, Section, ms, percentile, print_section, table

EDITS = 300
CLAIMS = 20
HOLDS = 50
TARGET_S = 0.030
SCRIPT = Path(sys.executable).with_name("project-manager")


def _times(
    argv: list[str], stdin: bytes, count: int, env: dict[str, str], each: list[bytes] | None = None
) -> list[float]:
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        done = subprocess.run(argv, input=each[i] if each else stdin, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
        assert done.returncode == 0, done.stderr.decode()[-500:]
    return times


def _call(repo: Path, path: str) -> bytes:
    tool_input = {"file_path": str(repo / path), "content": "x"}
    call = {"session_id": "bench", "cwd": str(repo), "hook_event_name": "PreToolUse", "tool_name": "Write"}
    return json.dumps({**call, "tool_input": tool_input}).encode()


def run() -> Section:
    with tempfile.TemporaryDirectory(prefix="pm-bench-hook-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        registry = Registry(repo, run="bench")
        with registry.session() as session:
            for i in range(HOLDS):
                session.add(f"other{i}", f"agent{i}", (f"src/other{i}/",), ())
            session.add("t1", "claude", ("src/a.py", "src/pkg/", "docs/notes.md"), ())
        env = {
            **os.environ,
            "PM_RUN_ID": "bench",
            "PM_TASK_ID": "t1",
            "PM_STATE_DIR": str(registry.dir),
            "PM_REPO": str(repo),
        }
        hook = json.loads(claude_settings("claim"))["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
        inside = _times(["sh", "-c", hook], _call(repo, "src/pkg/mod.py"), EDITS, env)
        shell = _times(["sh", "-c", "true"], b"", EDITS, env)
        python = _times(["sh", "-c", f"{sys.executable} -I -S -c pass"], b"", EDITS, env)
        fresh = [_call(repo, f"new/f{i}.md") for i in range(CLAIMS)]
        claimed = _times(["sh", "-c", hook], b"", CLAIMS, env, fresh)
        alone = _times([str(SCRIPT), "claim", "--", str(repo / "new/alone.md")], b"", 5, env)
        check = _times([str(SCRIPT), "check", "--", str(repo / "src/a.py")], b"", 5, env)
        registry.finish_run(None)
    rows = []
    for name, values in (
        ("`sh -c true` (anchor: any command hook)", shell),
        ("`python -I -S -c pass` (anchor: the interpreter)", python),
        ("**the hook, an edit inside the claims**", inside),
        ("the hook, an edit of a free file (claimed)", claimed),
        ("`project-manager claim` alone", alone),
        ("`project-manager check` alone", check),
    ):
        p50, p99 = percentile(values, 50), percentile(values, 99)
        rows.append((name, len(values), ms(p50), ms(p99), f"{p50 / percentile(shell, 50):.1f}x"))
    p50, p99 = percentile(inside, 50), percentile(inside, 99)
    body = (
        f"The hook command of the `claude` preset, run as Claude Code runs it (`sh -c`, the call on "
        f"stdin), a registry of {HOLDS + 1} holds; wall time per call, one process at a time.\n\n"
        + table(["what", "calls", "p50", "p99", "p50 vs sh -c true"], rows)
    )
    checks = [
        Check("claim hook, edit inside the claims, p50", ms(p50), "< 30 ms", p50 < TARGET_S),
        Check("claim hook, edit inside the claims, p99", ms(p99), "< 30 ms", p99 < TARGET_S),
    ]
    return Section("The claim hook: cost per edit", body, checks)


if __name__ == "__main__":
    print_section(run())
