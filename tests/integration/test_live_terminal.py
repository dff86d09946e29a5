"""The live view of the installed command on a pseudo-terminal of 80 x 24 and of 200 x 50, read
through a terminal emulator (tests/integration/_screen.py): what a person sees, not the bytes.

Before: at 80 x 24 descriptions collapsed to one letter and the Resources panel was cut off; and
after Ctrl-C a torn panel border was left behind, every try: the terminal echoed "^C" under the
live display, which moved the cursor, and the next redraw started a line lower.
"""

from __future__ import annotations

import os
import re
import select
import sys
import termios
import time
from pathlib import Path

import pytest

from ..conftest import WAIT
from ._screen import Screen, panel_problems
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


def _read_until(terminal: Terminal, screen: Screen, done: object) -> None:
    """Feed ``screen`` what the program writes until ``done(screen)`` holds; fails after WAIT."""
    deadline = time.monotonic() + WAIT
    while not done(screen):  # type: ignore[operator]
        left = deadline - time.monotonic()
        assert left > 0, "\n".join(screen.transcript)
        if select.select([terminal.master], [], [], left)[0]:
            screen.feed(os.read(terminal.master, 65536))


def _read_to_the_end(terminal: Terminal, screen: Screen) -> None:
    """Feed ``screen`` everything until the program exits and its terminal closes."""
    while select.select([terminal.master], [], [], WAIT)[0]:
        try:
            chunk = os.read(terminal.master, 65536)
        except OSError:  # the program is gone
            return
        if not chunk:
            return
        screen.feed(chunk)
    pytest.fail("the terminal went silent:\n" + "\n".join(screen.transcript))


def _line(lines: list[str], *words: str) -> str:
    (line,) = [line for line in lines if all(word in line for word in words)]
    return line


@pytest.mark.parametrize(("rows", "columns"), [(24, 80), (50, 200)])
def test_the_live_view_fits_the_terminal_and_ctrl_c_leaves_it_whole(tmp_path: Path, rows: int, columns: int) -> None:
    batch = tmp_path / "batch.yaml"
    batch.write_text(BATCH)
    repo = tmp_path / "repo"
    repo.mkdir()
    argv = [str(SCRIPT), "delegate-multiple", "--file", str(batch), "--repo", str(repo)]
    screen = Screen(rows, columns)
    with on_terminal(argv, controlling=True, size=(rows, columns)) as terminal:
        _read_until(terminal, screen, _running_view)
        shown = screen.lines
        os.write(terminal.master, b"\x03")  # Ctrl-C, typed: the terminal sends SIGINT, and may echo it
        _read_to_the_end(terminal, screen)
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
        assert re.search(rf"│ {task_id} +{agent} +{words}.* \d+s +{files}", _line(shown, f" {task_id} ", words)), shown
    assert "code_developer busy (api)" in _line(shown, " api-docs ")
    page = _line(shown, " page ")
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
