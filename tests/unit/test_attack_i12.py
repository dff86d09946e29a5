"""Issue 12 attacked: hostile input to the parts it added or changed, one regression test each.

The same attacks through the installed command, with real processes and signals, are in
tests/integration/test_attack_i12.py.
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from cli.config import ConfigError, claim_base, parse_task_string
from cli.config_files import load_batch
from cli.notify import Notify, run_command
from queue_core.claims import Claim, overlaps
from queue_core.errors import StateError
from queue_core.realpaths import ClaimResolver
from queue_core.registry import Registry

from ..conftest import WAIT, eventually, git_repo

# --- claims that read as a pattern and as a file -------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # Typed from app/posts/[id]/ (its name escaped) and from the root (a character class):
        # one file, as Next.js names its routes. Before: no overlap, two agents on page.tsx.
        ("app/posts/\\[id]/page.tsx", "app/posts/[id]/page.tsx"),
        ("a\\[1\\].md", "a[1].md"),
        ("a\\\\b.md", "a\\b.md"),  # the file a\b.md, and the pattern that reads as ab.md
        ("app/posts/\\[id]/", "app/posts/[id]/*.tsx"),
    ],
)
def test_a_claim_also_holds_its_text_read_as_a_plain_path(tmp_path: Path, one: str, other: str) -> None:
    resolve = ClaimResolver(tmp_path).resolve
    mine, theirs = resolve(Claim.parse(one)), resolve(Claim.parse(other))
    assert any(overlaps(a, b) for a in mine for b in theirs)


def test_a_claim_without_a_class_or_an_escape_holds_only_itself(tmp_path: Path) -> None:
    resolve = ClaimResolver(tmp_path).resolve
    assert [c.text for c in resolve(Claim.parse("src/**/*.py"))] == ["src/**/*.py"]
    assert [c.text for c in resolve(Claim.parse("a[1].md"))] == ["a[1].md", "a\\[1\\].md"]


# --- where claims typed on the command line count from ----------------------------------------------


def test_an_empty_quoted_claim_is_refused_even_from_a_subdirectory() -> None:
    """Before: ``@""`` typed in src/app claimed the whole of src/app/."""
    for base in ("", "src/app"):
        with pytest.raises(ConfigError, match="the path is empty"):
            parse_task_string('x: fix it @""', 1, base=base)


@pytest.mark.parametrize("base", ["", "src/app"])
def test_a_claim_with_a_newline_is_refused(base: str, tmp_path: Path) -> None:
    """Before: ``@"a<newline>b.md"`` was claimed, and an agent reading PM_FILES, one path a line,
    read the paths a and b.md, which no claim covered."""
    with pytest.raises(ConfigError, match="may not contain a control character"):
        parse_task_string('x: fix it @"a\nb.md"', 1, base=base)
    batch = tmp_path / "batch.yaml"
    batch.write_text('tasks: [{id: t, agent: x, description: d, files: ["a\\tb.md"]}]\n')
    with pytest.raises(ConfigError, match="may not contain a control character"):
        load_batch(batch)


def test_a_removed_current_directory_counts_where_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: claims typed in a removed directory counted from the root: ``@parser.py`` in a
    removed src/app claimed the root's parser.py (with --repo; without, a traceback)."""
    repo = tmp_path / "repo"
    (repo / "src" / "app").mkdir(parents=True)
    monkeypatch.chdir(repo / "src" / "app")
    (repo / "src" / "app").rmdir()
    base = claim_base(repo)
    assert base == "src/app"
    assert parse_task_string("x: fix it @parser.py", 1, base=base).files == ("src/app/parser.py",)


def test_claims_are_refused_when_where_they_count_from_is_unknown() -> None:
    with pytest.raises(ConfigError, match="the current directory was removed"):
        parse_task_string("x: fix it @parser.py", 1, base=None)
    assert parse_task_string("x: fix it", 1, base=None).files == ()  # no claim: nothing to count


# --- a repository inside another's work tree -----------------------------------------------------------


def test_a_folder_inside_a_git_work_tree_is_no_repository_of_its_own(tmp_path: Path) -> None:
    """Before: ``TaskQueue(repo="r/src")`` shared r's registry, its claims counted from src: a
    run there on ``app/x.py`` and one at r on ``src/app/x.py`` ran together."""
    root = git_repo(tmp_path / "r", {"src/app/x.py": ""})
    for inside in (root / "src", root / "src" / "app", root / ".git"):
        with pytest.raises(StateError, match=f"inside the git work tree {root}"):
            Registry(inside)
    Registry(root).finish_run(None)  # the top level itself is one


# --- on_finish -----------------------------------------------------------------------------------------


def test_on_finish_output_is_not_kept_in_memory(tmp_path: Path) -> None:
    """Before: all its stderr was read into memory (300 MB written: 600 MB of memory)."""
    floods = (sys.executable, "-c", "import sys; sys.stderr.write('x' * 50_000_000 + '\\nthe end\\n'); sys.exit(5)")
    tracemalloc.start()
    try:
        problem = run_command(floods, tmp_path, {}, WAIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problem == "exited with code 5: the end"
    assert peak < 5_000_000


def test_on_finish_ends_when_it_exits_not_when_a_process_it_left_closes_its_output(tmp_path: Path) -> None:
    """Before: it was waited for until its stderr closed: a process it started in the background
    (a session of its own) kept the run waiting the whole time-out, then "did not end"."""
    leaves = ("sh", "-c", "setsid sleep 60 & echo $! > child; exit 0")
    try:
        assert run_command(leaves, tmp_path, {}, 3 * WAIT) is None
    finally:
        eventually("the background child's pid", lambda: (tmp_path / "child").exists())
        os.kill(int((tmp_path / "child").read_text()), signal.SIGKILL)


def test_a_stop_signal_stops_on_finish_and_is_returned(tmp_path: Path) -> None:
    """Before: a Ctrl-C while on_finish ran was noted and nothing more: the command waited out its 10 s."""

    def interrupted(work: Callable[[], object]) -> int:
        eventually("on_finish to start", lambda: (tmp_path / "pid").exists())
        return signal.SIGINT

    hangs = ("sh", "-c", "echo $$ > pid; exec sleep 60")
    signum = Notify(hangs, tmp_path, timeout_s=3 * WAIT)("r-1", 0, [], interrupted)
    assert signum == signal.SIGINT
    pid = int((tmp_path / "pid").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
