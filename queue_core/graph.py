"""Dependency order: the one walk that both a batch file's checks and the scheduler use, and the
order of a batch by its critical paths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import DependencyCycleError

__all__ = ["critical_order", "topological"]


def topological(dependencies: Mapping[str, Sequence[str]]) -> list[str]:
    """The keys of ``dependencies``, each after those of its dependencies that are keys too.

    Dependencies that are not keys (known elsewhere) are passed over. Raises
    DependencyCycleError naming the first cycle met by a depth-first walk in key order, as
    ``[a, b, ..., a]``. Iterative: a long chain of dependencies must not hit the recursion limit.
    """
    order: list[str] = []
    on_path, done = 1, 2
    state: dict[str, int] = {}
    for root in dependencies:
        if root in state:
            continue
        path = [root]
        stack = [iter(dependencies[root])]
        state[root] = on_path
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path[-1]] = done
                order.append(path.pop())
                stack.pop()
            elif child in dependencies and state.get(child) == on_path:
                raise DependencyCycleError([*path[path.index(child) :], child])
            elif child in dependencies and child not in state:
                state[child] = on_path
                path.append(child)
                stack.append(iter(dependencies[child]))
    return order


def critical_order(dependencies: Mapping[str, Sequence[str]], estimates: Mapping[str, float | None]) -> list[str]:
    """The keys of ``dependencies``, the longest critical path first: a key's estimate plus the
    longest chain of estimates of the keys that wait for it, directly or not. Then the longest
    estimate first, then as given. An estimate of None counts as 0; dependants that are not
    keys are not known here.

    Starting first what heads the longest chain keeps that chain from being the tail of the
    run (the critical-path rule of list scheduling). Raises DependencyCycleError as topological.
    """
    dependants: dict[str, list[str]] = {key: [] for key in dependencies}
    for key, deps in dependencies.items():
        for dep in deps:
            if dep in dependants:
                dependants[dep].append(key)
    path: dict[str, float] = {}
    for key in reversed(topological(dependencies)):  # each key after every key that waits for it
        path[key] = (estimates.get(key) or 0.0) + max((path[d] for d in dependants[key]), default=0.0)
    position = {key: index for index, key in enumerate(dependencies)}
    return sorted(dependencies, key=lambda key: (-path[key], -(estimates.get(key) or 0.0), position[key]))
