"""The readers of what agents report in their logs, on samples shaped as each tool documents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from queue_core.reports import MAX_LINE, AgentReport, read_report
from tests.conftest import WAIT

CLAUDE_OK = [
    {"type": "system", "subtype": "init", "session_id": "s"},
    {"type": "assistant", "message": {"content": [{"type": "text", "text": "done"}]}},
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "done",
        "num_turns": 3,
        "total_cost_usd": 0.0421,
        "usage": {"input_tokens": 1200, "output_tokens": 340},
    },
]
CLAUDE_RATE_LIMITED = {
    "type": "result",
    "subtype": "success",
    "is_error": True,
    "result": "API Error: 429\n  rate_limit_error: This request would exceed the rate limit",
    "total_cost_usd": 0,
    "usage": {"input_tokens": 0, "output_tokens": 0},
}


def _log(tmp_path: Path, lines: list[object], *, tail: bytes = b"") -> Path:
    path = tmp_path / "task.log"
    text = "$ agent argv\n" + "".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines)
    path.write_bytes(text.encode() + tail)
    return path


def test_claude_success_with_cost_and_tokens(tmp_path: Path) -> None:
    report = read_report(_log(tmp_path, CLAUDE_OK), "claude")
    assert report == AgentReport(None, 0.0421, 1200, 340)
    assert report.tokens == {"input": 1200, "output": 340}


def test_claude_error_behind_exit_0_is_one_line(tmp_path: Path) -> None:
    report = read_report(_log(tmp_path, [CLAUDE_OK[0], CLAUDE_RATE_LIMITED]), "claude")
    assert report.error == "API Error: 429 rate_limit_error: This request would exceed the rate limit"


def test_claude_max_turns_is_an_error_named_by_its_subtype(tmp_path: Path) -> None:
    result = {"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 5}
    assert read_report(_log(tmp_path, [result]), "claude").error == "error_max_turns"


def test_garbage_truncated_and_overlong_lines_are_skipped(tmp_path: Path) -> None:
    lines: list[object] = ["not json", "[1, 2]", '{"type": "result", "is_err', *CLAUDE_OK]
    report = read_report(_log(tmp_path, lines, tail=b'{"type": "result", "is_error": tr'), "claude")
    assert report.cost_usd == 0.0421  # the last whole result line
    huge = _log(tmp_path, ['{"pad": "' + "x" * (MAX_LINE + 10) + '"}', *CLAUDE_OK])
    assert read_report(huge, "claude").input_tokens == 1200


def test_codex_sums_turns_and_a_failed_turn_is_an_error(tmp_path: Path) -> None:
    events = [
        {"type": "thread.started", "thread_id": "t"},
        {"type": "turn.started"},
        {"type": "turn.completed", "usage": {"input_tokens": 100, "cached_input_tokens": 50, "output_tokens": 7}},
        {"type": "turn.started"},
        {"type": "turn.completed", "usage": {"input_tokens": 20, "output_tokens": 3}},
    ]
    assert read_report(_log(tmp_path, events), "codex") == AgentReport(None, None, 120, 10)
    failed = [*events, {"type": "turn.failed", "error": {"message": "stream disconnected:\n429 Too Many Requests"}}]
    assert read_report(_log(tmp_path, failed), "codex").error == "stream disconnected: 429 Too Many Requests"


def test_gemini_one_object_over_several_lines(tmp_path: Path) -> None:
    data = {
        "response": "ok",
        "stats": {"models": {"gemini-2.5-pro": {"tokens": {"prompt": 900, "candidates": 80, "total": 980}}}},
    }
    path = tmp_path / "g.log"
    path.write_text(json.dumps(data, indent=2))
    assert read_report(path, "gemini") == AgentReport(None, None, 900, 80)
    path.write_text(json.dumps({"error": {"type": "ApiError", "message": "Quota exceeded", "code": 429}}))
    assert read_report(path, "gemini").error == "Quota exceeded"
    path.write_text('{"response": "cut sh')
    assert read_report(path, "gemini") == AgentReport()


@pytest.mark.parametrize("fmt", ["claude", "codex", "gemini", "aider", "opencode", "goose"])
def test_a_missing_log_reports_nothing(tmp_path: Path, fmt: str) -> None:
    assert read_report(tmp_path / "absent.log", fmt) == AgentReport()


# --- rate limits: the attempt ends rate-limited, not failed, and says when to try again ----------

NOW = 1_800_000_000.0  # the wall clock the reader is given: resets are read as seconds from it


def test_claude_rate_limit_behind_exit_0_is_rate_limited(tmp_path: Path) -> None:
    report = read_report(_log(tmp_path, [CLAUDE_OK[0], CLAUDE_RATE_LIMITED]), "claude", now=NOW)
    assert report.rate_limited
    assert report.retry_after is None
    assert not read_report(_log(tmp_path, CLAUDE_OK), "claude", now=NOW).rate_limited


def test_claude_rejected_rate_limit_event_gives_the_reset(tmp_path: Path) -> None:
    rejected = {
        "type": "rate_limit_event",
        "rate_limit_info": {"status": "rejected", "resetsAt": int(NOW) + 3600, "rateLimitType": "five_hour"},
    }
    hit = {**CLAUDE_RATE_LIMITED, "result": "You've hit your limit · resets 2pm (Europe/Paris)"}
    report = read_report(_log(tmp_path, [rejected, hit]), "claude", now=NOW)
    assert report.rate_limited
    assert report.retry_after == 3600
    assert report.error == "You've hit your limit · resets 2pm (Europe/Paris)"


def test_claude_informational_rate_limit_events_change_nothing(tmp_path: Path) -> None:
    events: list[object] = [
        {"type": "rate_limit_event", "rate_limit_info": {"status": status, "resetsAt": int(NOW) + 60}}
        for status in ("allowed", "allowed_warning")
    ]
    report = read_report(_log(tmp_path, [*events, *CLAUDE_OK]), "claude", now=NOW)
    assert report == AgentReport(None, 0.0421, 1200, 340)


def test_claude_legacy_usage_limit_names_its_reset_as_epoch(tmp_path: Path) -> None:
    hit = {**CLAUDE_RATE_LIMITED, "result": f"Claude AI usage limit reached|{int(NOW) + 90}"}
    report = read_report(_log(tmp_path, [hit]), "claude", now=NOW)
    assert report.rate_limited
    assert report.retry_after == 90


def test_a_reset_in_the_past_means_now(tmp_path: Path) -> None:
    hit = {**CLAUDE_RATE_LIMITED, "result": f"Claude AI usage limit reached|{int(NOW) - 90}"}
    assert read_report(_log(tmp_path, [hit]), "claude", now=NOW).retry_after == 0


def test_codex_usage_limit_with_its_reset(tmp_path: Path) -> None:
    body = {"type": "usage_limit_reached", "message": "The usage limit has been reached", "resets_in_seconds": 13872}
    error = {"type": "error", "message": json.dumps({"type": "error", "error": body, "status_code": 429})}
    hit = "You've hit your usage limit. Try again in 3 hours 51 minutes."
    failed = {"type": "turn.failed", "error": {"message": hit}}
    events = [error, failed]
    report = read_report(_log(tmp_path, events), "codex", now=NOW)
    assert report.rate_limited
    assert report.retry_after == 3 * 3600 + 51 * 60
    only_error = read_report(_log(tmp_path, [error]), "codex", now=NOW)
    assert only_error.rate_limited
    assert only_error.retry_after == 13872


def test_codex_other_failures_are_not_rate_limits(tmp_path: Path) -> None:
    failed = [{"type": "turn.failed", "error": {"message": "sandbox denied the write"}}]
    report = read_report(_log(tmp_path, failed), "codex", now=NOW)
    assert report.error == "sandbox denied the write"
    assert not report.rate_limited


def test_gemini_quota_error_is_a_rate_limit(tmp_path: Path) -> None:
    path = tmp_path / "g.log"
    path.write_text(json.dumps({"error": {"type": "ApiError", "message": "Please retry in 41s.", "code": 429}}))
    report = read_report(path, "gemini", now=NOW)
    assert report.rate_limited
    assert report.retry_after == 41
    path.write_text(json.dumps({"error": {"type": "FatalInputError", "message": "bad flag", "code": 42}}))
    assert not read_report(path, "gemini", now=NOW).rate_limited


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Rate limit reached. Please try again in 40.5s.", 40.5),
        ("429 Too Many Requests; Retry-After: 120", 120),
        ("quota exhausted, retry after 2 minutes", 120),
        ("RESOURCE_EXHAUSTED: You exceeded your current quota", None),
        ("you've hit your weekly limit", None),
    ],
)
def test_rate_limit_texts_on_stderr_of_a_failed_attempt(tmp_path: Path, text: str, seconds: float | None) -> None:
    """A message the agent wrote outside its JSON (stderr goes to the same log) counts when it failed."""
    log = _log(tmp_path, [CLAUDE_OK[0], text])
    report = read_report(log, "claude", now=NOW, failed=True)
    assert report.rate_limited
    assert report.retry_after == seconds
    assert not read_report(log, "claude", now=NOW).rate_limited  # exit 0 and no error: it succeeded


def test_a_rate_limit_quoted_in_the_agent_json_is_not_one(tmp_path: Path) -> None:
    quoted = {"type": "assistant", "message": {"content": [{"type": "text", "text": "handle 429 rate limit errors"}]}}
    report = read_report(_log(tmp_path, [quoted]), "claude", now=NOW, failed=True)
    assert not report.rate_limited


# --- aider: plain text, and it exits 0 after giving up on an API error ----------------------------

AIDER_RATE_LIMIT = (
    'litellm.RateLimitError: AnthropicException - {"type":"error","error":{"type":"rate_limit_error",'
    '"message":"Number of request tokens has exceeded your per-minute rate limit"}}'
)


def test_aider_success_reports_its_session_cost(tmp_path: Path) -> None:
    lines = [
        "Aider v0.86.1",
        "Tokens: 2.3k sent, 310 received. Cost: $0.01 message, $0.01 session.",
        "Applied edit to src/app.py",
        "Tokens: 12k sent, 1.2k received. Cost: $0.0042 message, $0.0142 session.",
    ]
    report = read_report(_log(tmp_path, lines), "aider", now=NOW)
    assert report == AgentReport(None, 0.0142, None, None)


def test_aider_retried_then_succeeded_is_no_error(tmp_path: Path) -> None:
    answer = "Tokens: 2k sent, 30 received. Cost: $0.01 message, $0.01 session."
    lines = [AIDER_RATE_LIMIT, "Retrying in 0.2 seconds...", answer]
    assert read_report(_log(tmp_path, lines), "aider", now=NOW) == AgentReport(None, 0.01, None, None)


def test_aider_gave_up_on_a_rate_limit_behind_exit_0(tmp_path: Path) -> None:
    gave_up = "The API provider has rate limited you."
    lines = [AIDER_RATE_LIMIT, "Retrying in 32.0 seconds...", AIDER_RATE_LIMIT, gave_up]
    report = read_report(_log(tmp_path, lines), "aider", now=NOW)
    assert report.rate_limited
    assert report.error is not None
    assert report.error.startswith("litellm.RateLimitError")


def test_aider_gave_up_on_another_api_error(tmp_path: Path) -> None:
    lines = ["litellm.InternalServerError: OpenAIException - Connection error."]
    report = read_report(_log(tmp_path, lines), "aider", now=NOW)
    assert report.error == "litellm.InternalServerError: OpenAIException - Connection error."
    assert not report.rate_limited


def test_a_run_that_got_past_a_rejected_limit_succeeded(tmp_path: Path) -> None:
    rejected = {"type": "rate_limit_event", "rate_limit_info": {"status": "rejected", "resetsAt": int(NOW) + 60}}
    report = read_report(_log(tmp_path, [rejected, *CLAUDE_OK]), "claude", now=NOW)
    assert report == AgentReport(None, 0.0421, 1200, 340)
    killed = read_report(_log(tmp_path, [rejected]), "claude", now=NOW, failed=True)
    assert killed.rate_limited
    assert killed.retry_after == 60


def test_the_report_starts_where_its_attempt_does(tmp_path: Path) -> None:
    """A retry appends to the log: an earlier attempt's failed turn is not this one's."""
    log = _log(tmp_path, [{"type": "turn.failed", "error": {"message": "429 Too Many Requests"}}])
    start = log.stat().st_size
    with open(log, "a") as f:
        f.write('$ codex exec -- "rate limit the API"\n' + json.dumps({"type": "turn.completed", "usage": {}}) + "\n")
    header = len('$ codex exec -- "rate limit the API"\n')
    assert read_report(log, "codex", start=start + header, now=NOW, failed=True) == AgentReport()


# --- cursor: Claude's result event, a failure on stderr with a non-zero exit ------------------------
# cursor.com/docs/cli/reference/output-format: the stream ends with {"type": "result", ...} on
# success; on failure the process exits non-zero, perhaps without it, the message on stderr.

CURSOR_OK = [
    {"type": "system", "subtype": "init", "apiKeySource": "login", "session_id": "s", "model": "Auto"},
    {"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": "done"}]}},
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 4986,
        "duration_api_ms": 4986,
        "result": "done",
        "session_id": "s",
        "request_id": "r",
    },
]


def test_cursor_success_reads_as_claude_and_names_no_cost(tmp_path: Path) -> None:
    assert read_report(_log(tmp_path, CURSOR_OK), "claude", now=NOW) == AgentReport()


def test_cursor_usage_limit_on_stderr_of_a_failed_run(tmp_path: Path) -> None:
    """The banner cursor-agent prints when the plan's usage is spent (cursor/cursor#3703)."""
    banner = [
        "Error: You've hit your usage limit",
        "  Get Cursor Pro for more Agent usage, unlimited Tab, and more.",
        "  spendLimitHit: false",
    ]
    report = read_report(_log(tmp_path, [CURSOR_OK[0], *banner]), "claude", now=NOW, failed=True)
    assert report.rate_limited
    assert report.error == "Error: You've hit your usage limit"
    other = read_report(_log(tmp_path, [CURSOR_OK[0], "Error: Connection lost"]), "claude", now=NOW, failed=True)
    assert other == AgentReport()  # the exit code says it failed; nothing here says how


