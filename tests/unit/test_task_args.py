"""Task arguments as typed on the command line: which ``@words`` are claims, quoting, paths
relative to the current directory, and where an agent's command is looked up.

The end-to-end runs of the same rules, from a subdirectory of a real repository, are in
tests/integration/test_cli_paths.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.config import AgentSpec, Batch, ConfigError, find_executable, parse_task_string, validate_batch

from .test_cli import invoke


def parsed(text: str) -> tuple[str, tuple[str, ...], list[str]]:
    """The description, claims and warnings of the task argument ``text``."""
    warnings: list[str] = []
    task = parse_task_string(text, 2, warn=warnings.append)
    return task.description, task.files, warnings


def middle(word: str) -> str:
    return f"argument 2: {word!r} is in the middle of the description, so it is not a claim; put claims at the end"


# --- which @words are claims ---------------------------------------------------------------------

CLAIMS = [
    # text, description, claims, warnings
    ("x: fix it @a.py @src/b.py", "fix it", ("a.py", "src/b.py"), []),
    # The case: an @word in the middle stays text, and the user hears of it.
    ("shell: review the PR by @alice today", "review the PR by @alice today", (), [middle("@alice")]),
    ("x: ask @alice about @a.py", "ask @alice about", ("a.py",), [middle("@alice")]),
    ("x: @bob and @carol then @a.py", "@bob and @carol then", ("a.py",), [middle("@bob"), middle("@carol")]),
    # Before: "b.md" was not an @token, so nothing was claimed and nothing said.
    ("x: edit @docs/a b.md", "edit @docs/a b.md", (), [middle("@docs/a")]),
    # Quoting keeps a space (or anything else) inside one claim.
    ('x: edit @"docs/a b.md"', "edit", ("docs/a b.md",), []),
    ("x: edit @'docs/a b.md' @c.py", "edit", ("docs/a b.md", "c.py"), []),
    ("x: edit @'it''s' now @\"say 'hi'.md\"", "edit @'it''s' now", ("say 'hi'.md",), [middle("@'it''s'")]),
    ('x: say @"hi there" to @a.py', 'say @"hi there" to', ("a.py",), [middle('@"hi there"')]),
    ('x: edit @"a\tb\nc.md"', "edit", ("a\tb\nc.md",), []),
    # A quote inside an unquoted word is part of the path.
    ('x: edit @a"b.md', "edit", ('a"b.md',), []),
    # Not @words: e-mail addresses, a lone @, an @ after other characters.
    ("x: mail a@b.c about it", "mail a@b.c about it", (), []),
    ("x: mail a@b.c @a.py", "mail a@b.c", ("a.py",), []),
    ("x: echo '@quoted' @a.py", "echo '@quoted'", ("a.py",), []),
    ("x: meet @ noon @a.py", "meet @ noon", ("a.py",), [middle("@")]),
    # Whitespace inside the description is kept as typed; around it, dropped.
    ("x:  two  spaces\n and a line @a.py  ", "two  spaces\n and a line", ("a.py",), []),
    ("x: naïve ünïcode @docs/résumé.md @日本/文書.md", "naïve ünïcode", ("docs/résumé.md", "日本/文書.md"), []),
    ("x: tidy @docs/ @src/**/*.py", "tidy", ("docs/", "src/**/*.py"), []),
]


@pytest.mark.parametrize(("text", "description", "files", "warnings"), CLAIMS)
def test_only_the_trailing_at_words_are_claims(
    text: str, description: str, files: tuple[str, ...], warnings: list[str]
) -> None:
    assert parsed(text) == (description, files, warnings)


BAD = [
    # text, field, message
    ('x: edit @"docs/a b.md', "files[0]", "unterminated quote in '@\"docs/a b.md': close it with \""),
    ("x: edit @a.py @'b.md", "files[1]", "unterminated quote in \"@'b.md\": close it with '"),
    ('x: edit @"a b"c.md', "files[0]", "'@\"a b\"c.md' goes on after its closing quote: put a space between claims"),
    ("x: fix it @", "files[0]", "'@' has no path after it (write @path, with no space)"),
    ('x: fix it @""', "files[0]", "invalid path '': the path is empty"),
    ("x: @a.py @b.py", "description", "the description is empty in 'x: @a.py @b.py'"),
]


@pytest.mark.parametrize(("text", "field", "message"), BAD)
def test_a_malformed_claim_is_bad_input_naming_the_argument(text: str, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parsed(text)
    assert (info.value.source, info.value.line, info.value.field) == ("argument 2", None, field)
    assert info.value.message == message


# --- an agent's command ---------------------------------------------------------------------------


@pytest.fixture
def scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with an executable scripts/agent.sh, and the current directory in src/."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "src").mkdir()
    (repo / "scripts" / "agent.sh").write_text("#!/bin/sh\n")
    (repo / "scripts" / "agent.sh").chmod(0o755)
    monkeypatch.chdir(repo / "src")
    return repo


def test_a_command_with_a_slash_is_found_from_the_repository_root(scripts: Path) -> None:
    assert find_executable("scripts/agent.sh", scripts) == str(scripts / "scripts" / "agent.sh")
    assert find_executable("./scripts/agent.sh", scripts) == str(scripts / "scripts" / "agent.sh")
    assert find_executable("agent.sh", scripts) is None  # a bare name: on PATH only
    assert find_executable("scripts/none.sh", scripts) is None
    assert find_executable("/bin/sh", scripts) == "/bin/sh"


def test_validate_batch_says_where_a_command_with_a_slash_was_looked_up(scripts: Path) -> None:
    agents = {"dev": AgentSpec("dev", ("scripts/none.sh",))}
    batch = Batch(None, agents, (parse_task_string("dev: go", 1),))
    with pytest.raises(ConfigError) as info:
        validate_batch(batch, agents, lambda program: find_executable(program, scripts))
    assert info.value.message == (
        "executable 'scripts/none.sh' of agent 'dev' was not found (a command with a / is looked up "
        "from the repository root, where agents run)"
    )


# --- --help ---------------------------------------------------------------------------------------


def test_the_help_of_the_task_arguments_names_the_claim_rules() -> None:
    code, out, _ = invoke("delegate-multiple", "--help")
    assert code == 0
    text = " ".join(out.replace("│", " ").split())  # one line, whatever the width and the boxes
    assert "Only the trailing @path words are claims" in text
    assert 'quote a path with spaces: @"a b.md"' in text
