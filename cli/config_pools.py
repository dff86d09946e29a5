"""Quota pools in batch files and ``project-manager.yaml``: what they declare, what agents and
tasks take, and the check that every pool taken is declared, with room for what is taken.

Declared at the top of a batch or of the repository's file, a mapping of names to units
(``pools: {anthropic: 2, gpu: 1}``); where both declare a pool, the batch's count is the one
its run uses. An agent or a task takes pools as a list of names, one unit each
(``pools: [anthropic]``), or as a mapping of names to units (``pools: {gpu: 2}``); a task's
own ``pools:`` replaces its agent's (``pools: []``: none).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import yaml

from queue_core.pools import check_pool_name

from .config import AgentSpec, Batch, ConfigError, Origin, PoolTake, TaskSpec, suggest
from .yaml_nodes import describe, is_null, join, line

__all__ = ["check_pools", "merge_pools", "read_capacities", "read_takes", "task_takes"]

_TAKES = "a list of pool names, [anthropic], or a mapping of pool names to units, {gpu: 2}"


class NodeReader(Protocol):
    """What these readers ask of cli/config_files.py's reader of one file."""

    source: str

    def error(self, node: yaml.Node, field: str | None, message: str) -> ConfigError: ...

    def mapping(self, node: yaml.Node, field: str | None, allowed: None) -> dict[str, tuple[yaml.Node, yaml.Node]]: ...

    def string(self, node: yaml.Node, field: str) -> str: ...

    def integer(self, node: yaml.Node, field: str, *, minimum: int | None = None) -> int: ...


def read_capacities(reader: NodeReader, node: yaml.Node, field: str = "pools", kind: str = "pool") -> dict[str, int]:
    """A top-level ``pools:``: pool names to their units (null: none); or, as ``kind``
    "resource", an agent's ``resources:``, named and counted alike."""
    if is_null(node):
        return {}
    if not isinstance(node, yaml.MappingNode):
        example = "{anthropic: 2}" if kind == "pool" else "{claude: 1}"
        raise reader.error(node, field, f"expected a mapping of {kind} names to units, {example}, got {describe(node)}")
    capacities: dict[str, int] = {}
    for name, (key_node, value_node) in reader.mapping(node, field, None).items():
        _check_name(reader, key_node, join(field, name), name, kind)
        capacities[name] = reader.integer(value_node, join(field, name), minimum=1)
    return capacities


def read_takes(reader: NodeReader, node: yaml.Node, field: str) -> tuple[PoolTake, ...] | None:
    """An agent's or a task's ``pools:``, each pool with where it was written (null: not set)."""
    if is_null(node):
        return None
    if isinstance(node, yaml.SequenceNode):
        takes: dict[str, PoolTake] = {}
        for i, item in enumerate(node.value):
            here = f"{field}[{i}]"
            name = reader.string(item, here)
            _check_name(reader, item, here, name)
            if name in takes:
                raise reader.error(item, here, f"pool {name!r} is named twice (give {{{name}: N}} for N units)")
            takes[name] = PoolTake(name, 1, Origin(reader.source, line(item), here))
        return tuple(takes.values())
    if isinstance(node, yaml.MappingNode):
        taken = []
        for name, (key_node, value_node) in reader.mapping(node, field, None).items():
            here = join(field, name)
            _check_name(reader, key_node, here, name)
            units = reader.integer(value_node, here, minimum=1)
            taken.append(PoolTake(name, units, Origin(reader.source, line(key_node), here)))
        return tuple(taken)
    hint = f" (write [{node.value}])" if isinstance(node, yaml.ScalarNode) else ""
    raise reader.error(node, field, f"expected {_TAKES}, got {describe(node)}{hint}")


def _check_name(reader: NodeReader, node: yaml.Node, field: str, name: str, kind: str = "pool") -> None:
    if (problem := check_pool_name(name)) is not None:
        raise reader.error(node, field, problem.replace("a pool name", f"a {kind} name", 1))


def merge_pools(repo_pools: Mapping[str, int], batch_pools: Mapping[str, int]) -> dict[str, int]:
    """The repository's pools, with the batch's count where both declare one: the batch is what runs."""
    return {**repo_pools, **batch_pools}


def task_takes(task: TaskSpec, agent: AgentSpec | None) -> tuple[PoolTake, ...]:
    """The pools ``task`` takes: its own ``pools:`` if it has one, else its agent's."""
    if task.pools is not None:
        return task.pools
    return () if agent is None or agent.pools is None else agent.pools


def check_pools(batch: Batch, agents: Mapping[str, AgentSpec]) -> None:
    """Raise ConfigError, where the pool was written, for a pool a task takes that ``batch.pools``
    does not declare, or more units of it than it has: the task could never start. Agents no
    task uses are not checked, as their commands are not."""
    for task in batch.tasks:
        for take in task_takes(task, agents.get(task.agent)):
            where = take.origin or Origin(f"task {task.id!r}", None, "pools")
            capacity = batch.pools.get(take.name)
            if capacity is None:
                declared = ", ".join(sorted(batch.pools)) or "(none)"
                raise where.error(
                    f"pool {take.name!r} is not declared{suggest(take.name, batch.pools)}; declared pools: {declared} "
                    "(declare it under pools: in the batch file or in project-manager.yaml)"
                )
            if take.units > capacity:
                raise where.error(
                    f"task {task.id!r} takes {take.units} units of pool {take.name!r}, which has {capacity}"
                )
