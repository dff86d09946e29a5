"""``project-manager timeline [RUN] [-o FILE]`` through the installed command: the latest run or a
named one, to a file or stdout, written whole; bad input refused with nothing written; a run
without a journal, or with a damaged one; and a real run's journal, once runs write one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from queue_core.statedir import locate

from ..conftest import WAIT, git_repo
from ..unit._journals import KILLED, STANDARD, jsonl, write_journal

SCRIPT = Path(sys.executable).with_name("project-manager")
SVG = "{http://www.w3.org/2000/svg}"
OLDER, NEWER = "20270115-080000-11-aaaaaa", "20270115-090000-12-bbbbbb"


def timeline(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "timeline", *args], cwd=cwd, capture_output=True, text=True, timeout=WAIT)


def xml(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - the command's own output


def bar_tasks(page: str) -> list[str]:
    root = xml(page)
    return [e.get("data-task") or "" for e in root.iter(SVG + "rect") if e.get("data-attempt")]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with two runs' journals: OLDER (the standard run) and NEWER (a killed one)."""
    path = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    state = locate(path)
    write_journal(state, OLDER, jsonl(STANDARD))
    write_journal(state, NEWER, jsonl(KILLED) + '{"event": "started", "ti')  # killed mid-line
    return path


def test_the_latest_run_is_drawn_to_a_file_named_for_it_here(repo: Path, tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    done = timeline(here, "--repo", str(repo))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote timeline-{NEWER}.html: run {NEWER}, wall 7.0 s, task time 9.0 s, 1.3x parallel\n"
    written = here / f"timeline-{NEWER}.html"
    page = written.read_text(encoding="utf-8")
    assert sorted(bar_tasks(page)) == ["done", "long"]
    assert "its last line was half-written" in page
    assert stat.S_IMODE(written.stat().st_mode) & 0o044  # a file for the user to share, not state
    assert sorted(os.listdir(here)) == [written.name]  # no temporary file left


def test_a_named_run_to_a_named_file_or_to_stdout(repo: Path) -> None:
    done = timeline(repo, OLDER, "-o", "out.html")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote out.html: run {OLDER}, wall 10 s")
    page = (repo / "out.html").read_text(encoding="utf-8")
    assert sorted(bar_tasks(page)) == sorted(["spec", "notes", "api", "broken", "tests", "flaky", "flaky"])
    shown = timeline(repo, OLDER, "--output", "-")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == page
    assert shown.stderr == ""


def test_a_file_there_is_replaced_whole_and_a_symlink_written_through(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "old.html"
    target.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    done = timeline(repo, OLDER, "-o", str(link))
    assert done.returncode == 0, done.stderr
    assert link.is_symlink()
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(os.listdir(tmp_path)) == ["link.html", "old.html", "repo"]


def test_without_a_journal_it_says_so(tmp_path: Path, repo: Path) -> None:
    bare = git_repo(tmp_path / "bare", {"a.txt": "a\n"})
    done = timeline(bare)
    assert done.returncode == 1
    assert "no run is recorded in" in done.stderr
    done = timeline(repo, "20990101-000000-1-ffffff")
    assert done.returncode == 1
    assert "no run '20990101-000000-1-ffffff' in" in done.stderr


def test_a_journal_with_nothing_readable_or_not_a_file_is_refused(repo: Path) -> None:
    state = locate(repo)
    write_journal(state, "garbage", "not json\n[1]\n")
    done = timeline(repo, "garbage")
    assert done.returncode == 1
    assert done.stderr.endswith("events.jsonl: holds no readable event\n")
    folder = state / "logs" / "fifo"
    folder.mkdir()
    os.mkfifo(folder / "events.jsonl")  # read, it would wait for a writer for good
    done = timeline(repo, "fifo")
    assert done.returncode == 1
    assert "cannot be read" in done.stderr


def test_a_real_runs_journal_is_drawn(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        "tasks:\n"
        "  - {id: first, agent: shell, files: [a.txt], description: 'echo x > a.txt'}\n"
        "  - {id: second, agent: shell, files: [b.txt], depends_on: [first], description: 'exit 3'}\n"
        "  - {id: third, agent: shell, files: [c.txt], depends_on: [second], description: 'true'}\n"
    )
    ran = subprocess.run(
        [str(SCRIPT), "delegate-multiple", "--file", str(batch), "--repo", str(repo), "--json"],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
    )
    assert ran.returncode == 1, ran.stderr
    journals = list((locate(repo) / "logs").glob("*/events.jsonl"))
    if not journals:
        pytest.skip("runs write no journal on this branch yet (issue 15's event stream writes it)")
    done = timeline(repo, "-o", "-")
    assert done.returncode == 0, done.stderr
    root = xml(done.stdout)
    bars = {e.get("data-task"): e.get("class", "").split()[1] for e in root.iter(SVG + "rect") if e.get("data-attempt")}
    assert bars == {"first": "succeeded", "second": "failed"}
    markers = [e.get("data-task") for e in root.iter(SVG + "rect") if "marker" in e.get("class", "").split()]
    assert "third" in markers
    arrows = {(p.get("data-source"), p.get("data-target")) for p in root.iter(SVG + "path") if p.get("data-source")}
    assert arrows == {("first", "second"), ("second", "third")}
