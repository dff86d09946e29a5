"""Path claims: parse and normalise them, test two of them for overlap, index held ones.

A claim is a repo-relative POSIX path pattern: a file (``docs/ROADMAP.md``), a directory
(``docs/roadmap/``) or a glob (``src/**/*.py``) with ``*``, ``?``, ``[...]`` and ``**`` as in
.gitignore, except that every pattern is anchored at the repository root (write ``**/x`` for
"x at any depth").

What a claim covers: a plain path (no wildcard: ``docs/ROADMAP.md``, ``newpkg``), a claim
ending in ``/`` (``docs/roadmap/``) and one ending in ``**`` cover the paths they match and
everything below them, so a forgotten slash is never unsafe, even on a directory that does not
exist yet; a plain path keeps its text as written. Any other glob covers exactly the paths it
matches (``src/**/*.py`` covers Python files, not the contents of a directory that happens to
be named ``x.py``).

Two claims overlap exactly when some path is covered by both. :func:`overlap_witness` decides
that exactly, globs included, by walking the product of the two patterns' automata (first over
path segments, then over characters inside a segment), and returns the shortest common path,
so a missed conflict is impossible and a reported one comes with its evidence.
"""

from __future__ import annotations

import enum
import functools
import re
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import InvalidClaimError

__all__ = ["Access", "Claim", "ClaimIndex", "Conflict", "normalise_path", "overlap_witness", "overlaps"]


class Access(enum.Enum):
    """How a task uses a claim: writes are exclusive, reads are shared with other reads."""

    READ = "read"
    WRITE = "write"

    def conflicts_with(self, other: Access) -> bool:
        return self is Access.WRITE or other is Access.WRITE


# --- segment patterns -----------------------------------------------------------------------

#: A set of characters: (negated, inclusive code-point ranges). ``?`` is (True, ()).
CharSet = tuple[bool, tuple[tuple[int, int], ...]]


class _Star:
    """``*`` inside a segment: any run of characters, ``/`` excepted."""

    def __repr__(self) -> str:
        return "STAR"


class _Globstar:
    """``**`` as a whole segment: zero or more segments."""

    def __repr__(self) -> str:
        return "GLOBSTAR"


STAR = _Star()
GLOBSTAR = _Globstar()
Token = CharSet | _Star
_ANY_SEGMENT: tuple[Token, ...] = (STAR,)
_SLASH = ord("/")
_MAX_CHAR = 0x10FFFF


@dataclass(frozen=True)
class SegmentPattern:
    """One path segment with wildcards, as tokens plus an equivalent compiled regex."""

    text: str
    tokens: tuple[Token, ...]
    regex: re.Pattern[str] = field(compare=False, repr=False)

    def example(self) -> str | None:
        """A non-empty segment this pattern matches, or None if it matches none."""
        return _segment_witness(self.tokens, _ANY_SEGMENT)


Segment = str | SegmentPattern | _Globstar


def _charset_contains(charset: CharSet, code: int) -> bool:
    negated, ranges = charset
    inside = any(lo <= code <= hi for lo, hi in ranges)
    return inside != negated


State = TypeVar("State", bound=Hashable)

# Characters tried first, so witnesses read well; the range ends below keep the search exact.
_PREFERRED = tuple(ord(c) for c in "xa0_-")
_DOT = ord(".")


def _common_char(a: CharSet | _Star, b: CharSet | _Star, *, dot: bool) -> str | None:
    """A character in both sets: ``.`` if ``dot``, else any but ``.``, ``/`` and NUL; or None.

    The least qualifying character is a range's low end or just past a range's (or an
    excluded character's) high end, so testing those candidates is exact.
    """
    sets = [s for s in (a, b) if not isinstance(s, _Star)]
    if dot:
        return "." if all(_charset_contains(s, _DOT) for s in sets) else None
    candidates = [*_PREFERRED, 1, _SLASH + 1, _DOT + 1]
    for _, ranges in sets:
        for lo, hi in ranges:
            candidates.extend((lo, hi + 1))
    for code in candidates:
        if 0 < code <= _MAX_CHAR and code not in (_SLASH, _DOT) and all(_charset_contains(s, code) for s in sets):
            return chr(code)
    return None


