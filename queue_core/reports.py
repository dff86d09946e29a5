"""What an agent says of its own run, read from its log: an error behind exit 0, a rate limit, cost, tokens.

Agents run headless report in machine-readable form (see the presets in ``cli.presets``); each
format has a small reader here, fed the log line by line after the agent ended, never holding
the whole output (a line longer than ``MAX_LINE`` is skipped). A line that is not what the
format expects (a truncated write, a warning, garbage) is skipped too: the report is what could
be read, and an agent's exit code still counts on its own.

* ``claude``: Claude Code's ``--output-format stream-json`` (or ``json``): the last
  ``{"type": "result", "is_error", "result", "total_cost_usd", "usage": {"input_tokens",
  "output_tokens"}}`` line. ``is_error`` true (a rate limit exits 0 that way) is an error. A
  ``{"type": "rate_limit_event", "rate_limit_info": {"status": "rejected", "resetsAt": EPOCH}}``
  line says when the limit resets; ``allowed`` and ``allowed_warning`` ones are only news.
* ``codex``: ``codex exec --json`` events: ``turn.completed`` carries ``usage``, summed over
  turns; ``turn.failed`` and ``error`` events are errors (a failed turn can exit 0), unless a
  ``turn.completed`` follows (codex reports a stream it retries as an ``error`` event too).
* ``gemini``: ``gemini --output-format json``: one object, ``{"response", "stats": {"models":
  {m: {"tokens": {"prompt", "candidates"}}}}, "error": {"message", "code"}}``.
* ``aider``: plain text. Aider retries an API error itself (``Retrying in 2.0 seconds...``),
  then gives up with the error's line (``litellm.RateLimitError: ...``) and exits 0; each answer
  it got ends with ``Tokens: ... Cost: $X message, $Y session.``. An error line that no retry
  and no answer follows is the error; the last session cost is the cost.
* ``opencode``: ``opencode run --format json`` events. ``step_finish`` parts carry ``cost`` and
  ``tokens: {"input", "output"}``, summed over steps; an ``error`` event, ``{"error": {"name",
  "data": {"message", "statusCode", "responseHeaders"}}}`` (or ``{"type", "message"}``), is an
  error, unless a later step finished (a step it retried). Status 429 is a rate limit, reset by
  its ``retry-after-ms`` or ``retry-after`` header.
* ``goose``: ``goose run --output-format stream-json`` events. ``{"type": "error", "error": TEXT}``
  is an error, and so is a last assistant ``message`` that is goose giving up on its provider
  ("Ran into this error: ...", "... Please resend your message to try again."); ``complete``
  has ``input_tokens`` and ``output_tokens``. Goose may exit 0 after either.

Cursor's ``cursor-agent -p --output-format stream-json`` ends with Claude Code's ``result`` event
and reports a failure on stderr with a non-zero exit: the ``claude`` reader reads it.

**Rate limits.** An error is a rate limit when it says so (HTTP 429, ``rate_limit_error``,
"rate limit", "you've hit your limit", "usage limit", quota exceeded or exhausted). When the
attempt failed (a non-zero exit) and the format's own error says nothing, the log's last lines
that are not JSON (an agent's stderr) are searched for such a message too: not for aider, whose
plain text is the model's answer (read whole by its reader), nor the lines of a JSON document
printed over several lines (gemini's), which may quote anything. A reset the agent
named (an epoch, ``resets_in_seconds``, "try again in 3 hours 51 minutes", ``Retry-After: 120``)
becomes ``retry_after``, in seconds from ``now``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from .clocks import REAL

__all__ = ["FORMATS", "MAX_LINE", "AgentReport", "read_report", "retry_after_in"]

#: The longest line read; the rest of such a line is skipped, not kept.
MAX_LINE = 1 << 20
#: How much of an error is kept: one line, this long at most.
_ERROR_CHARS = 300
#: How much of a failed attempt's log is searched for a rate-limit message outside the format.
_TAIL_BYTES = 64 << 10

_RATE_LIMIT = re.compile(
    r"rate[ _-]?limit|\b429\b|too many requests|hit your (?:\w+ )?limit|usage limit"
    r"|quota (?:exceeded|exhausted)|exceeded your (?:current )?quota|resource[_ ]exhausted",
    re.IGNORECASE,
)
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(
    r"(\d+(?:\.\d+)?)\s*(d(?:ays?)?|h(?:ours?|rs?)?|m(?:in(?:ute)?s?)?|s(?:ec(?:ond)?s?)?)\b", re.IGNORECASE
)
_RETRY_IN = re.compile(
    r"(?:try again|retry|resets?) (?:in|after)\s+((?:\d+(?:\.\d+)?\s*[a-z]+[\s,]*(?:and\s+)?)+)", re.IGNORECASE
)
# Linear on what the agent wrote (up to MAX_LINE): no two runs of a repeat that can take the same
# characters next to each other ("\s*[:=]?\s*" took minutes on "Retry-After" and 100k spaces).
_RETRY_SECONDS = re.compile(
    r"retry-after\"?\s*(?:[:=]\s*)?\"?(\d+(?:\.\d+)?)|resets_in_seconds\"?\s*[:=]\s*(\d+(?:\.\d+)?)"
    r"|retryDelay\"?\s*[:=]\s*\"(\d+(?:\.\d+)?)s",
    re.IGNORECASE,
)
#: The formats whose report is JSON: what else a failed attempt wrote is its stderr.
_JSON_FORMATS = frozenset({"claude", "codex", "gemini"})
#: How a line of JSON starts, a line of an object printed over several lines included (``"key": ...``).
_JSON_STARTS = ("{", "[", "}", "]", '"')
_RESET_EPOCH = re.compile(r"usage limit reached\|(\d{9,11})", re.IGNORECASE)


@dataclass(frozen=True)
class AgentReport:
    """What an agent said of its run; None where it said nothing."""

    error: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    #: The error is a rate limit: the attempt is to be tried again once it lifts.
    rate_limited: bool = False
    #: Seconds until the rate limit lifts, if the agent said.
    retry_after: float | None = None

    @property
    def tokens(self) -> dict[str, int] | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return {"input": self.input_tokens or 0, "output": self.output_tokens or 0}

    def after(self, earlier: AgentReport | None) -> AgentReport:
        """This attempt's report, with the cost and tokens of ``earlier`` attempts added: a task
        retried, or paused by a rate limit, costs what all its attempts did."""
        if earlier is None:
            return self
        return replace(
            self,
            cost_usd=_sum(self.cost_usd, earlier.cost_usd),
            input_tokens=_sum(self.input_tokens, earlier.input_tokens),
            output_tokens=_sum(self.output_tokens, earlier.output_tokens),
        )


def read_report(log: Path, fmt: str, *, start: int = 0, now: float | None = None, failed: bool = False) -> AgentReport:
    """The report in ``log`` from byte ``start`` on, written in the format ``fmt`` (a key of FORMATS).

    ``now`` is the wall-clock time resets are counted from (default: the current time);
    ``failed``: the attempt exited non-zero, so its stderr is searched for a rate limit too.
    Empty if the log cannot be read.
    """
    now = REAL.wall() if now is None else now
    try:
        with open(log, "rb") as f:
            f.seek(start)
            report = FORMATS[fmt](f, now)
            if report.error is None and not failed:  # it succeeded: whatever limit it met, it got past
                return replace(report, rate_limited=False, retry_after=None)
            if not report.rate_limited and report.error is not None and _RATE_LIMIT.search(report.error):
                report = replace(report, rate_limited=True)
            if not report.rate_limited and failed and report.error is None and fmt in _JSON_FORMATS:
                report = _stderr_rate_limit(f, start, report)
    except OSError:
        return AgentReport()
    if not report.rate_limited:
        return replace(report, retry_after=None)
    if report.retry_after is None and report.error is not None:
        return replace(report, retry_after=retry_after_in(report.error, now))
    return report


def retry_after_in(text: str, now: float) -> float | None:
    """Seconds from ``now`` until the reset ``text`` names, if it names one (never negative)."""
    if match := _RESET_EPOCH.search(text):
        return max(0.0, float(match.group(1)) - now)
    if match := _RETRY_SECONDS.search(text):
        return float(next(group for group in match.groups() if group is not None))
    if (match := _RETRY_IN.search(text)) and (parts := _DURATION.findall(match.group(1))):
        return sum(float(n) * _UNITS[unit[0].lower()] for n, unit in parts)
    return None


def _stderr_rate_limit(f: BinaryIO, start: int, report: AgentReport) -> AgentReport:
    """``report`` marked rate-limited if a line of the log's tail that is not JSON says so."""
    end = f.seek(0, 2)
    f.seek(max(start, end - _TAIL_BYTES))
    found: str | None = None
    for raw in f.read().splitlines():
        line = raw.decode("utf-8", "replace").strip()
        if line.startswith(_JSON_STARTS) or not _RATE_LIMIT.search(line):
            continue  # an agent's JSON (one line, or a line of a pretty-printed one) may quote anything
        found = line
    if found is None:
        return report
    return replace(report, error=_one_line(found), rate_limited=True)


