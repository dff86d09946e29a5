"""The agents a task gets by name alone (``claude: fix the parser``), with nothing to define.

A new agent is a row of PRESETS, and, if it reports in a format of its own, a reader in
queue_core/reports.py named in PRESET_REPORTS.
"""

from __future__ import annotations

__all__ = ["PRESETS", "PRESET_REPORTS"]

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