def _shortest_path(
    start: State, is_goal: Callable[[State], bool], moves: Callable[[State], Iterable[tuple[State, str]]]
) -> list[str] | None:
    """Labels along a shortest path from ``start`` to a goal; "" labels cost 0, others 1.

    A 0-1 breadth-first search: a state reached again by a cheaper route is relaxed.
    """
    cost: dict[State, int] = {start: 0}
    parent: dict[State, tuple[State, str]] = {}
    todo: deque[State] = deque([start])
    while todo:
        state = todo.popleft()
        if is_goal(state):
            labels: list[str] = []
            while state in parent:
                state, label = parent[state]
                labels.append(label)
            return labels[::-1]
        for nxt, label in moves(state):
            step = 0 if label == "" else 1
            if cost[state] + step < cost.get(nxt, 1 << 30):
                cost[nxt] = cost[state] + step
                parent[nxt] = (state, label)
                (todo.appendleft if step == 0 else todo.append)(nxt)
    return None


# What a segment read so far looks like: "." and ".." are never real file names.
_EMPTY, _ONE_DOT, _TWO_DOTS, _NAME = range(4)
_AFTER_DOT = {_EMPTY: _ONE_DOT, _ONE_DOT: _TWO_DOTS, _TWO_DOTS: _NAME, _NAME: _NAME}


@functools.lru_cache(maxsize=4096)
def _segment_witness(a: tuple[Token, ...], b: tuple[Token, ...]) -> str | None:
    """The shortest file name (not "", "." or "..") both token lists match, or None."""

    def moves(state: tuple[int, int, int]) -> Iterator[tuple[tuple[int, int, int], str]]:
        i, j, seen = state
        if i < len(a) and isinstance(a[i], _Star):
            yield (i + 1, j, seen), ""
        if j < len(b) and isinstance(b[j], _Star):
            yield (i, j + 1, seen), ""
        if i < len(a) and j < len(b):
            ta, tb = a[i], b[j]
            ni = i if isinstance(ta, _Star) else i + 1
            nj = j if isinstance(tb, _Star) else j + 1
            for dot, after in ((False, _NAME), (True, _AFTER_DOT[seen])):
                # Two stars eating a character together only matters while the name is no name yet.
                if (ni, nj, after) == (i, j, seen):
                    continue
                char = _common_char(ta, tb, dot=dot)
                if char is not None:
                    yield (ni, nj, after), char

    path = _shortest_path((0, 0, _EMPTY), lambda s: s == (len(a), len(b), _NAME), moves)
    return None if path is None else "".join(path)


def _segment_meet(a: Segment, b: Segment) -> str | None:
    """A segment matched by both (a globstar counts as "any segment"), or None."""
    if isinstance(a, _Globstar):
        a, b = b, a
    if isinstance(a, _Globstar):
        return "x"
    if isinstance(a, str):
        if isinstance(b, str):
            return a if a == b else None
        if isinstance(b, _Globstar) or b.regex.fullmatch(a):
            return a
        return None
    if isinstance(b, str):
        return b if a.regex.fullmatch(b) else None
    return _segment_witness(a.tokens, _ANY_SEGMENT if isinstance(b, _Globstar) else b.tokens)


# --- parsing --------------------------------------------------------------------------------


