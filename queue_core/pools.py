"""Quota pools: named capacities that tasks of any agent type share, across every run on a repository.

A pool stands for something scarce that several agents use at once: an API's concurrency quota
(``anthropic: 2``), a GPU. A queue declares each pool's capacity in units (``TaskQueue(...,
pools={"anthropic": 2})``); a task names the pools it takes and how many units of each
(``AgentTask(..., pools={"anthropic": 1})``, or a list of names: one unit each). It starts only
when every pool it names has room for its units (see queue_core.admission); with a registry,
units that tasks of other runs hold count too.

This module checks what users give; the pools themselves are counted slots
(queue_core.slots), and the tasks that wait for one are kept by queue_core.poolwaits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .errors import InvalidArgumentError, InvalidTaskError

if TYPE_CHECKING:  # task imports this module
    from .task import AgentTask

__all__ = ["POOL_NAME_RULE", "check_capacities", "check_pool_name", "check_takes", "task_pools"]

# A pool's name is written in claims.json and in wait reasons: a plain name, as a task id is.
_POOL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
#: What a pool's name must be, for error messages.
POOL_NAME_RULE = "1 to 100 letters, digits, '.', '_' or '-', not starting with '.'"


def check_pool_name(name: object) -> str | None:
    """Why ``name`` is no pool name, or None if it is one."""
    if not isinstance(name, str):
        return f"a pool name is a string, got {name!r}"
    if not _POOL_NAME.fullmatch(name):
        return f"a pool name is {POOL_NAME_RULE}, got {name!r}"
    return None


def check_capacities(pools: Mapping[str, int] | None) -> dict[str, int]:
    """A queue's pools, checked: each a plain name with a positive integer of units.

    Raises InvalidArgumentError, naming the pool, otherwise.
    """
    if pools is None:
        return {}
    if not isinstance(pools, Mapping):
        raise InvalidArgumentError(f"pools must map pool names to units, got {type(pools).__name__}")
    checked: dict[str, int] = {}
    for name, capacity in pools.items():
        if (problem := check_pool_name(name)) is not None:
            raise InvalidArgumentError(problem)
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise InvalidArgumentError(f"pool {name!r} must be a positive integer of units, got {capacity!r}")
        checked[name] = capacity
    return checked


def task_pools(value: object, task_id: str) -> dict[str, int]:
    """A task's ``pools``: a mapping of pool names to units, or a sequence of names (one unit each).

    Raises InvalidTaskError (field ``pools``) for anything else, a name given twice, or a unit
    count that is not a positive integer.
    """

    def error(message: str) -> InvalidTaskError:
        return InvalidTaskError(message, task_id=task_id, field="pools")

    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = [(name, 1) for name in value]
    else:
        raise error(f"expected pool names, or a mapping of pool names to units, got {type(value).__name__}")
    pools: dict[str, int] = {}
    for name, units in items:
        if (problem := check_pool_name(name)) is not None:
            raise error(problem)
        if name in pools:
            raise error(f"pool {name!r} is named twice")
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise error(f"the units of pool {name!r} must be a positive integer, got {units!r}")
        pools[name] = units
    return pools


def check_takes(task: AgentTask, capacities: Mapping[str, int]) -> None:
    """Raise InvalidTaskError (field ``pools``), naming the pool, unless each pool ``task`` takes
    is one of ``capacities`` with at least the units it takes: it could never start otherwise."""
    for pool, units in task.pool_units:
        capacity = capacities.get(pool)
        if capacity is None:
            declared = ", ".join(capacities) or "none"
            raise InvalidTaskError(f"pool {pool!r} is not declared (pools: {declared})", task_id=task.id, field="pools")
        if units > capacity:
            raise InvalidTaskError(
                f"takes {units} units of pool {pool!r}, which has {capacity}", task_id=task.id, field="pools"
            )
