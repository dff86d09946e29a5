"""Second round of hostile tests of issue 17 (claims a running task adds, the claim hook, ``mcp``):
attacks on the first round's fixes and on what was left. Real runs, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ..conftest import WAIT, eventually, git_repo
from .conftest import LAUNCH, shell_wait_for
from .test_attack_i17 import (
    _batch,
    _claims,
    _edit,
    _env,
    _hold,
    _hook,
    _pm,
    _run,
    _sleepers,
    _wait_done,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {f"src/f{i}.py": f"{i}\n" for i in range(10)}
    return git_repo(tmp_path / "repo", {**files, "docs/x.md": "x\n", "README": "r\n"})


# --- 1. the hook's checkouts ---------------------------------------------------------------------


def test_a_worktree_task_in_the_default_worktree_root_may_edit_and_claim_in_its_own_worktree(
    tmp_path: Path, repo: Path
) -> None:
    with _sleepers(tmp_path, repo, {"a": ["src/f1.py"]}, isolation="worktree") as (envs, run, end):
        env = {**envs["a"], "PM_HOOK_WAIT": "0"}
        top = Path(env["PM_WORKTREE"])
        own = _hook(env, _edit(top / "src" / "f1.py"))
        claim = _pm(env, "claim", "docs/new.md", cwd=top)
        end.touch()
        _wait_done(run)
    assert (own.returncode, claim.returncode) == (0, 0), (own.stderr, claim.stderr)


@contextmanager
def _mixed(
    folder: Path, repo: Path, specs: list[tuple[str, list[str], str]], **batch_keys: Any
) -> Iterator[tuple[dict[str, dict[str, str]], subprocess.Popen[str], Path]]:
    """A run of tasks (id, files, isolation) whose agents write their environment and wait for
    ``end``: (task -> its env, the run, end)."""
    folder.mkdir(parents=True, exist_ok=True)
    end = folder / "end"
    agents, tasks = {}, []
    for task, files, isolation in specs:
        dump = folder / f"env.{task}"
        agents[task] = {"command": ["sh", "-c", f"env > {dump}.tmp && mv {dump}.tmp {dump}; {shell_wait_for(end)}"]}
        tasks.append({"id": task, "agent": task, "description": task, "files": files, "isolation": isolation})
    batch = _batch(folder, {"max_parallel": len(specs), "agents": agents, "tasks": tasks, **batch_keys})
    with _run(repo, batch) as run:
        eventually("the agents", lambda: all((folder / f"env.{t}").exists() for t, _, _ in specs))
        envs = {}
        for task, _, _ in specs:
            pairs = (line.split("=", 1) for line in (folder / f"env.{task}").read_text().splitlines() if "=" in line)
            envs[task] = _env(**{k: v for k, v in pairs if k.startswith("PM_")}, PM_HOOK_WAIT="0")
        try:
            yield envs, run, end
        finally:
            end.touch()


def test_a_shared_task_cannot_claim_or_edit_another_task_s_worktree_kept_in_an_ignored_folder_of_the_repo(
    tmp_path: Path,
) -> None:
    files = {f"src/f{i}.py": f"{i}\n" for i in range(3)}
    repo = git_repo(
        tmp_path / "repo", {**files, ".gitignore": "wts/\n", "project-manager.yaml": "worktree_root: wts\n"}
    )
    specs = [("t1", ["src/f1.py"], "worktree"), ("t2", ["src/f2.py"], "shared")]
    with _mixed(tmp_path / "r1", repo, specs) as (envs, run, end):
        theirs = Path(envs["t1"]["PM_WORKTREE"]) / "src" / "f1.py"
        assert repo / "wts" in theirs.parents
        hook = _hook(envs["t2"], _edit(theirs), "claim")
        claim = _pm(envs["t2"], "claim", str(theirs), cwd=repo)
        end.touch()
        _wait_done(run)
    assert hook.returncode == 2, hook.stderr
    assert claim.returncode != 0, claim.stdout


def test_a_task_of_a_run_in_a_linked_worktree_cannot_edit_the_main_checkout_where_another_run_holds_the_file(
    tmp_path: Path, repo: Path
) -> None:
    linked = tmp_path / "linked"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(linked)], check=True, capture_output=True)
    with (
        _sleepers(tmp_path / "m", repo, {"holder": ["src/f1.py"]}, name="rm") as (menvs, mrun, mend),
        _sleepers(tmp_path / "w", linked, {"t": ["src/f2.py"]}, name="rw") as (wenvs, wrun, wend),
    ):
        assert Path(wenvs["t"]["PM_STATE_DIR"]) == Path(menvs["holder"]["PM_STATE_DIR"])  # one registry
        assert _hold(repo, "holder") is not None
        done = _hook({**wenvs["t"], "PM_HOOK_WAIT": "0"}, _edit(repo / "src" / "f1.py"), "claim")
        mend.touch()
        wend.touch()
        _wait_done(mrun)
        _wait_done(wrun)
    assert done.returncode == 2, done.stderr


# --- 4. project-manager mcp ----------------------------------------------------------------------


async def _mcp(env: dict[str, str], cwd: Path, body: Any) -> Any:
    import anyio
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-c", LAUNCH, "mcp"], env=env, cwd=cwd)
    with anyio.fail_after(WAIT * 4):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await body(session)


def _text(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def test_mcp_hostile_arguments_are_errors_and_grant_nothing_beyond_the_repository(tmp_path: Path, repo: Path) -> None:
    pytest.importorskip("mcp")
    import anyio

    outside = tmp_path / "outside.txt"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("claim", {"paths": []}),
        ("claim", {"paths": [5]}),
        ("claim", {"paths": "src/f9.py"}),
        ("claim", {"paths": ["src/f9.py"], "wait_seconds": -1}),
        ("claim", {"paths": ["src/f9.py"], "wait_seconds": 1e300}),
        ("claim", {"paths": ["src/f9.py"], "wait_seconds": "NaN"}),
        ("claim", {"paths": [str(outside)]}),
        ("claim", {"paths": ["../outside.txt"]}),
        ("claim", {"paths": [".git/config"]}),
        ("claim", {"paths": [".git/project-manager/claims.json"]}),
        ("claim", {"paths": ["src/f1.py"]}),  # the other task's
        ("claim", {"paths": ["src\x00/f1.py"]}),
        ("claim", {"paths": [f"big/{i}.py" for i in range(3000)]}),
        ("check", {"path": ""}),
        ("who_holds", {"path": "\x00"}),
    ]

    async def body(session: Any) -> list[Any]:
        return [await session.call_tool(name, args) for name, args in calls]

    with _sleepers(tmp_path, repo, {"a": ["src/f1.py"], "b": ["src/f2.py"]}) as (envs, run, end):
        results = anyio.run(_mcp, envs["b"], repo, body)
        held = _hold(repo, "b")
        end.touch()
        _wait_done(run)
    answers = {i: (r.is_error, _text(r)[:80]) for i, r in enumerate(results)}
    assert not results[0].is_error  # nothing asked, nothing granted
    for i in range(1, 12):
        assert results[i].is_error, (calls[i], answers[i])
    assert not results[12].is_error, answers[12]
    assert held is not None
    assert "src/f1.py" not in held["writes"]
    assert not any(w.startswith((".git", "..", "/")) for w in held["writes"]), held["writes"]
    assert len(held["writes"]) == 1 + 3000


def _waits(repo: Path) -> list[dict[str, Any]]:
    try:
        waits: list[dict[str, Any]] = json.loads((repo / ".git" / "project-manager" / "claim-waits.json").read_text())[
            "waits"
        ]
    except (OSError, ValueError, KeyError):
        return []
    return waits


def test_a_cancelled_mcp_claim_stops_waiting_and_makes_no_false_deadlock(tmp_path: Path, repo: Path) -> None:
    """a's agent asks, over MCP, for b's file with a long wait, then gives up (its client's timeout).
    The wait must end with it: b asking for a's file must wait, not be refused as a deadlock, and
    a must not be granted b's file behind its agent's back once b lets go."""
    pytest.importorskip("mcp")
    import anyio

    found: dict[str, Any] = {}

    async def body(session: Any) -> None:
        with anyio.move_on_after(1.0):
            await session.call_tool("claim", {"paths": ["src/f2.py"], "wait_seconds": 600})
        deadline = time.monotonic() + 2.0  # time enough for the server to take in the cancellation
        while _waits(repo) and time.monotonic() < deadline:
            await anyio.sleep(0.02)  # a bounded poll on the waits file, another process's
        found["waits"] = [w["key"] for w in _waits(repo)]
        found["b"] = _pm({**envs["b"]}, "claim", "--wait", "0.5", "src/f1.py", cwd=repo)

    with _sleepers(tmp_path, repo, {"a": ["src/f1.py"], "b": ["src/f2.py"]}) as (envs, run, end):
        anyio.run(_mcp, envs["a"], repo, body)
        end.touch()
        _wait_done(run)
    assert found["waits"] == [], found["waits"]
    assert found["b"].returncode == 3, found["b"].stderr


# --- 1 (cont.). what the hook reads -------------------------------------------------------------


def _limited(gib: int) -> Any:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))

    return limit


def test_the_hook_answers_at_once_for_a_path_under_a_huge_dot_git_file(tmp_path: Path, repo: Path) -> None:
    """Unbounded, the read of a 64 GiB (sparse) .git file ends in the OOM killer or Claude's hook
    timeout: neither is exit 2, so the edit would go through. (The hook runs under a 1 GiB limit here.)"""
    other = tmp_path / "elsewhere"
    other.mkdir()
    with open(other / ".git", "wb") as f:
        f.write(b"gitdir: " + str(repo / ".git" / "worktrees" / "x").encode())
        f.truncate(64 << 30)
    env = _env(PM_RUN_ID="r", PM_TASK_ID="t", PM_STATE_DIR=str(repo / ".git" / "project-manager"), PM_REPO=str(repo))
    started = time.monotonic()
    done = _hook(env, _edit(other / "a.py"), preexec_fn=_limited(1))
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert took < 1.0, (took, done.stderr)


def test_the_hook_blocks_or_passes_never_hangs_on_odd_dot_git_entries_outside_the_repository(
    tmp_path: Path,
) -> None:
    """A .git that is a symlink to a worktree's .git file, a FIFO, a directory, unreadable bytes,
    or reached through symlinked and ``..`` paths: exit 2 for a worktree of this repository, 0
    or 2 for the rest, each at once."""
    wts = tmp_path / "wts"
    repo = git_repo(tmp_path / "repo", {"src/f1.py": "1\n", "project-manager.yaml": f"worktree_root: {wts}\n"})
    wt = tmp_path / "wts" / "w1"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(wt)], check=True, capture_output=True)
    state = repo / ".git" / "project-manager"
    state.mkdir(exist_ok=True)
    env = _env(PM_RUN_ID="r", PM_TASK_ID="t", PM_STATE_DIR=str(state), PM_REPO=str(repo), PM_HOOK_WAIT="0")
    odd = tmp_path / "odd"
    (odd / "sym").mkdir(parents=True)
    (odd / "sym" / ".git").symlink_to(wt / ".git")
    (odd / "fifo").mkdir()
    os.mkfifo(odd / "fifo" / ".git")
    (odd / "bytes").mkdir()
    (odd / "bytes" / ".git").write_bytes(b"\xff\xfe\x00gitdir: \x00\n" * 10)
    (tmp_path / "alias").symlink_to(wts)
    (tmp_path / "up").symlink_to(odd / "fifo")
    blocked = [
        wt / "src" / "f1.py",
        tmp_path / "alias" / "w1" / "src" / "f1.py",
        tmp_path / "up" / ".." / ".." / "wts" / "w1" / "new" / "deep" / "x.py",  # .. after a symlink
        odd / "sym" / "x.py",  # a .git symlink: never followed, so not known: blocked
        repo / "src" / "f1.py",  # outside its worktree: the main checkout
    ]
    wt_env = {**env, "PM_WORKTREE": str(tmp_path / "mine")}
    codes = {}
    for path in blocked:
        done = _hook(wt_env, _edit(path), "deny", timeout=WAIT)
        codes[str(path)] = done.returncode
    assert set(codes.values()) == {2}, codes
    for path in (odd / "fifo" / "x.py", odd / "bytes" / "x.py"):
        done = _hook(wt_env, _edit(path), "deny", timeout=WAIT)
        assert done.returncode in (0, 2), (path, done.stderr)


# --- 3. an added claim against the run's own scheduler ----------------------------------------


def test_a_claim_racing_thirty_instant_task_ends_never_lets_a_same_run_task_start_over_it(
    tmp_path: Path, repo: Path, pm: Path
) -> None:
    """Six claimers claim docs/s{k}.md while 30 tasks end in bursts; the last of each burst makes
    ready a task that declares docs/s{k}.md. The bursts are spread over the time a claim takes to
    start (a spread of the load, not a synchronisation: the check holds whatever the timing):
    each claim either loses (3: its file's task started first) or that task starts only after the
    claimer ended; and no two tasks ever hold the file at once."""
    t = tmp_path / "sync"
    t.mkdir()
    agents: dict[str, Any] = {}
    tasks: list[dict[str, Any]] = []
    for k in range(6):
        group = [f"i{k}-{n}" for n in range(5)]
        agents[f"instant{k}"] = {"command": ["sh", "-c", f"{shell_wait_for(t / 'go')}; sleep 0.{2 + k}"]}
        tasks += [{"id": i, "agent": f"instant{k}", "description": i, "files": [f"gen/{i}.txt"]} for i in group]
        script = (
            f"touch {t}/up.{k}; {shell_wait_for(t / 'go')}; {pm} claim docs/s{k}.md; echo $? > {t}/code.tmp.{k}; "
            f"mv {t}/code.tmp.{k} {t}/code.{k}; {shell_wait_for(t / 'end')}; date +%s.%N > {t}/ended.{k}"
        )
        agents[f"claimer{k}"] = {"command": ["sh", "-c", script]}
        late = f"date +%s.%N > {t}/started.{k}; {shell_wait_for(t / 'end')}"
        agents[f"late{k}"] = {"command": ["sh", "-c", late]}
        tasks.append({"id": f"c{k}", "agent": f"claimer{k}", "description": "c", "files": [f"src/f{k}.py"]})
        tasks.append(
            {"id": f"l{k}", "agent": f"late{k}", "description": "l", "files": [f"docs/s{k}.md"], "depends_on": group}
        )
    batch = _batch(tmp_path / "r", {"max_parallel": 50, "agents": agents, "tasks": tasks})
    with _run(repo, batch) as run:
        eventually("the claimers", lambda: all((t / f"up.{k}").exists() for k in range(6)))
        (t / "go").touch()
        eventually("the claims' answers", lambda: all((t / f"code.{k}").exists() for k in range(6)))
        codes = {k: int((t / f"code.{k}").read_text()) for k in range(6)}
        holders = {k: sorted(h["task"] for h in _claims(repo) if f"docs/s{k}.md" in h["writes"]) for k in range(6)}
        (t / "end").touch()
        out = _wait_done(run)
    assert set(codes.values()) <= {0, 3}, (codes, out)
    for k, code in codes.items():
        assert len(holders[k]) <= 1, holders
        if code == 0:
            assert float((t / f"started.{k}").read_text()) >= float((t / f"ended.{k}").read_text()), (k, out)


# --- 5. the lazy queue_core ---------------------------------------------------------------------


def test_documented_names_and_what_a_cluster_pickles_work_in_a_fresh_process_with_only_import_queue_core() -> None:
    make = (
        "import dataclasses, pickle, sys, queue_core\n"
        "from queue_core.cluster_worker import RemoteAttempt, run_attempt\n"
        "from queue_core.claims import Claim\n"
        "attempt = RemoteAttempt(*[None] * len(dataclasses.fields(RemoteAttempt)))\n"
        "sys.stdout.buffer.write(pickle.dumps((run_attempt, attempt, Claim.parse('src/*.py'))))\n"
    )
    load = (
        "import pickle, sys, queue_core\n"
        "fn, attempt, claim = pickle.loads(sys.stdin.buffer.read())\n"
        "from queue_core import *\n"
        "from queue_core import Limits, QueueStatus, RepoStatus, TaskOutcome, ClaimHeldError\n"
        "missing = [n for n in queue_core.__all__ if not hasattr(queue_core, n)]\n"
        "print(fn.__module__, type(attempt).__name__, claim.text, missing, TaskQueue.__module__)\n"
    )
    env = _env()
    made = subprocess.run([sys.executable, "-c", make], env=env, capture_output=True, timeout=WAIT * 3, check=True)
    done = subprocess.run(
        [sys.executable, "-c", load], input=made.stdout, env=env, capture_output=True, timeout=WAIT * 3, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == [
        "queue_core.cluster_worker",
        "RemoteAttempt",
        "src/*.py",
        "[]",
        "queue_core.queue",
    ]