def _parse_segment(text: str, claim: str) -> str | SegmentPattern:
    """A literal segment as its text; a segment with wildcards as a SegmentPattern."""
    tokens: list[Token] = []
    regex: list[str] = []
    literal: list[str] = []
    has_wildcard = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 == len(text):
                raise InvalidClaimError(claim, "a trailing backslash escapes nothing")
            char = text[i + 1]
            tokens.append((False, ((ord(char), ord(char)),)))
            regex.append(re.escape(char))
            literal.append(char)
            i += 2
        elif char == "*":
            while i < len(text) and text[i] == "*":  # "a**b" is "a*b", as in .gitignore
                i += 1
            tokens.append(STAR)
            regex.append("[^/]*")
            has_wildcard = True
        elif char == "?":
            tokens.append((True, ()))
            regex.append("[^/]")
            has_wildcard = True
            i += 1
        elif char == "[":
            charset, i = _parse_class(text, i, claim)
            tokens.append(charset)
            regex.append(_charset_regex(charset))
            has_wildcard = True
        else:
            tokens.append((False, ((ord(char), ord(char)),)))
            regex.append(re.escape(char))
            literal.append(char)
            i += 1
    if not has_wildcard:
        return "".join(literal)
    return SegmentPattern(text, tuple(tokens), re.compile("".join(regex), re.DOTALL))


def _parse_class(text: str, start: int, claim: str) -> tuple[CharSet, int]:
    """Parse ``[...]`` starting at ``text[start] == '['``; return the set and the next index."""
    i = start + 1
    negated = i < len(text) and text[i] in "!^"
    if negated:
        i += 1
    ranges: list[tuple[int, int]] = []
    first = True
    while True:
        if i >= len(text):
            raise InvalidClaimError(claim, f"unterminated character class {text[start:]!r} (write \\[ for a literal [)")
        char = text[i]
        if char == "]" and not first:
            return (negated, tuple(ranges)), i + 1
        first = False
        if char == "\\" and i + 1 < len(text):
            i += 1
            char = text[i]
        lo = ord(char)
        i += 1
        if i + 1 < len(text) and text[i] == "-" and text[i + 1] != "]":
            hi_char = text[i + 1]
            if hi_char == "\\" and i + 2 < len(text):
                i += 1
                hi_char = text[i + 1]
            hi = ord(hi_char)
            if hi < lo:
                raise InvalidClaimError(claim, f"reversed range {chr(lo)}-{chr(hi)} in a character class")
            ranges.append((lo, hi))
            i += 2
        else:
            ranges.append((lo, lo))


def _charset_regex(charset: CharSet) -> str:
    negated, ranges = charset
    body = "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges
    )
    if negated:
        return f"[^/{body}]"
    return f"(?!/)[{body}]" if body else "(?!)"


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class Claim:
    """A normalised, repo-relative path claim; build one with :meth:`parse`."""

    text: str
    segments: tuple[Segment, ...]
    #: Whether the claim also covers everything below each path it matches: true of a plain
    #: path, and of a claim ending in ``/`` or ``**``.
    subtree: bool
    #: The leading segments that have no wildcard: every covered path starts with them.
    literal_prefix: tuple[str, ...] = field(init=False, repr=False)
    is_literal: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        prefix: list[str] = []
        for segment in self.segments:
            if not isinstance(segment, str):
                break
            prefix.append(segment)
        # Computed once: the claim index walks them on every acquire and release.
        object.__setattr__(self, "literal_prefix", tuple(prefix))
        object.__setattr__(self, "is_literal", len(prefix) == len(self.segments))

    @classmethod
    def parse(cls, raw: str) -> Claim:
        """Normalise ``raw`` (``./a//b/../c`` is ``a/c``) and parse its wildcards.

        Raises InvalidClaimError if it is empty, absolute, leaves the root, or is not a
        valid pattern.
        """
        if not isinstance(raw, str):
            raise InvalidClaimError(repr(raw), "a path must be a string")
        return _parse_claim(raw)

    def covers(self, path: str) -> bool:
        """Whether the repo-relative path ``path`` lies in this claim (itself or below a match)."""
        return self._regex.fullmatch(normalise_path(path) + "/") is not None

    @functools.cached_property
    def _regex(self) -> re.Pattern[str]:
        # Compiled on first use: only covers() needs it, and most claims never meet it.
        return re.compile(_claim_regex(self.segments, self.subtree), re.DOTALL)

    def overlaps(self, other: Claim) -> bool:
        return overlaps(self, other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Claim) and self.text == other.text

    def __lt__(self, other: Claim) -> bool:
        return self.text < other.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __str__(self) -> str:
        return self.text


