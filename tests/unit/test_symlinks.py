"""Claims through symlinks: two names of one file conflict, and no claim leaves the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from queue_core import AgentTask, Claim, ClaimConflictError, InvalidClaimError, TaskQueue
from queue_core.registry import Registry

from ..conftest import WAIT, Gate, wait_for


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """``src/`` with a file, ``link -> src``, and ``src/sub -> ../other`` (a link below a claim)."""
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "x.py").write_text("")
    (root / "other" / "deep").mkdir(parents=True)
    (root / "link").symlink_to("src")
    (root / "src" / "sub").symlink_to(os.path.join("..", "other"))
    return root


def _held_while(queue: TaskQueue, claim: str) -> Gate:
    gate = Gate()
    queue.submit_task(AgentTask("holder", "holds a claim", [claim], gate, id="holder"))
    wait_for(gate.started, "the holder")
    return gate


@pytest.mark.parametrize(
    ("held", "wanted"),
    [
        ("src/x.py", "link/x.py"),
        ("src/x.py", "link/"),
        ("src/x.py", "link"),
        ("link/x.py", "src/"),
        ("link/new/mod.py", "src/new/mod.py"),  # not there yet: resolved through the nearest parent
        ("link/*.py", "src/x.py"),
        ("src/", "other/deep/y.py"),  # src/sub -> ../other lies below the claim
        ("src/**/*.py", "other/deep/y.py"),
        ("link/**", "other/"),
    ],
)
def test_two_names_of_one_path_conflict(repo: Path, held: str, wanted: str) -> None:
    with TaskQueue(max_parallel=2, repo=repo) as queue:
        gate = _held_while(queue, held)
        with pytest.raises(ClaimConflictError):
            queue.try_submit(AgentTask("other", "the same file by another name", [wanted], lambda: None))
        gate.open()


def test_the_registry_records_real_paths_so_two_processes_compare_them(repo: Path) -> None:
    with TaskQueue(max_parallel=2, repo=repo) as first, TaskQueue(max_parallel=2, repo=repo) as second:
        gate = _held_while(first, "link/x.py")
        with Registry(repo, "reader").session() as session:
            assert [h.writes for h in session.holds.values()] == [("src/x.py",)]
        with pytest.raises(ClaimConflictError):
            second.try_submit(AgentTask("other", "the real path", ["src/x.py"], lambda: None))
        gate.open()


def test_claims_without_links_keep_their_text_and_disjoint_ones_run(repo: Path) -> None:
    with TaskQueue(max_parallel=2, repo=repo) as queue:
        gate = _held_while(queue, "src/x.py")
        queue.try_submit(AgentTask("other", "elsewhere", ["other/z.py"], lambda: None)).result(WAIT)
        assert queue.get_status()["running_files"] == ["src/x.py"]
        gate.open()


@pytest.mark.parametrize("claim", ["linked/evil.py", "linked/", "linked", "linked/**/*.py", "src/../linked/x"])
def test_a_claim_that_resolves_outside_the_repository_is_refused(repo: Path, tmp_path: Path, claim: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo / "linked").symlink_to(elsewhere)
    ran: list[str] = []
    with TaskQueue(max_parallel=2, repo=repo) as queue:
        batch = [
            AgentTask("a", "harmless", ["src/x.py"], lambda: ran.append("a")),
            AgentTask("b", "escapes", [claim], lambda: ran.append("b"), id="escapes"),
        ]
        with pytest.raises(InvalidClaimError) as caught:
            queue.submit_tasks(batch)
        assert caught.value.task_id == "escapes"
        assert caught.value.claim == Claim.parse(claim).text
        assert str(elsewhere.resolve()) in str(caught.value)
        with pytest.raises(InvalidClaimError):
            queue.try_submit(batch[1])
        assert queue.join(WAIT)
    assert ran == []
