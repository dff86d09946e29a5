"""Hostile tests of issue 15 with the installed script, real processes and real signals: the
journal's copy on a FIFO nobody reads, ``--events`` and ``--junit`` aimed at the state
directory, agents whose words GitHub's runner would obey, and the words of a task that fail-fast
cancelled after it had reported an error."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from queue_core.registry import state_dir

from ..conftest import WAIT, eventually, git_repo
from ..unit.test_attack_i15 import runner_obeys

SCRIPT = Path(sys.executable).with_name("project-manager")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"README": "x\n"})


def _argv(repo: Path, *args: str) -> list[str]:
    return [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo), "--no-live"]


def _run(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(repo, *args), capture_output=True, text=True, timeout=WAIT * 3, env=env)


def _read_until(fd: int, text: bytes, seen: bytearray) -> None:
    """Read ``fd`` into ``seen`` until it holds ``text``; fails after WAIT."""
    deadline = time.monotonic() + WAIT
    while text not in seen:
        left = max(0.0, deadline - time.monotonic())
        assert select.select([fd], [], [], left)[0], f"never saw {text!r} in:\n{seen.decode()}"
        chunk = os.read(fd, 65536)
        assert chunk, f"the pipe ended before {text!r}:\n{seen.decode()}"
        seen += chunk


def _drain(fd: int) -> bytes:
    """Everything ``fd`` (a FIFO) gives until its writer closes it; fails after WAIT."""
    data = bytearray()
    os.set_blocking(fd, False)
    deadline = time.monotonic() + WAIT
    while True:
        left = max(0.0, deadline - time.monotonic())
        assert select.select([fd], [], [], left)[0], "the FIFO was never closed"
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return bytes(data)
        data += chunk


def _logs(repo: Path, task: str) -> list[Path]:
    return list((state_dir(repo) / "logs").glob(f"*/{task}.log"))


# --- the journal's copy on a FIFO whose reader does not read ------------------------------------


def _big_batch(repo: Path, first: str = "true") -> Path:
    """Three tasks (the first runs ``first``, the others ``true``) whose descriptions fill the
    run's first journal line past a pipe's 64 KiB."""
    padding = "x" * 30_000
    path = repo.parent / "batch.yaml"
    commands = {"a": first, "b": "true", "c": "true"}
    path.write_text(
        "agents:\n"
        + "".join(f"  {a}: {{command: [sh, -c, {json.dumps(c)}]}}\n" for a, c in commands.items())
        + "tasks:\n"
        + "".join(
            f"  - {{id: t{i}, agent: {a}, description: '{padding}', files: [{a}]}}\n" for i, a in enumerate(commands)
        )
    )
    return path


def _with_reader(fifo: Path) -> int:
    """A reader of a new FIFO at ``fifo`` that reads nothing until the test says."""
    os.mkfifo(fifo)
    return os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)


def test_a_fifo_reader_that_does_not_read_holds_up_no_task_and_loses_no_line(repo: Path, tmp_path: Path) -> None:
    """``--events FIFO`` whose reader opened it and reads nothing: before, the run's first line
    (90 kB) blocked the command before any task started, for good, and Ctrl-C could not end it.
    Now the tasks run and the summary comes; the run then waits for the reader, as it waits
    for stdout's, and once it reads, it gets every line, whole."""
    fifo = tmp_path / "events.fifo"
    reader = _with_reader(fifo)
    argv = _argv(repo, "--file", str(_big_batch(repo)), "--events", str(fifo))
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as run:
            try:
                assert run.stdout is not None
                _read_until(run.stdout.fileno(), b"3/3 succeeded", bytearray())  # no line was read yet
                data = _drain(reader)
                assert run.wait(WAIT) == 0
            finally:
                run.kill()
    finally:
        os.close(reader)
    lines = [json.loads(line) for line in data.decode().split("\n")[:-1]]
    assert data.endswith(b"\n")
    events = [line["event"] for line in lines if line["event"] != "waiting"]
    assert (events[0], events[-1]) == ("run_started", "run_ended")
    assert sorted(events[1:-1]) == ["started"] * 3 + ["succeeded"] * 3


