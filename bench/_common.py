"""Shared helpers for the benchmarks: statistics, the report format, the machine description."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queue_core.changes import GitCalls


@dataclass(frozen=True)
class Check:
    """One figure against its target, as measured."""

    name: str
    figure: str
    target: str
    met: bool


@dataclass
class Section:
    """What one benchmark module reports: a markdown body and its target checks."""

    title: str
    body: str
    checks: list[Check] = field(default_factory=list)

    def markdown(self) -> str:
        return f"## {self.title}\n\n{self.body.rstrip()}\n"


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) with linear interpolation between ranks, as numpy's default."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    lo = math.floor(rank)
    hi = math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def us(seconds: float) -> str:
    """Seconds as microseconds, for a table cell."""
    return f"{seconds * 1e6:,.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "queue_core"], capture_output=True, text=True)
    return out.stdout.strip() + (" (queue_core modified)" if dirty.stdout.strip() else "")


def machine() -> str:
    """One line describing where the figures were measured."""
    return (
        f"nproc {os.cpu_count()}, CPU {cpu_model()}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}, "
        f"queue_core at commit {git_commit()}"
    )


def print_section(section: Section) -> None:
    """What ``python -m bench.NAME`` prints: the section and its target checks."""
    print(section.markdown())
    if section.checks:
        print(checks_table(section.checks))
    sys.stdout.flush()


def checks_table(checks: Sequence[Check]) -> str:
    return table(
        ["figure", "measured", "target", "met?"],
        [(c.name, c.figure, c.target, "yes" if c.met else "**no**") for c in checks],
    )


def fast_tmp() -> str | None:
    """The shared-memory folder when the machine has one we may write to, else None: the default
    temporary folder. For benchmarks that write 20,000 files, whose time on a VM's disk swings
    with the host's load, not with our code."""
    shm = "/dev/shm"  # noqa: S108 - a folder of our own inside it, made by tempfile
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


class TimedGit(GitCalls):
    """GitCalls that adds up the time of each git command, by name (``read-tree``, ``status``)."""

    def __init__(self) -> None:
        super().__init__()
        self.spent: dict[str, list[float]] = defaultdict(list)

    def run(self, repo: Path, *args: str, **kwargs: Any) -> tuple[int, bytes]:
        name = next(arg for arg in args[1:] if not arg.startswith("-") and "=" not in arg)
        started = time.perf_counter()
        try:
            return super().run(repo, *args, **kwargs)
        finally:
            self.spent[name].append(time.perf_counter() - started)
