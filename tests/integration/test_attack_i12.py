"""Issue 12 attacked through the installed command, with real processes and signals: claims typed
in different directories, a --repo inside another repository, a removed current directory,
a stop signal while on_finish runs, a terminal held with Ctrl-S.

Each test failed before its fix; the unit tests of the same fixes are tests/unit/test_attack_i12.py.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from queue_core import repo_status

from ..conftest import EMPTY_STATUS, WAIT, eventually, git_repo
from ._terminal import SETSID, on_terminal

SCRIPT = Path(sys.executable).with_name("project-manager")

#: Two agent types (one type runs one task at a time, across runs too: only claims may part them).
AGENTS = 'agents:\n  first: {command: [sh, -c, "{description}"]}\n  second: {command: [sh, -c, "{description}"]}\n'


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    """A folder outside the repository for what the agents leave behind, with a FIFO ``go`` that
    holds the first agent until the test writes to it."""
    folder = tmp_path / "marks"
    folder.mkdir()
    os.mkfifo(folder / "go")
    return folder


def start(cwd: Path, marks: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPT), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "MARK": str(marks)},
    )


@pytest.fixture
def runs() -> Iterator[list[subprocess.Popen[str]]]:
    """The runs a test starts: each one still running at its end is killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


#: The first agent: it says it started, waits for the test, and says it ended.
HOLDS = 'first: touch "$MARK/a.started"; read go < "$MARK/go"; touch "$MARK/a.ended"'
#: The second agent: whether the first had ended when it started.
CHECKS = 'test -e "$MARK/a.ended" || touch "$MARK/overlap"; touch "$MARK/b.ran"'


def _release(marks: Path) -> None:
    """Let the first agent end, once it reads the FIFO (a bounded wait, never a blocking open)."""

    def written() -> bool:
        try:
            go = os.open(marks / "go", os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            return False
        try:
            os.write(go, b"go\n")
        finally:
            os.close(go)
        return True

    eventually("the first agent to read the FIFO", written)


def test_one_file_in_a_bracketed_directory_typed_from_two_places_is_held_by_one_task_at_a_time(
    tmp_path: Path, marks: Path, runs: list[subprocess.Popen[str]]
) -> None:
    """Next.js names a route's folder ``[id]``. From inside it, ``@page.tsx`` claimed the file
    ``app/posts/[id]/page.tsx`` (its name escaped); from the root, ``@app/posts/[id]/page.tsx``
    claimed a pattern (``app/posts/i/page.tsx``, ``app/posts/d/page.tsx``): the two did not
    overlap, and two agents edited page.tsx at once."""
    repo = git_repo(tmp_path / "repo", {"app/posts/[id]/page.tsx": "", "project-manager.yaml": AGENTS})
    runs.append(start(repo / "app" / "posts" / "[id]", marks, "delegate-multiple", f"{HOLDS} @page.tsx"))
    eventually("the first agent to start", lambda: (marks / "a.started").exists())
    runs.append(start(repo, marks, "delegate-multiple", f"second: {CHECKS} @app/posts/[id]/page.tsx"))
    eventually("the second run to wait for the file", lambda: repo_status(repo).queued_tasks == 1)
    assert not (marks / "b.ran").exists()
    _release(marks)
    for run in runs:
        out, err = run.communicate(timeout=3 * WAIT)
        assert run.returncode == 0, out + err
    assert (marks / "b.ran").exists()
    assert not (marks / "overlap").exists()


def test_a_repo_inside_another_repository_is_refused_and_runs_nothing(
    tmp_path: Path, marks: Path, runs: list[subprocess.Popen[str]]
) -> None:
    """Before: ``--repo src`` shared the repository's registry, its claims counted from src:
    ``@app/parser.py`` there and ``@src/app/parser.py`` at the root, one file, ran together."""
    repo = git_repo(tmp_path / "repo", {"src/app/parser.py": "", "project-manager.yaml": AGENTS})
    runs.append(start(repo, marks, "delegate-multiple", f"{HOLDS} @src/app/parser.py"))
    eventually("the first agent to start", lambda: (marks / "a.started").exists())
    inside = start(repo, marks, "delegate-multiple", "--repo", "src", f"shell: {CHECKS} @app/parser.py")
    runs.append(inside)
    out, err = inside.communicate(timeout=3 * WAIT)
    assert inside.returncode == 2, out + err
    assert err == f"project-manager: error: --repo src lies inside the git repository {repo}: give --repo {repo}\n"
    assert not (marks / "b.ran").exists()
    _release(marks)
    assert runs[0].wait(3 * WAIT) == 0


def test_in_a_removed_directory_commands_refuse_without_a_traceback_and_claims_count_from_it(tmp_path: Path) -> None:
    """Before: every command died with a FileNotFoundError traceback (exit 1); with --repo,
    ``@parser.py`` typed in a removed src/app claimed the root's parser.py."""
    repo = git_repo(tmp_path / "repo", {"src/app/parser.py": ""})

    def in_removed(*args: str) -> subprocess.CompletedProcess[str]:
        (repo / "src" / "gone").mkdir()
        script = 'cd src/gone && rmdir ../gone && exec "$@"'
        argv = ["sh", "-c", script, "sh", str(SCRIPT), *args]
        return subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=3 * WAIT)

    for command in (["status"], ["init"], ["delegate-multiple", "shell: true @x.py"]):
        done = in_removed(*command)
        assert (done.returncode, done.stderr) == (
            2,
            "project-manager: error: the current directory was removed; cd to one that exists, or give --repo DIR\n",
        )
    done = in_removed("delegate-multiple", "--repo", str(repo), "--dry-run", "--json", "shell: true @parser.py")
    assert done.returncode == 0, done.stderr
    assert '"src/gone/parser.py"' in done.stdout


