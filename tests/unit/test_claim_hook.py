"""The claim hook (cli/claim_hook.py) that Claude Code runs before each edit.

``main`` is called directly, with the environment a task's agent has, on a real registry of a
git repository; the slow paths start ``project-manager`` in this interpreter. Only exit code 2
blocks an edit in Claude Code: every refusal and every failure here must be 2.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli import claim_hook
from cli.claim_hook import _covers, loads, main
from cli.presets import claude_settings
from queue_core.claims import Claim, normalise_path
from queue_core.claimsfile import parse
from queue_core.errors import InvalidClaimError
from queue_core.registry import Registry

from ..conftest import WAIT, git, git_repo

HOOK = Path(claim_hook.__file__)
ADVICE = "do not edit it"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"src/a.py": "", "src/b.py": "", "docs/c.md": ""})


@pytest.fixture
def registry(repo: Path) -> Iterator[Registry]:
    """Run r1: task t1 writes src/a.py and lib/, task t2 writes src/c.py."""
    reg = Registry(repo, "r1")
    with reg.session() as session:
        session.add("t1", "claude", ("src/a.py", "lib/"), ())
        session.add("t2", "claude", ("src/c.py",), ())
    yield reg
    reg.close()


def forbid_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the hook must decide without starting ``project-manager`` (or anything)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        pytest.fail(f"the hook started a process: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)


@pytest.fixture
def no_command(monkeypatch: pytest.MonkeyPatch, registry: Registry) -> None:
    """No process started, once the repository and its registry are made."""
    forbid_commands(monkeypatch)


def task_env(registry: Registry, task: str = "t1", **extra: str) -> dict[str, str]:
    """The environment of task ``task``'s agent (none of this session's own PM_ variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}
    env.update(PM_RUN_ID=registry.run, PM_TASK_ID=task, PM_STATE_DIR=str(registry.dir), PM_REPO=str(registry.repo))
    env.update(extra)
    return env


def edit(path: str | Path, cwd: Path | None = None, tool: str = "Edit", key: str = "file_path") -> bytes:
    call: dict[str, Any] = {"tool_name": tool, "tool_input": {key: str(path)}}
    if cwd is not None:
        call["cwd"] = str(cwd)
    return json.dumps(call).encode()


def hold_of(registry: Registry, task: str) -> Any:
    [hold] = [h for h in parse((registry.dir / "claims.json").read_bytes())[0] if h.task == task]
    return hold


# --- the fast path's matcher -------------------------------------------------------------------

_NAME = st.text(st.sampled_from("ab.-_ ~*?[]\\!:"), min_size=1, max_size=4)
_CLAIM_SEGMENT = st.one_of(_NAME, st.sampled_from(["a", "b", "**", ".", "..", "", "a ", " b"]))
_CLAIMS = st.builds(
    lambda parts, slash: "/".join(parts) + ("/" if slash else ""),
    st.lists(_CLAIM_SEGMENT, min_size=1, max_size=4),
    st.booleans(),
)
_TAILS = st.lists(st.one_of(_NAME, st.sampled_from(["a", "b"])), max_size=3)


def _a_path(text: str) -> bool:
    """Whether ``text`` is a repo-relative path as the hook has it: normalised, and one Claim.covers reads."""
    try:
        return normalise_path(text) == text
    except InvalidClaimError:
        return False


@settings(max_examples=300, deadline=None)
@given(raw=_CLAIMS, head=st.sampled_from(["claim", "other"]), other=_CLAIMS, joint=st.sampled_from("/_"), tail=_TAILS)
def test_covers_never_says_a_claim_covers_a_path_that_the_full_rules_do_not(
    raw: str, head: str, other: str, joint: str, tail: list[str]
) -> None:
    """For claims as typed (PM_FILES) and as the registry has them (their normalised text); the
    paths tried start with the claim's own text as often as not, so that it often says yes."""
    try:
        claim = Claim.parse(raw)
    except InvalidClaimError:
        return  # no task can be given it
    for text in {raw, claim.text}:
        start = (text if head == "claim" else other).rstrip("/")
        path = start + (joint + "/".join(tail) if tail else "")  # below it, or a sibling that starts alike
        if _a_path(path) and _covers(text, path):
            assert Claim.parse(text).covers(path), (text, path)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("build ", "build /x.o"),  # as typed at the repository's root, in PM_FILES
        (Claim.parse("docs /.").text, "docs /c.md"),  # as the registry writes a claim's text: "docs "
    ],
)
def test_covers_refuses_a_claim_text_that_ends_in_whitespace(text: str, path: str) -> None:
    """Before: 'build ' covered 'build /x.o', though Claim.parse reads it as the claim 'build'."""
    assert not Claim.parse(text).covers(path)
    assert not _covers(text, path)


