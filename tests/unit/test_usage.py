"""cli.usage.UsageSampler, the one psutil sampler of the live view of a run and of ``status --watch``."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from cli.usage import UsageSampler


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child process of this one, as an agent is of a run's process."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_tree_counts_its_root_unless_told_not_to(sleeper: subprocess.Popen[bytes]) -> None:
    sampler = UsageSampler()
    me = os.getpid()
    below = sampler.trees({"agents": me}, with_roots=False)["agents"]
    whole = sampler.trees({"run": me})["run"]
    assert below[1] > 0  # the child's memory
    assert whole[1] > below[1]  # and this process's


def test_a_root_that_ended_counts_nothing() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert UsageSampler().trees({"gone": proc.pid}) == {"gone": (0, 0)}


def test_the_machine_line_says_cpu_and_memory() -> None:
    assert re.fullmatch(r"machine: CPU \d+%, memory \d+\.\d of \d+\.\d GiB", UsageSampler().machine())
