"""``hooks:`` of project-manager.yaml through the installed command, on real repositories: each
task's end and the run's end told to commands that record what they got, failing, hanging
and deaf hooks that never fail the run, a stop signal that kills the hook that runs."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.unit.test_hooks import RECORDER
from tests.unit.test_notify import _gone

from ..conftest import WAIT, eventually, git_repo

SCRIPT = Path(sys.executable).with_name("project-manager")


def _repo(tmp_path: Path, hooks: Any) -> Path:
    repo = git_repo(tmp_path / "repo", {"README": "x\n"})
    (repo / "project-manager.yaml").write_text(json.dumps({"hooks": hooks}) + "\n")  # JSON is YAML
    (tmp_path / "out").mkdir()
    return repo


def _recorder(tmp_path: Path, name: str, *args: str) -> list[str]:
    """A hook that writes what it got to ``out/<name>-<task or run>.json`` (outside the repository:
    what a hook writes there while tasks run would be theirs, as writes outside their claims)."""
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    return [sys.executable, str(script), name, str(tmp_path / "out"), *args]


def _got(tmp_path: Path, name: str) -> dict[str, Any]:
    got: dict[str, Any] = json.loads((tmp_path / "out" / f"{name}.json").read_text())
    return got


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT * 2)


def test_hooks_get_each_task_and_the_run_as_json_with_the_pm_environment(tmp_path: Path) -> None:
    hooks = {
        "task_end": [_recorder(tmp_path, "task", "$PM_DESCRIPTION", "--x=$(touch pwned)")],
        "run_end": [_recorder(tmp_path, "run")],
    }
    repo = _repo(tmp_path, hooks)
    done = _run(repo, "shell: : '$(touch pwned)' @a", "shell: exit 3 @b @c", "--json")
    assert done.returncode == 1, done.stderr  # a task failed: the hooks change nothing of it
    report = json.loads(done.stdout)
    for task in report["tasks"]:
        got = _got(tmp_path, f"task-{task['id']}")
        assert json.loads(got["stdin"]) == task  # the task's object of --json, as is
        assert got["argv"] == ["task", str(tmp_path / "out"), "$PM_DESCRIPTION", "--x=$(touch pwned)"]
        assert Path(got["cwd"]) == repo
        assert got["env"] == {
            "PM_RUN_ID": report["run_id"],
            "PM_TASK_ID": task["id"],
            "PM_AGENT": "shell",
            "PM_DESCRIPTION": task["description"],
            "PM_FILES": {"t1": "a", "t2": "b\nc"}[task["id"]],
            "PM_STATUS": task["status"],
            "PM_EXIT_CODE": str(task["exit_code"]),
            "PM_LOG": task["log"],
            "PM_REPO": str(repo),
            "PM_STATE_DIR": str(repo / ".git" / "project-manager"),
        }
    assert [t["status"] for t in report["tasks"]] == ["succeeded", "failed"]
    assert _got(tmp_path, "task-t2")["env"]["PM_EXIT_CODE"] == "3"
    run = _got(tmp_path, "run-run")
    assert json.loads(run["stdin"]) == report  # the whole --json report
    assert run["env"] == {
        "PM_RUN_ID": report["run_id"],
        "PM_STATUS": "failed",
        "PM_EXIT_CODE": "1",
        "PM_TOTAL": "2",
        "PM_SUCCEEDED": "1",
        "PM_FAILED": "1",
    }
    assert not list(tmp_path.rglob("pwned"))
    assert "hook task_end" not in done.stderr
    assert "hook run_end" not in done.stderr


def test_run_end_says_succeeded_and_reads_the_report_without_json_too(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"run_end": [_recorder(tmp_path, "run")]})
    done = _run(repo, "shell: true @a")
    assert done.returncode == 0, done.stderr
    run = _got(tmp_path, "run-run")
    assert (run["env"]["PM_STATUS"], run["env"]["PM_EXIT_CODE"]) == ("succeeded", "0")
    report = json.loads(run["stdin"])
    assert [(t["id"], t["status"]) for t in report["tasks"]] == [("t1", "succeeded")]
    assert "1/1 succeeded" in done.stdout  # the summary as ever, before the hook


def test_a_skipped_task_has_its_hook_with_no_exit_code(tmp_path: Path) -> None:
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        "tasks:\n"
        "  - {id: build, agent: shell, description: exit 1, files: [a]}\n"
        "  - {id: deploy, agent: shell, description: 'true', files: [b], depends_on: [build]}\n"
    )
    repo = _repo(tmp_path, {"task_end": [_recorder(tmp_path, "task")]})
    done = _run(repo, "--file", str(batch))
    assert done.returncode == 1, done.stderr
    env = _got(tmp_path, "task-deploy")["env"]
    assert (env["PM_STATUS"], env["PM_EXIT_CODE"], env["PM_LOG"]) == ("skipped", "", "")
    assert json.loads(_got(tmp_path, "task-deploy")["stdin"])["error"] == "dependency build failed"


def test_failing_hooks_are_warnings_naming_them_and_the_exit_code_stands(tmp_path: Path) -> None:
    fails = [sys.executable, "-c", "import sys; print('noise', file=sys.stderr); sys.exit('no display')"]
    repo = _repo(tmp_path, {"task_end": [fails, ["no-such-program-pm"]], "run_end": [["sh", "-c", "kill -9 $$"]]})
    done = _run(repo, "shell: true @a", "--json")
    assert done.returncode == 0, done.stderr
    said = done.stderr
    assert ") for task t1: exited with code 1: no display" in said
    assert "hook task_end[1] (no-such-program-pm) for task t1: could not start: No such file or directory" in said
    assert "hook run_end[0] (sh -c 'kill -9 $$'): was killed by signal 9 (SIGKILL)" in said
    assert json.loads(done.stdout)["tasks"][0]["status"] == "succeeded"


def test_a_hook_that_hangs_is_killed_with_its_child_at_its_timeout_and_the_run_ends(tmp_path: Path) -> None:
    hangs = ["sh", "-c", f"sleep 60 & echo $! > {tmp_path / 'out' / 'child'}; wait"]
    repo = _repo(tmp_path, {"timeout": "1s", "task_end": [hangs]})
    started = time.monotonic()
    done = _run(repo, "shell: true @a")
    assert time.monotonic() - started < WAIT
    assert done.returncode == 0, done.stderr
    assert "for task t1: did not end within 1s and was killed" in done.stdout + done.stderr
    eventually("the hook's child to be killed", lambda: _gone(int((tmp_path / "out" / "child").read_text())))


def test_a_slow_task_end_hook_holds_up_no_task(tmp_path: Path) -> None:
    """The hook of t1 waits for t2's file; were hooks run in the queue's way, t2 (of the same
    agent, so after t1) could not start before the hook gave up."""
    waits = (
        "import os, sys, time\n"
        "if os.environ['PM_TASK_ID'] == 't1':\n"
        f"    deadline = time.monotonic() + {WAIT / 2}\n"
        "    while not os.path.exists('t2-ran') and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)  # another process's file: a bounded poll on its existence\n"
        f"    open({str(tmp_path / 'out' / 'saw')!r}, 'w').write(str(os.path.exists('t2-ran')))\n"
    )
    repo = _repo(tmp_path, {"task_end": [[sys.executable, "-c", waits]]})
    done = _run(repo, "shell: true @a", "shell: touch t2-ran @t2-ran")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "saw").read_text() == "True"


def test_a_hook_that_never_reads_its_big_json_blocks_nothing(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"task_end": [["true"]], "run_end": [["sh", "-c", "exit 0"]]})
    description = ": " + "x" * 100_000  # the task's JSON and the run's: beyond a pipe's 64 kB
    done = _run(repo, f"shell: {description} @a", "--json")
    assert done.returncode == 0, done.stderr
    assert "hook task_end" not in done.stderr
    assert "hook run_end" not in done.stderr
    assert len(done.stdout) > 100_000


def test_a_stop_signal_kills_the_hook_that_runs_and_runs_no_other(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hangs = ["sh", "-c", f'echo $$ > {out}/hook-"$PM_TASK_ID".pid; exec sleep 60']
    repo = _repo(tmp_path, {"task_end": [hangs], "run_end": [_recorder(tmp_path, "run")]})
    argv = [str(SCRIPT), "delegate-multiple", "shell: true @a", "shell: sleep 60 @b", "--repo", str(repo)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            eventually("the hook of t1 to run", lambda: (out / "hook-t1.pid").exists())
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, stderr
    eventually("the hook to be killed", lambda: _gone(int((out / "hook-t1.pid").read_text())))
    assert "for task t1: was stopped: interrupted by SIGINT" in stdout + stderr
    assert not (out / "hook-t2.pid").exists()  # t2 was cancelled by the signal: no hook for it
    assert not (out / "run-run.json").exists()  # a run ended by a signal runs no run_end


def test_a_bad_hooks_is_refused_before_anything_runs(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"task_ends": [["notify-send", "done"]]})
    done = _run(repo, "shell: touch ran @ran")
    assert done.returncode == 2
    assert (
        f"{repo / 'project-manager.yaml'}:1: hooks.task_ends: unknown key 'task_ends' (did you mean 'task_end'?)"
        in done.stderr
    )
    assert not (repo / "ran").exists()


def test_a_stop_signal_while_the_run_waits_for_its_hooks_kills_them_and_is_the_exit_code(tmp_path: Path) -> None:
    """The summary is out, the run waits for a task_end hook: SIGTERM ends it at once, 143."""
    out = tmp_path / "out"
    hangs = ["sh", "-c", f"echo $$ > {out}/hook.pid; exec sleep 60"]
    repo = _repo(tmp_path, {"task_end": [hangs], "run_end": [_recorder(tmp_path, "run")]})
    argv = [str(SCRIPT), "delegate-multiple", "shell: true @a", "--repo", str(repo)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            shown = _read_until(proc, b"1/1 succeeded")
            eventually("the hook to run", lambda: (out / "hook.pid").exists())
            proc.send_signal(signal.SIGTERM)
            rest, stderr = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 143, stderr
    eventually("the hook to be killed", lambda: _gone(int((out / "hook.pid").read_text())))
    assert b"for task t1: was stopped: interrupted by SIGTERM" in shown + rest + stderr
    assert not (out / "run-run.json").exists()


def _read_until(proc: subprocess.Popen[bytes], text: bytes) -> bytes:
    """What ``proc`` wrote on stdout up to ``text`` (and maybe a little more); bounded by WAIT."""
    assert proc.stdout is not None
    fd, shown = proc.stdout.fileno(), b""
    deadline = time.monotonic() + WAIT
    while text not in shown:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"{text!r} never came: {shown!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"stdout ended before {text!r}: {shown!r}"
        shown += chunk
    return shown