# --- opencode: opencode run --format json ---------------------------------------------------------
# Events {"type", "timestamp", "sessionID", ...}: step_finish carries the step's cost and tokens;
# an error is {"type": "error", "error": {"name", "data": {"message", "statusCode", ...}}} (v1) or
# {"error": {"type", "message"}} (v2), and the run can exit 0 anyway (anomalyco/opencode#2489).


def _step(cost: float, tokens_in: int, tokens_out: int) -> dict[str, object]:
    tokens = {"input": tokens_in, "output": tokens_out, "reasoning": 0, "cache": {"read": 0, "write": 0}}
    part = {"type": "step-finish", "reason": "stop", "cost": cost, "tokens": tokens}
    return {"type": "step_finish", "timestamp": 1, "sessionID": "ses_1", "part": part}


def _opencode_error(error: dict[str, object]) -> dict[str, object]:
    return {"type": "error", "timestamp": 1, "sessionID": "ses_1", "error": error}


def test_opencode_sums_the_steps_cost_and_tokens(tmp_path: Path) -> None:
    events = [
        {"type": "step_start", "timestamp": 1, "sessionID": "ses_1", "part": {"type": "step-start"}},
        {"type": "tool_use", "timestamp": 1, "sessionID": "ses_1", "part": {"type": "tool", "tool": "edit"}},
        _step(0.012, 1000, 40),
        {"type": "text", "timestamp": 2, "sessionID": "ses_1", "part": {"type": "text", "text": "done"}},
        _step(0.003, 200, 10),
    ]
    report = read_report(_log(tmp_path, events), "opencode", now=NOW)
    assert report == AgentReport(None, pytest.approx(0.015), 1200, 50)