def _normalised_parts(raw: str) -> list[str]:
    if not isinstance(raw, str):
        raise InvalidClaimError(repr(raw), "a path must be a string")
    text = raw.strip()
    if not text:
        raise InvalidClaimError(raw, "the path is empty")
    if "\0" in text:
        raise InvalidClaimError(raw, "the path contains a NUL character")
    if text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", text):
        raise InvalidClaimError(raw, "absolute paths are not allowed; give a path relative to the repository root")
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidClaimError(raw, "the path leaves the repository root")
            if parts[-1] == "**":
                raise InvalidClaimError(raw, "'..' after '**' has no single meaning")
            parts.pop()
        elif part == "**" and parts and parts[-1] == "**":
            continue  # "**/**" is "**"
        else:
            parts.append(part)
    if not parts:
        raise InvalidClaimError(raw, "the path names the repository root itself; claim '**' to mean everything")
    return parts


@functools.lru_cache(maxsize=1 << 17)
def _parse_claim(raw: str) -> Claim:
    parts = _normalised_parts(raw)
    slash = raw.rstrip().endswith("/")
    segments = tuple(GLOBSTAR if part == "**" else _parse_segment(part, raw) for part in parts)
    for segment in segments:
        if isinstance(segment, SegmentPattern) and segment.example() is None:
            raise InvalidClaimError(raw, f"segment {segment.text!r} can match no file name")
    # A plain path may name a directory, here or yet to be made: it covers what is below it.
    plain = all(isinstance(segment, str) for segment in segments)
    normalised = "/".join(parts) + ("/" if slash and parts[-1] != "**" else "")
    return Claim(normalised, segments, slash or plain or parts[-1] == "**")


def _claim_regex(segments: tuple[Segment, ...], subtree: bool) -> str:
    """A regex that ``path + "/"`` fully matches when the claim covers ``path``.

    Each segment is matched with its trailing slash, so a globstar is simply "zero or more
    segments" and a subtree claim is one more globstar at the end.
    """
    parts = []
    for segment in segments:
        if isinstance(segment, _Globstar):
            parts.append("(?:[^/]+/)*")
        else:
            parts.append((re.escape(segment) if isinstance(segment, str) else segment.regex.pattern) + "/")
    return "".join(parts) + ("(?:[^/]+/)*" if subtree else "")


def normalise_path(raw: str) -> str:
    """``raw`` as a clean repo-relative path (``./a//b/../c`` is ``a/c``).

    Raises InvalidClaimError if it is empty, absolute, or leaves the repository root.
    """
    return "/".join(_normalised_parts(raw))


# --- overlap --------------------------------------------------------------------------------


def overlap_witness(a: Claim, b: Claim) -> str | None:
    """The shortest path covered by both claims, or None if they are disjoint.

    Exact for every pattern: it searches the product of the two claims' segment automata (a
    subtree claim ends in an implicit ``**``), so a path in both is always found.
    """
    if a.is_literal and b.is_literal:  # both cover a subtree: one must start the other
        shorter, longer = sorted((a.segments, b.segments), key=len)
        return "/".join(longer) if longer[: len(shorter)] == shorter else None  # type: ignore[arg-type]
    sa = (*a.segments, GLOBSTAR) if a.subtree else a.segments
    sb = (*b.segments, GLOBSTAR) if b.subtree else b.segments

    def moves(state: tuple[int, int]) -> Iterator[tuple[tuple[int, int], str]]:
        i, j = state
        if i < len(sa) and sa[i] is GLOBSTAR:
            yield (i + 1, j), ""
        if j < len(sb) and sb[j] is GLOBSTAR:
            yield (i, j + 1), ""
        if i < len(sa) and j < len(sb):
            ni = i if sa[i] is GLOBSTAR else i + 1
            nj = j if sb[j] is GLOBSTAR else j + 1
            if (ni, nj) != (i, j):
                segment = _segment_meet(sa[i], sb[j])
                if segment is not None:
                    yield (ni, nj), segment

    path = _shortest_path((0, 0), lambda s: s == (len(sa), len(sb)), moves)
    if path is None:
        return None
    # Empty only when both claims are all globstars, which cover every path.
    return "/".join(segment for segment in path if segment) or "x"


