"""Dependency order: the one walk that both a batch file's checks and the scheduler use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import DependencyCycleError

__all__ = ["topological"]


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
