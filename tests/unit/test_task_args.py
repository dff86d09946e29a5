"""Task arguments as typed on the command line: which ``@words`` are claims, quoting, paths
relative to the current directory, and where an agent's command is looked up.

The end-to-end runs of the same rules, from a subdirectory of a real repository, are in
tests/integration/test_cli_paths.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.config import (
    AgentSpec,
    Batch,
    ConfigError,
    claim_base,
    find_executable,
    parse_task_string,
    validate_batch,
)
from queue_core.claims import Claim

from .test_cli import invoke


def parsed(text: str, base: str = "") -> tuple[str, tuple[str, ...], list[str]]:
    """The description, claims and warnings of the task argument ``text``, typed in ``base``."""
    warnings: list[str] = []
    task = parse_task_string(text, 2, base=base, warn=warnings.append)
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
    ('x: edit @"a  b c.md"', "edit", ("a  b c.md",), []),  # a control character is refused: test_attack_i12
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


# --- claims relative to the current directory ----------------------------------------------------

FROM_SUBDIRECTORY = [
    # claim as typed in src/app, claim as stored (repo-relative)
    ("parser.py", "src/app/parser.py"),
    ("./parser.py", "src/app/parser.py"),
    ("../x.py", "src/x.py"),
    ("../../README.md", "README.md"),
    ("..", "src"),
    (".", "src/app"),
    ("docs/", "src/app/docs/"),
    ("*.py", "src/app/*.py"),
    ("**/*.py", "src/app/**/*.py"),
    ("../**", "src/**"),
    ("-x", "src/app/-x"),  # no longer read as an option in an agent's argv: it starts with src/
]


@pytest.mark.parametrize(("typed", "stored"), FROM_SUBDIRECTORY)
def test_a_claim_typed_in_a_subdirectory_is_stored_repo_relative(typed: str, stored: str) -> None:
    assert parsed(f"x: fix it @{typed}", base="src/app") == ("fix it", (stored,), [])


def test_a_quoted_claim_is_relative_to_the_current_directory_too() -> None:
    assert parsed('x: fix it @"a b.py"', base="src") == ("fix it", ("src/a b.py",), [])


def test_the_current_directory_is_not_a_pattern_even_when_its_name_looks_like_one() -> None:
    """Before the escape, a directory ``a[1]`` would claim ``a1``, not itself."""
    _, (claim,), _ = parsed("x: fix it @x.py", base="a[1]/*?")
    assert claim == r"a\[1]/\*\?/x.py"
    assert Claim.parse(claim).covers("a[1]/*?/x.py")
    assert not Claim.parse(claim).covers("a1/b/x.py")


def test_a_path_from_a_directory_named_with_a_dash_cannot_read_as_an_option() -> None:
    assert parsed("x: fix it @x.py", base="-rf") == ("fix it", ("./-rf/x.py",), [])


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("../../../x.py", "invalid path '../../../x.py' (from src/app): the path leaves the repository root"),
        ("../..", "invalid path '../..' (from src/app): the path names the repository root itself; "
         "claim '**' to mean everything"),
        ("/etc/passwd", "invalid path '/etc/passwd': absolute paths are not allowed; "
         "give a path relative to the current directory (src/app)"),
        ("~/x", "invalid path '~/x': absolute paths are not allowed; "
         "give a path relative to the current directory (src/app)"),
    ],
)  # fmt: skip
def test_a_claim_outside_the_repository_from_a_subdirectory_is_bad_input(typed: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parsed(f"x: fix it @{typed}", base="src/app")
    assert (info.value.source, info.value.field, info.value.message) == ("argument 2", "files[0]", message)


def test_at_the_root_claims_are_kept_as_typed() -> None:
    assert parsed("x: fix it @./src//a.py @src/") == ("fix it", ("./src//a.py", "src/"), [])


def test_claim_base_is_where_the_current_directory_is_in_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / "src" / "app").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(repo / "src")

    def base_in(cwd: Path) -> str:
        monkeypatch.chdir(cwd)
        return claim_base(repo)

    assert base_in(repo / "src" / "app") == "src/app"
    assert base_in(repo) == ""
    assert base_in(tmp_path / "link" / "app") == "src/app"  # the real directory counts
    assert base_in(tmp_path / "elsewhere") == ""  # --repo from outside: from the root
    assert base_in(tmp_path) == ""
    (tmp_path / "elsewhere").rmdir()  # a deleted current directory: from the root, no traceback
    assert claim_base(repo) == ""


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
    assert "Only the trailing @path words are claims, relative to the current directory" in text
    assert 'quote a path with spaces: @"a b.md"' in text