def test_opencode_error_behind_exit_0_in_both_shapes(tmp_path: Path) -> None:
    v1 = _opencode_error({"name": "ProviderAuthError", "data": {"providerID": "x", "message": "No auth\ncredentials"}})
    report = read_report(_log(tmp_path, [_step(0.001, 10, 1), v1]), "opencode", now=NOW)
    assert report.error == "No auth credentials"
    assert not report.rate_limited
    assert report.cost_usd == 0.001
    v2 = _opencode_error({"type": "unknown", "message": "Unexpected server error."})
    assert read_report(_log(tmp_path, [v2]), "opencode", now=NOW).error == "Unexpected server error."
    named = _opencode_error({"name": "MessageOutputLengthError", "data": {}})
    assert read_report(_log(tmp_path, [named]), "opencode", now=NOW).error == "MessageOutputLengthError"


def test_opencode_429_is_a_rate_limit_with_the_reset_its_headers_give(tmp_path: Path) -> None:
    data = {"message": "Overloaded", "statusCode": 429, "isRetryable": True, "responseHeaders": {"retry-after": "42"}}
    report = read_report(_log(tmp_path, [_opencode_error({"name": "APIError", "data": data})]), "opencode", now=NOW)
    assert (report.error, report.rate_limited, report.retry_after) == ("Overloaded", True, 42)
    data["responseHeaders"] = {"retry-after-ms": "1500", "retry-after": "2"}
    report = read_report(_log(tmp_path, [_opencode_error({"name": "APIError", "data": data})]), "opencode", now=NOW)
    assert report.retry_after == 1.5
    data["responseHeaders"] = {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}  # a date is not read
    report = read_report(_log(tmp_path, [_opencode_error({"name": "APIError", "data": data})]), "opencode", now=NOW)
    assert (report.rate_limited, report.retry_after) == (True, None)


