"""The agents a task gets by name alone (``claude: fix the parser``), with nothing to define.

A new agent is a row of PRESETS, and, if it reports in a format of its own, a reader in
queue_core/reports.py named in PRESET_REPORTS.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

__all__ = ["EDIT_HOOKS", "ON_UNCLAIMED_EDIT", "PRESETS", "PRESET_REPORTS", "preset_command", "with_args"]

#: Argv templates of the agents that need no definition: each edits unattended, says what it did
#: in machine-readable form where the tool can, and gets the prompt where it cannot be read as an
#: option (after ``--``, or as ``--opt=value``). For ``shell`` the description is the script.
PRESETS: dict[str, tuple[str, ...]] = {
    # Claude Code, headless mode (docs.claude.com/en/docs/claude-code/headless): without a
    # permission mode, -p denies every edit and exits 0. stream-json needs --verbose with -p;
    # its last line is the {"type": "result", ...} object.
    "claude": (
        "claude",
        "-p",
        "--permission-mode",
        "acceptEdits",
        "--output-format",
        "stream-json",
        "--verbose",
        "--",
        "{prompt}",
    ),
    # Codex, non-interactive mode (developers.openai.com/codex/noninteractive): the default
    # sandbox is read-only; --full-auto is deprecated for --sandbox workspace-write. --json: JSONL events.
    "codex": ("codex", "exec", "--sandbox", "workspace-write", "--json", "--", "{prompt}"),
    # Aider (aider.chat/docs/config/options.html): it commits on its own and edits .gitignore
    # unless told not to; the files it may edit follow --.
    "aider": (
        "aider",
        "--yes-always",
        "--no-auto-commits",
        "--no-dirty-commits",
        "--no-gitignore",
        "--message={prompt}",
        "--",
        "{files}",
    ),
    # Gemini CLI, headless mode (geminicli.com/docs/cli/headless): -p/--prompt forces it; the
    # default approval mode asks before each edit. JSON: {"response", "stats", "error"}.
    "gemini": ("gemini", "--approval-mode=auto_edit", "--output-format=json", "--prompt={prompt}"),
    # Cursor CLI (cursor.com/docs/cli/reference/parameters, .../output-format): --force "allows
    # commands unless explicitly denied". In a folder it has not trusted, -p prints a refusal and
    # exits 0 unless given --trust or --force (escoffier-labs/brigade#205); multica-ai/multica#7791
    # saw --force not suffice, so both. Its parser (commander) ends options at -- (kube-dojo/
    # kube-dojo.github.io#1487). stream-json ends with Claude Code's result event; a failure
    # exits non-zero, its message on stderr.
    "cursor": ("cursor-agent", "-p", "--force", "--trust", "--output-format", "stream-json", "--", "{prompt}"),
    # opencode (opencode.ai/docs/cli, opencode.ai/docs/permissions): "edit" defaults to "allow";
    # what still asks (a path outside the project, a loop) is refused by run, which has no one to
    # ask. No permission flag: --dangerously-skip-permissions became --auto (KE7/helix#60). What
    # follows -- is the message (anomalyco/opencode#4904); run quotes an argument with a space.
    # It can exit 0 after an error event (anomalyco/opencode#2489, #26509).
    "opencode": ("opencode", "run", "--format", "json", "--", "{prompt}"),
    # goose (block.github.io/goose/docs/guides/goose-cli-commands): run --text runs one prompt and
    # exits; --no-session keeps it out of the session list; stream-json shows the errors it exits
    # 0 after (aaif-goose/goose#4612, #11909). It edits headless in GOOSE_MODE=auto, the default;
    # approve modes stop a headless run (aaif-goose/goose#7915, #9125). clap takes --text=VALUE whole.
    "goose": ("goose", "run", "--no-session", "--output-format", "stream-json", "--text={prompt}"),
    "shell": ("sh", "-c", "{description}"),
}
#: The format in which each preset reports errors, cost and tokens (see queue_core.reports).
PRESET_REPORTS: dict[str, str] = {
    "claude": "claude",
    "codex": "codex",
    "gemini": "gemini",
    "aider": "aider",
    "cursor": "claude",  # the same result event
    "opencode": "opencode",
    "goose": "goose",
}

#: What the claim hook does with an edit outside the task's claims (an agent's ``on_unclaimed_edit``).
ON_UNCLAIMED_EDIT = ("claim", "deny", "allow")
#: The presets whose agent runs the claim hook before each edit (see cli/claim_hook.py).
EDIT_HOOKS = ("claude",)
#: Claude Code's file-editing tools (code.claude.com/docs/en/hooks): NotebookEdit names its file
#: ``notebook_path``, the others ``file_path``. Bash is not among them: it cannot be guarded so.
CLAUDE_EDIT_TOOLS = "Edit|Write|MultiEdit|NotebookEdit"
#: Claude's limit on the hook, in seconds: more than it takes (claim_hook: MAX_WAIT_S + COMMAND_SLACK_S).
#: A hook that times out, or exits other than 0 or 2, lets the edit through.
CLAUDE_HOOK_TIMEOUT_S = 120


#: The claim hook's module imported alone from this folder (sys.argv[1]), bytecode cached; one that
#: cannot be imported (the folder gone) blocks the edit too: only exit 2 does.
CLAIM_HOOK_LAUNCH = """import os, sys
try:
    sys.path.insert(0, sys.argv[1])
    import claim_hook
except BaseException:
    os.write(2, b"project-manager's claim hook cannot be loaded; edit blocked\\n")
    os._exit(2)
claim_hook.run(sys.argv[2:])"""


def preset_command(name: str, args: tuple[str, ...] = (), on_unclaimed_edit: str = "claim") -> tuple[str, ...]:
    """Preset ``name``'s argv template with ``args`` before its ``--``; Claude Code's with the claim
    hook in ``--settings``, which Claude merges with the user's own settings."""
    if name in EDIT_HOOKS:
        args = (*args, "--settings", claude_settings(on_unclaimed_edit))
    return with_args(PRESETS[name], args)


def claude_settings(on_unclaimed_edit: str) -> str:
    """Claude Code settings (JSON) that run the claim hook, in ``on_unclaimed_edit`` mode, before
    each edit: this interpreter, isolated and without site packages, so that it starts fast."""
    here = str(Path(__file__).parent)
    command = shlex.join([sys.executable, "-I", "-S", "-c", CLAIM_HOOK_LAUNCH, here, on_unclaimed_edit])
    hooks = [{"type": "command", "command": command, "timeout": CLAUDE_HOOK_TIMEOUT_S}]
    return json.dumps({"hooks": {"PreToolUse": [{"matcher": CLAUDE_EDIT_TOOLS, "hooks": hooks}]}})


def with_args(command: tuple[str, ...], args: tuple[str, ...]) -> tuple[str, ...]:
    """``command`` with ``args`` before its ``--`` (after it, they would be the prompt's), else at its end."""
    if "--" in command:
        end = command.index("--")
        return (*command[:end], *args, *command[end:])
    return (*command, *args)
