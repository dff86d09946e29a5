"""The claim hook: Claude Code runs it before each Edit, Write, MultiEdit and NotebookEdit.

The ``claude`` preset registers it as a ``PreToolUse`` hook (``--settings``, see cli/presets.py):
``python -I -S -c LAUNCH CLI_DIR MODE`` imports this module alone (its bytecode cached, where a
script is compiled at each run), no site packages and nothing else of ours, so that an edit
inside the task's claims costs an interpreter's start and one read of claims.json. ``python -I
-S claim_hook.py MODE`` does the same. It
reads the tool call from stdin (``tool_input.file_path``, or ``notebook_path``) and the task
from its environment (``PM_RUN_ID``, ``PM_TASK_ID``, ``PM_STATE_DIR``, ``PM_REPO``,
``PM_WORKTREE``), and:

* allows (exit 0) an edit outside the work tree (a scratch file: no other task's business), and
  one inside a write claim the task was given (``PM_FILES``) or holds (its hold in claims.json);
* otherwise, by MODE (the agent's ``on_unclaimed_edit``): ``claim`` asks ``project-manager claim
  --wait PM_HOOK_WAIT`` (default HOOK_WAIT_S) and allows the edit if it was granted; ``deny`` asks ``project-manager
  check`` only to say who holds it; ``allow`` lets it be (the after-task check reports it).

Only exit code 2 blocks in Claude Code (its stderr is what Claude reads); any other code lets the
edit through. So every refusal, and every failure of this script, exits 2: a hook that cannot tell
blocks; a block is noted in the task's log (``PM_LOG``) too, for whoever reads it afterwards. An
edit in another checkout of the repository (the main one from a worktree task: it would bypass the
merge-back; another task's worktree), in ``.git`` or in the state directory is blocked too.

Whether a claim covers the path is decided here only for plain claims (no wildcard, no escape):
the path itself or below it, as queue_core.claims has it. Anything else, and anything not held,
goes to the full rules in a ``project-manager`` process of this interpreter.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False  # typing's own costs an import: mypy reads this name alike
if TYPE_CHECKING:
    from typing import Any, NoReturn

#: How long a ``claim`` edit waits for another task's claim before it is blocked, unless the
#: environment's ``PM_HOOK_WAIT`` says (seconds, at most MAX_WAIT_S).
HOOK_WAIT_S = 5.0
MAX_WAIT_S = 60.0
#: What the command that decides may take beyond the wait; Claude's timeout for the hook is more.
COMMAND_SLACK_S = 30.0
MODES = ("claim", "deny", "allow")
_WILD = frozenset("*?[\\")
_ADVICE = "do not edit it: finish without it, or stop and say so"


def main(argv: list[str], stdin: bytes, env: dict[str, str]) -> tuple[int, str]:
    """The exit code and the message for stderr."""
    mode = argv[0] if argv else ""
    if mode not in MODES:
        return 2, f"project-manager's claim hook: unknown mode {mode!r} (expected {', '.join(MODES)}); edit blocked"
    call = loads(stdin)
    tool_input = call.get("tool_input") or {}
    raw = tool_input.get("file_path") or tool_input.get("notebook_path")
    if not isinstance(raw, str) or not raw:
        return 2, f"project-manager's claim hook cannot tell which file {call.get('tool_name')} edits; edit blocked"
    missing = [name for name in ("PM_RUN_ID", "PM_TASK_ID", "PM_STATE_DIR", "PM_REPO") if not env.get(name)]
    if missing:
        return 2, f"project-manager's claim hook runs outside a task ({', '.join(missing)} not set); edit blocked"
    cwd = call.get("cwd") if isinstance(call.get("cwd"), str) else os.getcwd()
    path = os.path.realpath(os.path.join(cwd, raw))
    top = os.path.realpath(env.get("PM_WORKTREE") or env["PM_REPO"])
    rel = _inside(path, top)
    if rel is None:
        other = _checkout_of(path, env)
        if other is not None:
            return 2, f"{raw} is in {other}; this task works in {top}: edit files there only"
        return 0, ""  # not in the repository: no claim is about it
    # The state directory where it lies in the work tree (outside git); a worktree lies in it by default.
    state = _inside(os.path.realpath(env["PM_STATE_DIR"]), top)
    in_state = state is not None and (rel == state or rel.startswith(state + "/") or state == "")
    if in_state or rel == "" or rel == ".git" or rel.startswith(".git/"):
        return 2, f"{raw} is not a file of the repository's work tree; {_ADVICE}"
    nested = _checkout(os.path.dirname(path), _common(env), top)  # worktree_root inside the repository
    if nested is not None:
        return 2, f"{raw} is in {nested}; this task works in {top}: edit files there only"
    if _declared(rel, env) or _claimed(rel, env):
        return 0, ""
    if mode == "allow":
        return 0, ""
    if mode == "claim":
        wait = _wait(env.get("PM_HOOK_WAIT"))
        code, said = _ask(["claim", "--wait", str(wait), "--", path], env, wait)
        if code == 0:
            return 0, ""
        reason = said.rpartition("not claimed: ")[2] or "it could not be claimed"
        return 2, f"{reason if rel in reason else f'{rel}: {reason}'}; {_ADVICE}"
    code, said = _ask(["check", "--", path], env, 0.0)
    if code == 0:  # claimed meanwhile, under a claim this script does not read (a pattern)
        return 0, ""
    why = said.split(": ", 1)[-1] if said else "not among this task's claims"
    return 2, f"{rel} is not among this task's claims ({why}); {_ADVICE}"


class _Decoding:
    """What the json package's C scanner asks of its decoder: json.loads's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}  # noqa: RUF012 - the scanner's own cache of keys

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.lower().replace("infinity", "inf"))  # NaN, Infinity, -Infinity, as json reads them


