"""The one dependency walk: order, dependencies known elsewhere, cycles, long chains."""

from __future__ import annotations

import pytest

from queue_core.errors import DependencyCycleError
from queue_core.graph import topological


def test_each_key_comes_after_its_dependencies_and_others_are_passed_over() -> None:
    order = topological({"c": ["a", "b"], "b": ["a", "elsewhere"], "a": []})
    assert order == ["a", "b", "c"]


def test_the_first_cycle_of_the_walk_is_named_closed() -> None:
    with pytest.raises(DependencyCycleError) as caught:
        topological({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d"]})
    assert caught.value.cycle == ["a", "b", "c", "a"]


def test_a_chain_longer_than_the_recursion_limit() -> None:
    n = 20_000
    chain = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(n)}
    assert topological(dict(reversed(chain.items())))[:3] == ["t0", "t1", "t2"]
