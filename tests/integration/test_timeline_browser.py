"""The timeline page in a real browser: headless Chromium loads the file the command wrote and
takes a screenshot, in which each lane, bar and wait must be there, in its colour, where the
layout put it. Skipped where no Chromium is installed (CI has only Python and pip)."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from queue_core.statedir import locate
from queue_core.timeline import run_from_events
from queue_core.timeline_layout import BAR_H, LEFT, TRACK_H, Picture, layout

from ..conftest import WAIT, git_repo
from ..unit._journals import STANDARD, jsonl, task_line, write_journal
from ._png import Image, read_png

SCRIPT = Path(sys.executable).with_name("project-manager")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell")
BROWSER = next((found for name in BROWSERS if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on this machine (apt-get install chromium): the page is checked in a browser"
)

#: The page's colours (see queue_core.timeline_svg), as a screenshot holds them.
FILLS = {
    "succeeded": (0x00, 0x9E, 0x73),
    "failed": (0xD5, 0x5E, 0x00),
    "retried": (0xF0, 0xB4, 0x8A),
    "wait": (0x8C, 0x95, 0x9F),
}
HATCH = {(0x56, 0xB4, 0xE9), (0x00, 0x72, 0xB2)}  # unfinished: stripes of two blues
LANES = {(0xF6, 0xF8, 0xFA), (0xEE, 0xF1, 0xF4)}
WHITE = (0xFF, 0xFF, 0xFF)


def screenshot(page: Path, picture: Picture, tmp_path: Path) -> Image:
    """``page`` as headless Chromium draws it in a window the picture's size, one pixel a unit."""
    png = tmp_path / "shot.png"
    size = f"{math.ceil(picture.width)},{math.ceil(picture.height)}"
    assert BROWSER is not None
    argv = [
        BROWSER,
        "--headless",
        "--no-sandbox",  # as root (CI, containers) Chromium refuses to start without it
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={size}",
        f"--screenshot={png}",
        page.as_uri(),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT * 6, cwd=tmp_path)
    assert png.exists(), f"Chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    return read_png(png)


def near(colour: tuple[int, int, int], expected: set[tuple[int, int, int]]) -> bool:
    return any(all(abs(a - b) <= 6 for a, b in zip(colour, want, strict=True)) for want in expected)


def share_of(image: Image, x: float, y: float, w: float, h: float, expected: set[tuple[int, int, int]]) -> float:
    """The share of a grid of points inside the box (borders and labels aside) in ``expected``'s colours."""
    xs = [round(x + w * f) for f in (0.2, 0.35, 0.5, 0.65, 0.8)]
    ys = [round(y + h * f) for f in (0.25, 0.5, 0.75)] if h > 4 else [math.floor(y + h / 2)]
    points = [(px, py) for px in xs for py in ys]
    return sum(near(image.pixel(px, py), expected) for px, py in points) / len(points)


def draw(tmp_path: Path, events: list[dict[str, object]]) -> tuple[Picture, Image]:
    """The page of ``events`` written by the command, and its screenshot; its layout to compare."""
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    write_journal(locate(repo), "r1", jsonl(events))
    page = tmp_path / "run.html"
    done = subprocess.run(
        [str(SCRIPT), "timeline", "r1", "-o", str(page), "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    picture = layout(run_from_events(events))  # as the command laid it out
    return picture, screenshot(page, picture, tmp_path)


#: The standard run, but cut off at 10 s while "late" ran: its attempt unfinished, hatched.
CUT_OFF = [*STANDARD[:-1], task_line("started", 9, "late", "ops")]


def test_every_lane_bar_and_wait_is_drawn_in_its_colour(tmp_path: Path) -> None:
    picture, image = draw(tmp_path, CUT_OFF)
    assert (image.width, image.height) == (math.ceil(picture.width), math.ceil(picture.height))
    for lane in picture.lanes:  # the lane's band, between its label and the plot
        assert near(image.pixel(round(LEFT - 4), round(lane.y + 2)), LANES), lane.label
    for bar in picture.bars:
        expected = HATCH if bar.ending == "unfinished" else {FILLS[bar.ending]}
        share = share_of(image, bar.x, bar.y, bar.w, BAR_H, expected)
        assert share >= 0.6, f"{bar.task} attempt {bar.attempt}: {share:.0%} of its points in its colour"
    assert [bar.task for bar in picture.bars if bar.ending == "unfinished"] == ["late"]
    for wait in picture.waits:
        share = share_of(image, wait.x, wait.y, wait.w, TRACK_H - 1, {FILLS["wait"]})
        assert share >= 0.6, f"the wait of {wait.task}"
    drawn = sum(1 for row in range(image.height) for col in range(0, image.width, 4) if image.pixel(col, row) != WHITE)
    assert drawn > 2000  # not a blank page
