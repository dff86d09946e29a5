"""``project-manager timeline``'s bad input, in process: refused with exit 2 and a message naming
what was wrong and what was expected, before anything is read or written."""

from __future__ import annotations

from pathlib import Path

import pytest

from queue_core.statedir import locate

from ..conftest import git_repo
from ._journals import STANDARD, jsonl, write_journal
from .test_cli import invoke


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "."], "-o .: is a directory; expected a file name, such as run.html"),
        (["-o", "missing/x.html"], "-o missing/x.html: no such directory missing"),
        (["-o", ""], "-o: expected a file name, or - for stdout"),
        (["../x"], "run id '../x': expected letters, digits"),
        (["-o", ".git/project-manager/logs/x.html"], "is inside the state directory"),
        (["-o", ".git/project-manager/logs/r1/events.jsonl"], "is inside the state directory"),
        (["-o", "/dev/null"], "-o /dev/null: is not a regular file"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    journal = write_journal(locate(repo), "r1", jsonl(STANDARD))
    monkeypatch.chdir(repo)
    before = sorted(p.name for p in repo.iterdir())
    code, out, err = invoke("timeline", *args, "--repo", str(repo))
    assert code == 2
    assert message in err
    assert out == ""
    assert sorted(p.name for p in repo.iterdir()) == before
    assert journal.read_text(encoding="utf-8") == jsonl(STANDARD)  # never replaced by a picture


def test_a_runs_folder_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    elsewhere = write_journal(tmp_path / "elsewhere", "r1", jsonl(STANDARD)).parent
    (locate(repo) / "logs").mkdir(parents=True, exist_ok=True)
    (locate(repo) / "logs" / "r1").symlink_to(elsewhere)
    code, out, err = invoke("timeline", "r1", "-o", str(tmp_path / "x.html"), "--repo", str(repo))
    assert code == 1
    assert "no run 'r1' in" in err  # a symlink is no run's folder: never followed
    assert out == ""
    assert not (tmp_path / "x.html").exists()
    code, _, err = invoke("timeline", "-o", str(tmp_path / "x.html"), "--repo", str(repo))
    assert code == 1
    assert "no run is recorded in" in err  # nor is it taken for the latest
