"""The run journal and ``--events``, through the installed command: read line by line while the
run goes, every line valid JSON with the documented keys, in order; a run killed with SIGKILL
leaves whole lines; what a batch may hold round-trips; bad targets are refused before anything runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from queue_core.registry import state_dir

from ..conftest import WAIT, eventually, git_repo, in_thread

SCRIPT = Path(sys.executable).with_name("project-manager")

EVERY = {"event", "run", "time"}
TASK = EVERY | {"task", "agent", "attempt"}
FINAL = {"succeeded", "failed", "timed_out", "rate_limited", "skipped", "cancelled"}
#: The keys each kind of line has, at least (readers ignore others).
KEYS = {
    "run_started": EVERY | {"version", "pid", "batch"},
    "waiting": TASK | {"reason"},
    "started": TASK | {"description"},
    "retrying": TASK | {"exit_code", "duration_s", "error"},
    "rate_limited": TASK | {"final", "error", "resumes_at"},
    "run_ended": EVERY | {"exit_code", "counts"},
    **{kind: TASK | {"final", "exit_code", "duration_s", "total_s", "cost_usd", "tokens", "error"} for kind in FINAL},
}


class Tail:
    """A file another process appends to, read as it grows: each whole line parsed as it comes."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.lines
        self._offset += len(data)
        *whole, self._partial = (self._partial + data).split(b"\n")
        self.lines += [json.loads(line) for line in whole]  # every whole line is JSON, as it comes
        return self.lines

    def until(self, what: str, check: Callable[[list[dict[str, Any]]], bool]) -> None:
        eventually(what, lambda: check(self.poll()))


def has(kind: str, task: str | None = None) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda lines: any(line["event"] == kind and line.get("task", task) == task for line in lines)


def check_journal(lines: list[dict[str, Any]], tasks: set[str], *, ended: bool = True) -> None:
    """The documented keys and order: the start first, the end last, each task's final line after
    its starts and nothing of a task after it."""
    assert lines[0]["event"] == "run_started"
    assert lines[0]["version"] == 1
    assert {t["id"] for t in lines[0]["batch"]["tasks"]} == tasks
    run = lines[0]["run"]
    final: dict[str, int] = {}
    started: dict[str, int] = {}
    for index, line in enumerate(lines):
        assert set(line) >= KEYS[line["event"]], line
        assert line["run"] == run
        assert isinstance(line["time"], float)
        task = line.get("task")
        if task is None:
            assert line["event"] in ("run_started", "run_ended")
            assert line["event"] != "run_started" or index == 0
            continue
        assert task not in final, f"{line} after the final line of {task}"
        if line["event"] == "started":
            started[task] = line["attempt"]
        if line.get("final") is True:
            final[task] = index
            assert line["attempt"] == started.get(task, 0)
    assert set(final) == tasks
    if ended:
        assert lines[-1]["event"] == "run_ended"
        assert sum(lines[-1]["counts"].values()) == len(tasks)
    else:
        assert all(line["event"] != "run_ended" for line in lines)


def journal_of(repo: Path) -> Path:
    (journal,) = (state_dir(repo) / "logs").glob("*/events.jsonl")
    return journal


def batch(repo: Path, tasks: str, agents: tuple[str, ...] = ("a", "b", "c", "d")) -> Path:
    path = repo.parent / "batch.yaml"
    path.write_text("agents:\n" + "".join(f"  {a}: {{preset: shell}}\n" for a in agents) + "tasks:\n" + tasks)
    return path


def run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"README": "x\n"})


