"""What ``pipx install`` or ``pip install PATH`` installs: not the source tree, but the packages
pyproject.toml lists. An editable install (``make``) hides a package left out; issue 12's
"install for use on another repository" met one: without ``queue_core._supervisor`` every
command but ``--help`` failed with ModuleNotFoundError."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).parents[2]


def test_the_distribution_lists_every_package_of_the_source_tree() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("cli", "queue_core")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert listed == found
