"""Hostile tests of issue 17 (claims a running task adds as it works: ``project-manager claim``,
``check``, and the claim hook in front of Claude Code's edits), with real runs, real claim
processes and real signals. Each of the five defects it found has a test here that failed before its fix."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from queue_core.processes import process_state

from ..conftest import WAIT, eventually, git_repo
from .conftest import CODE, LAUNCH, running, shell_wait_for

pytestmark = pytest.mark.timeout(120)

HOOK = CODE / "cli" / "claim_hook.py"


def _env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}
    env["PYTHONPATH"] = str(CODE)
    return {**env, **more}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {f"src/f{i}.py": f"{i}\n" for i in range(10)}
    return git_repo(tmp_path / "repo", {**files, "docs/x.md": "x\n", "README": "r\n"})


def _state(repo: Path) -> Path:
    return repo / ".git" / "project-manager"


def _batch(folder: Path, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "batch.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(repo: Path, batch: Path, env: dict[str, str] | None = None) -> AbstractContextManager[subprocess.Popen[str]]:
    argv = [sys.executable, "-c", LAUNCH, "delegate-multiple", "--file", str(batch), "--repo", str(repo), "--no-live"]
    return running(argv, env=env or _env(), cwd=repo)


def _claims(repo: Path) -> list[dict[str, Any]]:
    try:
        holds: list[dict[str, Any]] = json.loads((_state(repo) / "claims.json").read_text())["holds"]
    except (OSError, ValueError, KeyError):
        return []
    return holds


def _hold(repo: Path, task: str, run: str | None = None) -> dict[str, Any] | None:
    for hold in _claims(repo):
        if hold["task"] == task and (run is None or hold["owner"]["run"] == run):
            return hold
    return None


def _wait_done(proc: subprocess.Popen[str], timeout: float = WAIT * 3) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def _stamp(path: Path) -> str:
    """Shell: write the wall time to ``path``."""
    return f"date +%s.%N > {path}"


def test_eight_tasks_of_two_runs_race_for_one_free_file_one_wins_and_no_queued_task_starts_over_it(
    tmp_path: Path, repo: Path, pm: Path
) -> None:
    """8 claim processes (4 tasks in each of two runs) claim docs/shared.md at once: exactly one is
    granted. Then a task of each run that claims the file statically (freed by a dependency
    only now) and a task of a third run must not start until the winner's task has ended."""
    t = tmp_path / "sync"
    t.mkdir()
    shared = repo / "docs" / "shared.md"

    def racer(i: int) -> list[str]:
        script = (
            f"touch {t}/up.{i}; {shell_wait_for(t / 'go')}; {pm} claim {shared}; echo $? > {t}/code.tmp.{i}; "
            f"mv {t}/code.tmp.{i} {t}/code.{i}; {shell_wait_for(t / 'end')}; {_stamp(t / f'ended.{i}')}"
        )
        return ["sh", "-c", script]

    def late(name: str) -> list[str]:
        return ["sh", "-c", f"{_stamp(t / f'started.{name}')}"]

    batches = []
    for run, ids in (("r1", range(4)), ("r2", range(4, 8))):
        agents: dict[str, Any] = {f"a{i}": {"command": racer(i)} for i in ids}
        agents[f"gate-{run}"] = {"command": ["sh", "-c", shell_wait_for(t / "gates")]}
        agents[f"late-{run}"] = {"command": late(run)}
        tasks: list[dict[str, Any]] = [
            {"id": f"t{i}", "agent": f"a{i}", "description": "race", "files": [f"src/f{i}.py"]} for i in ids
        ]
        tasks.append(
            {"id": "gate", "agent": f"gate-{run}", "description": "gate", "files": [f"src/f{8 + (run == 'r2')}.py"]}
        )
        tasks.append(
            {
                "id": "late",
                "agent": f"late-{run}",
                "description": "late",
                "files": ["docs/shared.md"],
                "depends_on": ["gate"],
            }
        )
        batches.append(_batch(tmp_path / run, {"max_parallel": 8, "agents": agents, "tasks": tasks}))
    third = _batch(
        tmp_path / "r3",
        {
            "agents": {"late-r3": {"command": late("r3")}},
            "tasks": [{"id": "late", "agent": "late-r3", "description": "x", "files": ["docs/shared.md"]}],
        },
    )
    with ExitStack() as stack:
        runs = [stack.enter_context(_run(repo, b)) for b in batches]
        eventually("all 8 racers up", lambda: all((t / f"up.{i}").exists() for i in range(8)))
        (t / "go").touch()
        eventually("all 8 answers", lambda: all((t / f"code.{i}").exists() for i in range(8)))
        codes = {i: int((t / f"code.{i}").read_text()) for i in range(8)}
        winners = [i for i, c in codes.items() if c == 0]
        assert len(winners) == 1, codes
        assert sorted(codes.values()) == [0] + [3] * 7, codes
        (winner,) = winners
        holders = [h for h in _claims(repo) if "docs/shared.md" in h["writes"]]
        assert [h["task"] for h in holders] == [f"t{winner}"], holders
        (t / "gates").touch()  # the late tasks of r1 and r2 are free to start but for the claim
        run3 = stack.enter_context(_run(repo, third))
        # Each run has taken its gate's end (its hold gone) and the third run is in line.
        eventually("the gates ended", lambda: not any(h["task"] == "gate" for h in _claims(repo)))
        eventually(
            "the third run waiting in line",
            lambda: any(
                p.get("task") == "late"
                for p in json.loads((_state(repo) / "claims.json").read_text()).get("waiting", [])
            ),
        )
        assert not list(t.glob("started.*")), "a task started over a granted claim"
        (t / "end").touch()
        for proc in (*runs, run3):
            out = _wait_done(proc)
            assert proc.returncode == 0, out
    ended = float((t / f"ended.{winner}").read_text())
    for name in ("r1", "r2", "r3"):
        assert float((t / f"started.{name}").read_text()) >= ended, name


