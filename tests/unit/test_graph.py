"""The one dependency walk: order, dependencies known elsewhere, cycles, long chains."""

from __future__ import annotations

import pytest

from queue_core.errors import DependencyCycleError
from queue_core.graph import critical_order, topological


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


def test_critical_order_puts_the_head_of_the_longest_chain_first() -> None:
    # a -> c (c waits for a), b -> c, c -> d; e alone. Paths: a 1+3+4, b 2+3+4, c 7, d 4, e 6.
    deps = {"a": [], "b": [], "c": ["a", "b"], "d": ["c"], "e": []}
    estimates = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 6.0}
    assert critical_order(deps, estimates) == ["b", "a", "c", "e", "d"]


def test_critical_order_without_estimates_keeps_the_order_given() -> None:
    deps = {"z": [], "y": ["z"], "x": []}
    assert critical_order(deps, {}) == ["z", "y", "x"]
    assert critical_order(deps, dict.fromkeys(deps)) == ["z", "y", "x"]


def test_critical_order_refuses_a_cycle() -> None:
    with pytest.raises(DependencyCycleError):
        critical_order({"a": ["b"], "b": ["a"]}, {"a": 1.0})
