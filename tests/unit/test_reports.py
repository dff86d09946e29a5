"""The readers of what agents report in their logs, on samples shaped as each tool documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from queue_core.reports import MAX_LINE, AgentReport, read_report

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


@pytest.mark.parametrize("fmt", ["claude", "codex", "gemini"])
def test_a_missing_log_reports_nothing(tmp_path: Path, fmt: str) -> None:
    assert read_report(tmp_path / "absent.log", fmt) == AgentReport()
