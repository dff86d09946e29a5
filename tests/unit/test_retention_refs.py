"""Retention and the hidden refs merged tasks leave (queue_core.taskrefs): a run's refs go with
its history and logs, in one transaction, and never while the run's records stay."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from queue_core import retention
from queue_core.records import RunHistory
from queue_core.registry import Registry
from queue_core.statedir import make_state_dir, state_dir
from queue_core.taskrefs import keep

from ..conftest import git, git_repo
from ._state import finished, names

OLD, MID, NEW = "20261128-080000-1-aaaaaa", "20261128-090000-2-bbbbbb", "20261128-100000-3-cccccc"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"a.txt": "a\n"})


def made(repo: Path) -> Path:
    """``repo``'s state directory, made as a run makes it."""
    make_state_dir(state_dir(repo))
    return state_dir(repo)


def hidden(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname)", "refs/pm/").split())


def merged(repo: Path, state: Path, run: str, ended_at: float, *, files: bool = True) -> None:
    """A finished run (unless not ``files``: its records are gone) whose task t1 was merged."""
    if files:
        finished(state, run, ended_at)
    head = git(repo, "rev-parse", "HEAD").strip()
    keep(repo, run, "t1", base=head, tip=head)


def prune(repo: Path, keep_runs: int, **kw: bool) -> retention.RetentionReport:
    registry = Registry(repo, "pruner", keep_runs=keep_runs)
    try:
        return retention.prune(registry, **kw)
    finally:
        registry.finish_run(None)


def test_a_run_s_refs_go_with_its_history_and_logs_and_the_newest_keep_theirs(repo: Path) -> None:
    """Before: nothing dropped them; each merged task's two refs stayed for good."""
    state = made(repo)
    now = time.time()
    for at, run in enumerate((OLD, MID, NEW)):
        merged(repo, state, run, now - 10 + at)
    report = prune(repo, 2)
    assert names(state / "history") == {f"{MID}.json", f"{NEW}.json"}
    assert hidden(repo) == {f"refs/pm/{run}/t1/{end}" for run in (MID, NEW) for end in ("base", "tip")}
    (gone,) = [r for r in report.removed if r.run == OLD]
    assert {ref for ref, _ in gone.refs} == {f"refs/pm/{OLD}/t1/base", f"refs/pm/{OLD}/t1/tip"}
    assert report.failed == []


def test_a_dry_run_names_the_refs_and_drops_none(repo: Path) -> None:
    state = made(repo)
    merged(repo, state, OLD, time.time() - 10)
    merged(repo, state, NEW, time.time())
    report = prune(repo, 1, dry_run=True)
    (gone,) = [r for r in report.removed if r.run == OLD]
    assert len(gone.refs) == 2
    assert len(hidden(repo)) == 4
    assert len(retention.preview(repo, 1).removed[0].refs) == 2


def test_refs_of_a_run_that_left_no_file_go_only_when_clean_asks(repo: Path) -> None:
    """The run's state was removed another way: at a run's end they stay (when in doubt, keep);
    `clean` drops them."""
    state = made(repo)
    merged(repo, state, OLD, 0, files=False)
    merged(repo, state, NEW, time.time())
    assert prune(repo, 5).removed == []
    assert len(hidden(repo)) == 4
    report = prune(repo, 5, orphan_refs=True)
    assert [(r.run, r.paths, len(r.refs)) for r in report.removed] == [(OLD, (), 2)]
    assert "left no record" in report.removed[0].reason
    assert hidden(repo) == {f"refs/pm/{NEW}/t1/base", f"refs/pm/{NEW}/t1/tip"}


def test_a_ref_that_moved_since_it_was_listed_keeps_them_all_and_says_so(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = made(repo)
    merged(repo, state, OLD, time.time() - 10)
    merged(repo, state, NEW, time.time())
    real = retention.plan

    def moved_meanwhile(*args: object, **kw: object) -> retention.RetentionReport:
        report = real(*args, **kw)  # type: ignore[arg-type]
        git(repo, "commit", "-q", "--allow-empty", "-m", "x")
        git(repo, "update-ref", f"refs/pm/{OLD}/t1/tip", "HEAD")
        return report

    monkeypatch.setattr(retention, "plan", moved_meanwhile)
    report = prune(repo, 1)
    assert names(state / "history") == {f"{NEW}.json"}  # its files went
    assert len(hidden(repo)) == 4  # one transaction: none of the refs went
    assert len(report.failed) == 1
    assert f"refs/pm/{OLD}/" in report.failed[0]


def test_a_repository_that_is_no_git_repository_has_no_refs(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    state = made(plain)
    finished(state, OLD, time.time() - 10)
    finished(state, NEW, time.time())
    report = prune(plain, 1)
    assert [r.run for r in report.removed] == [OLD]
    assert report.skipped == []


def test_the_end_of_a_run_drops_the_refs_of_runs_beyond_keep_runs(repo: Path) -> None:
    state = made(repo)
    merged(repo, state, OLD, time.time() - 10)
    registry = Registry(repo, NEW, keep_runs=1)
    (state / "logs" / NEW).mkdir()
    head = git(repo, "rev-parse", "HEAD").strip()
    keep(repo, NEW, "t1", base=head, tip=head)
    registry.finish_run(RunHistory(NEW, time.time(), time.time()))
    assert names(state / "history") == {f"{NEW}.json"}
    assert hidden(repo) == {f"refs/pm/{NEW}/t1/base", f"refs/pm/{NEW}/t1/tip"}