def loads(data: bytes) -> Any:
    """``json.loads(data)``, by the json package's C scanner without importing the package, whose
    import (``re``, ``enum``) costs more than everything else an edit inside the claims does;
    the package itself where there is no C scanner. Raises ValueError."""
    try:
        from _json import make_scanner
    except ImportError:  # not CPython
        import json

        return json.loads(data)
    text = data.decode("utf-8")
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = make_scanner(_Decoding)(text, start)  # type: ignore[arg-type]  # duck-typed, as json.decoder
    except StopIteration as exc:
        raise ValueError(f"not JSON at character {exc.value}") from None
    finally:
        _Decoding.memo.clear()
    if text[end:].strip(" \t\n\r"):
        raise ValueError(f"extra data at character {end}")
    return value


def _inside(path: str, top: str) -> str | None:
    """``path`` relative to ``top`` ("" for ``top`` itself), None if it lies outside."""
    if path == top:
        return ""
    prefix = top.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def _checkout_of(path: str, env: dict[str, str]) -> str | None:
    """Which other checkout of the repository ``path`` (outside the task's work tree) lies in:
    the main one (a worktree task's edit there would bypass its merge-back), or another task's
    worktree, wherever worktrees are; None if none."""
    if _inside(path, os.path.realpath(env["PM_REPO"])) is not None:
        return "the main checkout"
    return _checkout(os.path.dirname(path), _common(env), None)


def _common(env: dict[str, str]) -> str:
    """The git directory every checkout of the repository shares: the state directory's parent."""
    return os.path.dirname(os.path.realpath(env["PM_STATE_DIR"]))


def _checkout(directory: str, common: str, top: str | None) -> str | None:
    """The checkout of this repository that ``directory`` lies in, found at the nearest ``.git``
    at or above it (below ``top``, if given): "the main checkout" (``.git`` is the shared git
    directory) or "another worktree of this repository" (a ``.git`` file naming a worktree of
    it); None for another repository's (a submodule, a nested clone) or none. A ``.git`` that is
    not a regular file or directory raises OSError."""
    while directory != top:
        dot_git = os.path.join(directory, ".git")
        if os.path.isdir(dot_git):
            return "the main checkout" if os.path.realpath(dot_git) == common else None
        if os.path.lexists(dot_git):  # a linked worktree's: "gitdir: <common>/worktrees/<name>"
            text = _read_regular(dot_git, 4096).decode("utf-8", "replace").strip()
            git_dir = os.path.realpath(os.path.join(directory, text.removeprefix("gitdir:").strip()))
            inside = _inside(git_dir, os.path.join(common, "worktrees")) is not None
            return "another worktree of this repository" if inside else None
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
    return None


