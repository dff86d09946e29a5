"""FileOwnership: which paths each agent type owns."""

from __future__ import annotations

import pytest

from queue_core import FileOwnership
from queue_core.claims import Claim
from queue_core.errors import InvalidClaimError


@pytest.fixture
def ownership() -> FileOwnership:
    return FileOwnership(
        {
            "code_developer": ["coffee_maker/**", "tests/**", "pyproject.toml"],
            "project_manager": ["docs/roadmap/", "docs/*.md"],
            "architect": ["docs/", "coffee_maker/api.py"],
            "reviewer": [],
        }
    )


def test_get_owned_paths_in_declaration_order(ownership: FileOwnership) -> None:
    assert ownership.get_owned_paths("code_developer") == ["coffee_maker/**", "tests/**", "pyproject.toml"]
    assert ownership.get_owned_paths("project_manager") == ["docs/roadmap/", "docs/*.md"]
    assert ownership.agents() == ["code_developer", "project_manager", "architect", "reviewer"]


def test_owned_paths_are_normalised() -> None:
    ownership = FileOwnership({"dev": ["./src//**/", "docs/x/../roadmap/", "a/./b"]})
    assert ownership.get_owned_paths("dev") == ["src/**", "docs/roadmap/", "a/b"]
    assert ownership.owned_claims("dev") == (Claim.parse("src/**"), Claim.parse("docs/roadmap/"), Claim.parse("a/b"))


def test_unknown_agent_owns_everything(ownership: FileOwnership) -> None:
    assert ownership.get_owned_paths("stranger") == ["**"]
    (everything,) = ownership.owned_claims("stranger")
    assert everything.covers("any/path/at/all.py")
    assert everything.covers("x")
    assert "stranger" not in ownership.agents()
    assert FileOwnership().get_owned_paths("anyone") == ["**"]
    assert FileOwnership(None).agents() == []


def test_agent_registered_with_empty_list_owns_nothing(ownership: FileOwnership) -> None:
    assert ownership.get_owned_paths("reviewer") == []
    assert ownership.owned_claims("reviewer") == ()
    assert "reviewer" in ownership.agents()


@pytest.mark.parametrize(
    ("path", "owner"),
    [
        ("coffee_maker/daemon.py", "code_developer"),
        ("coffee_maker", "code_developer"),  # "x/**" covers x itself
        ("./coffee_maker//a/../api.py", "code_developer"),  # first registered wins over architect
        ("tests/unit/test_x.py", "code_developer"),
        ("pyproject.toml", "code_developer"),
        ("docs/roadmap", "project_manager"),
        ("docs/roadmap/2024/q1.md", "project_manager"),
        ("docs/README.md", "project_manager"),  # before architect's docs/
        ("docs/design/x.md", "architect"),  # not docs/*.md (one segment), but docs/
        ("docs", "architect"),
        ("README.md", None),
        ("pyproject.toml/x", "code_developer"),  # a plain path covers what is below it
        ("coffee_makerx/a.py", None),
        ("testsuite/a.py", None),
    ],
)
def test_owner_of(ownership: FileOwnership, path: str, owner: str | None) -> None:
    assert ownership.owner_of(path) == owner


def test_owner_of_follows_registration_order() -> None:
    first = FileOwnership({"a": ["src/**"], "b": ["src/x.py"]})
    second = FileOwnership({"b": ["src/x.py"], "a": ["src/**"]})
    assert first.owner_of("src/x.py") == "a"
    assert second.owner_of("src/x.py") == "b"
    assert second.owner_of("src/y.py") == "a"
    second.set_owned_paths("c", ["**"])
    assert second.owner_of("elsewhere") == "c"
    assert second.owner_of("src/x.py") == "b"


def test_owner_of_ignores_unregistered_and_empty_agents() -> None:
    ownership = FileOwnership({"reviewer": []})
    assert ownership.owner_of("anything") is None
    assert FileOwnership().owner_of("anything") is None


def test_set_owned_paths_replaces() -> None:
    ownership = FileOwnership({"dev": ["src/"]})
    ownership.set_owned_paths("dev", ["lib/"])
    assert ownership.get_owned_paths("dev") == ["lib/"]
    assert ownership.owner_of("src/x") is None
    assert ownership.owner_of("lib/x") == "dev"


def test_accepts_any_iterable_of_globs() -> None:
    ownership = FileOwnership({"dev": (g for g in ("a/", "b/"))})
    assert ownership.get_owned_paths("dev") == ["a/", "b/"]


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside", "a/../../x", "src/[ab", "", ".", "C:\\x", "**/.."])
def test_bad_glob_raises(bad: str) -> None:
    with pytest.raises(InvalidClaimError) as caught:
        FileOwnership({"dev": ["ok/", bad]})
    assert caught.value.claim == bad
    ownership = FileOwnership({"dev": ["ok/"]})
    with pytest.raises(InvalidClaimError):
        ownership.set_owned_paths("dev", ["fine/", bad])
    # A failed registration leaves the previous one in place.
    assert ownership.get_owned_paths("dev") == ["ok/"]
    with pytest.raises(InvalidClaimError):
        ownership.set_owned_paths("new", [bad])
    assert ownership.get_owned_paths("new") == ["**"]
    assert ownership.agents() == ["dev"]


def test_single_string_instead_of_list_raises_type_error() -> None:
    with pytest.raises(TypeError, match="'dev'"):
        FileOwnership({"dev": "src/**"})
    ownership = FileOwnership()
    with pytest.raises(TypeError, match="list of globs"):
        ownership.set_owned_paths("dev", "src/**")
    assert ownership.get_owned_paths("dev") == ["**"]
    assert ownership.agents() == []


def test_repr_names_agents_and_globs(ownership: FileOwnership) -> None:
    text = repr(ownership)
    assert text.startswith("FileOwnership(")
    assert "'code_developer': ['coffee_maker/**', 'tests/**', 'pyproject.toml']" in text
    assert "'reviewer': []" in text