def test_ctrl_c_ends_a_run_whose_fifo_reader_does_not_read(repo: Path, tmp_path: Path) -> None:
    """The same reader, and a task that runs until stopped: Ctrl-C stops it and the command ends
    (before: it could not, its threads stuck writing to the FIFO)."""
    fifo = tmp_path / "events.fifo"
    reader = _with_reader(fifo)
    argv = _argv(repo, "--file", str(_big_batch(repo, "echo up; exec sleep 60")), "--events", str(fifo))
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as run:
            try:
                assert run.stdout is not None
                _read_until(run.stdout.fileno(), b"finished  t2", bytearray())
                eventually("t0 to start", lambda: any(b"up" in log.read_bytes() for log in _logs(repo, "t0")))
                run.send_signal(signal.SIGINT)
                assert run.wait(WAIT) == 130
            finally:
                run.kill()
    finally:
        os.close(reader)


# --- --events and --junit aimed at the state directory ----------------------------------------


def test_events_and_junit_never_write_into_the_state_directory(repo: Path, tmp_path: Path) -> None:
    """``--events`` truncated what it was given, and ``--junit`` replaced it: aimed at another
    run's log, or through a symlink at a history record, they destroyed it. Both are refused
    before anything runs (exit 2), as ``timeline -o`` is, and the file stays (the other targets
    are in tests/unit/test_attack_i15.py)."""
    first = _run(repo, "shell: echo precious @a")
    assert first.returncode == 0, first.stderr
    (log,) = _logs(repo, "t1")
    (history,) = (state_dir(repo) / "history").glob("*.json")
    link = tmp_path / "report.xml"
    link.symlink_to(history)
    before = {path: path.read_bytes() for path in (log, history)}
    for flag, target in (("--events", log), ("--junit", link)):
        done = _run(repo, "shell: touch ran @ran", flag, str(target))
        assert done.returncode == 2, (flag, target, done.stderr)
        assert f"{flag}: {target}: is inside the state directory" in done.stderr, done.stderr
    assert {path: path.read_bytes() for path in before} == before
    assert not (repo / "ran").exists()


# --- the words of a task that fail-fast cancelled after its agent reported an error ------------


def test_a_retry_that_fail_fast_cancelled_says_so_everywhere(repo: Path, tmp_path: Path) -> None:
    """Task ``flaky``'s first attempt reports an error in its own words and waits 30 s to retry;
    then ``bad`` fails (it waits for flaky's ``retrying`` line in the journal), and fail-fast
    cancels the retry. The event line and the summary said "not retried: fail-fast after bad
    failed", but --json, the journal, the JUnit report, the hooks and ``show`` gave flaky's old
    error ("my own words") as why it ended cancelled. Now all say why it was cancelled."""
    journal = f"{state_dir(repo)}/logs/$PM_RUN_ID/events.jsonl"
    retrying = '"event":"retrying"'
    wait = f"i=0; until grep -q '{retrying}' \"{journal}\"; do i=$((i+1)); [ $i -gt 1000 ] && exit 9; sleep 0.01; done"
    reported = json.dumps({"type": "result", "is_error": True, "result": "my own words"})
    batch = repo.parent / "batch.yaml"
    batch.write_text(
        "agents:\n"
        f"  talker: {{command: [sh, -c, {json.dumps(f'echo {json.dumps(reported)}')}], report: claude}}\n"
        f"  bad: {{command: [sh, -c, {json.dumps(wait + '; exit 3')}]}}\n"
        "tasks:\n"
        "  - {id: flaky, agent: talker, description: talks, files: [a], retries: 1, retry_delay: 30s}\n"
        "  - {id: bad, agent: bad, description: fails, files: [b]}\n"
    )
    report = tmp_path / "junit.xml"
    done = _run(repo, "--file", str(batch), "--fail-fast", "--json", "--junit", str(report))
    assert done.returncode == 1, done.stderr
    why = "not retried: fail-fast after bad failed"
    assert f"cancelled flaky [talker]: {why}" in done.stderr
    tasks = {task["id"]: task for task in json.loads(done.stdout)["tasks"]}
    assert (tasks["flaky"]["status"], tasks["flaky"]["error"]) == ("cancelled", why)
    assert (tasks["bad"]["status"], tasks["bad"]["error"]) == ("failed", "the agent exited with code 3")
    (journal_file,) = (state_dir(repo) / "logs").glob("*/events.jsonl")
    lines = [json.loads(line) for line in journal_file.read_text().splitlines()]
    (final,) = [line for line in lines if line.get("task") == "flaky" and line.get("final")]
    assert (final["event"], final["error"]) == ("cancelled", why)
    assert f'<skipped type="cancelled" message="{why}" />' in report.read_text()
    shown = subprocess.run(
        [str(SCRIPT), "show", "--json", "--repo", str(repo)], capture_output=True, text=True, timeout=WAIT * 3
    )
    flaky = next(task for task in json.loads(shown.stdout)["tasks"] if task["id"] == "flaky")
    assert (flaky["status"], flaky["error"]) == ("cancelled", why)


