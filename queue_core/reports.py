"""What an agent says of its own run, read from its log: an error behind exit 0, cost, tokens.

Agents run headless report in machine-readable form (see the presets in ``cli.config``); each
format has a small reader here, fed the log line by line after the agent ended, never holding
the whole output (a line longer than ``MAX_LINE`` is skipped). A line that is not what the
format expects (a truncated write, a warning, garbage) is skipped too: the report is what could
be read, and an agent's exit code still counts on its own.

* ``claude``: Claude Code's ``--output-format stream-json`` (or ``json``): the last
  ``{"type": "result", "is_error", "result", "total_cost_usd", "usage": {"input_tokens",
  "output_tokens"}}`` line. ``is_error`` true (a rate limit exits 0 that way) is an error.
* ``codex``: ``codex exec --json`` events: ``turn.completed`` carries ``usage``, summed over
  turns; ``turn.failed`` and ``error`` events are errors (a failed turn can exit 0).
* ``gemini``: ``gemini --output-format json``: one object, ``{"response", "stats": {"models":
  {m: {"tokens": {"prompt", "candidates"}}}}, "error"}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["FORMATS", "MAX_LINE", "AgentReport", "read_report"]

#: The longest line read; the rest of such a line is skipped, not kept.
MAX_LINE = 1 << 20
#: How much of an error is kept: one line, this long at most.
_ERROR_CHARS = 300


@dataclass(frozen=True)
class AgentReport:
    """What an agent said of its run; None where it said nothing."""

    error: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def tokens(self) -> dict[str, int] | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return {"input": self.input_tokens or 0, "output": self.output_tokens or 0}


def read_report(log: Path, fmt: str) -> AgentReport:
    """The report in ``log``, written in the format ``fmt`` (a key of FORMATS); empty if unreadable."""
    try:
        with open(log, "rb") as f:
            return FORMATS[fmt](f)
    except OSError:
        return AgentReport()


def _json_lines(f: BinaryIO) -> Iterator[dict[str, Any]]:
    """The JSON objects among a file's lines; lines too long, or not an object, are skipped."""
    while line := f.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE:
            while line and not line.endswith(b"\n"):
                line = f.readline(MAX_LINE)
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _claude(f: BinaryIO) -> AgentReport:
    report = AgentReport()
    for event in _json_lines(f):
        if event.get("type") == "result":
            usage = _dict(event.get("usage"))
            error = _one_line(event.get("result") or event.get("subtype")) if event.get("is_error") else None
            cost = _number(event.get("total_cost_usd"))
            report = AgentReport(error, cost, _int(usage.get("input_tokens")), _int(usage.get("output_tokens")))
    return report


def _codex(f: BinaryIO) -> AgentReport:
    error: str | None = None
    tokens: list[int | None] = [None, None]
    for event in _json_lines(f):
        kind = event.get("type")
        if kind == "turn.completed" and isinstance(event.get("usage"), dict):
            usage = event["usage"]
            for i, key in enumerate(("input_tokens", "output_tokens")):
                if (count := _int(usage.get(key))) is not None:
                    tokens[i] = (tokens[i] or 0) + count
        elif kind in ("turn.failed", "error"):
            error = _one_line(_dict(event.get("error")).get("message") or event.get("message") or kind)
    return AgentReport(error, None, tokens[0], tokens[1])


def _gemini(f: BinaryIO) -> AgentReport:
    """One object, perhaps over several lines, after the log's header: read whole, within MAX_LINE."""
    raw = b"\n" + f.read(MAX_LINE + 1)
    start = raw.find(b"\n{")  # the first line that opens an object
    if len(raw) > MAX_LINE + 1 or start < 0:
        return AgentReport()
    try:
        data = json.loads(raw[start:])
    except ValueError:
        data = None
    return _gemini_object(data) if isinstance(data, dict) else AgentReport()


def _gemini_object(data: dict[str, Any]) -> AgentReport:
    error = data.get("error")
    message = _one_line(error.get("message") or "error") if isinstance(error, dict) else None
    models = (data.get("stats") or {}).get("models") if isinstance(data.get("stats"), dict) else None
    tokens: list[int | None] = [None, None]
    for model in (models or {}).values() if isinstance(models, dict) else ():
        counts = model.get("tokens") if isinstance(model, dict) else None
        for i, key in enumerate(("prompt", "candidates")):
            if isinstance(counts, dict) and (count := _int(counts.get(key))) is not None:
                tokens[i] = (tokens[i] or 0) + count
    return AgentReport(message, None, tokens[0], tokens[1])


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _one_line(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: The readers, by format name.
FORMATS: dict[str, Callable[[BinaryIO], AgentReport]] = {
    "claude": _claude,
    "codex": _codex,
    "gemini": _gemini,
}
