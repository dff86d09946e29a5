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