# --- GitHub Actions: an agent's words that the runner would obey ------------------------------


def test_on_github_actions_no_word_of_an_agent_outside_its_group_is_obeyed(repo: Path, tmp_path: Path) -> None:
    """GitHub's runner obeys ``##[command]data`` anywhere in a line, not only ``::command::`` at
    its start. An agent's error (in the event line, the summary, --json, --events -, a hook's
    warning) and the name of a file it made outside its claims reached the log as they were:
    ``##[add-mask]`` hid text, ``##[set-output]`` set a step output, ``##[warning]`` annotated.
    Now only our own commands are obeyed: the group, its stop-commands and end, the annotation."""
    said = "boom ##[add-mask]hunter2 ##[set-output name=x]y"
    words = json.dumps({"type": "result", "is_error": True, "result": said})
    (repo / "project-manager.yaml").write_text("hooks:\n  task_end: [[sh, -c, 'cat >&2; exit 1']]\n")
    batch = repo.parent / "batch.yaml"
    command = f"echo {json.dumps(words)}; touch '##[warning]made'"
    batch.write_text(
        f"agents:\n  talker: {{command: [sh, -c, {json.dumps(command)}], report: claude}}\n"
        "tasks:\n  - {id: t1, agent: talker, description: talks, files: [a]}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update(GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
    for extra in ((), ("--json",), ("--events", "-")):
        done = _run(repo, "--file", str(batch), *extra, env=env)
        assert done.returncode == 1, done.stderr
        output = done.stdout + done.stderr
        assert "hunter2" in output  # shown, never obeyed
        obeyed = runner_obeys(output)
        token = next(data for name, data in obeyed if name == "stop-commands")
        assert obeyed == [
            ("group", "t1 (talker): failed"),
            ("stop-commands", token),
            (token, ""),
            ("endgroup", ""),
            ("error", f"the agent reported an error: {said}"),
        ], (extra, output)
        if extra == ("--json",):
            assert json.loads(done.stdout)["tasks"][0]["error"] == said
        (repo / "##[warning]made").unlink()


# --- --events inside the repository -------------------------------------------------------------


def test_events_inside_the_repository_are_no_task_s_change_outside_its_claims(repo: Path) -> None:
    """``--events repo/out/ev.jsonl``: the run's own copy of its journal grew while each task
    ran, and every task was blamed for it ("t1 changed outside its claims: out/ev.jsonl", a
    "!" in the summary, in --json's unclaimed_writes). A file a task did write outside its
    claims is still reported."""
    (repo / "out").mkdir()
    done = _run(repo, "shell: true @a", "shell: touch stray @b", "--events", str(repo / "out" / "ev.jsonl"), "--json")
    assert done.returncode == 0, done.stderr
    tasks = {task["id"]: task for task in json.loads(done.stdout)["tasks"]}
    assert tasks["t1"]["unclaimed_writes"] == []
    assert tasks["t2"]["unclaimed_writes"] == ["stray"]
    assert "ev.jsonl" not in done.stderr
    assert (repo / "out" / "ev.jsonl").read_text().count('"event":"run_ended"') == 1


# --- history, show, timeline -o -: output that is not delivered ----------------------------------


def _read_back(repo: Path, *args: str, stdout: int) -> subprocess.CompletedProcess[str]:
    argv = [str(SCRIPT), *args, "--repo", str(repo)]
    return subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=WAIT * 3)


def test_a_result_that_cannot_be_written_is_no_success(repo: Path) -> None:
    """``history --json > runs.json``, ``show``, ``timeline -o -``, ``logs --run`` on a full disk
    exited 0, the result lost or cut short, and ``logs TASK`` 141 as if a reader had gone; a
    reader gone (``| head``) was 0 too, where ``logs`` says 141. Now: 1 and a message for a
    write that failed, 141 for a reader that went away (each command's way of writing is in
    tests/unit/test_attack_i15.py)."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    assert _run(repo, "shell: echo hi @a").returncode == 0
    with open("/dev/full", "w") as full:
        for args in (("history", "--json"), ("logs", "t1")):
            done = _read_back(repo, *args, stdout=full.fileno())
            assert done.returncode == 1, (args, done.stderr)
            assert "cannot write the output: No space left on device" in done.stderr, done.stderr
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        done = _read_back(repo, "show", stdout=write)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")
