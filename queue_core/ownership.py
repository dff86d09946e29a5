"""FileOwnership: which paths each agent type owns (the design note's US-038 registry)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .claims import Claim
from .errors import InvalidArgumentError

__all__ = ["EVERYTHING", "FileOwnership"]

#: What an agent with no registered globs owns: the whole repository, so an unknown agent is
#: serialised against everyone rather than trusted to touch nothing.
EVERYTHING = "**"


class FileOwnership:
    """Agent type -> the globs it owns, in declaration order.

    A task that lists no files claims its agent's owned paths. An agent that is not
    registered owns everything (conservative); register it with an empty list to say it
    writes nothing (a read-only agent).
    """

    def __init__(self, owned: Mapping[str, Iterable[str]] | None = None):
        self._owned: dict[str, tuple[Claim, ...]] = {}
        for agent_type, globs in (owned or {}).items():
            self.set_owned_paths(agent_type, globs)

    def set_owned_paths(self, agent_type: str, globs: Iterable[str]) -> None:
        """Register ``agent_type``'s globs; raises InvalidClaimError for a bad one."""
        if isinstance(globs, str):
            raise InvalidArgumentError(f"owned paths of {agent_type!r} must be a list of globs, not one string")
        self._owned[agent_type] = tuple(Claim.parse(g) for g in globs)

    def get_owned_paths(self, agent_type: str) -> list[str]:
        """The normalised globs ``agent_type`` owns (``['**']`` if it is not registered)."""
        return [c.text for c in self.owned_claims(agent_type)]

    def owned_claims(self, agent_type: str) -> tuple[Claim, ...]:
        if agent_type in self._owned:
            return self._owned[agent_type]
        return (Claim.parse(EVERYTHING),)

    def owner_of(self, path: str) -> str | None:
        """The first registered agent whose globs cover ``path``, or None."""
        for agent_type, claims in self._owned.items():
            if any(c.covers(path) for c in claims):
                return agent_type
        return None

    def agents(self) -> list[str]:
        return list(self._owned)

    def __repr__(self) -> str:
        body = ", ".join(f"{a!r}: {[c.text for c in cs]}" for a, cs in self._owned.items())
        return f"FileOwnership({{{body}}})"