def _lines(f: BinaryIO) -> Iterator[bytes]:
    """The file's lines from where it stands; a line over MAX_LINE is skipped."""
    while line := f.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE:
            while line and not line.endswith(b"\n"):
                line = f.readline(MAX_LINE)
            continue
        yield line


def _json_lines(f: BinaryIO) -> Iterator[dict[str, Any]]:
    """The JSON objects among a file's lines; lines too long, or not an object, are skipped."""
    for line in _lines(f):
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper than the parser goes
            continue
        if isinstance(value, dict):
            yield value


def _claude(f: BinaryIO, now: float) -> AgentReport:
    report = AgentReport()
    limited, reset = False, None
    for event in _json_lines(f):
        kind = event.get("type")
        if kind == "rate_limit_event":
            info = _dict(event.get("rate_limit_info"))
            if info.get("status") == "rejected":
                limited = True
                resets_at = _number(info.get("resetsAt"))
                reset = None if resets_at is None else max(0.0, resets_at - now)
        elif kind == "assistant" and event.get("error") == "rate_limit":
            limited = True
        elif kind == "result":
            usage = _dict(event.get("usage"))
            error = _one_line(event.get("result") or event.get("subtype")) if event.get("is_error") else None
            cost = _number(event.get("total_cost_usd"))
            report = AgentReport(error, cost, _int(usage.get("input_tokens")), _int(usage.get("output_tokens")))
    return replace(report, rate_limited=limited, retry_after=reset) if limited else report