def test_opencode_a_step_retried_after_an_error_ends_it(tmp_path: Path) -> None:
    """opencode 2 reports a failed step it then retries (anomalyco/opencode#50062)."""
    failed = _opencode_error({"type": "provider.transport", "message": "ECONNRESET"})
    assert read_report(_log(tmp_path, [failed, _step(0.002, 5, 5)]), "opencode", now=NOW).error is None


def test_opencode_garbage_and_truncated_lines_are_skipped(tmp_path: Path) -> None:
    lines: list[object] = ["! permission requested: external_directory; auto-rejecting", _step(0.5, 1, 1)]
    report = read_report(_log(tmp_path, lines, tail=b'{"type": "step_finish", "part": {"cost": 9'), "opencode")
    assert report == AgentReport(None, 0.5, 1, 1)


# --- goose: goose run --output-format stream-json -------------------------------------------------
# Events {"type": "message" | "notification" | "error" | "complete", ...}: an agent error is
# {"type": "error", "error": "..."}; a provider's failure ends the stream with an assistant message
# "Ran into this error: ..." (or "...\n\nPlease resend your message to try again."); "complete" has
# total_tokens (and input_tokens, output_tokens); the run exits 0 either way.


def _goose_says(text: str) -> dict[str, object]:
    message = {"id": "m", "role": "assistant", "created": 1, "content": [{"type": "text", "text": text}]}
    return {"type": "message", "message": message}


