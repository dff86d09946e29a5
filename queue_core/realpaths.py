"""Claims on real paths: a claim resolved through the repository's symlinks.

With ``link -> src``, ``link/x.py`` and ``src/x.py`` name one file, so they must conflict.
:class:`ClaimResolver` makes every claim speak of real paths before any overlap test:

* a claim's literal prefix (the segments before its first wildcard) is resolved with
  :func:`os.path.realpath`, so a path that does not exist yet resolves through its nearest
  existing parent; a prefix that resolves outside the repository is refused;
* a symlink *below* the prefix that the claim reaches (``src/`` reaching ``src/sub ->
  ../other``) adds its target, with everything below it, as one more claim: conservative
  rather than exact. A link whose target lies outside the repository adds nothing;
* a claim with a character class or an escape (``app/[id]/page.tsx``, ``a\\b``) also claims
  its text read as a plain path (the file ``app/[id]/page.tsx``, as Next.js names it): the
  agent, told the claim as written, may well take it for that file.

The links below are found by one walk of the repository (links not followed, ``.git`` and the
state directory skipped; about 30 ms for 20,000 files), on the first claim resolved, and then
cached: a link created after that is not seen, and neither is one created after a task was
admitted.
"""

from __future__ import annotations

import functools
import os
import re

from .claims import Claim, overlaps
from .errors import InvalidClaimError
from .statedir import LEGACY_DIR

__all__ = ["ClaimResolver", "literal_claim"]

#: Directories the walk for symlinks never enters: git's own, and the queue's state.
SKIPPED_DIRS = frozenset({".git", LEGACY_DIR})

_SPECIAL = re.compile(r"([\\*?\[\]])")


class ClaimResolver:
    """Resolves claims through the symlinks of the repository at ``repo``; no shell, no writes."""

    def __init__(self, repo: str | os.PathLike[str]):
        self.repo = os.path.realpath(repo)

    def resolve(self, claim: Claim) -> tuple[Claim, ...]:
        """``claim`` on real paths, then a claim on the target of each link inside the repository it reaches.

        A claim that names no symlink is returned as it is. Raises InvalidClaimError, naming the
        claim and its target, if the claim's literal prefix resolves outside the repository.
        """
        readings = [claim] if _LITERAL_DIFFERS.search(claim.text) is None else [claim, _as_plain_path(claim)]
        found = dict.fromkeys(map(self._real, readings))  # an ordered set: the claim itself first
        todo = list(found)
        while todo:
            current = todo.pop()
            for link, target in self._links:
                if target not in found and overlaps(current, link):
                    found[target] = None
                    todo.append(target)
        return tuple(found)

    def _real(self, claim: Claim) -> Claim:
        prefix = claim.literal_prefix
        if not prefix:
            return claim
        target = os.path.realpath(os.path.join(self.repo, *prefix))
        parts = self._inside(target)
        if parts is None:
            raise InvalidClaimError(claim.text, f"it resolves to {target}, outside the repository")
        if parts == prefix:
            return claim
        rest = claim.text.rstrip("/").split("/")[len(prefix) :]
        text = "/".join((*map(_escape, parts), *rest))
        if not text:  # the repository's root itself
            return Claim.parse("**")
        return Claim.parse(text + "/" if claim.text.endswith("/") and rest[-1:] != ["**"] else text)

    def _inside(self, real: str) -> tuple[str, ...] | None:
        """``real``'s segments relative to the repository; None if it lies outside."""
        relative = os.path.relpath(real, self.repo)
        if relative == os.curdir:
            return ()
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            return None
        return tuple(relative.split(os.sep))

    @functools.cached_property
    def _links(self) -> tuple[tuple[Claim, Claim], ...]:
        """(a symlink and everything below it, its target and everything below it), for targets inside."""
        links = []
        todo = [self.repo]
        while todo:
            try:
                listing = os.scandir(todo.pop())
            except OSError:  # unreadable or gone: its links stay unseen, as a later one would
                continue
            with listing as entries:
                for entry in entries:  # is_symlink() and is_dir() below cost no system call on most systems
                    if entry.is_symlink():
                        target = self._inside(os.path.realpath(entry.path))
                        if target is not None:
                            link = tuple(os.path.relpath(entry.path, self.repo).split(os.sep))
                            links.append((_directory(link), _directory(target)))
                    elif entry.is_dir() and entry.name not in SKIPPED_DIRS:
                        todo.append(entry.path)
        return tuple(links)


#: What a claim reads differently as a pattern and as a plain path: ``*`` and ``?`` match
#: themselves, so a file named ``*.py`` is covered by the pattern ``*.py`` already.
_LITERAL_DIFFERS = re.compile(r"[\\\[]")


def _as_plain_path(claim: Claim) -> Claim:
    """``claim``'s text read as a path with no wildcard: ``a[1].md`` as the file of that name."""
    return Claim.parse(_escape(claim.text))


def _escape(name: str) -> str:
    """A file name as a claim segment that matches exactly it."""
    return _SPECIAL.sub(r"\\\1", name)


def literal_claim(parts: tuple[str, ...]) -> Claim:
    """The claim of exactly the path ``parts`` (its names taken literally) and what is below it."""
    return _directory(parts)


def _directory(parts: tuple[str, ...]) -> Claim:
    """The path ``parts`` and everything below it (the whole repository for ``()``)."""
    return Claim.parse("/".join(map(_escape, parts)) or "**")