def _codex(f: BinaryIO, now: float) -> AgentReport:
    error: str | None = None
    reset: float | None = None
    tokens: list[int | None] = [None, None]
    for event in _json_lines(f):
        kind = event.get("type")
        if kind == "turn.completed":
            # It got past whatever came before: an "error" event is also how codex says it is
            # retrying a dropped stream ("Reconnecting... 1/5 (... 429 ...)"), and goes on.
            error, reset = None, None
            usage = _dict(event.get("usage"))
            for i, key in enumerate(("input_tokens", "output_tokens")):
                if (count := _int(usage.get(key))) is not None:
                    tokens[i] = (tokens[i] or 0) + count
        elif kind in ("turn.failed", "error"):
            message = str(_dict(event.get("error")).get("message") or event.get("message") or kind)
            error = _one_line(message)
            reset = retry_after_in(message, now) or reset  # before cutting: a long error may say it last
    return AgentReport(error, None, tokens[0], tokens[1], retry_after=reset)


def _gemini(f: BinaryIO, now: float) -> AgentReport:
    """One object, perhaps over several lines, after the log's header: read whole, within MAX_LINE."""
    raw = b"\n" + f.read(MAX_LINE + 1)
    start = raw.find(b"\n{")  # the first line that opens an object
    if len(raw) > MAX_LINE + 1 or start < 0:
        return AgentReport()
    try:
        data = json.loads(raw[start:])
    except (ValueError, RecursionError):
        data = None
    return _gemini_object(data) if isinstance(data, dict) else AgentReport()


def _gemini_object(data: dict[str, Any]) -> AgentReport:
    error = data.get("error")
    message = _one_line(error.get("message") or "error") if isinstance(error, dict) else None
    limited = isinstance(error, dict) and error.get("code") == 429
    models = (data.get("stats") or {}).get("models") if isinstance(data.get("stats"), dict) else None
    tokens: list[int | None] = [None, None]
    for model in (models or {}).values() if isinstance(models, dict) else ():
        counts = model.get("tokens") if isinstance(model, dict) else None
        for i, key in enumerate(("prompt", "candidates")):
            if isinstance(counts, dict) and (count := _int(counts.get(key))) is not None:
                tokens[i] = (tokens[i] or 0) + count
    return AgentReport(message, None, tokens[0], tokens[1], rate_limited=limited)