def test_covers_takes_plain_paths_and_folders_and_leaves_patterns_to_the_full_rules() -> None:
    assert _covers("src/a.py", "src/a.py")
    assert _covers("src", "src/a.py")
    assert _covers("src/", "src/deep/a.py")
    assert _covers("src/**", "src/deep/a.py")
    assert _covers("**", "anything/at/all")
    assert not _covers("src", "srcx/a.py")
    assert not _covers("src/a.py", "src/a.pyc")
    for pattern in ("src/*.py", "src/?.py", "src/[ab].py", "src/\\[a\\].py", "**/a.py"):
        assert not _covers(pattern, "src/a.py")


@settings(max_examples=200, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=10,
    ),
    before=st.text(" \t\n\r", max_size=3),
    after=st.text(" \t\n\r", max_size=3),
)
def test_loads_reads_what_json_reads(value: Any, before: str, after: str) -> None:
    text = before + json.dumps(value) + after
    assert loads(text.encode()) == json.loads(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.sampled_from(' \t\n{}[]",:0123456789.eE+-truefalsnulNIfiy\\u\ufeff'), max_size=12))
def test_loads_refuses_what_json_refuses(text: str) -> None:
    try:
        expected: Any = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError, match=r"."):
            loads(text.encode())
    else:
        got = loads(text.encode())
        assert got == expected or repr(got) == repr(expected)  # NaN is no NaN's equal


# --- allowed without asking -------------------------------------------------------------------


@pytest.mark.usefixtures("no_command")
@pytest.mark.parametrize("mode", ["claim", "deny", "allow"])
def test_an_edit_inside_a_write_claim_is_allowed_without_starting_anything(
    registry: Registry, repo: Path, mode: str
) -> None:
    env = task_env(registry)
    assert main([mode], edit(repo / "src" / "a.py"), env) == (0, "")
    assert main([mode], edit("a.py", cwd=repo / "src"), env) == (0, "")  # relative to the call's cwd
    assert main([mode], edit(repo / "lib" / "new" / "x.py", tool="Write"), env) == (0, "")  # below a folder
    notebook = edit(repo / "lib" / "n.ipynb", tool="NotebookEdit", key="notebook_path")
    assert main([mode], notebook, env) == (0, "")


@pytest.mark.usefixtures("no_command")
def test_a_declared_file_is_allowed_from_the_environment_alone(registry: Registry, repo: Path) -> None:
    (registry.dir / "claims.json").unlink()  # nothing to read: PM_FILES says it
    env = task_env(registry, PM_FILES="docs/\nsrc/b.py")
    assert main(["deny"], edit(repo / "docs" / "c.md"), env) == (0, "")
    assert main(["deny"], edit(repo / "src" / "b.py"), env) == (0, "")


@pytest.mark.usefixtures("no_command")
def test_an_edit_through_a_symlink_counts_where_it_lands(registry: Registry, repo: Path, tmp_path: Path) -> None:
    (repo / "alias.py").symlink_to(repo / "src" / "a.py")
    (tmp_path / "scratch").mkdir()
    (repo / "out").symlink_to(tmp_path / "scratch")
    env = task_env(registry)
    assert main(["deny"], edit(repo / "alias.py"), env) == (0, "")  # src/a.py, claimed
    assert main(["deny"], edit(repo / "out" / "notes.txt"), env) == (0, "")  # outside the repository


