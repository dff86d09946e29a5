""".worktreeinclude: the ignored files a new worktree gets copied in (queue_core.worktree_include)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from queue_core.errors import WorktreeError
from queue_core.worktree_include import Included, copy_included
from queue_core.worktrees import GIT, Worktree, base_commit, create, finish

from ..conftest import git, git_repo

GITIGNORE = ".env\n*.local.json\nconfig/local/\nlinks/\nsecret-link\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {
        ".gitignore": GITIGNORE,
        ".worktreeinclude": "# what a worktree needs\n.env\n**/*.local.json\nconfig/\nsecret-link\nlinks/\n",
        "config/app.json": '{"tracked": true}\n',
        "src/main.py": "print('hi')\n",
    }
    return git_repo(tmp_path / "repo", files).resolve()


def _worktree(repo: Path, task: str = "t1") -> Worktree:
    return create(repo, "r1", task, base_commit(repo))


def test_ignored_files_that_the_patterns_name_are_copied_with_their_modes(repo: Path) -> None:
    (repo / ".env").write_text("API_KEY=1\n")
    os.chmod(repo / ".env", 0o600)
    (repo / "config/local").mkdir(parents=True)
    (repo / "config/local/db.yml").write_text("db: local\n")
    (repo / "config/local/run.sh").write_text("#!/bin/sh\n")
    os.chmod(repo / "config/local/run.sh", 0o700)
    (repo / "src/deep").mkdir()
    (repo / "src/deep/settings.local.json").write_text("{}\n")
    os.utime(repo / ".env", ns=(1_000_000_000, 1_000_000_000))
    wt = _worktree(repo)

    included = copy_included(repo, wt.path, git=GIT)

    assert included.copied == (".env", "config/local/db.yml", "config/local/run.sh", "src/deep/settings.local.json")
    assert (wt.path / ".env").read_text() == "API_KEY=1\n"
    assert stat.S_IMODE(os.stat(wt.path / ".env").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(wt.path / "config/local/run.sh").st_mode) == 0o700
    assert os.stat(wt.path / ".env").st_mtime_ns == 1_000_000_000
    assert (wt.path / "src/deep/settings.local.json").read_text() == "{}\n"
    # Ignored in the worktree too: the task's commit never holds them.
    (wt.path / "src/main.py").write_text("print('changed')\n")
    assert finish(wt, "t").paths == ("src/main.py",)


def test_tracked_and_unignored_files_are_not_copied(repo: Path) -> None:
    (repo / "config/app.json").write_text('{"user": "uncommitted edit"}\n')  # tracked: comes from the base
    (repo / "config/notes.txt").write_text("untracked, not ignored\n")  # matches config/, not ignored
    wt = _worktree(repo)

    included = copy_included(repo, wt.path, git=GIT)

    assert included.copied == ()
    assert included.skipped == (("config/notes.txt", "git does not ignore it"),)
    assert (wt.path / "config/app.json").read_text() == '{"tracked": true}\n'
    assert not (wt.path / "config/notes.txt").exists()


def test_without_a_worktreeinclude_nothing_is_copied(repo: Path) -> None:
    git(repo, "rm", "-q", ".worktreeinclude")
    (repo / ".env").write_text("API_KEY=1\n")
    wt = _worktree(repo)
    assert copy_included(repo, wt.path, git=GIT) == Included()
    assert not (wt.path / ".env").exists()


def test_a_worktreeinclude_that_is_a_symlink_is_refused(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "patterns").write_text("*\n")
    os.unlink(repo / ".worktreeinclude")
    os.symlink(tmp_path / "patterns", repo / ".worktreeinclude")
    wt = _worktree(repo)
    with pytest.raises(WorktreeError, match="cannot be read"):
        copy_included(repo, wt.path, git=GIT)


def test_symlinks_are_copied_as_symlinks_only_when_they_stay_inside(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("the user's private file\n")
    os.symlink(outside, repo / "secret-link")  # absolute, outside
    (repo / "links").mkdir()
    os.symlink("../src/main.py", repo / "links/inside")  # relative, inside
    os.symlink("../../outside.txt", repo / "links/escape")  # relative, out of the repository
    os.symlink(repo / "src/main.py", repo / "links/absolute-inside")  # absolute: reaches the user's checkout
    wt = _worktree(repo)

    included = copy_included(repo, wt.path, git=GIT)

    assert included.copied == ("links/inside",)
    assert os.readlink(wt.path / "links/inside") == "../src/main.py"
    reasons = dict(included.skipped)
    assert set(reasons) == {"secret-link", "links/escape", "links/absolute-inside"}
    assert "absolute path" in reasons["secret-link"]
    assert "out of the repository" in reasons["links/escape"]
    assert not os.path.lexists(wt.path / "secret-link")
    assert not os.path.lexists(wt.path / "links/escape")


def test_a_symlinked_folder_in_the_worktree_is_never_written_through(repo: Path, tmp_path: Path) -> None:
    # At the base, "conf" is a symlink out of the repository; the user's checkout has since made
    # it a real folder holding an ignored file the patterns name.
    victim = tmp_path / "victim"
    victim.mkdir()
    git(repo, "rm", "-q", ".worktreeinclude")
    (repo / ".worktreeinclude").write_text("conf/\n")
    (repo / ".gitignore").write_text(GITIGNORE + "conf/.env\n")
    os.symlink(victim, repo / "conf")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "conf is a symlink")
    base = base_commit(repo)
    git(repo, "rm", "-q", "conf")
    (repo / "conf").mkdir()
    (repo / "conf/.env").write_text("SECRET=1\n")
    git(repo, "commit", "-q", "-am", "conf is a folder")
    wt = create(repo, "r1", "t1", base)

    included = copy_included(repo, wt.path, git=GIT)

    assert included.copied == ()
    assert included.skipped == (("conf/.env", "a folder above it in the worktree is not a folder"),)
    assert list(victim.iterdir()) == []


def test_a_file_the_worktree_tracks_is_never_overwritten(repo: Path) -> None:
    (repo / "gen.local.json").write_text("committed at the base\n")
    git(repo, "add", "-f", "gen.local.json")
    git(repo, "commit", "-q", "-m", "tracked at the base")
    base = base_commit(repo)
    git(repo, "rm", "-q", "--cached", "gen.local.json")
    git(repo, "commit", "-q", "-m", "untracked since")
    (repo / "gen.local.json").write_text("the user's local copy\n")
    wt = create(repo, "r1", "t1", base)

    included = copy_included(repo, wt.path, git=GIT)

    assert included.skipped == (("gen.local.json", "the worktree has it already (tracked there): not overwritten"),)
    assert (wt.path / "gen.local.json").read_text() == "committed at the base\n"


def test_a_file_the_worktree_would_not_ignore_is_taken_out_again(repo: Path) -> None:
    # Only the user's uncommitted .gitignore ignores it: copied, the task's commit would hold it.
    (repo / ".gitignore").write_text(GITIGNORE + "token.txt\n")
    (repo / ".worktreeinclude").write_text(".env\ntoken.txt\n")
    (repo / "token.txt").write_text("secret\n")
    (repo / ".env").write_text("API_KEY=1\n")
    wt = _worktree(repo)

    included = copy_included(repo, wt.path, git=GIT)

    assert included.copied == (".env",)
    assert included.skipped == (("token.txt", "the worktree does not ignore it: it would be committed"),)
    assert not (wt.path / "token.txt").exists()
    assert finish(wt, "t").paths == ()


def test_a_fifo_is_not_copied(repo: Path) -> None:
    os.mkfifo(repo / ".env")  # git lists no FIFO; were one listed, the copy would skip it unopened
    wt = _worktree(repo)
    assert copy_included(repo, wt.path, git=GIT) == Included()
    assert not os.path.lexists(wt.path / ".env")


# --- a reused worktree (the pool): the previous task's copies are replaced -------------------


def test_replace_overwrites_the_previous_copy_with_the_checkouts_file(repo: Path) -> None:
    (repo / ".env").write_text("API_KEY=old\n")
    (repo / "app.local.json").write_text("{}\n")
    wt = _worktree(repo)
    copy_included(repo, wt.path, git=GIT)
    (repo / ".env").write_text("API_KEY=new\n")  # the user changed it since
    os.chmod(repo / ".env", 0o640)
    os.utime(repo / ".env", ns=(2_000_000_000, 2_000_000_000))
    (wt.path / "app.local.json").write_text("the last task's edit\n")

    assert copy_included(repo, wt.path, git=GIT).skipped == (
        (".env", "the worktree has it already (tracked there): not overwritten"),
        ("app.local.json", "the worktree has it already (tracked there): not overwritten"),
    )  # without replace: as for a new worktree, never over a file
    included = copy_included(repo, wt.path, git=GIT, replace=True)

    assert included.copied == (".env", "app.local.json")
    assert (wt.path / ".env").read_text() == "API_KEY=new\n"
    assert stat.S_IMODE(os.stat(wt.path / ".env").st_mode) == 0o640
    assert os.stat(wt.path / ".env").st_mtime_ns == 2_000_000_000
    assert (wt.path / "app.local.json").read_text() == "{}\n"


def test_replace_leaves_a_copy_that_is_already_the_same(repo: Path) -> None:
    (repo / ".env").write_text("API_KEY=1\n")
    wt = _worktree(repo)
    copy_included(repo, wt.path, git=GIT)
    before = os.stat(wt.path / ".env").st_ino
    assert copy_included(repo, wt.path, git=GIT, replace=True).copied == (".env",)
    assert os.stat(wt.path / ".env").st_ino == before  # same size, mode and time: not copied again


def test_replace_never_overwrites_a_tracked_file_or_a_folder(repo: Path) -> None:
    (repo / "gen.local.json").write_text("committed at the base\n")
    git(repo, "add", "-f", "gen.local.json")
    git(repo, "commit", "-q", "-m", "tracked at the base")
    base = base_commit(repo)
    git(repo, "rm", "-q", "--cached", "gen.local.json")
    git(repo, "commit", "-q", "-m", "untracked since")
    (repo / "gen.local.json").write_text("the user's local copy\n")
    (repo / ".env").write_text("API_KEY=1\n")
    wt = create(repo, "r1", "t1", base)
    (wt.path / ".env").mkdir()
    (wt.path / ".env/kept.txt").write_text("the last task's folder\n")

    included = copy_included(repo, wt.path, git=GIT, replace=True)

    assert included.copied == ()
    assert dict(included.skipped) == {
        ".env": "a folder in the worktree has its name: not replaced",
        "gen.local.json": "the worktree has it already (tracked there): not overwritten",
    }
    assert (wt.path / "gen.local.json").read_text() == "committed at the base\n"
    assert (wt.path / ".env/kept.txt").read_text() == "the last task's folder\n"


def test_replace_puts_a_symlink_in_place_of_the_last_copy(repo: Path) -> None:
    (repo / "links").mkdir()
    (repo / "links/target.txt").write_text("t\n")
    os.symlink("target.txt", repo / "links/cur")
    wt = _worktree(repo)
    copy_included(repo, wt.path, git=GIT)
    os.unlink(repo / "links/cur")
    os.symlink("other.txt", repo / "links/cur")
    (repo / "links/other.txt").write_text("o\n")

    copy_included(repo, wt.path, git=GIT, replace=True)

    assert os.readlink(wt.path / "links/cur") == "other.txt"
    assert (wt.path / "links/other.txt").read_text() == "o\n"