_AIDER_ERROR = re.compile(r"litellm\.(\w+):")
_AIDER_COST = re.compile(r"^Tokens: .*Cost: \$[\d.]+ message, \$(\d+(?:\.\d+)?) session")


def _aider(f: BinaryIO, now: float) -> AgentReport:
    error: str | None = None
    limited = False
    cost: float | None = None
    for raw in _lines(f):
        line = raw.decode("utf-8", "replace").strip()
        if match := _AIDER_ERROR.match(line):
            error, limited = _one_line(line), match.group(1) == "RateLimitError"
        elif line.startswith("Retrying in "):
            error, limited = None, False  # it tries again itself
        elif match := _AIDER_COST.match(line):
            error, limited, cost = None, False, _number(float(match.group(1)))  # an answer came after it
    return AgentReport(error, cost, rate_limited=limited)


def _opencode(f: BinaryIO, now: float) -> AgentReport:
    error: str | None = None
    limited = False
    reset: float | None = None
    cost: float | None = None
    tokens: list[int | None] = [None, None]
    for event in _json_lines(f):
        kind = event.get("type")
        if kind == "step_finish":
            part = _dict(event.get("part"))
            cost = _sum(cost, _number(part.get("cost")))
            counts = _dict(part.get("tokens"))
            for i, key in enumerate(("input", "output")):
                tokens[i] = _sum(tokens[i], _int(counts.get(key)))
            error, limited, reset = None, False, None  # it went on: an error before was retried
        elif kind == "error":
            failure = _dict(event.get("error"))
            data = _dict(failure.get("data"))
            error = _one_line(data.get("message") or failure.get("message") or failure.get("name") or "error")
            limited = 429 in (data.get("statusCode"), failure.get("statusCode"))
            reset = _retry_header(_dict(data.get("responseHeaders")))
    return AgentReport(error, cost, tokens[0], tokens[1], rate_limited=limited, retry_after=reset)


def _retry_header(headers: dict[str, Any]) -> float | None:
    """Seconds from a response's ``retry-after-ms`` or ``retry-after`` header (an HTTP date is not read)."""
    for key, unit in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers[key]) * unit
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


#: Goose's own words when it gives up on its provider (crates/goose/src/agents/agent.rs).
_GOOSE_GAVE_UP = re.compile(r"^Ran into this error: |\n\nPlease resend your message to try again\.\s*$")


def _goose(f: BinaryIO, now: float) -> AgentReport:
    error: str | None = None
    tokens: list[int | None] = [None, None]
    for event in _json_lines(f):
        kind = event.get("type")
        if kind == "error":
            error = _one_line(event.get("error") or "error")
        elif kind == "message" and (text := _assistant_text(_dict(event.get("message")))):
            # what it said last decides: an answer after a failure ends it
            error = _one_line(text.split("\n\n")[0]) if _GOOSE_GAVE_UP.search(text) else None
        elif kind == "complete":
            tokens = [_int(event.get("input_tokens")), _int(event.get("output_tokens"))]
    return AgentReport(error, None, tokens[0], tokens[1])


def _assistant_text(message: dict[str, Any]) -> str:
    """The text of goose's ``{"role": "assistant", "content": [{"type": "text", "text"}, ...]}``; "" for others."""
    parts = message.get("content")
    if message.get("role") != "assistant" or not isinstance(parts, list):
        return ""
    return "".join(part["text"] for part in parts if isinstance(part, dict) and isinstance(part.get("text"), str))


def _sum(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _one_line(value: Any) -> str:
    """``value`` as one line a terminal shows as it is: the agent's text (its stderr too) may hold
    escape sequences (retitle the window, clear the screen), shown escaped (``\\x1b``)."""
    text = " ".join(str(value).split())
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


def _number(value: Any) -> float | None:
    """``value`` as a finite float; None if it is none (a string, NaN, a 400-digit integer): JSON
    allows NaN and numbers no float holds, and a cost of NaN would make --json's output invalid."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: The readers, by format name; each takes the log (where its attempt begins) and the time.
FORMATS: dict[str, Callable[[BinaryIO, float], AgentReport]] = {
    "claude": _claude,
    "codex": _codex,
    "gemini": _gemini,
    "aider": _aider,
    "opencode": _opencode,
    "goose": _goose,
}
