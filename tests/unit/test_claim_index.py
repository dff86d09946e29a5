"""ClaimIndex: bookkeeping, the access rule, ``exclude``, and agreement with a brute-force filter."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queue_core.claims import Access, Claim, ClaimIndex, overlaps

R, W = Access.READ, Access.WRITE


def c(raw: str) -> Claim:
    return Claim.parse(raw)


def held_by(index: ClaimIndex, claim: str, access: Access = W, *, exclude: str | None = None) -> list[tuple[str, str]]:
    """(held claim text, owner) of every conflict, sorted."""
    return sorted((x.held.text, x.owner) for x in index.conflicts(c(claim), access, exclude=exclude))


# --- bookkeeping ------------------------------------------------------------------------------


def test_empty_index() -> None:
    index = ClaimIndex()
    assert len(index) == 0
    assert held_by(index, "**") == []
    assert index.first_conflict([(c("**"), W)]) is None


def test_len_counts_entries_including_duplicates() -> None:
    index = ClaimIndex()
    index.add(c("a/b.py"), W, "t1")
    index.add(c("a/"), R, "t2")
    index.add(c("**"), R, "t3")
    index.add(c("a/b.py"), W, "t1")
    assert len(index) == 4
    index.remove(c("a/b.py"), W, "t1")
    assert len(index) == 3
    # One of the two duplicates is still held.
    assert held_by(index, "a/b.py", R) == [("a/b.py", "t1")]
    index.remove(c("a/b.py"), W, "t1")
    index.remove(c("a/"), R, "t2")
    index.remove(c("**"), R, "t3")
    assert len(index) == 0
    assert held_by(index, "**") == []


def test_remove_takes_the_normalised_claim() -> None:
    index = ClaimIndex()
    index.add(c("./a//b/../c.py"), W, "t1")
    index.remove(c("a/c.py"), W, "t1")
    assert len(index) == 0


@pytest.mark.parametrize(
    ("held", "removed"),
    [
        pytest.param(None, (c("a/b"), W, "t1"), id="empty-index"),
        pytest.param((c("a/b"), W, "t1"), (c("x/y"), W, "t1"), id="unknown-prefix"),
        pytest.param((c("a/b/c"), W, "t1"), (c("a/b"), W, "t1"), id="prefix-of-held"),
        pytest.param((c("a/b"), W, "t1"), (c("a/b"), R, "t1"), id="other-access"),
        pytest.param((c("a/b"), W, "t1"), (c("a/b"), W, "t2"), id="other-owner"),
        pytest.param((c("a/*"), W, "t1"), (c("a/b"), W, "t1"), id="other-claim-other-node"),
        pytest.param((c("a/*"), W, "t1"), (c("a/?"), W, "t1"), id="other-claim-same-node"),
        pytest.param((c("*.py"), W, "t1"), (c("**"), W, "t1"), id="root-node"),
    ],
)
def test_remove_missing_entry_raises_key_error(
    held: tuple[Claim, Access, str] | None, removed: tuple[Claim, Access, str]
) -> None:
    index = ClaimIndex()
    if held is not None:
        index.add(*held)
    with pytest.raises(KeyError):
        index.remove(*removed)
    assert len(index) == (0 if held is None else 1)


@pytest.mark.parametrize("raw", ["a/b", "**", "*.py", "a/*"])
def test_remove_twice_raises_key_error(raw: str) -> None:
    index = ClaimIndex()
    index.add(c("a/"), R, "keeps-node-a")
    index.add(c(raw), W, "t1")
    index.remove(c(raw), W, "t1")
    with pytest.raises(KeyError):
        index.remove(c(raw), W, "t1")
    assert len(index) == 1


def test_remove_prunes_empty_branches() -> None:
    index = ClaimIndex()
    index.add(c("a/b/c/d.py"), W, "t1")
    index.remove(c("a/b/c/d.py"), W, "t1")
    # White-box: the trie keeps no empty branch behind (otherwise it grows with every path ever held).
    assert index._root.children == {}
    assert index._root.held == []
    # Re-adding after pruning works, and is found again.
    index.add(c("a/b/c/d.py"), W, "t2")
    assert held_by(index, "a/") == [("a/b/c/d.py", "t2")]
    index.remove(c("a/b/c/d.py"), W, "t2")
    assert index._root.children == {}
    assert len(index) == 0


def test_remove_keeps_siblings_and_ancestors() -> None:
    index = ClaimIndex()
    index.add(c("a/"), R, "dir")
    index.add(c("a/b/c"), W, "deep")
    index.add(c("a/x"), W, "sibling")
    index.remove(c("a/b/c"), W, "deep")
    assert held_by(index, "a/b/c") == [("a/", "dir")]
    assert held_by(index, "a/x") == [("a/", "dir"), ("a/x", "sibling")]
    assert held_by(index, "**") == [("a/", "dir"), ("a/x", "sibling")]
    index.add(c("a/b/c"), W, "again")
    assert held_by(index, "a/b/") == [("a/", "dir"), ("a/b/c", "again")]


# --- the access rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mine", "theirs", "clash"),
    [(R, R, False), (R, W, True), (W, R, True), (W, W, True)],
)
def test_access_rule(mine: Access, theirs: Access, clash: bool) -> None:
    assert mine.conflicts_with(theirs) is clash
    index = ClaimIndex()
    index.add(c("docs/roadmap/"), theirs, "holder")
    found = list(index.conflicts(c("docs/roadmap/x.md"), mine))
    assert [(x.held.text, x.owner) for x in found] == ([("docs/roadmap/", "holder")] if clash else [])


def test_no_conflict_without_overlap() -> None:
    index = ClaimIndex()
    index.add(c("src/**/*.py"), W, "py")
    index.add(c("docs/ROADMAP.md"), W, "file")
    assert held_by(index, "src/**/*.md") == []
    assert held_by(index, "docs/roadmap/") == []
    assert held_by(index, "docs/x.md") == []
    assert held_by(index, "src/a/b.py") == [("src/**/*.py", "py")]
    assert held_by(index, "docs/") == [("docs/ROADMAP.md", "file")]
    assert held_by(index, "docs") == [("docs/ROADMAP.md", "file")]  # a plain path covers what is below it


def test_conflict_fields() -> None:
    index = ClaimIndex()
    index.add(c("docs/"), W, "architect")
    (conflict,) = index.conflicts(c("docs/**/*.md"), R)
    assert conflict.claim == c("docs/**/*.md")
    assert conflict.held == c("docs/")
    assert conflict.owner == "architect"
    assert conflict.claim.covers(conflict.example)
    assert conflict.held.covers(conflict.example)


def test_exclude_skips_one_owner() -> None:
    index = ClaimIndex()
    index.add(c("a/"), W, "me")
    index.add(c("a/b.py"), W, "other")
    index.add(c("**"), R, "me")
    assert held_by(index, "a/b.py") == [("**", "me"), ("a/", "me"), ("a/b.py", "other")]
    assert held_by(index, "a/b.py", exclude="me") == [("a/b.py", "other")]
    assert held_by(index, "a/b.py", exclude="other") == [("**", "me"), ("a/", "me")]
    assert held_by(index, "a/b.py", exclude="nobody") == held_by(index, "a/b.py")


@pytest.mark.parametrize(
    ("held", "wanted"),
    [
        ("**", "a/b/c"),  # held at the root, wanted deep
        ("a/b/c", "**"),  # held deep, wanted at the root
        ("a/b/c", "*/b/"),  # wanted has no literal prefix
        ("*/b/c", "a/b/c"),  # held has no literal prefix
        ("a/*", "a/b"),  # held at an ancestor of the wanted prefix
        ("a/b/c/d", "a/**/d"),  # held below the wanted prefix
        ("a/\\*/c", "a/*/c"),  # escaped literal in the held prefix
    ],
)
def test_conflict_found_wherever_the_claims_sit_in_the_trie(held: str, wanted: str) -> None:
    index = ClaimIndex()
    index.add(c(held), W, "holder")
    assert held_by(index, wanted) == [(c(held).text, "holder")]


def test_first_conflict() -> None:
    index = ClaimIndex()
    index.add(c("a/"), W, "t1")
    index.add(c("b/"), R, "t2")
    assert index.first_conflict([(c("x"), W), (c("b/y"), R)]) is None
    found = index.first_conflict([(c("x"), W), (c("b/y"), W), (c("a/z"), W)])
    assert found is not None
    assert (found.held.text, found.owner) == ("b/", "t2")
    assert index.first_conflict([(c("a/z"), R)], exclude="t1") is None


# --- agreement with brute force -----------------------------------------------------------------

OWNERS = ("o1", "o2", "o3")
_segment = st.sampled_from(["a", "b", "ab", "a", "b", "a*", "*", "?", "[ab]", "[!a]b", "**", "\\*"])
raw_claims = st.builds(
    lambda segments, slash: "/".join(segments) + ("/" if slash else ""),
    st.lists(_segment, min_size=1, max_size=4),
    st.booleans(),
)
entries = st.tuples(raw_claims.map(Claim.parse), st.sampled_from([R, W]), st.sampled_from(OWNERS))


def brute_force(
    held: list[tuple[Claim, Access, str]], claim: Claim, access: Access, exclude: str | None
) -> Counter[tuple[str, str]]:
    return Counter(
        (h.text, owner)
        for h, held_access, owner in held
        if owner != exclude and W in (access, held_access) and overlaps(claim, h)
    )


@settings(max_examples=300, deadline=None)
@given(
    held=st.lists(entries, max_size=12),
    removed=st.lists(st.booleans(), max_size=12),
    wanted=st.lists(st.tuples(raw_claims.map(Claim.parse), st.sampled_from([R, W])), min_size=1, max_size=4),
    exclude=st.sampled_from([None, *OWNERS]),
)
def test_conflicts_equal_brute_force(
    held: list[tuple[Claim, Access, str]],
    removed: list[bool],
    wanted: list[tuple[Claim, Access]],
    exclude: str | None,
) -> None:
    index = ClaimIndex()
    for entry in held:
        index.add(*entry)
    kept = []
    for i, entry in enumerate(held):
        if i < len(removed) and removed[i]:
            index.remove(*entry)
        else:
            kept.append(entry)
    assert len(index) == len(kept)
    for claim, access in wanted:
        found = list(index.conflicts(claim, access, exclude=exclude))
        assert Counter((x.held.text, x.owner) for x in found) == brute_force(kept, claim, access, exclude)
        for conflict in found:
            assert conflict.claim == claim
            assert claim.covers(conflict.example)
            assert conflict.held.covers(conflict.example)
        first = index.first_conflict([(claim, access)], exclude=exclude)
        assert (first is None) == (not found)
    for entry in kept:
        index.remove(*entry)
    assert len(index) == 0
    assert index._root.children == {}
