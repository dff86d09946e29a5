"""Fixtures of the integration tests that start worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._stress import Child


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    """``spawn(name, mode, *args, wrap=())`` starts a worker; every child is killed and reaped at the end."""
    children: list[Child] = []

    def start(name: str, *args: str | Path, **kw: Any) -> Child:
        child = Child(tmp_path, name, *args, **kw)
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            child.close()