def test_ctrl_c_while_on_finish_runs_stops_it_at_once_and_exits_130(tmp_path: Path, marks: Path) -> None:
    """Before: the Ctrl-C was noted and nothing more: the command waited out on_finish's 10 s,
    then exited 0."""
    on_finish = 'on_finish: [sh, -c, "echo $$ > \\"$MARK/finish.pid\\"; exec sleep 60"]\n'
    repo = git_repo(tmp_path / "repo", {"project-manager.yaml": on_finish})
    run = start(repo, marks, "delegate-multiple", "--notify", "shell: true")
    try:
        eventually(
            "on_finish to start", lambda: (marks / "finish.pid").exists() and (marks / "finish.pid").stat().st_size
        )
        started = time.monotonic()
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=WAIT)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130, err
    assert time.monotonic() - started < 5  # not the 10 s on_finish has
    assert "on_finish (sh -c " in err
    assert "was stopped: interrupted by SIGINT\n" in err
    pid = int((marks / "finish.pid").read_text())
    eventually("on_finish to be killed", lambda: not psutil.pid_exists(pid))


@pytest.mark.skipif(SETSID is None, reason="needs util-linux's setsid for a controlling terminal")
def test_a_run_ended_while_its_terminal_is_held_with_ctrl_s_gives_the_terminal_its_echo_back(tmp_path: Path) -> None:
    """The live view turns the terminal's echo off. Held with Ctrl-S, the terminal takes no
    output, so a SIGTERM ends the run after 2 s without the view stopping (exit_now): before,
    the echo stayed off, and a shell keeps the settings a command exits with."""
    repo = tmp_path / "repo"
    repo.mkdir()
    argv = [str(SCRIPT), "delegate-multiple", "--repo", str(repo), "shell: sleep 60 @a", "shell: sleep 60 @b"]
    with on_terminal(argv, controlling=True, size=(24, 80)) as terminal:
        shown = b""
        deadline = time.monotonic() + WAIT
        while b"Running agents" not in shown:
            assert select.select([terminal.master], [], [], max(0.0, deadline - time.monotonic()))[0], shown
            shown += os.read(terminal.master, 65536)
        tty = os.open(terminal.tty, os.O_RDWR | os.O_NOCTTY)
        try:
            assert not termios.tcgetattr(tty)[3] & termios.ECHO  # the view runs
            os.write(terminal.master, b"\x13")  # Ctrl-S: the terminal takes no more output
            terminal.proc.send_signal(signal.SIGTERM)
            assert terminal.proc.wait(WAIT) == 143
            assert termios.tcgetattr(tty)[3] & termios.ECHO, "the terminal was left without its echo"
        finally:
            os.close(tty)
    assert {**repo_status(repo).to_json(), "skipped": []} == EMPTY_STATUS  # every claim released


@pytest.mark.parametrize("args", [["--help"], ["delegate-multiple", "-h"], ["--show-completion", "bash"]])
def test_help_whose_reader_went_away_exits_0(args: list[str]) -> None:
    """Before: ``project-manager --help | true`` exited 1, with nothing on stderr (Typer's answer
    to a broken pipe), as if something had failed; ``| head -1`` was lucky to read first."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        done = subprocess.run([str(SCRIPT), *args], stdout=write_end, stderr=subprocess.PIPE, timeout=3 * WAIT)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, b"")


@pytest.mark.xfail(
    strict=True,
    reason="a repository nested in another's work tree (a submodule, a vendored clone) has a registry "
    "of its own: a run at the outer one on sub/x.py and one in sub on x.py, one file, run at once",
)
def test_a_file_of_a_nested_repository_is_held_by_one_task_at_a_time(
    tmp_path: Path, marks: Path, runs: list[subprocess.Popen[str]]
) -> None:
    outer = git_repo(tmp_path / "repo", {"project-manager.yaml": AGENTS})
    inner = git_repo(outer / "sub", {"x.py": "", "project-manager.yaml": AGENTS})
    runs.append(start(outer, marks, "delegate-multiple", f"{HOLDS} @sub/x.py"))
    eventually("the first agent to start", lambda: (marks / "a.started").exists())
    runs.append(start(inner, marks, "delegate-multiple", f"second: {CHECKS} @x.py"))
    try:
        # Either it waits, or (the gap) its agent runs at once: no need to wait WAIT to know.
        eventually(
            "the inner run to wait for the file, or its agent to run",
            lambda: repo_status(inner).queued_tasks == 1 or (marks / "b.ran").exists(),
        )
    finally:
        _release(marks)
        for run in runs:
            run.communicate(timeout=3 * WAIT)
    assert not (marks / "overlap").exists()
