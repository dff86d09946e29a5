"""The live view of the installed command on a pseudo-terminal of 80 x 24 and of 200 x 50, read
through a terminal emulator (tests/integration/_screen.py): what a person sees, not the bytes.

Before: at 80 x 24 descriptions collapsed to one letter and the Resources panel was cut off; and
after Ctrl-C a torn panel border was left behind, every try: the terminal echoed "^C" under the
live display, which moved the cursor, and the next redraw started a line lower.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import WAIT, eventually
from ._screen import Screen, one_line, panel_problems
from ._terminal import SETSID, Terminal, on_terminal

SCRIPT = Path(sys.executable).with_name("project-manager")

pytestmark = pytest.mark.skipif(SETSID is None, reason="needs util-linux's setsid for a controlling terminal")

#: Agents that run until stopped, with descriptions and claims as a real batch has them: two run,
#: two wait (an agent busy, a claim held).
BATCH = """\
agents:
  code_developer: {command: [sleep, "60"]}
  architect: {command: [sleep, "60"]}
  writer: {command: [sleep, "60"]}
tasks:
  - id: api
    agent: code_developer
    description: implement the REST API of the coffee maker daemon, with its tests
    files: [coffee_maker/api.py, tests/test_api.py]
  - id: spec
    agent: architect
    description: write SPEC-046 for the parser of the configuration language
    files: [docs/architecture/]
  - id: api-docs
    agent: code_developer
    description: document the REST API
    files: [docs/api.md]
  - id: page
    agent: writer
    description: describe the parser on the architecture pages
    files: [docs/architecture/parser.md]