def _declared(rel: str, env: dict[str, str]) -> bool:
    """Whether a plain write claim the task was given (``PM_FILES``, held while it runs) covers
    ``rel``: no file read, and on a cluster's worker, where the registry is not, the only way."""
    return any(_covers(claim, rel) for claim in env.get("PM_FILES", "").splitlines())


def _claimed(rel: str, env: dict[str, str]) -> bool:
    """Whether the task's hold has a plain write claim covering ``rel``; False if unsure."""
    try:
        holds = loads(_read_regular(os.path.join(env["PM_STATE_DIR"], "claims.json")))["holds"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for hold in holds:
        if hold.get("task") == env["PM_TASK_ID"] and hold.get("owner", {}).get("run") == env["PM_RUN_ID"]:
            return any(_covers(claim, rel) for claim in hold.get("writes", ()) if isinstance(claim, str))
    return False


def note(log: str | None, text: str) -> None:
    """Append ``text`` to the task's log (``PM_LOG``), as queue_core.runner.append_to_log does:
    never through a link, never a FIFO's wait; a log that cannot be written is left as it is."""
    if not log:
        return
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(log, flags, 0o600)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.write(fd, text.encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass


def _read_regular(path: str, limit: int = 1 << 30) -> bytes:
    """The content of the regular file ``path``, its first ``limit`` bytes: never a symlink
    followed nor a FIFO waited on (OSError for anything else), as queue_core.statedir reads the state."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        chunks: list[bytes] = []
        while limit > 0 and (chunk := os.read(fd, min(limit, 1 << 20))):
            chunks.append(chunk)
            limit -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _covers(claim: str, rel: str) -> bool:
    """Whether the plain claim ``claim`` covers ``rel``: it, or below it. False for a pattern,
    and for a text that is not written as queue_core.claims writes a claim (``./a``, ``a//b``,
    a space at either end: ``Claim.parse`` would read another path)."""
    if claim == "**":
        return True
    base = claim.removesuffix("/**").removesuffix("/")
    if not base or _WILD & set(base) or base != base.strip():
        return False
    if any(part in ("", ".", "..") or part != part.strip() for part in base.split("/")):
        return False
    return rel == base or rel.startswith(base + "/")


#: ``project-manager`` in this interpreter, the current folder off sys.path: an agent's repository
#: may well have a ``cli`` package of its own.
_COMMAND = "import sys; del sys.path[0]; sys.argv[0] = 'project-manager'; from cli.launch import main; main()"


def _wait(text: str | None) -> float:
    """``PM_HOOK_WAIT`` in seconds; HOOK_WAIT_S if unset or not a number from 0 to MAX_WAIT_S."""
    try:
        wait = float(text) if text else HOOK_WAIT_S
    except ValueError:
        return HOOK_WAIT_S
    return wait if 0 <= wait <= MAX_WAIT_S else HOOK_WAIT_S


def _ask(args: list[str], env: dict[str, str], wait: float) -> tuple[int, str]:
    """Run ``project-manager ARGS``, which may wait ``wait`` seconds; its exit code and the last line it said."""
    import subprocess  # here: its import costs more than the rest of an edit inside the claims

    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and code; the path comes after --
            [sys.executable, "-c", _COMMAND, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=wait + COMMAND_SLACK_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 2, f"project-manager could not be asked ({exc})"
    said = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
    return done.returncode, said[-1] if said else ""


def run(argv: list[str]) -> NoReturn:
    """Decide on the call on stdin, say why on stderr, and exit 0 or 2 (see the module)."""
    try:
        code, message = main(argv, sys.stdin.buffer.read(), dict(os.environ))
    except BaseException as exc:  # noqa: BLE001 - only exit 2 blocks: a hook that fails must block
        code, message = 2, f"project-manager's claim hook failed ({type(exc).__name__}: {exc}); edit blocked"
    if message:
        try:  # noqa: SIM105 - contextlib costs an import; stderr may be closed: the exit code blocks
            os.write(2, (message + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
    if code == 2:
        note(os.environ.get("PM_LOG"), f"[project-manager] the claim hook blocked an edit: {message}\n")
    os._exit(code)  # nothing left to flush that could fail, and change the code


if __name__ == "__main__":
    run(sys.argv[1:])
