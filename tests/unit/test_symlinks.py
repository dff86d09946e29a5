"""Claims through symlinks: two names of one file conflict, and no claim leaves the repository."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queue_core import AgentTask, TaskQueue
from queue_core.claims import Claim
from queue_core.errors import ClaimConflictError, InvalidClaimError
from queue_core.realpaths import ClaimResolver
from queue_core.registry import Registry
from queue_core.scheduler import Scheduler

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
        assert queue.get_status().running_files == ["src/x.py"]
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


# --- property: claims judged disjoint share no real path ------------------------------------------

_DIRS = ("a", "b", "a/b", "a/c", "b/a", "c/a/b")
_PLACES = ("", *_DIRS)
_WILDCARDS = ("*", "**", "*.py", "?")
#: (where, name, target): a link to a directory (the root and ancestors included) or to a file.
_link = st.tuples(st.sampled_from(_PLACES), st.sampled_from(("l", "m", "k")), st.sampled_from((*_PLACES, "a/f.py")))


def _build(root: Path, dirs: set[str], links: list[tuple[str, str, str]]) -> None:
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d / "f.py").write_text("")
    (root / "a").mkdir(exist_ok=True)
    (root / "a" / "f.py").write_text("")
    for where, name, target in links:
        link = root / where / name
        if link.parent.is_dir() and not os.path.lexists(link):
            link.symlink_to(os.path.relpath(root / target, link.parent))


def _lexical_paths(root: Path, depth: int = 3) -> list[str]:
    """Every path an agent could name (links followed, to ``depth`` segments), and some not there yet."""
    found: list[str] = []

    def walk(relative: str, level: int) -> None:
        # Paths to be created, below each directory.
        found.extend(f"{relative}/{extra}".lstrip("/") for extra in ("new", "new/x.py"))
        if level == depth:
            return
        for name in sorted(os.listdir(root / relative)):
            path = f"{relative}/{name}".lstrip("/")
            found.append(path)
            if (root / path).is_dir():
                walk(path, level + 1)

    walk("", 0)
    return found


def _real_paths(root: Path, claims: list[Claim], lexical: list[str]) -> dict[str, str]:
    """The real path of each lexical path one of ``claims`` covers, with that lexical path."""
    real_root = os.path.realpath(root)
    return {
        os.path.relpath(os.path.realpath(root / path), real_root): path
        for path in lexical
        if any(claim.covers(path) for claim in claims)
    }


def _claims(data: st.DataObject, root: Path, lexical: list[str]) -> list[str]:
    """One or two claims made from paths in the tree (as an agent names them, or real), some
    segments made wildcards, maybe with a slash."""
    real_root = os.path.realpath(root)
    claims = []
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(lexical))
        if data.draw(st.booleans()):
            path = os.path.relpath(os.path.realpath(root / path), real_root).replace(os.sep, "/")
        segments = path.split("/")
        for _ in range(data.draw(st.integers(0, 2))):
            segments[data.draw(st.integers(0, len(segments) - 1))] = data.draw(st.sampled_from(_WILDCARDS))
        claims.append("/".join(segments) + data.draw(st.sampled_from(("", "/"))))
    return claims


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sets(st.sampled_from(_DIRS), max_size=4), st.lists(_link, min_size=1, max_size=4), st.data())
def test_claims_judged_disjoint_share_no_real_path(
    dirs: set[str], links: list[tuple[str, str, str]], data: st.DataObject
) -> None:
    """Whenever two tasks run together, no real path (there or not yet) is reachable by both.

    Every link here is found by the resolver's walk, so a link inside a claim's literal prefix
    is also a link the claim reaches (its whole target is claimed): the tests above pin the
    prefix's own resolution.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _build(root, dirs, links)
        lexical = _lexical_paths(root)
        first, second = _claims(data, root, lexical), _claims(data, root, lexical)
        sched = Scheduler(2, resolve=ClaimResolver(root).resolve)
        sched.add(AgentTask("one", "first", first, lambda: None, id="one"), 0.0)
        sched.add(AgentTask("two", "second", second, lambda: None, id="two"), 0.0)
        if len(sched.dispatch(0.0)) < 2:
            return  # judged to overlap: conservative is allowed
        mine = _real_paths(root, [Claim.parse(c) for c in first], lexical)
        theirs = _real_paths(root, [Claim.parse(c) for c in second], lexical)
        shared = sorted(mine.keys() & theirs.keys())
        assert not shared, f"{first} and {second} ran together, yet {mine[shared[0]]!r} is {theirs[shared[0]]!r}"
