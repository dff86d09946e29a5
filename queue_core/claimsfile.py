"""``claims.json``, the registry's one shared file: its format, and what can be read of it without the lock.

The registry (:mod:`queue_core.registry`) reads and writes it under its lock; a view (``status``,
``clean --dry-run``, a run's heartbeat) reads it without, and never decides from it. The file
holds, in this order:

* ``format`` and ``version``: a file of another format or version is damaged, and rebuilt;
* ``holds``: every claim held by a running task of any process, with its owner;
* ``waiting``, if any: the line (see :mod:`queue_core.line`), oldest first;
* ``recovering_until``, while a recovery is under way: the wall time until which nobody may
  take a new claim, after the file was found lost;
* ``dir``: the inode of the state directory it was written in, so that a copy of the
  directory put in its place is not trusted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from .holds import Hold
from .line import Place, parse_line
from .statedir import read_regular, state_dir

__all__ = ["FORMAT", "VERSION", "contents", "holds_in", "lacks_holds", "parse", "read_holds", "read_registry"]

FORMAT = "project-manager/claims"
#: The version of claims.json; run and history records follow queue_core.records.SCHEMA.
VERSION = 1


def parse(raw: bytes) -> tuple[list[Hold], list[Place], float, int | None]:
    """A claims.json's holds, line, until when it is recovered, and the inode of the state directory
    it was written in (None: not said); raises ValueError (KeyError, TypeError)."""
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("not a project-manager claim registry")
    if data.get("version") != VERSION:
        raise ValueError(f"format version {data.get('version')!r}; this version reads {VERSION}")
    holds = [Hold.from_json(item) for item in data["holds"]]
    line = parse_line(data.get("waiting", []))
    written_in = data.get("dir")
    return holds, line, float(data.get("recovering_until", 0.0)), None if written_in is None else int(written_in)


def contents(
    holds: Iterable[Hold], line: Iterable[Place], recovering_until: float, written_in: int, now: float
) -> dict[str, Any]:
    """claims.json's content: the holds, the line, a recovery still under way at ``now``, and
    the inode of the state directory ``written_in``."""
    data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "holds": [h.to_json() for h in holds]}
    if waiting := [h.to_json() for h in line]:
        data["waiting"] = waiting
    if recovering_until > now:
        data["recovering_until"] = recovering_until
    data["dir"] = written_in
    return data


def lacks_holds(
    raw: bytes | None,
    run: str,
    tasks: Iterable[str],
    now: float,
    added: Mapping[str, AbstractSet[tuple[str, str]]] | None = None,
) -> bool:
    """Whether the claims.json ``raw`` (None: missing) lacks a hold of one of ``run``'s ``tasks``,
    is recovered at ``now``, or cannot be read; or a hold of one of them lists a claim it added as
    it ran that ``added`` (task -> the (claim, "write" or "read") the run knows it added) lacks:
    then a step of ``run`` is due, to write its holds back, or take those claims on.

    Lenient about the rest of the file: it is read without the lock, only to tell whether to step.
    """
    try:
        data = None if raw is None else json.loads(raw)
        holds = data["holds"] if isinstance(data, dict) else []
        keys = {f"{h['owner']['run']}/{h['task']}" for h in holds}
        recovering = isinstance(data, dict) and float(data.get("recovering_until", 0)) > now
        known = added or {}
        news = any(
            h["owner"]["run"] == run and not _added(h) <= known.get(h["task"], set())
            for h in holds
            if h["task"] in known
        )
    except (ValueError, KeyError, TypeError):
        return True
    return recovering or news or any(f"{run}/{task}" not in keys for task in tasks)


def _added(hold: dict[str, Any]) -> set[tuple[str, str]]:
    """What a hold (as JSON) added as it ran: (claim, "write" or "read"), as Hold.added and its writes say."""
    writes = set(hold["writes"])
    return {(text, "write" if text in writes else "read") for text in hold.get("added", ())}


def holds_in(raw: bytes) -> list[Hold]:
    """The holds in ``raw``, the bytes of a claims.json read without the lock (for a view, never
    for a decision); empty if they cannot be parsed."""
    try:
        return parse(raw)[0]
    except (ValueError, KeyError, TypeError):
        return []


def read_holds(repo: str | os.PathLike[str]) -> list[Hold]:
    """What ``repo``'s claims.json says is held now, read without the lock: for a view, never for a
    decision. Empty if there is no registry, or it cannot be read or parsed."""
    return read_registry(repo)[0]


def read_registry(repo: str | os.PathLike[str]) -> tuple[list[Hold], list[Place]]:
    """The holds and the line in ``repo``'s claims.json now, read without the lock, like read_holds."""
    try:
        holds, line, _, _ = parse(read_regular(state_dir(repo) / "claims.json") or b"")
    except (OSError, ValueError, KeyError, TypeError):
        return [], []
    return holds, line