def overlaps(a: Claim, b: Claim) -> bool:
    """Whether some path is covered by both claims (exact, globs included)."""
    return overlap_witness(a, b) is not None


# --- index of held claims -------------------------------------------------------------------


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    held: list[tuple[Claim, Access, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Conflict:
    """``claim`` (wanted for ``access``) overlaps ``held`` (taken by ``owner``); ``example`` lies in both."""

    claim: Claim
    access: Access
    held: Claim
    owner: str
    example: str


class ClaimIndex:
    """Claims held by owners, in a trie keyed by each claim's literal prefix.

    Two claims can only overlap when one literal prefix starts the other, so a lookup visits
    the trie path of the wanted claim and the subtree below it, and tests only those claims
    exactly. Not thread-safe: the owner of the index locks around it.
    """

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, claim: Claim, access: Access, owner: str) -> None:
        node = self._root
        for segment in claim.literal_prefix:
            node = node.children.setdefault(segment, _Node())
        node.held.append((claim, access, owner))
        self._count += 1

    def remove(self, claim: Claim, access: Access, owner: str) -> None:
        """Remove one (claim, access, owner) entry; raises KeyError if it is not held."""
        trail = [self._root]
        for segment in claim.literal_prefix:
            trail.append(trail[-1].children[segment])
        try:
            trail[-1].held.remove((claim, access, owner))
        except ValueError:
            raise KeyError((claim.text, access, owner)) from None
        self._count -= 1
        for depth in range(len(trail) - 1, 0, -1):  # prune empty branches
            node = trail[depth]
            if node.held or node.children:
                break
            del trail[depth - 1].children[claim.literal_prefix[depth - 1]]

    def conflicts(self, claim: Claim, access: Access, *, exclude: str | None = None) -> Iterator[Conflict]:
        """Every held claim that overlaps ``claim`` and clashes with ``access``."""
        node: _Node | None = self._root
        candidates: list[tuple[Claim, Access, str]] = []
        for segment in claim.literal_prefix:
            assert node is not None
            candidates.extend(node.held)
            node = node.children.get(segment)
            if node is None:
                break
        if node is not None:
            stack = [node]
            while stack:
                current = stack.pop()
                candidates.extend(current.held)
                stack.extend(current.children.values())
        for held, held_access, owner in candidates:
            if owner == exclude or not access.conflicts_with(held_access):
                continue
            example = overlap_witness(claim, held)
            if example is not None:
                yield Conflict(claim, access, held, owner, example)

    def conflicts_of(self, claims: Iterable[tuple[Claim, Access]], *, exclude: str | None = None) -> Iterator[Conflict]:
        """Every held claim that clashes with one of ``claims``, in the order of ``claims``."""
        for claim, access in claims:
            yield from self.conflicts(claim, access, exclude=exclude)

    def first_conflict(self, claims: Iterable[tuple[Claim, Access]], *, exclude: str | None = None) -> Conflict | None:
        return next(self.conflicts_of(claims, exclude=exclude), None)


def claim_texts(claims: tuple[Claim, ...]) -> tuple[str, ...]:
    """The claims as written, as the registry and status records keep them."""
    return tuple(c.text for c in claims)