def test_the_stream_is_read_line_by_line_while_the_run_goes(repo: Path, tmp_path: Path) -> None:
    os.mkfifo(repo / "go.fifo")
    tasks = (
        "  - {id: t1, agent: a, description: 'read x < go.fifo; echo one > a.txt', files: [a.txt]}\n"
        "  - {id: t2, agent: b, description: 'echo two >> a.txt', files: [a.txt]}\n"
    )
    events = tmp_path / "events.jsonl"
    argv = [str(SCRIPT), "delegate-multiple", "--file", str(batch(repo, tasks)), "--events", str(events)]
    with subprocess.Popen([*argv, "--repo", str(repo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        try:
            tail = Tail(events)
            tail.until(
                "t1 to start and t2 to wait for it",
                lambda lines: has("started", "t1")(lines) and has("waiting", "t2")(lines),
            )
            (wait,) = [line for line in tail.lines if line["event"] == "waiting"]
            assert wait["reason"] == "a.txt overlaps a.txt held by a (t1)"
            assert (wait["agent"], wait["attempt"]) == ("b", 0)
            assert not has("run_ended")(tail.poll())  # the run goes on: t1 waits for the test
            in_thread(lambda: (repo / "go.fifo").write_text("go\n"))
            out, err = p.communicate(timeout=WAIT)
        finally:
            p.kill()
    assert p.returncode == 0, err
    lines = tail.poll()
    check_journal(lines, {"t1", "t2"})
    assert [(line["event"], line.get("task")) for line in lines if line["event"] != "waiting"] == [
        ("run_started", None),
        ("started", "t1"),
        ("succeeded", "t1"),
        ("started", "t2"),
        ("succeeded", "t2"),
        ("run_ended", None),
    ]
    assert journal_of(repo).read_bytes() == events.read_bytes()  # the run's journal, copied
    assert " started   t1 [a]" in out  # the lines for people are where they were


def test_retries_failures_skips_and_the_end_have_their_keys(repo: Path, tmp_path: Path) -> None:
    tasks = (
        "  - {id: flaky, agent: a, description: '[ -e flag ] || { touch flag; exit 1; }', files: [flag],"
        " retries: 1, retry_delay: 0.05}\n"
        "  - {id: bad, agent: b, description: 'exit 3', files: [b]}\n"
        "  - {id: after, agent: c, description: 'true', files: [c], depends_on: [bad]}\n"
        "  - {id: ok, agent: d, description: 'true', files: [d]}\n"
    )
    done = run(repo, "--file", str(batch(repo, tasks)), "--events", str(tmp_path / "events.jsonl"), "--json")
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    check_journal(lines, {"flaky", "bad", "after", "ok"})
    by = {(line["event"], line.get("task")): line for line in lines}
    retrying = by["retrying", "flaky"]
    assert (retrying["attempt"], retrying["exit_code"], retrying["error"]) == (1, 1, "the agent exited with code 1")
    assert retrying["duration_s"] >= 0
    assert retrying["resumes_at"] > retrying["time"]
    flaky = by["succeeded", "flaky"]
    assert (flaky["attempt"], flaky["exit_code"], flaky["error"]) == (2, 0, None)
    assert flaky["total_s"] >= flaky["duration_s"]
    assert (by["failed", "bad"]["exit_code"], by["failed", "bad"]["error"]) == (3, "the agent exited with code 3")
    skipped = by["skipped", "after"]
    assert (skipped["attempt"], skipped["exit_code"], skipped["error"]) == (0, None, "dependency bad failed")
    assert by["run_ended", None]["exit_code"] == 1
    assert by["run_ended", None]["counts"] == {
        "succeeded": 2,
        "failed": 1,
        "timed_out": 0,
        "cancelled": 0,
        "skipped": 1,
        "rate_limited": 0,
    }
    summary = {t["id"]: t for t in json.loads(done.stdout)["tasks"]}
    for task in ("flaky", "bad", "after", "ok"):
        final = next(line for line in lines if line.get("task") == task and line.get("final"))
        assert (final["event"], final["error"]) == (summary[task]["status"], summary[task]["error"])


def test_a_run_killed_with_sigkill_leaves_whole_lines(repo: Path) -> None:
    os.mkfifo(repo / "never.fifo")
    tasks = "  - {id: t1, agent: a, description: 'read x < never.fifo', files: [x]}\n"
    argv = [str(SCRIPT), "delegate-multiple", "--file", str(batch(repo, tasks)), "--repo", str(repo)]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            eventually("the journal", lambda: any((state_dir(repo) / "logs").glob("*/events.jsonl")))
            tail = Tail(journal_of(repo))
            tail.until("t1 to start", has("started", "t1"))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(WAIT) == -signal.SIGKILL
        finally:
            proc.kill()
    data = journal_of(repo).read_bytes()
    assert data.endswith(b"\n")
    lines = [json.loads(line) for line in data.splitlines()]
    assert [line["event"] for line in lines] == ["run_started", "started"]  # and no end: it was killed


def test_what_a_batch_may_hold_round_trips(repo: Path, tmp_path: Path) -> None:
    description = 'echo "q\'s" \\\\ ünï ✓ 𝄞 \u2028 > out.txt\n# a second line'
    claims = ['dös "q".md', "-dash/x"]
    quoted = json.dumps(description, ensure_ascii=False).replace("\u2028", "\\u2028")  # YAML breaks lines at it
    tasks = (
        f"  - id: -odd.id_\n    agent: a\n    description: {quoted}\n"
        f"    files: {json.dumps(['./' + claims[1], claims[0]], ensure_ascii=False)}\n"
        "  - {id: '9', agent: b, description: 'true', files: [n]}\n"
    )
    events = tmp_path / "events.jsonl"
    done = run(repo, "--file", str(batch(repo, tasks)), "--events", str(events))
    assert done.returncode == 0, done.stderr
    data = events.read_bytes()
    assert data.isascii()
    lines = [json.loads(line) for line in data.decode().split("\n")[:-1]]
    check_journal(lines, {"-odd.id_", "9"})
    first = lines[0]["batch"]["tasks"][0]
    assert (first["id"], first["description"]) == ("-odd.id_", description)
    assert sorted(first["files"]) == sorted(claims)
    (started,) = [line for line in lines if line["event"] == "started" and line["task"] == "-odd.id_"]
    assert started["description"] == description


def test_events_to_stdout_leave_it_to_the_lines_and_the_summary_goes_to_stderr(repo: Path) -> None:
    done = run(repo, "shell: true @a", "shell: exit 2 @b", "--events", "-")
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.splitlines()]  # nothing else on stdout
    check_journal(lines, {"t1", "t2"})
    assert " started   t1 [shell]" in done.stderr
    assert "1/2 succeeded" in done.stderr


def test_events_to_a_full_disk_are_a_warning_once_and_the_run_goes_on(repo: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    done = run(repo, "shell: touch ran @ran", "shell: true @b", "--events", "/dev/full")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("/dev/full could not be written (No space left on device)") == 1
    assert (repo / "ran").exists()
    check_journal([json.loads(line) for line in journal_of(repo).read_text().splitlines()], {"t1", "t2"})