@pytest.mark.usefixtures("no_command")
def test_an_edit_outside_the_repository_is_no_claims_business(registry: Registry, tmp_path: Path) -> None:
    for mode in ("claim", "deny"):
        assert main([mode], edit(tmp_path / "scratch.txt"), task_env(registry)) == (0, "")


@pytest.mark.usefixtures("no_command")
def test_allow_mode_lets_an_unclaimed_edit_through(registry: Registry, repo: Path) -> None:
    assert main(["allow"], edit(repo / "src" / "c.py"), task_env(registry)) == (0, "")  # t2's, even


def test_the_fast_path_reads_only_this_tasks_hold_in_this_run(registry: Registry, repo: Path) -> None:
    other = Registry(repo, "r2")
    try:
        with other.session() as session:
            session.add("t1", "claude", ("docs/",), ())  # the same task id, in another run
    finally:
        other.close()
    env = task_env(registry)
    assert claim_hook._claimed("src/a.py", env)
    assert not claim_hook._claimed("docs/c.md", env)
    assert not claim_hook._claimed("src/c.py", env)  # t2's
    assert not claim_hook._claimed("src/a.py", {**env, "PM_TASK_ID": "t2"})


# --- blocked ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_command")
def test_a_worktree_task_editing_the_main_checkout_is_blocked(registry: Registry, repo: Path, tmp_path: Path) -> None:
    worktree = tmp_path / "worktree"
    (worktree / "src").mkdir(parents=True)
    env = task_env(registry, PM_WORKTREE=str(worktree))
    code, message = main(["allow"], edit(repo / "src" / "a.py"), env)
    assert code == 2
    assert "is in the main checkout" in message
    assert str(worktree) in message
    assert main(["deny"], edit(worktree / "src" / "a.py"), env) == (0, "")  # its claims count from its worktree
    assert main(["deny"], edit(tmp_path / "elsewhere.txt"), env) == (0, "")


@pytest.mark.usefixtures("no_command")
@pytest.mark.parametrize("where", [".git/config", ".git/hooks/pre-commit", ".git", "."])
def test_an_edit_of_the_git_directory_or_the_repository_itself_is_blocked(
    registry: Registry, repo: Path, where: str
) -> None:
    code, message = main(["allow"], edit(repo / where), task_env(registry, PM_FILES="**"))
    assert code == 2
    assert "not a file of the repository's work tree" in message
    assert ADVICE in message