GOOSE_COMPLETE = {"type": "complete", "total_tokens": 1500, "input_tokens": 1200, "output_tokens": 300}


def test_goose_success_with_tokens(tmp_path: Path) -> None:
    events = [
        {"type": "notification", "extension_id": "developer", "log": {"message": "editing"}},
        _goose_says("I fixed it."),
        GOOSE_COMPLETE,
    ]
    assert read_report(_log(tmp_path, events), "goose", now=NOW) == AgentReport(None, None, 1200, 300)
    total_only = read_report(_log(tmp_path, [{"type": "complete", "total_tokens": 1500}]), "goose", now=NOW)
    assert total_only == AgentReport()


def test_goose_error_event_behind_exit_0(tmp_path: Path) -> None:
    events = [{"type": "error", "error": "Request failed: 400 Bad Request"}, GOOSE_COMPLETE]
    report = read_report(_log(tmp_path, events), "goose", now=NOW)
    assert report == AgentReport("Request failed: 400 Bad Request", None, 1200, 300)


def test_goose_provider_failure_message_is_the_error(tmp_path: Path) -> None:
    limited = _goose_says(
        "Ran into this error: Rate limit exceeded: Please try again in 20s.\n\n"
        "Please retry if you think this is a transient or recoverable error."
    )
    report = read_report(_log(tmp_path, [_goose_says("Looking."), limited, GOOSE_COMPLETE]), "goose", now=NOW)
    assert report.error == "Ran into this error: Rate limit exceeded: Please try again in 20s."
    assert (report.rate_limited, report.retry_after) == (True, 20)
    network = _goose_says("Network error: connection reset\n\nPlease resend your message to try again.")
    report = read_report(_log(tmp_path, [network]), "goose", now=NOW)
    assert (report.error, report.rate_limited) == ("Network error: connection reset", False)


