"""A fake ``claude``, ``codex``, ``gemini``, ``aider``, ``cursor``, ``opencode`` or ``goose``: the one
``$FAKE_TOOL`` names (the preset's name; Cursor's executable is ``cursor-agent``).

It parses its argv as the real tool documents it (argparse, which like the tools' own parsers
reads a value that starts with ``-`` as an option unless it follows ``--`` or is written
``--opt=value``), then writes what it understood to ``$FAKE_AGENT_OUT/<task id>.json``: the
prompt, the files it was given, and whether it may edit unattended; each run appends a line to
``<task id>.runs``. Like the real tools run headless, it edits (writes ``edited``) only with the
mode that allows edits, and exits 0 either way; ``$FAKE_REPORT`` picks what it reports and how
it exits (see REPORTS). An argv it cannot parse exits 2, as argparse does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def parse(tool: str, argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog=tool)
    if tool == "claude":  # docs.claude.com/en/docs/claude-code/headless
        parser.add_argument("-p", "--print", action="store_true")
        parser.add_argument("--permission-mode", default="default")
        parser.add_argument("--output-format", default="text")
        parser.add_argument("--verbose", action="store_true")
        parser.add_argument("--settings")  # a file, or inline JSON: merged with the user's settings
        parser.add_argument("prompt")
        args = parser.parse_args(argv)
        unattended = args.print and args.permission_mode in ("acceptEdits", "bypassPermissions")
        return {
            "prompt": args.prompt,
            "unattended": unattended,
            "output": args.output_format,
            "files": [],
            "settings": args.settings,
        }
    if tool == "codex":  # developers.openai.com/codex/noninteractive
        parser.add_argument("command", choices=["exec"])
        parser.add_argument("--sandbox", default="read-only")
        parser.add_argument("--json", action="store_true")
        parser.add_argument("prompt")
        args = parser.parse_args(argv)
        return {
            "prompt": args.prompt,
            "unattended": args.sandbox == "workspace-write",
            "output": args.json,
            "files": [],
        }
    if tool == "gemini":  # geminicli.com/docs/cli/headless
        parser.add_argument("-p", "--prompt", required=True)
        parser.add_argument("--approval-mode", default="default")
        parser.add_argument("--output-format", default="text")
        args = parser.parse_args(argv)
        unattended = args.approval_mode in ("auto_edit", "yolo")
        return {"prompt": args.prompt, "unattended": unattended, "output": args.output_format, "files": []}
    if tool == "aider":  # aider.chat/docs/config/options.html
        parser.add_argument("--yes-always", action="store_true")
        parser.add_argument("--message")
        parser.add_argument("--no-auto-commits", dest="auto_commits", action="store_false")
        parser.add_argument("--no-dirty-commits", dest="dirty_commits", action="store_false")
        parser.add_argument("--no-gitignore", dest="gitignore", action="store_false")
        parser.add_argument("files", nargs="*")
        args = parser.parse_args(argv)
        quiet = not (args.auto_commits or args.dirty_commits or args.gitignore)  # commits and .gitignore: off
        return {"prompt": args.message, "unattended": args.yes_always and quiet, "output": None, "files": args.files}
    if tool == "cursor":  # cursor.com/docs/cli/reference/parameters; its parser (commander) honours --
        parser.add_argument("-p", "--print", action="store_true")
        parser.add_argument("-f", "--force", "--yolo", action="store_true")
        parser.add_argument("--trust", action="store_true")
        parser.add_argument("--output-format", default="text")
        parser.add_argument("prompt")
        args = parser.parse_args(argv)
        unattended = args.print and args.force
        return {"prompt": args.prompt, "unattended": unattended, "output": args.output_format, "files": []}
    if tool == "opencode":  # opencode.ai/docs/cli (run), opencode.ai/docs/permissions: edit is "allow" by default
        parser.add_argument("command", choices=["run"])
        parser.add_argument("--format", choices=["default", "json"], default="default")
        parser.add_argument("--agent", default="build")
        parser.add_argument("message", nargs="+")
        args = parser.parse_args(argv)
        prompt = " ".join(args.message)
        return {"prompt": prompt, "unattended": args.agent != "plan", "output": args.format, "files": []}
    if tool == "goose":  # block.github.io/goose/docs/guides/goose-cli-commands (run); GOOSE_MODE defaults to auto
        parser.add_argument("command", choices=["run"])
        parser.add_argument("-t", "--text", required=True)
        parser.add_argument("--no-session", action="store_true")
        parser.add_argument("--output-format", choices=["text", "json", "stream-json"], default="text")
        args = parser.parse_args(argv)
        unattended = os.environ.get("GOOSE_MODE", "auto") == "auto"
        return {"prompt": args.text, "unattended": unattended, "output": args.output_format, "files": []}
    raise SystemExit(f"no fake for {tool!r}")


#: What each tool prints at the end when ``$FAKE_REPORT`` is "ok" or "error" (a failure behind
#: exit 0 that is not a rate limit), or "limit" (a rate limit, with a reset "now" where the tool
#: can name one), as it documents. "limit-once" is "limit" the first time a task runs, then "ok".
REPORTS: dict[str, dict[str, list[object]]] = {
    "claude": {
        "ok": [
            {"type": "system", "subtype": "init"},
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "result": "done",
                "total_cost_usd": 0.0125,
                "usage": {"input_tokens": 1000, "output_tokens": 200},
            },
        ],
        "error": [{"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 5}],
        "limit": [
            {"type": "rate_limit_event", "rate_limit_info": {"status": "rejected", "resetsAt": "NOW"}},
            {"type": "result", "subtype": "success", "is_error": True, "result": "You've hit your limit · resets 3pm"},
        ],
    },
    "codex": {
        "ok": [{"type": "turn.completed", "usage": {"input_tokens": 300, "output_tokens": 40}}],
        "error": [{"type": "turn.failed", "error": {"message": "stream error"}}],
        "limit": [{"type": "turn.failed", "error": {"message": "You've hit your usage limit. Try again in 0s."}}],
    },
    "gemini": {
        "ok": [{"response": "done", "stats": {"models": {"m": {"tokens": {"prompt": 50, "candidates": 5}}}}}],
        "error": [{"error": {"message": "model not found", "code": 1}}],
        "limit": [{"error": {"message": "Quota exceeded. Please retry in 0s.", "code": 429}}],
    },
    "aider": {
        "ok": ["Tokens: 1.2k sent, 200 received. Cost: $0.01 message, $0.01 session."],
        "error": ["litellm.APIConnectionError: Connection error."],
        "limit": ['litellm.RateLimitError: AnthropicException - {"type":"rate_limit_error"}'],
    },
    # Cursor's last stream-json line is the Claude-shaped result; a failure is a message on stderr
    # and a non-zero exit (cursor.com/docs/cli/reference/output-format), its limit as in cursor/cursor#3703.
    "cursor": {
        "ok": [
            {"type": "system", "subtype": "init", "session_id": "s", "model": "Auto"},
            {"type": "result", "subtype": "success", "is_error": False, "duration_ms": 1234, "result": "done"},
        ],
        "error": ["Error: Connection to the model failed"],
        "limit": ["Error: You've hit your usage limit"],
    },
    # opencode run --format json: step_finish parts carry cost and tokens, an error is an "error"
    # event, and the run exits 0 anyway (anomalyco/opencode#2489, #26509).
    "opencode": {
        "ok": [
            {"type": "step_start", "sessionID": "ses_1", "part": {"type": "step-start"}},
            {"type": "text", "sessionID": "ses_1", "part": {"type": "text", "text": "done"}},
            {
                "type": "step_finish",
                "sessionID": "ses_1",
                "part": {"type": "step-finish", "reason": "stop", "cost": 0.02, "tokens": {"input": 800, "output": 90}},
            },
        ],
        "error": [{"type": "error", "error": {"name": "UnknownError", "data": {"message": "boom"}}}],
        "limit": [
            {
                "type": "error",
                "error": {
                    "name": "APIError",
                    "data": {"message": "Too many", "statusCode": 429, "responseHeaders": {"retry-after": "0"}},
                },
            }
        ],
    },
    # goose run --output-format stream-json: an agent error is an "error" event, a provider's an
    # assistant message "Ran into this error: ..."; "complete" has the tokens; exit 0 either way.
    "goose": {
        "ok": [
            {"type": "message", "message": {"role": "assistant", "content": [{"type": "text", "text": "done"}]}},
            {"type": "complete", "total_tokens": 700, "input_tokens": 600, "output_tokens": 100},
        ],
        "error": [{"type": "error", "error": "Request failed: 400 Bad Request"}, {"type": "complete"}],
        "limit": [
            {
                "type": "message",
                "message": {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "text",
                            "text": "Ran into this error: Rate limit exceeded: try again in 0s.\n\n"
                            "Please retry if you think this is a transient or recoverable error.",
                        }
                    ],
                },
            },
            {"type": "complete", "total_tokens": 0},
        ],
    },
}
#: Claude Code says "you've hit your limit" with exit 1; Cursor fails with exit 1 (its message on
#: stderr); the others exit 0 whatever they say.
LIMIT_EXIT = {"claude": 1, "cursor": 1}
ERROR_EXIT = {"cursor": 1}


#: How long a scripted step waits for its ``await`` file, at most.
AWAIT_S = 60.0


def play_edits(settings: str | None, script: list[dict[str, str]], record: Path) -> None:
    """Play ``$FAKE_EDITS``, a list of edits, as Claude Code runs its PreToolUse hooks
    (code.claude.com/docs/en/hooks): before each edit, every command hook of ``settings`` whose
    matcher (a regex) matches the tool's name in full runs through a shell, the call as JSON on
    stdin; exit code 2 blocks the edit (its stderr is what the model reads), 0 lets it through,
    and any other code is a non-blocking error: the edit goes ahead. Each step writes one JSON
    line to ``record``: the edit, the hooks' exit codes, what blocked it, when it started and ended.

    A step ``{"await": FILE}`` first waits (AWAIT_S at most) for FILE to exist, ``{"touch": FILE}``
    makes it: barriers with the test.
    """
    hooks = json.loads(settings)["hooks"]["PreToolUse"] if settings else []
    for step in script:
        if "await" in step:
            deadline = time.monotonic() + AWAIT_S
            while not Path(step["await"]).exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # a bounded poll for another process's file
        if "touch" in step:
            Path(step["touch"]).touch()
        if "tool" not in step:
            continue
        tool, path = step["tool"], os.path.abspath(step["path"])
        key = "notebook_path" if tool == "NotebookEdit" else "file_path"
        call = {
            "session_id": "fake",
            "transcript_path": os.devnull,
            "cwd": os.getcwd(),
            "hook_event_name": "PreToolUse",
            "tool_name": tool,
            "tool_input": {key: path, "content": step.get("content", tool)},
        }
        started = time.time()
        codes, blocked = [], None
        for matcher in hooks:
            if not re.fullmatch(matcher.get("matcher") or ".*", tool):
                continue
            for hook in matcher["hooks"]:
                done = subprocess.run(
                    ["sh", "-c", hook["command"]],
                    input=json.dumps(call).encode(),
                    capture_output=True,
                    timeout=hook.get("timeout", 600),
                    check=False,
                )
                codes.append(done.returncode)
                if done.returncode == 2:
                    blocked = done.stderr.decode()
        if blocked is None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as edited:
                edited.write(step.get("content", tool) + "\n")
        line = {"path": step["path"], "tool": tool, "codes": codes, "blocked": blocked}
        with open(record, "a") as out:
            out.write(json.dumps({**line, "started": started, "ended": time.time()}) + "\n")


def main() -> None:
    tool = os.environ["FAKE_TOOL"]
    task = os.environ["PM_TASK_ID"]
    out = Path(os.environ["FAKE_AGENT_OUT"])
    seen = {"tool": tool, "argv": sys.argv[1:], **parse(tool, sys.argv[1:])}
    (out / f"{task}.json").write_text(json.dumps(seen))
    with open(out / f"{task}.runs", "a") as runs:
        runs.write("run\n")
    report = os.environ.get("FAKE_REPORT", "")
    if report == "limit-once":
        report = "limit" if (out / f"{task}.runs").read_text().count("run") == 1 else "ok"
    if tool == "claude" and os.environ.get("FAKE_EDITS"):
        play_edits(seen.get("settings"), json.loads(os.environ["FAKE_EDITS"]), out / f"{task}.edits")
    if seen["unattended"] and report != "limit":
        Path("edited").mkdir(exist_ok=True)
        Path("edited", task).write_text(tool)
    exit_code = {"limit": LIMIT_EXIT, "error": ERROR_EXIT}.get(report, {}).get(tool, 0)
    for line in REPORTS.get(tool, {}).get(report, []):
        text = line if isinstance(line, str) else json.dumps(line).replace('"NOW"', str(int(time.time())))
        print(text, flush=True, file=sys.stderr if exit_code and isinstance(line, str) else sys.stdout)
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