"""


def _running_view(screen: Screen) -> bool:
    """Whether the screen shows the frame with both running tasks and the queue, whole."""
    lines = screen.lines
    text = "\n".join(lines)
    return (
        "Running agents (2/4)" in text
        and "Queue (2)" in text
        and any(" page " in line for line in lines)
        and "agents   CPU" in text
        and panel_problems(lines, screen.columns) == []
    )


def _read_until(terminal: Terminal, screen: Screen, done: Callable[[Screen], bool]) -> None:
    """Feed ``screen`` what the program writes until ``done(screen)`` holds; fails after WAIT."""
    deadline = time.monotonic() + WAIT
    while not done(screen):
        left = deadline - time.monotonic()
        assert left > 0, "\n".join(screen.transcript)
        if select.select([terminal.master], [], [], left)[0]:
            screen.feed(os.read(terminal.master, 65536))


def _batch_run(tmp_path: Path) -> tuple[Path, list[str]]:
    """A new repository, and the command that runs BATCH in it."""
    batch = tmp_path / "batch.yaml"
    batch.write_text(BATCH)
    repo = tmp_path / "repo"
    repo.mkdir()
    return repo, [str(SCRIPT), "delegate-multiple", "--file", str(batch), "--repo", str(repo)]


@pytest.mark.parametrize(("rows", "columns"), [(24, 80), (50, 200)])
def test_the_live_view_fits_the_terminal_and_ctrl_c_leaves_it_whole(tmp_path: Path, rows: int, columns: int) -> None:
    _, argv = _batch_run(tmp_path)
    screen = Screen(rows, columns)
    with on_terminal(argv, controlling=True, size=(rows, columns)) as terminal:
        _read_until(terminal, screen, _running_view)
        shown = screen.lines
        os.write(terminal.master, b"\x03")  # Ctrl-C, typed: the terminal sends SIGINT, and may echo it
        screen.feed(terminal.read_to_end())
        assert terminal.proc.wait(WAIT) == 130
        tty = os.open(terminal.tty, os.O_RDWR | os.O_NOCTTY)
        try:
            assert termios.tcgetattr(tty)[3] & termios.ECHO, "the terminal was left without its echo"
        finally:
            os.close(tty)

    # What the run showed, laid out for the terminal: each running task's id, agent, the first
    # words of its description, its elapsed time and its files; the waiting ones and why.
    assert len(shown) == rows
    assert all(len(line) <= columns for line in shown)
    for task_id, agent, words, files in (
        ("api", "code_developer", "implement the REST", "coffee_maker/api"),
        ("spec", "architect", "write SPEC-046", "docs/archite"),
    ):
        row = one_line(shown, f" {task_id} ", words)
        assert re.search(rf"│ {task_id} +{agent} +{words}.* \d+s +{files}", row), shown
    assert "code_developer busy (api)" in one_line(shown, " api-docs ")
    page = one_line(shown, " page ")
    assert "docs/architecture/parser.md overlaps docs/archite" in page
    assert columns == 80 or "docs/architecture/ held by architect (spec)" in page
    assert re.search(r"machine  CPU \d+% of \d+ cores?, memory", "\n".join(shown))
    assert re.search(r"agents   CPU \d+% of \d+ cores?, memory", "\n".join(shown))

    # Ctrl-C: the last frame stays whole, and the interruption starts a line of its own below it.
    transcript = screen.transcript
    [at] = [i for i, line in enumerate(transcript) if "interrupted by SIGINT" in line]
    assert transcript[at].startswith("interrupted by SIGINT (Ctrl-C): stopping every agent"), transcript[at]
    assert transcript[at - 1].startswith("╰"), "\n".join(transcript)
    assert "Resources" in transcript[at - 4]
    assert panel_problems(transcript, columns) == [], "\n".join(transcript)
    # No piece of an earlier frame left behind: one progress line, the last frame's.
    assert len([line for line in transcript if re.match(r"\d+/\d+ done, ", line)]) == 1, "\n".join(transcript)


@pytest.fixture
def busy_repo(tmp_path: Path) -> Iterator[Path]:
    """A repository where a run (without a terminal) has BATCH going: two tasks run, two wait."""
    repo, argv = _batch_run(tmp_path)
    run = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(
            "the run's record to show both running tasks", lambda: len(_status_json(repo)["running_agents"]) == 2
        )
        yield repo
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(WAIT)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()


def _status_json(repo: Path) -> dict[str, Any]:
    argv = [str(SCRIPT), "status", "--json", "--repo", str(repo)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _shown(argv: list[str], rows: int, columns: int) -> tuple[int, Screen]:
    """What ``argv`` shows on a terminal of ``rows`` x ``columns`` until it exits, and its exit code."""
    screen = Screen(rows, columns)
    with on_terminal(argv, size=(rows, columns)) as terminal:
        screen.feed(terminal.read_to_end())
        return terminal.proc.wait(WAIT), screen


def test_status_on_a_terminal_prints_the_panels_laid_out_for_it_and_no_live_prints_text(busy_repo: Path) -> None:
    code, screen = _shown([str(SCRIPT), "status", "--repo", str(busy_repo)], 24, 80)
    assert code == 0
    lines = screen.transcript
    assert panel_problems(lines, 80) == [], "\n".join(lines)
    assert re.search(r"│ api +code_developer +implement the", one_line(lines, " api ", "implement"))
    assert "code_developer busy (api)" in one_line(lines, " api-docs ")
    head = " ".join(line.strip() for line in lines)  # the run's line, wrapped as the width asks
    assert re.search(r"\): 0/4 done, 2 running, 0 failed · elapsed \d+s", head)

    code, screen = _shown([str(SCRIPT), "status", "--no-live", "--repo", str(busy_repo)], 24, 80)
    assert code == 0
    text = "\n".join(screen.transcript)
    assert "╭" not in text
    assert "  running  api [code_developer]" in text
    assert "  waiting  api-docs [code_developer]: code_developer busy (api)" in text


@pytest.mark.parametrize(("rows", "columns"), [(24, 80), (50, 200)])
def test_status_watch_fits_the_terminal_until_ctrl_c(busy_repo: Path, rows: int, columns: int) -> None:
    screen = Screen(rows, columns)
    argv = [str(SCRIPT), "status", "--watch", "--repo", str(busy_repo)]
    with on_terminal(argv, controlling=True, size=(rows, columns)) as terminal:
        _read_until(
            terminal,
            screen,
            lambda s: "Running agents (2)" in "\n".join(s.lines) and not panel_problems(s.lines, columns),
        )
        shown = screen.lines
        os.write(terminal.master, b"\x03")
        screen.feed(terminal.read_to_end())
        assert terminal.proc.wait(WAIT) == 130
    running = [line for line in shown if " api " in line and "implement" in line]
    assert len(running) == 1
    run_id = _status_json(busy_repo)["runs"][0]["run"]
    assert (run_id in running[0]) == (columns > 80)  # at 80 columns the run id goes first
    assert panel_problems(screen.transcript, columns) == [], "\n".join(screen.transcript)


def test_status_watch_no_live_prints_text_blocks_even_on_a_terminal(busy_repo: Path) -> None:
    screen = Screen(24, 80)
    argv = [str(SCRIPT), "status", "--watch", "--no-live", "--repo", str(busy_repo)]
    with on_terminal(argv, controlling=True, size=(24, 80)) as terminal:
        _read_until(terminal, screen, lambda s: "\n".join(s.transcript).count("agent(s) running") >= 2)
        os.write(terminal.master, b"\x03")
        screen.feed(terminal.read_to_end())
        assert terminal.proc.wait(WAIT) == 130
    text = "\n".join(screen.transcript)
    assert "╭" not in text
    assert "\n\n2 agent(s) running" in text  # a blank line between blocks