def test_goose_text_that_only_mentions_an_error_is_not_one(tmp_path: Path) -> None:
    quoted = _goose_says("The test printed: Ran into this error: x. I fixed the cause.")
    assert read_report(_log(tmp_path, [quoted, GOOSE_COMPLETE]), "goose", now=NOW).error is None


# --- hostile reports: what no agent should write must not fail a task that succeeded -------------


@pytest.mark.parametrize(
    "garbage",
    [
        "[" * 100_000,  # deeper than the JSON parser goes: RecursionError, not ValueError
        '{"a":' * 100_000,
        '{"type": "result", "is_error": false, "result": "done", "total_cost_usd": ' + "9" * 400 + "}",
    ],
)
def test_a_line_the_parser_cannot_take_is_skipped(tmp_path: Path, garbage: str) -> None:
    """Before: RecursionError and OverflowError (float of a 400-digit integer) escaped the reader,
    and the task whose agent succeeded failed with them."""
    report = read_report(_log(tmp_path, [garbage, *CLAUDE_OK]), "claude", now=NOW)
    assert report == AgentReport(None, 0.0421, 1200, 340)
    path = tmp_path / "gemini.log"
    path.write_text("$ gemini\n" + "[" * 100_000 + "\n")
    assert read_report(path, "gemini", now=NOW) == AgentReport()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "9" * 400])
def test_a_cost_or_reset_that_is_no_finite_number_is_none(tmp_path: Path, number: str) -> None:
    """Before: a cost of NaN or 1e400 went into --json as NaN or Infinity (not JSON); a reset of
    NaN became "now" (max(0.0, nan) is 0.0) and a 400-digit one raised OverflowError."""
    result = '{"type": "result", "is_error": false, "result": "done", "total_cost_usd": ' + number + "}"
    assert read_report(_log(tmp_path, [result]), "claude", now=NOW).cost_usd is None
    event = '{"type": "rate_limit_event", "rate_limit_info": {"status": "rejected", "resetsAt": ' + number + "}}"
    report = read_report(_log(tmp_path, [event]), "claude", now=NOW, failed=True)
    assert report.rate_limited
    assert report.retry_after is None  # no reset named: the back-off applies


def test_aider_cost_that_is_no_number_is_skipped(tmp_path: Path) -> None:
    """Before: ``$1.2.3 session`` matched ``[\\d.]+`` and float() raised ValueError: the task failed."""
    lines = [
        "Tokens: 1 sent, 1 received. Cost: $1 message, $1.2.3 session.",
        "Tokens: 1k sent. Cost: $0.5 message, $. session.",
    ]
    assert read_report(_log(tmp_path, lines), "aider", now=NOW) == AgentReport()


def test_a_rate_limit_quoted_in_a_pretty_printed_answer_is_not_one(tmp_path: Path) -> None:
    """Before: gemini prints its one object over several lines; a line of it (``"response": "I added
    a rate limit..."``) was taken for stderr, and a failed attempt paused as rate-limited, run again
    and again for rate_limit_max_wait (2 h) without spending a retry."""
    answer = {"response": "I added a rate limit (HTTP 429) to the login endpoint.", "stats": {}}
    path = tmp_path / "gemini.log"
    path.write_text("$ gemini -p x\n" + json.dumps(answer, indent=2) + "\n")
    assert not read_report(path, "gemini", now=NOW, failed=True).rate_limited
    path.write_text(
        "$ gemini -p x\n" + json.dumps({**answer, "error": {"message": "tool failed", "code": 1}}, indent=2)
    )
    report = read_report(path, "gemini", now=NOW, failed=True)
    assert (report.error, report.rate_limited) == ("tool failed", False)


