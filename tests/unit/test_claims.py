"""Claims: normalisation, errors, overlap (table-driven), and overlap checked against an oracle.

The property tests compare ``queue_core.claims`` with an independent oracle written here: a
claim string translated to a regex over ``"/" + path`` (each segment is ``/`` plus the
segment's pattern; ``**`` and a subtree claim's tail are ``(?:/[^/]+)*``). The oracle shares
no code with the module.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from queue_core.claims import Claim, normalise_path, overlap_witness, overlaps
from queue_core.errors import InvalidClaimError, InvalidTaskError

# --- normalisation ----------------------------------------------------------------------------

NORMALISED = [
    # raw, normalised text, covers a subtree (a plain path does, keeping its text as written)
    ("a/b.py", "a/b.py", True),
    ("./a//b/../c.py", "a/c.py", True),
    ("a/./b", "a/b", True),
    ("a//b", "a/b", True),
    ("./a", "a", True),
    ("a/b/../c/d", "a/c/d", True),
    ("a/b/c/../../d", "a/d", True),
    ("a/b/..", "a", True),
    ("a/*/../b", "a/b", True),
    ("  a/b  ", "a/b", True),
    ("docs/roadmap/", "docs/roadmap/", True),
    ("docs//roadmap//", "docs/roadmap/", True),
    ("./docs/./roadmap/./", "docs/roadmap/", True),
    ("a/b/../", "a/", True),
    ("a/b/../c/", "a/c/", True),
    ("**", "**", True),
    ("**/", "**", True),
    ("a/**", "a/**", True),
    ("a/**/", "a/**", True),
    ("**/**/x", "**/x", False),
    ("a/**/**/b", "a/**/b", False),
    ("a/**/**", "a/**", True),
    ("src/**/*.py", "src/**/*.py", False),
    ("src/*.py", "src/*.py", False),
    ("[abc].md", "[abc].md", False),
]


@pytest.mark.parametrize(("raw", "text", "subtree"), NORMALISED)
def test_parse_normalises(raw: str, text: str, subtree: bool) -> None:
    claim = Claim.parse(raw)
    assert claim.text == text
    assert str(claim) == text
    assert claim.subtree is subtree
    # Normalising is idempotent and the claim is equal (and hashes equal) to its normal form.
    again = Claim.parse(claim.text)
    assert again.text == text
    assert again == claim
    assert hash(again) == hash(claim)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("a/b.py", "a/b.py"),
        ("./a//b/../c.py", "a/c.py"),
        ("a/./b/", "a/b"),
        ("a//b//", "a/b"),
        ("  ./x  ", "x"),
    ],
)
def test_normalise_path(raw: str, path: str) -> None:
    assert normalise_path(raw) == path


ERRORS = [
    # raw, a phrase the reason must contain
    ("/x", "absolute"),
    ("/", "absolute"),
    ("//x", "absolute"),
    ("C:\\x", "absolute"),
    ("C:/x", "absolute"),
    ("c:\\Users\\x", "absolute"),
    ("~/x", "absolute"),
    ("~", "absolute"),
    ("../x", "leaves the repository root"),
    ("..", "leaves the repository root"),
    ("./../x", "leaves the repository root"),
    ("a/../../x", "leaves the repository root"),
    ("a/b/../../../x", "leaves the repository root"),
    ("", "empty"),
    ("   ", "empty"),
    (".", "repository root itself"),
    ("./", "repository root itself"),
    ("./.", "repository root itself"),
    ("a/..", "repository root itself"),
    ("a/b/../..", "repository root itself"),
    ("[ab", "unterminated character class"),
    ("a/[", "unterminated character class"),
    ("x[a-", "unterminated character class"),
    ("[]", "unterminated character class"),
    ("[!]", "unterminated character class"),
    ("**/..", "'..' after '**'"),
    ("a/**/../b", "'..' after '**'"),
    ("a\\", "trailing backslash"),
    ("[z-a]", "reversed range"),
    ("a\0b", "NUL"),
    ("[!\x01-\U0010ffff]", "can match no file name"),
]


@pytest.mark.parametrize(("raw", "phrase"), ERRORS)
def test_invalid_claims_raise(raw: str, phrase: str) -> None:
    with pytest.raises(InvalidClaimError) as caught:
        Claim.parse(raw)
    err = caught.value
    assert isinstance(err, ValueError)
    assert isinstance(err, InvalidTaskError)
    assert err.claim == raw
    assert phrase in err.reason
    assert err.reason in str(err)
    assert repr(raw) in str(err)


@pytest.mark.parametrize("raw", ["/x", "C:\\x", "~/x", "../x", "a/../../x", "", ".", "a/.."])
def test_normalise_path_rejects_what_parse_rejects(raw: str) -> None:
    with pytest.raises(InvalidClaimError):
        normalise_path(raw)


@pytest.mark.parametrize("raw", [None, 5, b"a/b", ("a",)])
def test_non_string_claim_raises(raw: object) -> None:
    with pytest.raises(InvalidClaimError, match="must be a string"):
        Claim.parse(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", [["a/b"], {"a"}, {"a": 1}])
def test_unhashable_non_string_claim_raises_invalid_claim(raw: object) -> None:
    """An unhashable non-string gets the same InvalidClaimError as any other non-string."""
    with pytest.raises(InvalidClaimError, match="must be a string"):
        Claim.parse(raw)  # type: ignore[arg-type]


# --- coverage ---------------------------------------------------------------------------------

COVERS = [
    # claim, path, covered
    ("docs/ROADMAP.md", "docs/ROADMAP.md", True),
    ("docs/ROADMAP.md", "docs/ROADMAP.md/x", True),  # a plain path covers what is below it
    ("docs/ROADMAP.md", "docs", False),
    ("docs/roadmap/", "docs/roadmap", True),
    ("docs/roadmap/", "docs/roadmap/x/y.md", True),
    ("docs/roadmap/", "docs/roadmapx", False),
    ("docs/roadmap/", "docs", False),
    ("a/", "./a//b/../c", True),
    ("a", "a/b.py", True),
    ("a", "ab", False),
    ("src/*.py", "src/x.py", True),
    ("src/*.py", "src/.py", True),
    ("src/*.py", "src/a/x.py", False),
    ("src/*.py", "src/x.py/y", False),
    ("src/*.py/", "src/x.py/y", True),
    ("src/**/*.py", "src/x.py", True),
    ("src/**/*.py", "src/a/b/x.py", True),
    ("src/**/*.py", "src/a/b/x.md", False),
    ("src/**/*.py", "src/a.py/x", False),
    ("src/**/*.py", "lib/x.py", False),
    ("**", "anything/at/all", True),
    ("a/**", "a", True),
    ("a/**", "a/b/c", True),
    ("a/**", "ab", False),
    ("**/x.md", "x.md", True),
    ("**/x.md", "a/b/x.md", True),
    ("**/x.md", "a/x.md/y", False),
    ("test_?.py", "test_1.py", True),
    ("test_?.py", "test_12.py", False),
    ("[abc].md", "b.md", True),
    ("[abc].md", "d.md", False),
    ("[a-c].md", "b.md", True),
    ("[!a-c].md", "b.md", False),
    ("[!a-c].md", "d.md", True),
    ("[^a-c].md", "d.md", True),
    ("[]a].md", "].md", True),
    ("[a-].md", "-.md", True),
    ("a**b", "axyzb", True),
    ("a**b", "ab", True),
    ("a**b", "a/b", False),
    ("a**b", "a/x/b", False),
    ("***", "a", True),
    ("***", "a/b", False),
    ("\\*", "*", True),
    ("\\*", "a", False),
    ("a\\?b", "a?b", True),
    ("a\\?b", "axb", False),
    ("\\[ab\\]", "[ab]", True),
    ("\\[ab\\]", "a", False),
    ("[\\]]", "]", True),
]


@pytest.mark.parametrize(("claim", "path", "covered"), COVERS)
def test_covers(claim: str, path: str, covered: bool) -> None:
    assert Claim.parse(claim).covers(path) is covered


# --- overlap, table-driven ----------------------------------------------------------------------

OVERLAPS = [
    # files and directories
    ("a/b.py", "a/b.py", True),
    ("a/b.py", "a/c.py", False),
    ("a", "a/b.py", True),  # a forgotten slash, even on a directory not made yet
    ("a/b.py", "a", True),
    ("a", "ab", False),
    ("a/", "a/b.py", True),
    ("a/", "a", True),
    ("a/", "ab", False),
    ("a/", "ab/", False),
    ("a/", "a/", True),
    ("a/b/", "a/", True),
    ("a/b/", "a/c/", False),
    ("docs/ROADMAP.md", "docs/roadmap/", False),
    ("docs/ROADMAP.md", "docs/", True),
    # one-segment globs
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/a/b.py", False),
    ("src/*.py", "src/a.md", False),
    ("src/*", "src/a/", True),
    ("src/*", "src/a/b", False),
    ("src/*/", "src/a/b", True),
    ("*.py", "a.py", True),
    ("*.py", "a/b.py", False),
    ("a*", "*b", True),
    ("a*", "b*", False),
    ("*a*", "*b*", True),
    ("a*b", "b*a", False),
    ("?", "a", True),
    ("?", "ab", False),
    ("??", "ab", True),
    ("??", "a*b", True),
    ("??", "a?*b", False),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("*/a", "a/*", True),
    ("*/a/*", "a/*/b", True),
    ("a**b", "a*b", True),
    ("a**b", "a/b", False),
    ("a**b", "a/**/b", False),
    ("***", "a/b", False),
    ("***", "a", True),
    # ** at the start, in the middle, at the end
    ("**", "x", True),
    ("**", "a/b/c", True),
    ("**", "**", True),
    ("**", "*.py", True),
    ("**/x.md", "a/b/x.md", True),
    ("**/x.md", "x.md", True),
    ("**/x.md", "a/y.md", True),  # a/y.md/x.md
    ("**/x.md", "a/*.txt", False),
    ("**/a", "**/b", False),
    ("**/a/**", "**/b/**", True),
    ("**/a", "b/**", True),
    ("**/a", "b/*", True),
    ("**/a", "b/?b", False),
    ("src/**/*.py", "src/**/*.md", False),
    ("src/**/*.py", "src/a/b/c.py", True),
    ("src/**/*.py", "src/c.py", True),
    ("src/**/*.py", "lib/c.py", False),
    ("src/**/*.py", "src/*.py", True),
    ("src/**/*.py", "src/a/", True),
    ("src/**/*.py", "src/a", True),  # src/a/x.py
    ("src/**/*.py", "src/?.md", False),
    ("src/**/*.py", "src/x.py/", True),
    ("src/**/*.py", "lib/**", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/c", True),  # a/x/y/c/b
    ("a/**/b", "a/x/y/?c", False),
    ("a/**/b", "a/**/c", False),
    ("a/**/b/", "a/**/c", True),
    ("a/**/b", "*/**/c/**", True),
    ("a/**", "a", True),
    ("a/**", "ab", False),
    ("a/**", "*/b", True),
    ("a/**", "b/**", False),
    ("a/**/b/**/c", "**/c/**/b/**", True),
    ("a/**/b", "a/**/b/c", False),
    # character classes
    ("[abc].md", "b.md", True),
    ("[abc].md", "d.md", False),
    ("[a-c].md", "b.md", True),
    ("[a-c].md", "[x-z].md", False),
    ("[a-c].md", "[c-e].md", True),
    ("[a-c]", "?", True),
    ("[ab][ab]", "[!a][!b]", True),
    ("[]a]", "]", True),
    ("[a-]", "-", True),
    ("[\\]]", "]", True),
    ("x[a-c]y", "x?y/", True),
    ("x[a-c]y", "x*z", False),
    # negated classes
    ("[!a].md", "a.md", False),
    ("[!a].md", "b.md", True),
    ("[^a].md", "a.md", False),
    ("[!a]", "[a]", False),
    ("[!a]", "[ab]", True),
    ("[!ab]", "[ab]", False),
    ("[!ab]", "[abc]", True),
    ("[!a-y]", "[x-z]", True),
    ("[!a-z]", "[a-z]", False),
    ("[!]]", "]", False),
    ("[!a]*", "a*", False),
    ("[!a]*", "*a", True),
    ("[!a]", "?", True),
    ("[!a][!b]", "ab", False),
    ("[!.]", "?", True),
    # escapes
    ("\\*", "*", True),
    ("\\*", "a", False),
    ("\\*", "\\*", True),
    ("a\\?b", "axb", False),
    ("a\\?b", "a?b", True),
    ("\\[ab\\]", "a", False),
    ("\\[ab\\]", "[[]ab]", True),
    ("\\**", "*x", True),
    ("\\**", "x*", False),
    ("\\*\\*/a", "**/a", True),
    ("\\*\\*/a", "b/a", False),
    ("a\\b", "ab", True),
]


@pytest.mark.parametrize(("a", "b", "expected"), OVERLAPS)
def test_overlap_table(a: str, b: str, expected: bool) -> None:
    ca, cb = Claim.parse(a), Claim.parse(b)
    for first, second in ((ca, cb), (cb, ca)):
        assert overlaps(first, second) is expected
        assert first.overlaps(second) is expected
        witness = overlap_witness(first, second)
        if expected:
            assert witness is not None
            assert first.covers(witness), (first.text, second.text, witness)
            assert second.covers(witness), (first.text, second.text, witness)
        else:
            assert witness is None


# --- independent oracle -------------------------------------------------------------------------

_ANY_SEGMENTS = "(?:/[^/]+)*"


def _oracle_class(seg: str, start: int) -> tuple[str, int]:
    """Translate the class ``seg[start:]`` (``seg[start] == '['``) to a regex; return it and the next index."""
    i = start + 1
    negated = i < len(seg) and seg[i] in "!^"
    if negated:
        i += 1
    members: list[str] = []
    first = True
    while first or seg[i] != "]":  # an IndexError here means an unterminated class
        first = False
        lo = seg[i]
        if lo == "\\":
            i += 1
            lo = seg[i]
        i += 1
        if i + 1 < len(seg) and seg[i] == "-" and seg[i + 1] != "]":
            hi = seg[i + 1]
            i += 2
            if hi == "\\":
                hi = seg[i]
                i += 1
            members.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            members.append(re.escape(lo))
    body = "".join(members)
    regex = f"[^/{body}]" if negated else f"(?:(?!/)[{body}])"
    return regex, i + 1


def _oracle_segment(seg: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(seg):
        char = seg[i]
        if char == "\\":
            out.append(re.escape(seg[i + 1]))
            i += 2
        elif char == "*":
            while i < len(seg) and seg[i] == "*":
                i += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            regex, i = _oracle_class(seg, i)
            out.append(regex)
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


def oracle(claim: str) -> re.Pattern[str]:
    """A regex that ``"/" + path`` fully matches exactly when ``claim`` covers ``path``.

    Only for clean claims (no ``.``, ``..``, leading ``./``), as the generator below makes. A
    plain path (no unescaped wildcard) covers what is below it, like one ending in ``/``.
    """
    subtree = claim.endswith("/") or not re.search(r"[*?\[]", re.sub(r"\\.", "", claim))
    segments = [s for s in claim.split("/") if s]
    parts = [_ANY_SEGMENTS if s == "**" else "/(?=[^/])" + _oracle_segment(s) for s in segments]
    if subtree or segments[-1] == "**":
        parts.append(_ANY_SEGMENTS)
    return re.compile("".join(parts), re.DOTALL)


def oracle_covers(claim: str, path: str) -> bool:
    return oracle(claim).fullmatch("/" + path) is not None


@pytest.mark.parametrize(
    ("claim", "path", "covered"), [(c, p, cov) for c, p, cov in COVERS if re.fullmatch(r"[^./][^/]*(/[^./][^/]*)*", p)]
)
def test_oracle_agrees_with_cover_table(claim: str, path: str, covered: bool) -> None:
    """The oracle itself is checked against the hand-written table (clean paths only)."""
    assert oracle_covers(claim, path) is covered


# --- property tests against the oracle -----------------------------------------------------------

#: Concrete paths: 1-2 segments over every string of length 1-3 of {a, b, c}, and 3 segments
#: over those of length 1-2 (39 + 39**2 + 12**3 = 3288 paths).
_SEGMENTS_3 = ["".join(t) for n in (1, 2, 3) for t in itertools.product("abc", repeat=n)]
_SEGMENTS_2 = [s for s in _SEGMENTS_3 if len(s) <= 2]
UNIVERSE: tuple[str, ...] = tuple(
    [*_SEGMENTS_3]
    + ["/".join(p) for p in itertools.product(_SEGMENTS_3, repeat=2)]
    + ["/".join(p) for p in itertools.product(_SEGMENTS_2, repeat=3)]
)
_SLASHED_UNIVERSE = tuple("/" + p for p in UNIVERSE)

#: Literals appear twice so that enough pairs are disjoint (about 3 in 10) to test soundness on.
_TOKENS = ("a", "b", "a", "b", "*", "?", "[ab]", "[!a]")
_token_segment = st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=3).map("".join)
_segment = st.one_of(st.just("**"), _token_segment, _token_segment)
claims = st.builds(
    lambda segments, slash: "/".join(segments) + ("/" if slash else ""),
    st.lists(_segment, min_size=1, max_size=3),
    st.booleans(),
)


def _universe_matches(pattern: re.Pattern[str]) -> set[str]:
    return {p[1:] for p in _SLASHED_UNIVERSE if pattern.fullmatch(p)}


@settings(max_examples=600, deadline=None)
@given(claims, claims)
@example("a/", "**/aa")
@example("b*", "[!a]")
@example("**/a", "*/**")
def test_no_missed_conflict(a: str, b: str) -> None:
    """(a) Soundness: if some concrete path is covered by both claims, they overlap."""
    common = _universe_matches(oracle(a)) & _universe_matches(oracle(b))
    if common:
        example = min(common, key=lambda p: (p.count("/"), p))
        assert overlaps(Claim.parse(a), Claim.parse(b)), f"{a!r} and {b!r} both cover {example!r}"


@settings(max_examples=600, deadline=None)
@given(claims, claims)
def test_reported_conflicts_are_real(a: str, b: str) -> None:
    """(b) Precision: a witness is a well-formed path that both claims really cover."""
    ra, rb = oracle(a), oracle(b)
    for first, second in ((a, b), (b, a)):
        witness = overlap_witness(Claim.parse(first), Claim.parse(second))
        if witness is None:
            continue
        assert witness, (first, second)
        assert all(witness.split("/")), f"empty segment in witness {witness!r}"
        assert ra.fullmatch("/" + witness), f"{a!r} does not cover witness {witness!r} of {first!r} vs {second!r}"
        assert rb.fullmatch("/" + witness), f"{b!r} does not cover witness {witness!r} of {first!r} vs {second!r}"


@settings(max_examples=300, deadline=None)
@given(claims, claims)
@example("**/aa", "aa/**")  # pinned: random search finds a counterexample only ~1% of the time
def test_witness_has_fewest_segments(a: str, b: str) -> None:
    """overlap_witness documents "the shortest path covered by both claims": no universe path
    covered by both may have fewer segments than the witness."""
    witness = overlap_witness(Claim.parse(a), Claim.parse(b))
    common = _universe_matches(oracle(a)) & _universe_matches(oracle(b))
    if witness is not None and common:
        shortest = min(common, key=lambda p: (p.count("/"), p))
        assert witness.count("/") <= shortest.count("/"), f"{a!r} vs {b!r}: witness {witness!r}, but {shortest!r}"


@pytest.mark.parametrize(
    ("a", "b", "shortest"),
    [
        ("a/", "a/b/c", "a/b/c"),
        ("**/x", "a/**", "a/x"),
        ("**/aa", "aa/**", "aa"),
        ("**/*", "a/ab/**", "a/ab"),
    ],
)
def test_witness_is_shortest_example(a: str, b: str, shortest: str) -> None:
    for first, second in ((a, b), (b, a)):
        assert overlap_witness(Claim.parse(first), Claim.parse(second)) == shortest


@settings(max_examples=300, deadline=None)
@given(claims, claims)
def test_overlap_is_symmetric(a: str, b: str) -> None:
    """(c) Symmetry, and the bool agrees with the witness."""
    ca, cb = Claim.parse(a), Claim.parse(b)
    assert overlaps(ca, cb) is overlaps(cb, ca)
    assert overlaps(ca, cb) is (overlap_witness(ca, cb) is not None)
    assert overlaps(ca, ca)


@settings(max_examples=200, deadline=None)
@given(claims)
def test_covers_agrees_with_oracle(raw: str) -> None:
    """(d) Claim.covers matches the oracle on every universe path."""
    claim = Claim.parse(raw)
    expected = _universe_matches(oracle(raw))
    actual = {p for p in UNIVERSE if claim.covers(p)}
    assert actual == expected, (
        f"{raw!r}: covers wrongly {sorted(actual - expected)[:5]}, misses {sorted(expected - actual)[:5]}"
    )


@settings(max_examples=200, deadline=None)
@given(claims, st.sampled_from(["a", "b", "c"]))
def test_noise_does_not_change_the_claim(raw: str, detour: str) -> None:
    """``./``, doubled slashes and ``x/..`` detours normalise away."""
    noisy = f"./{detour}/../" + raw.replace("/", "//./")
    assert Claim.parse(noisy) == Claim.parse(raw)
    assert Claim.parse(noisy).subtree is Claim.parse(raw).subtree


def test_universe_size() -> None:
    assert len(UNIVERSE) == len(set(UNIVERSE)) == 39 + 39**2 + 12**3
