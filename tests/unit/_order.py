"""What the fairness tests across runs read: the registry's line, and the order tasks started in."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..conftest import Gate


def tickets(repo: Path) -> list[str]:
    """The waiting tasks the registry lists, oldest first, as ``run/task``."""
    try:
        data = json.loads((repo / ".project-manager" / "claims.json").read_text())
    except (OSError, ValueError):
        return []
    return [f"{t['owner']['run']}/{t['task']}" for t in data.get("waiting", [])]


class Order:
    """Task bodies that note the order in which they start, then run until their gate opens."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, Gate] = {}
        self._lock = threading.Lock()

    def body(self, name: str) -> Callable[[], Any]:
        gate = self.gates[name] = Gate()

        def run() -> Any:
            with self._lock:
                self.started.append(name)
            return gate()

        return run