def test_aider_text_of_a_failed_attempt_is_its_answer_not_stderr(tmp_path: Path) -> None:
    """Before: aider prints the model's answer as plain text; when it exited non-zero, an answer
    that spoke of rate limits made the attempt rate-limited (its own error lines are read apart)."""
    lines = ["Aider v0.86.1", "+ @rate_limit(per_minute=60)  # too many requests get a 429", "Applied edit to api.py"]
    assert not read_report(_log(tmp_path, lines), "aider", now=NOW, failed=True).rate_limited


def test_codex_error_events_it_got_past_are_not_its_outcome(tmp_path: Path) -> None:
    """Before: codex reports a dropped stream it retries as an ``error`` event ("Reconnecting...
    1/5"), then completes the turn; such a run, exit 0, failed as reported an error, and one
    whose retry notice named a 429 paused as rate-limited and ran its whole task again."""
    events = [
        {"type": "thread.started", "thread_id": "t"},
        {"type": "turn.started"},
        {"type": "error", "message": "Reconnecting... 1/5 (stream disconnected: 429 Too Many Requests)"},
        {"type": "item.completed", "item": {"id": "i", "type": "agent_message", "text": "done"}},
        {"type": "turn.completed", "usage": {"input_tokens": 20, "output_tokens": 3}},
    ]
    assert read_report(_log(tmp_path, events), "codex", now=NOW) == AgentReport(None, None, 20, 3)
    gave_up = [*events[:3], {"type": "turn.failed", "error": {"message": "exceeded retry limit, last status: 429"}}]
    report = read_report(_log(tmp_path, gave_up), "codex", now=NOW)
    assert report.rate_limited


def test_a_hostile_error_message_is_read_in_linear_time(tmp_path: Path) -> None:
    """Before: the Retry-After pattern (``\\s*[:=]?\\s*``) backtracked quadratically; a codex error
    of "Retry-After" and 100k spaces took minutes in the reader, holding the GIL: the run froze,
    deaf to Ctrl-C, its claims held. Read in a child process, killed after WAIT: a regex holding
    the GIL would keep a thread's bounded join from returning."""
    failed = {"type": "turn.failed", "error": {"message": "429 rate limit. Retry-After" + " " * 100_000 + "x"}}
    log = _log(tmp_path, [failed])
    script = (
        "import sys; from queue_core.reports import read_report; "
        "r = read_report(sys.argv[1], 'codex', now=0.0, failed=True); print(r.rate_limited, r.retry_after)"
    )
    root = Path(__file__).parents[2]  # this checkout's queue_core
    done = subprocess.run(
        [sys.executable, "-c", script, str(log)], capture_output=True, text=True, timeout=WAIT, cwd=root
    )
    assert done.stdout.split() == ["True", "None"], done.stderr


def test_control_characters_in_an_error_are_shown_escaped(tmp_path: Path) -> None:
    """Before: the error, printed in the event line and the summary, kept the agent's escape
    sequences: a rate-limit line on stderr could retitle the terminal or clear the screen."""
    hostile = "429 rate limit \x1b]0;PWNED\x07\x1b[2J\x9b31m done"
    report = read_report(_log(tmp_path, [CLAUDE_OK[0], hostile]), "claude", now=NOW, failed=True)
    assert report.rate_limited
    assert report.error == "429 rate limit \\x1b]0;PWNED\\x07\\x1b[2J\\x9b31m done"
    result = {"type": "result", "is_error": True, "result": "failed \x1b[31m\u202eevil"}
    assert read_report(_log(tmp_path, [result]), "claude", now=NOW).error == "failed \\x1b[31m\\u202eevil"
