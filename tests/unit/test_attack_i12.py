"""Issue 12 attacked: hostile input to the parts it added or changed, one regression test each.

The same attacks through the installed command, with real processes and signals, are in
tests/integration/test_attack_i12.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from queue_core.claims import Claim, overlaps
from queue_core.realpaths import ClaimResolver

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
