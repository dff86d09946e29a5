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

from ..conftest import WAIT, eventually, git_repo, interrupt_when_ready

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


def _batch(repo: Path, text: str) -> str:
    (repo / "batch.yaml").write_text(text)
    return str(repo / "batch.yaml")


#: A task whose agent sleeps (its simulated work) past its timeout, every attempt.
SLOW = """
  - id: slow
    agent: sleeper
    description: sleeps past its timeout
    files: [slow.txt]
    timeout: 1s
"""
AGENTS = """
agents:
  sleeper: {command: [sleep, "30"]}
  broken: {command: [sh, -c, "echo oops; exit 3"]}
"""


def test_a_timeout_says_so_in_the_events_the_json_and_the_log_and_every_attempt_counts(repo: Path) -> None:
    """Before: "AgentExitError: the agent was killed by signal 15", no note in the log, and a task
    time of the last attempt only (three 1 s attempts gave "task time 1.1s, speedup 0.19x")."""
    batch = _batch(repo, f"{AGENTS}tasks:{SLOW}    retries: 2\n    retry_delay: 0.1s\n")
    done = _run(repo, "--file", batch, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    [task] = report["tasks"]
    assert (task["status"], task["attempts"]) == ("timed_out", 3)
    assert task["error"] == "timed out after 1s (attempt 3 of 3)"
    assert task["total_s"] >= 3.0  # three attempts of at least the timeout each
    assert report["sum_s"] == task["total_s"]
    assert report["speedup"] == pytest.approx(task["total_s"] / report["wall_s"], abs=0.01)  # of unrounded figures
    events = done.stderr  # with --json, the event lines go to stderr
    for n in (1, 2):
        assert f"retrying  slow [sleeper]: timed out after 1s (attempt {n} of 3)" in events
    assert "TIMED OUT slow [sleeper]: timed out after 1s (attempt 3 of 3)" in events
    assert "signal" not in events
    notes = [line for line in (_logs(repo) / "slow.log").read_text().splitlines() if line.startswith("[project")]
    assert notes == [f"[project-manager] timed out after 1s (attempt {n} of 3): stopping it" for n in (1, 2, 3)]


LONG = "a description that goes on and on, " * 6


@pytest.mark.parametrize("columns", [80, None])
def test_the_summary_names_the_log_folder_once_and_fits_the_terminal(repo: Path, columns: int | None) -> None:
    """Before: each failed row repeated the log's absolute path in its outcome, about 200 columns
    wide, and the event lines named the log by its absolute path, the summary by a relative one."""
    tasks = f"  - {{id: broken, agent: broken, description: {LONG!r}, files: [b.txt]}}\n"
    done = _run(repo, "--file", _batch(repo, f"{AGENTS}tasks:\n{tasks}{SLOW}"), columns=columns)
    assert done.returncode == 1, done.stdout + done.stderr
    folder = os.path.relpath(_logs(repo), repo)  # the command ran in the repository
    assert str(repo) not in done.stdout  # one form: relative to where the command ran
    assert f"FAILED    broken [broken]: the agent exited with code 3 (log: {folder}/broken.log)" in done.stdout
    assert f"TIMED OUT slow [sleeper]: timed out after 1s (attempt 1 of 1) (log: {folder}/slow.log)" in done.stdout
    lines = done.stdout.splitlines()
    summary = lines[lines.index(f"logs: {folder}/") :]
    assert max(map(len, summary)) <= (columns or 100), done.stdout  # 100: no terminal, no COLUMNS
    assert summary[1].split()[:6] == ["id", "agent", "outcome", "time", "log", "reason"]
    broken, slow = (row.split(maxsplit=5) for row in summary[2:4])
    assert (broken[:3], broken[4], slow[:3], slow[4]) == (
        ["broken", "broken", "failed"],
        "broken.log",
        ["slow", "sleeper", "timed_out"],
        "slow.log",
    )
    assert broken[5].startswith("the agent exited with code")
    assert slow[5].startswith("timed out after 1s")
    assert summary[-1].startswith("0/2 succeeded; wall ")


@pytest.mark.parametrize("json_out", [False, True])
def test_an_interrupted_run_reports_no_speedup(repo: Path, json_out: bool) -> None:
    """Before: a speedup of the work done until Ctrl-C, as if the run had done all of it."""
    fifo = repo / "ready.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    argv = [str(SCRIPT), "delegate-multiple", "shell: echo $$ > ready.fifo; exec sleep 60 @x", "--repo", str(repo)]
    proc = subprocess.Popen([*argv, *(["--json"] if json_out else [])], stdout=subprocess.PIPE, text=True)
    out, _ = interrupt_when_ready(proc, reader, "the agent")
    assert proc.returncode == 130
    if json_out:
        assert json.loads(out)["speedup"] is None
    else:
        assert out.splitlines()[-1].startswith("0/1 succeeded; wall ")
        assert "speedup" not in out


def _open_for_writing(fifo: Path) -> int:
    """``fifo`` opened for writing once its reader has it open (bounded wait)."""
    fd: list[int] = []

    def opened() -> bool:
        try:
            fd.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: nobody reads it yet
            return False
        return True

    eventually(f"a reader of {fifo.name}", opened)
    return fd[0]


@pytest.mark.parametrize(("script", "code"), [("true", 0), ("exit 3", 1)])
def test_a_reader_that_goes_away_after_the_first_line_changes_nothing(repo: Path, script: str, code: int) -> None:
    """``project-manager ... | head -1``. Before: a successful run then exited 1, nothing on stderr."""
    fifo = repo / "release.fifo"
    os.mkfifo(fifo)
    argv = [str(SCRIPT), "delegate-multiple", f"shell: cat release.fifo; {script} @a.txt", "--repo", str(repo)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as for a user
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        assert b" started   t1 [shell]" in proc.stdout.readline()
        proc.stdout.close()  # as head -1 does: every line after the first meets a closed pipe
        release = _open_for_writing(fifo)  # the agent waits for the pipe to be closed first
        os.write(release, b"go\n")
        os.close(release)
        _, err = proc.communicate(timeout=WAIT)
    assert (proc.returncode, err) == (code, b"")


def test_output_still_buffered_when_the_reader_went_away_is_dropped_not_fatal_at_exit() -> None:
    """The interpreter flushes stdout once more at exit: with the reader gone, that flush failed
    (a BrokenPipeError on stderr, the exit code changed) unless stdout was let go."""
    code = "import sys; from cli import terminal; sys.stdout.write('buffered'); sys.exit(terminal.write_out('x'))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # 'buffered' stays buffered
    read, write = os.pipe()
    os.close(read)  # the reader went away before the first byte
    try:
        done = subprocess.run([sys.executable, "-c", code], stdout=write, stderr=subprocess.PIPE, env=env, timeout=WAIT)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, b"")  # exit(False): write_out said the reader was gone