@contextmanager
def _sleepers(
    tmp_path: Path, repo: Path, tasks: dict[str, list[str]], name: str = "r1", **task_keys: Any
) -> Iterator[tuple[dict[str, dict[str, str]], subprocess.Popen[str], Path]]:
    """A run ``name`` of tasks (id -> files) whose agents write their environment and wait for the
    file ``end`` (yielded), so that the test can act as each agent: (task -> its env, the run, end)."""
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    end = folder / "end"
    agents = {}
    for task in tasks:
        dump = folder / f"env.{task}"
        script = f"env > {dump}.tmp && mv {dump}.tmp {dump}; {shell_wait_for(end)}"
        agents[f"{name}-{task}"] = {"command": ["sh", "-c", script]}
    batch = _batch(
        folder,
        {
            "max_parallel": len(tasks),
            "agents": agents,
            "tasks": [
                {"id": t, "agent": f"{name}-{t}", "description": t, "files": files, **task_keys}
                for t, files in tasks.items()
            ],
        },
    )
    with _run(repo, batch) as proc:
        eventually(f"{name}'s agents", lambda: all((folder / f"env.{t}").exists() for t in tasks))
        envs = {}
        for task in tasks:
            pairs = (line.split("=", 1) for line in (folder / f"env.{task}").read_text().splitlines() if "=" in line)
            pm_vars = {k: v for k, v in pairs if k.startswith("PM_")}
            envs[task] = _env(**pm_vars)
        try:
            yield envs, proc, end
        finally:
            end.touch()