def test_an_edit_of_another_worktree_of_the_repository_is_blocked(
    registry: Registry, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other-worktree"
    git(repo, "worktree", "add", "-q", "-b", "other", str(other))
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    git(unrelated, "init", "-q")
    forbid_commands(monkeypatch)
    code, message = main(["allow"], edit(other / "src" / "a.py"), task_env(registry, PM_FILES="**"))
    assert code == 2
    assert "is in another worktree of this repository" in message
    assert main(["deny"], edit(unrelated / "x.py"), task_env(registry)) == (0, "")  # another repository


@pytest.mark.usefixtures("no_command")
def test_an_edit_of_the_state_directory_inside_the_work_tree_is_blocked(tmp_path: Path) -> None:
    """Outside git the state directory is .project-manager in the work tree: no task's file."""
    plain = tmp_path / "plain"
    plain.mkdir()
    registry = Registry(plain, "r1")
    try:
        env = task_env(registry, PM_FILES="**")
        code, message = main(["allow"], edit(registry.dir / "claims.json"), env)
        assert code == 2
        assert "not a file of the repository's work tree" in message
        assert main(["allow"], edit(plain / "notes.md"), env) == (0, "")
    finally:
        registry.close()


# --- fails closed -----------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], [""], ["bogus"], ["Claim"]])
def test_an_unknown_mode_blocks(registry: Registry, repo: Path, argv: list[str]) -> None:
    code, message = main(argv, edit(repo / "src" / "a.py"), task_env(registry))
    assert code == 2
    assert "unknown mode" in message


@pytest.mark.parametrize(
    "call",
    [
        {"tool_name": "Edit"},
        {"tool_name": "Edit", "tool_input": {}},
        {"tool_name": "Edit", "tool_input": {"file_path": ""}},
        {"tool_name": "Edit", "tool_input": {"file_path": 7}},
        {"tool_name": "Edit", "tool_input": {"file_path": ["src/a.py"]}},
        {"tool_name": "NotebookEdit", "tool_input": {"notebook": "src/a.ipynb"}},
    ],
)
def test_a_call_without_a_path_blocks(registry: Registry, call: dict[str, Any]) -> None:
    code, message = main(["claim"], json.dumps(call).encode(), task_env(registry))
    assert code == 2
    assert f"cannot tell which file {call['tool_name']} edits" in message


@pytest.mark.parametrize("name", ["PM_RUN_ID", "PM_TASK_ID", "PM_STATE_DIR", "PM_REPO"])
def test_an_edit_outside_a_task_blocks(registry: Registry, repo: Path, name: str) -> None:
    env = task_env(registry)
    for value in (None, ""):
        if value is None:
            del env[name]
        else:
            env[name] = value
        code, message = main(["allow"], edit(repo / "src" / "a.py"), env)
        assert code == 2
        assert f"runs outside a task ({name} not set)" in message


@pytest.mark.parametrize("answer", ["crashed", "cannot start", "timed out"])
@pytest.mark.parametrize("mode", ["claim", "deny"])
def test_a_command_that_fails_blocks_with_two_never_one(
    registry: Registry, repo: Path, monkeypatch: pytest.MonkeyPatch, answer: str, mode: str
) -> None:
    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        if answer == "cannot start":
            raise FileNotFoundError(argv[0])
        if answer == "timed out":
            raise subprocess.TimeoutExpired(argv, kwargs["timeout"])
        return subprocess.CompletedProcess(argv, 1, b"", b"Traceback (most recent call last):\nRuntimeError: boom\n")

    monkeypatch.setattr(subprocess, "run", run)
    code, message = main([mode], edit(repo / "docs" / "c.md"), task_env(registry))
    assert code == 2
    assert ADVICE in message


def test_claim_mode_asks_for_the_path_with_the_wait_the_environment_sets(
    registry: Registry, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[list[str], float]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        asked.append((argv, kwargs["timeout"]))
        return subprocess.CompletedProcess(argv, 0, b"claimed docs/c.md to write\n", b"")

    monkeypatch.setattr(subprocess, "run", run)
    path = str(repo / "docs" / "c.md")
    assert main(["claim"], edit(path), task_env(registry, PM_HOOK_WAIT="2.5")) == (0, "")
    assert main(["claim"], edit(path), task_env(registry, PM_HOOK_WAIT="lots")) == (0, "")
    assert [argv[-5:] for argv, _ in asked] == [["claim", "--wait", w, "--", path] for w in ("2.5", "5.0")]
    assert asked[0][0][0] == sys.executable
    assert [timeout for _, timeout in asked] == [2.5 + claim_hook.COMMAND_SLACK_S, 5.0 + claim_hook.COMMAND_SLACK_S]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (None, 5.0),
        ("", 5.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("60", 60.0),
        ("61", 5.0),
        ("-1", 5.0),
        ("x", 5.0),
        ("nan", 5.0),
        ("inf", 5.0),
    ],
)
def test_the_hook_wait_is_read_from_the_environment_within_bounds(text: str | None, seconds: float) -> None:
    assert claim_hook._wait(text) == seconds


def _script(stdin: bytes, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """The hook as Claude Code runs it: ``python -I -S claim_hook.py MODE``."""
    argv = [sys.executable, "-I", "-S", str(HOOK), *args]
    return subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=WAIT, check=False)


@pytest.mark.parametrize(
    "stdin",
    [b"garbage", b"", b"[]", b"null", b'{"tool_input": "src/a.py"}', b"\xff\xfe{}", b'{"tool_input": {'],
)
def test_the_script_blocks_with_two_on_input_it_cannot_read(registry: Registry, stdin: bytes) -> None:
    done = _script(stdin, task_env(registry), "claim")
    assert done.returncode == 2
    assert b"edit blocked" in done.stderr


def test_the_script_runs_isolated_and_allows_an_edit_inside_the_claims(registry: Registry, repo: Path) -> None:
    done = _script(edit(repo / "src" / "a.py"), task_env(registry), "deny")
    assert (done.returncode, done.stderr) == (0, b"")
    done = _script(edit(repo / "src" / "a.py"), {"PATH": os.environ.get("PATH", "")}, "deny")
    assert done.returncode == 2
    assert b"runs outside a task" in done.stderr


# --- asking project-manager -------------------------------------------------------------------


def test_claim_mode_claims_a_free_path_for_the_task(registry: Registry, repo: Path) -> None:
    assert main(["claim"], edit(repo / "docs" / "c.md"), task_env(registry, PM_HOOK_WAIT="0")) == (0, "")
    hold = hold_of(registry, "t1")
    assert hold.added == ("docs/c.md",)
    assert "docs/c.md" in hold.writes


def test_claim_mode_blocks_a_path_another_task_holds(registry: Registry, repo: Path) -> None:
    code, message = main(["claim"], edit(repo / "src" / "c.py"), task_env(registry, PM_HOOK_WAIT="0"))
    assert code == 2
    assert "src/c.py is held by task t2 (claude)" in message
    assert ADVICE in message
    assert hold_of(registry, "t1").added == ()


def test_deny_mode_blocks_a_free_path_without_claiming_it(registry: Registry, repo: Path) -> None:
    code, message = main(["deny"], edit(repo / "docs" / "c.md"), task_env(registry))
    assert code == 2
    assert "docs/c.md is not among this task's claims" in message
    assert ADVICE in message
    assert hold_of(registry, "t1").added == ()


def test_deny_mode_allows_a_file_with_brackets_in_its_name_that_the_task_holds(repo: Path) -> None:
    """Before: `check` read the escaped text of its claim (app/\\[id\\]/page.tsx) as a path, and said no."""
    page = repo / "app" / "[id]" / "page.tsx"
    page.parent.mkdir(parents=True)
    page.write_text("")
    registry = Registry(repo, "r1")
    try:
        with registry.session() as session:  # as a run resolves the declared app/[id]/page.tsx
            session.add("t1", "claude", ("app/[id]/page.tsx", "app/\\[id\\]/page.tsx"), ())
        assert main(["deny"], edit(page), task_env(registry)) == (0, "")
    finally:
        registry.close()


@pytest.mark.usefixtures("no_command")
def test_a_worktree_task_whose_worktree_lies_in_the_state_directory_edits_its_own_files(
    registry: Registry, repo: Path
) -> None:
    """Before: every edit of a worktree task was blocked, its worktree lying in the state
    directory (.git/project-manager/worktrees/...), as worktrees do by default."""
    tree = registry.dir / "worktrees" / "r1-t1"
    (tree / "src").mkdir(parents=True)
    env = task_env(registry, PM_WORKTREE=str(tree), PM_FILES="src/a.py")
    assert main(["deny"], edit(tree / "src" / "a.py"), env) == (0, "")
    code, message = main(["deny"], edit(registry.dir / "claims.json"), env)  # the state itself is not its tree's
    assert code == 2
    assert "is in the main checkout" in message


def test_the_preset_s_hook_command_blocks_when_its_module_cannot_be_loaded(registry: Registry, repo: Path) -> None:
    """The command the claude preset registers imports the hook from its folder (bytecode cached);
    were the folder gone (another machine's install), it must still block: only exit 2 does."""
    command = json.loads(claude_settings("claim"))["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    env = {**os.environ, **task_env(registry, PM_FILES="src/a.py")}
    ok = subprocess.run(["sh", "-c", command], input=edit(repo / "src" / "a.py"), env=env, capture_output=True)
    assert ok.returncode == 0, ok.stderr
    gone = command.replace(shlex.quote(str(Path(claim_hook.__file__).parent)), shlex.quote(str(repo / "gone")))
    assert gone != command
    done = subprocess.run(["sh", "-c", gone], input=edit(repo / "src" / "a.py"), env=env, capture_output=True)
    assert done.returncode == 2
    assert b"cannot be loaded" in done.stderr