def _pm(env: dict[str, str], *args: str, cwd: Path, timeout: float = WAIT * 4) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _pm_bg(env: dict[str, str], *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _waits(repo: Path) -> list[dict[str, Any]]:
    try:
        waits: list[dict[str, Any]] = json.loads((_state(repo) / "claim-waits.json").read_text())["waits"]
    except (OSError, ValueError, KeyError):
        return []
    return waits


def test_a_waiter_killed_with_sigkill_leaves_no_false_deadlock_and_a_live_cycle_is_still_found(
    tmp_path: Path, repo: Path
) -> None:
    with _sleepers(tmp_path, repo, {"a": ["src/f1.py"], "b": ["src/f2.py"]}) as (envs, _, _):
        waiter = _pm_bg(envs["b"], "claim", "--wait", "30", "src/f1.py", cwd=repo)
        eventually("b's wait recorded", lambda: any(w["pid"] == waiter.pid for w in _waits(repo)))
        waiter.send_signal(signal.SIGKILL)
        waiter.communicate(timeout=WAIT)
        assert any(w["pid"] == waiter.pid for w in _waits(repo))  # left behind by the kill
        # a now waits for b's file: with b's waiter dead that is no cycle, a plain wait (held, 3).
        done = _pm(envs["a"], "claim", "--wait", "0.5", "src/f2.py", cwd=repo)
        assert done.returncode == 3, done.stderr
        assert "would deadlock" not in done.stderr
        # A live waiter again: now the cycle is real, refused at once.
        waiter = _pm_bg(envs["b"], "claim", "--wait", "30", "src/f1.py", cwd=repo)
        eventually("b's wait recorded", lambda: any(w["pid"] == waiter.pid for w in _waits(repo)))
        started = time.monotonic()
        done = _pm(envs["a"], "claim", "--wait", "20", "src/f2.py", cwd=repo)
        assert done.returncode == 4, done.stderr
        assert time.monotonic() - started < 10
        waiter.kill()
        waiter.communicate(timeout=WAIT)


def test_a_three_cycle_across_three_runs_and_a_cycle_through_a_read_wait_are_refused(
    tmp_path: Path, repo: Path
) -> None:
    with ExitStack() as stack:
        envs = {}
        for run, task, file in (("r1", "a", "src/f1.py"), ("r2", "b", "src/f2.py"), ("r3", "c", "src/f3.py")):
            found, _, _ = stack.enter_context(_sleepers(tmp_path, repo, {task: [file]}, name=run))
            envs.update(found)
        ab = _pm_bg(envs["a"], "claim", "--wait", "30", "src/f2.py", cwd=repo)  # a waits for b
        eventually("a waits", lambda: any(w["pid"] == ab.pid for w in _waits(repo)))
        bc = _pm_bg(envs["b"], "claim", "--read", "--wait", "30", "src/f3.py", cwd=repo)  # b waits (read) for c
        eventually("b waits", lambda: any(w["pid"] == bc.pid for w in _waits(repo)))
        done = _pm(envs["c"], "claim", "--read", "--wait", "20", "src/f1.py", cwd=repo)  # c would wait for a
        assert done.returncode == 4, done.stderr
        assert "would deadlock" in done.stderr
        # No false positive: c asks for a free file, and a file of a that nobody waits on... is a's: a plain wait.
        done = _pm(envs["c"], "claim", "--wait", "0", "src/f5.py", cwd=repo)
        assert done.returncode == 0, done.stderr
        bc.kill()
        bc.communicate(timeout=WAIT)
        done = _pm(envs["c"], "claim", "--wait", "0.3", "src/f1.py", cwd=repo)  # a waits for b, b waits for nobody
        assert done.returncode == 3, done.stderr
        ab.kill()
        ab.communicate(timeout=WAIT)


def _holds_flock(pid: int, inode: int) -> bool:
    """Whether process ``pid`` holds a flock on the inode ``inode`` (/proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "FLOCK" in fields and str(pid) in fields and any(f.endswith(f":{inode}") for f in fields):
            return True
    return False


def _stop_inside_lock(proc: subprocess.Popen[str], inode: int) -> bool:
    """SIGSTOP ``proc`` until it is caught holding the registry lock (bounded); whether it was."""
    deadline = time.monotonic() + WAIT * 2
    while time.monotonic() < deadline and proc.poll() is None:
        os.kill(proc.pid, signal.SIGSTOP)
        stop_by = time.monotonic() + WAIT
        while process_state(proc.pid) == "running" and time.monotonic() < stop_by:
            pass  # a bounded poll: the stop has landed once /proc says so
        if _holds_flock(proc.pid, inode):
            return True
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.001 + (time.monotonic_ns() % 7) / 1000)  # the work: let it run on, a varying while
    return False


def test_a_claim_process_stopped_then_killed_inside_the_registry_lock_corrupts_nothing(
    tmp_path: Path, repo: Path
) -> None:
    state = _state(repo)
    with _sleepers(tmp_path, repo, {"a": ["src/f1.py"], "b": ["src/f2.py"], "c": ["src/f3.py"]}) as (envs, run, end):
        waiter = _pm_bg(envs["b"], "claim", "--wait", "60", "src/f1.py", cwd=repo)
        eventually("b's wait recorded", lambda: any(w["pid"] == waiter.pid for w in _waits(repo)))
        try:
            assert _stop_inside_lock(waiter, os.stat(state).st_ino), "never caught inside the lock"
            # Another claim now waits for the lock; status names the stopped holder.
            other = _pm_bg(envs["c"], "claim", "--wait", "0", "src/f4.py", cwd=repo)
            status = _pm(_env(), "status", "--json", "--repo", str(repo), cwd=repo)
            assert str(waiter.pid) in json.dumps(json.loads(status.stdout).get("stopped_lock_holder")), status.stdout
            assert other.poll() is None  # it waits, it does not pass the lock
            waiter.send_signal(signal.SIGKILL)  # killed inside the lock
            waiter.communicate(timeout=WAIT)
            out, _ = other.communicate(timeout=WAIT * 4)
            assert other.returncode == 0, out
        finally:
            if waiter.poll() is None:
                waiter.send_signal(signal.SIGCONT)
                waiter.kill()
                waiter.communicate(timeout=WAIT)
        json.loads((state / "claims.json").read_text())
        assert "src/f4.py" in (_hold(repo, "c") or {}).get("writes", [])
        done = _pm(envs["b"], "claim", "--wait", "0", "src/f1.py", cwd=repo)
        assert done.returncode == 3, done.stderr  # a's still
        end.touch()
        out = _wait_done(run)
        assert run.returncode == 0, out
    assert not _claims(repo)


def _claims_at_once(env: dict[str, str], paths: Iterable[str], cwd: Path) -> dict[str, Any]:
    """Each of ``paths`` claimed (--wait 0) by a process of its own, all at once: path -> its answer."""
    paths = list(paths)
    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(lambda path: _pm(env, "claim", "--wait", "0", "--", path, cwd=cwd), paths)
        return dict(zip(paths, answers, strict=True))


def test_hostile_paths_are_held_or_refused_never_granted_over_another_task(tmp_path: Path, repo: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("o")
    (repo / "src" / "l1").symlink_to("f1.py")  # a link to a's file
    (repo / "docs" / "srclink").symlink_to("../src")  # a linked directory holding a's file
    (repo / "src" / "out").symlink_to(outside)
    (repo / "src" / "gitlink").symlink_to("../.git")
    (repo / "docs" / "up").symlink_to("../..")  # the folder above the repository
    with _sleepers(tmp_path, repo, {"a": ["src/f1.py"], "b": ["src/f2.py"], "g": ["lib/*.py"]}) as (envs, run, end):
        held = {
            "src/l1": "src/f1.py",
            "docs/srclink/f1.py": "src/f1.py",
            "docs/srclink": "src",
            "src": "src",  # a directory claim covering a's file
            "src/f1.py/../f1.py": "src/f1.py",
            "src/f1.py ": "src/f1.py",  # trailing space: read as src/f1.py (held: conservative)
            "lib/[a].py": "lib/\\[a\\].py",  # names with glob characters, under g's lib/*.py
            "lib/*.py": "lib/\\*.py",
            "lib/x?.py": "lib/x\\?.py",
            "lib": "lib",
        }
        # Asked at once (each a process of its own; none changes what the others see).
        answers = _claims_at_once(envs["b"], held, repo)
        for path, claim in held.items():
            done = answers[path]
            assert done.returncode == 3, (path, done.stderr)
            assert f"not claimed: {claim} is held by task" in done.stderr, (path, done.stderr)
        refused = [
            "src/out",
            "src/gitlink/config",
            ".git/project-manager/claims.json",
            "../x",
            "docs/up/x",
            str(outside),
            ".",
            "/",
        ]
        answers = _claims_at_once(envs["b"], refused, repo)
        for path in refused:
            assert answers[path].returncode == 2, (path, answers[path].stderr)
        granted = {
            "-x.py": "-x.py",
            "a\nb": "a\nb",
            "docs/[id]/page.tsx": "docs/\\[id\\]/page.tsx",
            "x" * 200 + "/y": None,
        }
        for path, claim in granted.items():
            done = _pm(envs["b"], "claim", "--wait", "0", "--", path, cwd=repo)
            assert done.returncode == 0, (path, done.stderr)
            if claim is not None:
                assert claim in _hold(repo, "b")["writes"]  # type: ignore[index]
        # ... and each is then held against a, by every spelling.
        spellings = ("-x.py", "a\nb", "docs/[id]/page.tsx", "docs/[id]", "docs")
        answers = _claims_at_once(envs["a"], spellings, repo)
        for path in spellings:
            assert answers[path].returncode == 3, (path, answers[path].stderr)
        # A claim option-looking path without --: a usage error, never a claim of something else.
        done = _pm(envs["a"], "claim", "--wait", "0", "-x.py", cwd=repo)
        assert done.returncode == 2
        end.touch()
        out = _wait_done(run)
        assert run.returncode == 0, out


def test_the_state_directory_of_a_repository_without_git_cannot_be_claimed(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "src").mkdir(parents=True)
    (plain / "src" / "a.py").write_text("a")
    with _sleepers(tmp_path, plain, {"a": ["src/a.py"]}) as (envs, run, end):
        state = Path(envs["a"]["PM_STATE_DIR"])
        assert state == plain / ".project-manager"
        codes = {}
        for path in (".project-manager/claims.json", ".project-manager/runs", ".project-manager"):
            codes[path] = _pm(envs["a"], "claim", "--wait", "0", "--", path, cwd=plain).returncode
        # The hook, in claim mode, for an edit of the registry itself:
        call = json.dumps({"tool_name": "Write", "tool_input": {"file_path": str(state / "claims.json")}})
        hook = subprocess.run(
            [sys.executable, "-I", "-S", str(HOOK), "claim"],
            input=call.encode(),
            env=envs["a"],
            capture_output=True,
            timeout=WAIT * 4,
        )
        codes["hook"] = hook.returncode
        end.touch()
        _wait_done(run)
    assert codes == {".project-manager/claims.json": 2, ".project-manager/runs": 2, ".project-manager": 2, "hook": 2}


def _hook(
    env: dict[str, str], call: Any, mode: str = "claim", *, raw: bytes | None = None, **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    data = raw if raw is not None else json.dumps(call).encode()
    return subprocess.run(
        [sys.executable, "-I", "-S", str(HOOK), mode],
        input=data,
        env=env,
        capture_output=True,
        timeout=kw.pop("timeout", WAIT * 4),
        **kw,
    )


def _edit(path: str | Path, **more: Any) -> dict[str, Any]:
    return {"tool_name": "Write", "tool_input": {"file_path": str(path), "content": "x"}, **more}


def test_the_hook_blocks_every_edit_of_another_task_s_file_and_every_input_it_cannot_read(
    tmp_path: Path, repo: Path
) -> None:
    (repo / "docs" / "srclink").symlink_to("../src")
    (repo / "src" / "l1").symlink_to("f1.py")
    with _sleepers(tmp_path, repo, {"a": ["src/f1.py", "lib/*.py"], "b": ["src/f2.py"]}) as (envs, run, end):
        env = {**envs["b"], "PM_HOOK_WAIT": "0"}
        held = [
            repo / "src" / "f1.py",
            repo / "src" / "l1",
            repo / "docs" / "srclink" / "f1.py",
            repo / "lib" / "x.py",
            repo / "lib" / ".." / "src" / "f1.py",
        ]
        for path in held:
            for mode in ("claim", "deny"):
                done = _hook(env, _edit(path), mode)
                assert done.returncode == 2, (path, mode, done.stderr)
        done = _hook(env, _edit("src/f1.py", cwd=str(repo)))  # relative, with the call's cwd
        assert done.returncode == 2, done.stderr
        done = _hook(env, _edit(repo / "src"))  # a directory holding a's file
        assert done.returncode == 2, done.stderr
        bad: list[bytes] = [
            b"",
            b"\xff\xfe",
            b"[" * 100_000 + b"]" * 100_000,
            b'{"tool_input": {"file_path": 5}}',
            b'{"tool_input": {"file_path": ["a"]}}',
            b'{"tool_input": "x"}',
            b"[1]",
            b'{"tool_input": {"file_path": "a\\u0000b"}}',
            b'{"tool_input": {"file_path": "\\ud800"}}',
            b"{" + b" " * 5_000_000 + b"}",
        ]
        for data in bad:
            done = _hook(env, None, raw=data)
            assert done.returncode == 2, (data[:40], done.stderr)
        for name in ("PM_RUN_ID", "PM_TASK_ID", "PM_STATE_DIR", "PM_REPO"):
            done = _hook({k: v for k, v in env.items() if k != name}, _edit(repo / "src" / "f9.py"))
            assert done.returncode == 2, name
        assert _hook(env, _edit(repo / "src" / "f1.py"), "bogus").returncode == 2
        # A state directory without claims.json, or one that is a directory: the full check decides.
        empty = tmp_path / "empty-state"
        empty.mkdir()
        assert _hook({**env, "PM_STATE_DIR": str(empty)}, _edit(repo / "src" / "f3.py")).returncode == 2
        # Its own declared file passes without a registry (PM_FILES: held while it runs, as on a cluster worker).
        assert _hook({**env, "PM_STATE_DIR": str(empty)}, _edit(repo / "src" / "f2.py")).returncode == 0
        (empty / "claims.json").mkdir()
        assert _hook({**env, "PM_STATE_DIR": str(empty)}, _edit(repo / "src" / "f3.py")).returncode == 2
        # Its own declared file passes without a registry (PM_FILES: held while it runs, as on a cluster worker).
        assert _hook({**env, "PM_STATE_DIR": str(empty)}, _edit(repo / "src" / "f2.py")).returncode == 0
        # Its own file passes, by the fast path; and a free one is claimed.
        assert _hook(env, _edit(repo / "src" / "f2.py")).returncode == 0
        assert _hook(env, _edit(repo / "src" / "f9.py")).returncode == 0
        assert "src/f9.py" in _hold(repo, "b")["writes"]  # type: ignore[index]
        gone = tmp_path / "gone"
        gone.mkdir()
        done = subprocess.run(
            ["sh", "-c", f'cd {gone} && rmdir {gone} && exec "{sys.executable}" -I -S {HOOK} claim'],
            input=json.dumps(_edit("src/f1.py")).encode(),
            env=env,
            capture_output=True,
            timeout=WAIT * 4,
        )
        assert done.returncode == 2, done.stderr
        end.touch()
        out = _wait_done(run)
        assert run.returncode == 0, out


def test_the_hook_does_not_hang_on_a_fifo_in_place_of_claims_json(tmp_path: Path, repo: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.mkfifo(state / "claims.json")
    env = _env(PM_RUN_ID="r", PM_TASK_ID="t", PM_STATE_DIR=str(state), PM_REPO=str(repo), PM_HOOK_WAIT="0")
    try:
        done = _hook(env, _edit(repo / "src" / "f1.py"), "deny", timeout=WAIT * 2)
    except subprocess.TimeoutExpired:
        pytest.fail("the hook hung on the FIFO: Claude's timeout would let the edit through")
    assert done.returncode == 2


def test_the_hook_blocks_even_with_its_stderr_closed(repo: Path) -> None:
    env = _env(PM_RUN_ID="r", PM_TASK_ID="t", PM_STATE_DIR=str(repo / "nowhere"), PM_REPO=str(repo))
    done = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" -I -S {HOOK} deny 2>&-'],
        input=json.dumps(_edit(repo / "src" / "f1.py")).encode(),
        env=env,
        capture_output=True,
        timeout=WAIT * 4,
    )
    assert done.returncode == 2


def test_the_hook_blocks_an_edit_of_another_task_s_worktree_outside_the_repository(tmp_path: Path) -> None:
    wts = tmp_path / "wts"
    repo = git_repo(
        tmp_path / "repo",
        {"src/f1.py": "1\n", "src/f2.py": "2\n", "src/f3.py": "3\n", "project-manager.yaml": f"worktree_root: {wts}\n"},
    )
    folder = tmp_path / "r1"
    folder.mkdir()
    end = folder / "end"
    agents, tasks = {}, []
    for task, file, isolation in (
        ("t1", "src/f1.py", "worktree"),
        ("t2", "src/f2.py", "shared"),
        ("t3", "src/f3.py", "worktree"),
    ):
        dump = folder / f"env.{task}"
        agents[task] = {"command": ["sh", "-c", f"env > {dump}.tmp && mv {dump}.tmp {dump}; {shell_wait_for(end)}"]}
        tasks.append({"id": task, "agent": task, "description": task, "files": [file], "isolation": isolation})
    batch = _batch(folder, {"max_parallel": 3, "agents": agents, "tasks": tasks})
    codes = {}
    with _run(repo, batch) as run:
        eventually("the agents", lambda: all((folder / f"env.{t}").exists() for t in ("t1", "t2", "t3")))
        envs = {}
        for task in ("t1", "t2", "t3"):
            pairs = (line.split("=", 1) for line in (folder / f"env.{task}").read_text().splitlines() if "=" in line)
            envs[task] = _env(**{k: v for k, v in pairs if k.startswith("PM_")}, PM_HOOK_WAIT="0")
        theirs = Path(envs["t1"]["PM_WORKTREE"]) / "src" / "f1.py"  # t1's file, in t1's worktree
        assert theirs.exists()
        assert wts in theirs.parents
        for task in ("t2", "t3"):  # a task in the shared checkout, and one in a worktree of its own
            codes[task] = _hook(envs[task], _edit(theirs)).returncode
        end.touch()
        _wait_done(run)
    assert codes == {"t2": 2, "t3": 2}


def test_an_added_claim_outlives_its_failed_attempt_s_last_process_and_does_not_leak_into_the_retry(
    tmp_path: Path, repo: Path, pm: Path
) -> None:
    """Attempt 1 claims docs/new.md, then exits 1 leaving a child that ignores SIGTERM (killed after
    stop_grace). The claim must be held while that child lives, and attempt 2 must not hold it."""
    t = tmp_path / "sync"
    t.mkdir()
    child = (
        f'sh -c \'echo $$ > {t}/child.pid; trap "" TERM; '
        f"while :; do date +%s.%N > {t}/alive.tmp; mv {t}/alive.tmp {t}/alive; sleep 0.02; done' &"
    )
    script = (
        f"if [ ! -e {t}/attempt1 ]; then touch {t}/attempt1; {pm} claim docs/new.md; echo $? > {t}/a1.code; "
        f"{shell_wait_for(t / 'fail')}; {child} {shell_wait_for(t / 'alive')}; exit 1; "  # its trap is set: then end
        f"else {_stamp(t / 'a2.started')}; {shell_wait_for(t / 'end')}; fi"
    )
    t1 = {"command": ["sh", "-c", script], "stop_grace": "2s"}
    dump = t / "env.t2"
    t2 = {"command": ["sh", "-c", f"env > {dump}.tmp && mv {dump}.tmp {dump}; {shell_wait_for(t / 'end')}"]}
    batch = _batch(
        tmp_path / "r1",
        {
            "max_parallel": 2,
            "agents": {"one": t1, "two": t2},
            "tasks": [
                {
                    "id": "t1",
                    "agent": "one",
                    "description": "x",
                    "files": ["src/f1.py"],
                    "retries": 1,
                    "retry_delay": "0.1s",
                },
                {"id": "t2", "agent": "two", "description": "x", "files": ["src/f2.py"]},
            ],
        },
    )
    with _run(repo, batch) as run:
        eventually("attempt 1's claim", lambda: (t / "a1.code").exists() and dump.exists())
        assert (t / "a1.code").read_text().strip() == "0"
        pairs = (line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
        env2 = _env(**{k: v for k, v in pairs if k.startswith("PM_")})
        assert _pm(env2, "claim", "--wait", "0", "docs/new.md", cwd=repo).returncode == 3
        (t / "fail").touch()
        eventually("attempt 1's child", lambda: (t / "alive").exists())
        child_pid = int((t / "child.pid").read_text())
        done = _pm(env2, "claim", "--wait", "30", "docs/new.md", cwd=repo)
        assert done.returncode == 0, done.stderr
        assert process_state(child_pid) is None, "granted while attempt 1's child still ran"
        eventually("attempt 2", lambda: (t / "a2.started").exists())
        hold = _hold(repo, "t1")
        assert hold is not None
        assert "docs/new.md" not in hold["writes"], hold
        assert not hold.get("added"), hold
        (t / "end").touch()
        out = _wait_done(run)
        assert run.returncode == 0, out


def test_a_run_killed_with_sigkill_keeps_its_task_s_added_claim_while_the_agent_lives(
    tmp_path: Path, repo: Path, pm: Path
) -> None:
    t = tmp_path / "sync"
    t.mkdir()
    # An agent that claims, then ignores SIGTERM and lives on until told (its supervisor SIGKILLs it after stop_grace).
    script = (
        f"echo $$ > {t}/pid; {pm} claim docs/new.md; echo $? > {t}/code; trap '' TERM; "
        f"while [ ! -e {t}/end ]; do sleep 0.02; done"
    )
    batch = _batch(
        tmp_path / "r1",
        {
            "agents": {"one": {"command": ["sh", "-c", script], "stop_grace": "3s"}},
            "tasks": [{"id": "t1", "agent": "one", "description": "x", "files": ["src/f1.py"]}],
        },
    )
    with _run(repo, batch) as run, _sleepers(tmp_path, repo, {"b": ["src/f2.py"]}, name="r2") as (envs, run2, end2):
        eventually("t1's claim", lambda: (t / "code").exists())
        assert (t / "code").read_text().strip() == "0"
        eventually("the run to adopt it", lambda: "docs/new.md" in (_hold(repo, "t1") or {}).get("writes", []))
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=WAIT)
        assert _pm(envs["b"], "claim", "--wait", "0", "docs/new.md", cwd=repo).returncode == 3
        done = _pm(envs["b"], "claim", "--wait", "30", "docs/new.md", cwd=repo)
        assert done.returncode == 0, done.stderr
        assert process_state(int((t / "pid").read_text())) is None, "granted while t1's agent still ran"
        end2.touch()
        out = _wait_done(run2)
        assert run2.returncode == 0, out


def test_claims_json_deleted_while_a_task_holds_an_added_claim_is_rebuilt_with_it(tmp_path: Path, repo: Path) -> None:
    state = _state(repo)
    with _sleepers(tmp_path, repo, {"a": ["src/f1.py"], "b": ["src/f2.py"]}) as (envs, run, end):
        assert _pm(envs["a"], "claim", "--wait", "0", "docs/new.md", cwd=repo).returncode == 0
        (state / "claims.json").unlink()  # at once: before the run has stepped or beaten
        eventually("the rebuild", lambda: (state / "claims.json").exists())
        hold = _hold(repo, "a")
        assert hold is not None, _claims(repo)
        assert "docs/new.md" in hold["writes"], _claims(repo)
        # Past the recovery window (RECOVERY_S, 3 s) the answer is a's hold, not the recovery.
        done = _pm(envs["b"], "claim", "--wait", "6", "docs/new.md", cwd=repo)
        assert done.returncode == 3, done.stderr
        assert "held by task a" in done.stderr
        # Once more, after the run adopted it.
        eventually("adopted", lambda: "docs/new.md" in (_hold(repo, "a") or {}).get("added", []))
        (state / "claims.json").unlink()
        eventually("the rebuild", lambda: (state / "claims.json").exists())
        assert "docs/new.md" in (_hold(repo, "a") or {}).get("writes", []), _claims(repo)
        end.touch()
        out = _wait_done(run)
        assert run.returncode == 0, out


def test_a_fifo_in_place_of_the_claimed_file_does_not_stall_the_registry(tmp_path: Path, repo: Path) -> None:
    with _sleepers(tmp_path, repo, {"a": ["src/f1.py"]}) as (envs, run, end):
        claimed = _state(repo) / "runs" / f"{envs['a']['PM_RUN_ID']}.claimed"
        claimed.unlink(missing_ok=True)
        os.mkfifo(claimed)
        proc = _pm_bg(envs["a"], "claim", "--wait", "0", "notes/new.md", cwd=repo)
        try:
            try:
                proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)  # what `timeout`, or an agent's own runner, would send
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=WAIT)
        finally:
            stuck = proc.poll() is None
            if stuck:
                proc.kill()
            proc.communicate(timeout=WAIT)
            claimed.unlink()
            end.touch()
            _wait_done(run)
        assert not stuck, "the claim held the registry lock, blocked on the FIFO, and SIGTERM did not end it"
