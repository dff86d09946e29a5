"""Batch files and the repository's ``project-manager.yaml``, read from YAML into the
definitions of cli/config.py.

A file is read as a node tree (``yaml.compose``) rather than as plain Python values so that
every error names the file, the line of the offending node and the field path, e.g.::

    batch.yaml:12: tasks[1].timeout: expected a duration like 90s, 30m or 1h30m, got 'soon'

Unknown keys are errors at every level (a typo such as ``fils:`` must not silently drop a
claim), and so are duplicate keys. Indexes in field paths count from 0.

String fields (ids, agent names, descriptions, paths, command elements) take the scalar's text
as written, so ``description: yes`` is ``"yes"`` rather than ``True``; only ``null`` is refused.

Agents: an agent is ``command: [argv template]`` or ``preset: NAME`` (see cli/presets.py).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from queue_core import check_task_id
from queue_core.errors import DependencyCycleError, InvalidTaskIdError
from queue_core.graph import topological
from queue_core.reports import FORMATS
from queue_core.runner import DEFAULT_PROMPT

from .config import (
    DEFAULT_STOP_GRACE_S,
    ISOLATIONS,
    MERGE_MODES,
    VIOLATIONS,
    AgentSpec,
    Batch,
    ConfigError,
    Isolation,
    Origin,
    RepoConfig,
    TaskSpec,
    check_claim,
    parse_duration,
    shown,
    suggest,
)
from .config_machine import MachineKeys
from .config_pools import read_capacities, read_takes
from .hooks import Hooks, read_hooks
from .presets import EDIT_HOOKS, ON_UNCLAIMED_EDIT, PRESET_REPORTS, PRESETS, preset_command, with_args
from .yaml_nodes import BOOL_TAG as _BOOL_TAG
from .yaml_nodes import FLOAT_TAG as _FLOAT_TAG
from .yaml_nodes import INT_TAG as _INT_TAG
from .yaml_nodes import STR_TAG as _STR_TAG
from .yaml_nodes import describe as _describe
from .yaml_nodes import is_null as _is_null
from .yaml_nodes import join as _join
from .yaml_nodes import line as _line

__all__ = [
    "REPO_CONFIG",
    "batch_of",
    "load_batch",
    "load_repo_agents",
    "load_repo_config",
    "read_config",
    "read_repo_config",
    "repo_config_of",
]

#: The repository's own agent definitions, at its root.
REPO_CONFIG = "project-manager.yaml"

_PLACEHOLDERS = ("description", "task_id", "files", "reads", "prompt")
_PROMPT_PLACEHOLDERS = ("description", "files", "reads")
#: Where a task's checkout is, and what comes back of it: on a task, an agent or the batch.
_ISOLATION_KEYS = ("isolation", "merge", "on_violation")
#: What a task needs of the machine (see cli/config_machine.py): on a task or an agent.
_NEEDS_KEYS = ("memory", "cpus")
_BATCH_KEYS = ("max_parallel", "stale_after", "keep_runs", *_ISOLATION_KEYS, "limits", "pools", "agents", "tasks")
_REPO_KEYS = (
    "agents",
    "keep_runs",
    "on_finish",
    "setup",
    "worktree_root",
    "worktree_pool",
    "limits",
    "pools",
    "hooks",
    "cluster",
)
_AGENT_KEYS = (
    "command",
    "preset",
    "args",
    "prompt",
    "report",
    "owns",
    "stop_grace",
    "rate_limit_backoff",
    "rate_limit_max_wait",
    "instances",
    "pools",
    "resources",
    "on_unclaimed_edit",
    *_ISOLATION_KEYS,
    *_NEEDS_KEYS,
)
#: A task's retry back-off (see AgentTask): durations, but the plain numbers, with their bounds.
_BACKOFF_KEYS = ("retry_delay", "retry_backoff", "retry_max_delay", "retry_jitter")
_BACKOFF_NUMBERS = {"retry_backoff": (1.0, None), "retry_jitter": (0.0, 1.0)}
_TASK_KEYS = (
    "id",
    "agent",
    "description",
    "files",
    "reads",
    "depends_on",
    "priority",
    "timeout",
    "retries",
    *_BACKOFF_KEYS,
    "pools",
    *_ISOLATION_KEYS,
    *_NEEDS_KEYS,
)
_TASK_REQUIRED = ("id", "agent", "description")

# Stateless for scalars: one instance turns int/float nodes into values (0x1F, 1_000, 1e3...).
_SCALARS = yaml.constructor.SafeConstructor()
# libyaml's parser where PyYAML has it: the same nodes and marks, and ~10x faster on a big batch.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_BRACED_NAME = re.compile(r"\{(\w+)\}")


def read_config(path: Path) -> str:
    """The text of the YAML file ``path``, read once: what is loaded is what a run's journal keeps
    (see cli/resume.py). Raises ConfigError if it cannot be read as UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, None, f"cannot read the file: {exc}") from exc


def load_batch(path: Path) -> Batch:
    """The batch in the YAML file ``path`` (see :func:`batch_of`)."""
    return batch_of(read_config(path), str(path))


def batch_of(text: str, source: str) -> Batch:
    """The batch in ``text``, a YAML file's content that errors call ``source``: ``max_parallel``,
    ``stale_after``, ``keep_runs``, ``pools``, ``agents``, ``tasks``.

    Raises ConfigError, naming the file, line and field, for malformed YAML,
    unknown or duplicate keys, wrong types, invalid paths, duplicate task ids, unknown
    dependencies and dependency cycles.
    """
    reader = _Reader(source)
    root = reader.parse(text)
    if root is None or _is_null(root):
        return Batch(None, {}, ())
    top = reader.mapping(root, None, _BATCH_KEYS)
    max_parallel = None
    if "max_parallel" in top and not _is_null(node := top["max_parallel"][1]):
        max_parallel = reader.max_parallel(node)
    stale_after = reader.duration(top["stale_after"][1], "stale_after") if "stale_after" in top else None
    agents = reader.agents(top["agents"][1]) if "agents" in top else {}
    tasks = reader.tasks(top["tasks"][1]) if "tasks" in top else ()
    isolation = reader.isolation(top, None)
    pools = read_capacities(reader, top["pools"][1]) if "pools" in top else {}
    return Batch(max_parallel, agents, tasks, stale_after, reader.keep_runs(top), isolation, reader.limits(top), pools)


def read_repo_config(repo: Path) -> str | None:
    """The text of ``project-manager.yaml`` at the root of ``repo``; None if there is no such file."""
    path = repo / REPO_CONFIG
    return read_config(path) if path.is_file() else None


def load_repo_config(repo: Path) -> RepoConfig:
    """``project-manager.yaml`` at the root of ``repo`` (see :func:`repo_config_of`); empty if there is none."""
    return repo_config_of(read_repo_config(repo), str(repo / REPO_CONFIG))


def repo_config_of(text: str | None, source: str) -> RepoConfig:
    """The repository config in ``text`` (None: no file): its ``agents:``, ``keep_runs:``, ``on_finish:``,
    ``hooks:``, ``pools:``, and for worktree tasks ``setup:``, ``worktree_root:`` and ``worktree_pool:``.

    Raises ConfigError as batch_of does; any other top-level key is an error.
    """
    if text is None:
        return RepoConfig({})
    reader = _Reader(source)
    root = reader.parse(text)
    if root is None or _is_null(root):
        return RepoConfig({})
    top = reader.mapping(root, None, _REPO_KEYS)
    agents = reader.agents(top["agents"][1]) if "agents" in top else {}
    on_finish = reader.command(top["on_finish"][1], "on_finish") if "on_finish" in top else ()
    setup = reader.commands(top["setup"][1], "setup") if "setup" in top else ()
    worktree_root = reader.string(top["worktree_root"][1], "worktree_root") if "worktree_root" in top else None
    pool = reader.worktree_pool(top)
    pools = read_capacities(reader, top["pools"][1]) if "pools" in top else {}
    hooks = read_hooks(reader, top["hooks"][1]) if "hooks" in top else Hooks()
    return RepoConfig(
        agents, reader.keep_runs(top), on_finish, setup, worktree_root, pool, reader.limits(top), pools, hooks,
        reader.cluster(top),
    )  # fmt: skip


def load_repo_agents(repo: Path) -> dict[str, AgentSpec]:
    """The ``agents:`` of ``project-manager.yaml`` at the root of ``repo`` (see load_repo_config)."""
    return load_repo_config(repo).agents


_Entries = dict[str, tuple[yaml.Node, yaml.Node]]


class _Reader(MachineKeys):
    """Turns the nodes of one file into specs, raising ConfigError with that file's name
    (``limits:``, ``memory:`` and ``cpus:`` by MachineKeys)."""

    def __init__(self, source: str):
        self.source = source

    def error(self, node: yaml.Node, field: str | None, message: str) -> ConfigError:
        return ConfigError(self.source, _line(node), field, message)

    def parse(self, text: str) -> yaml.Node | None:
        try:
            try:
                return yaml.compose(text, Loader=_FAST_LOADER)
            except yaml.YAMLError:  # say it as the pure-Python parser does, with or without libyaml
                return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = exc.problem or str(exc)
            context = f" ({exc.context})" if exc.context else ""
            raise ConfigError(self.source, line, None, f"invalid YAML: {problem}{context}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(self.source, None, None, f"invalid YAML: {exc}") from exc

    def mapping(self, node: yaml.Node, field: str | None, allowed: Sequence[str] | None) -> _Entries:
        """Key → (key node, value node); ``allowed`` None accepts any key (agent names)."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, field, f"expected a mapping, got {_describe(node)}")
        entries: _Entries = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, field, f"a key must be a plain name, got {_describe(key_node)}")
            key = str(key_node.value)
            here = _join(field, key)
            if key in entries:
                first = _line(entries[key][0])
                raise self.error(key_node, here, f"duplicate key {key!r} (first at line {first})")
            if allowed is not None and key not in allowed:
                raise self.error(
                    key_node,
                    here,
                    f"unknown key {key!r}{suggest(key, allowed)}; expected one of: {', '.join(allowed)}",
                )
            entries[key] = (key_node, value_node)
        return entries

    def string(self, node: yaml.Node, field: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or _is_null(node):
            raise self.error(node, field, f"expected a string, got {_describe(node)}")
        text = str(node.value)
        if not text.strip():
            raise self.error(node, field, "must not be empty")
        return text

    def task_id(self, node: yaml.Node, field: str) -> str:
        text = self.string(node, field)
        try:
            check_task_id(text)
        except InvalidTaskIdError as exc:
            raise self.error(node, field, exc.reason) from exc
        return text

    def strings(self, node: yaml.Node, field: str, what: str = "strings") -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            hint = f" (write [{node.value}])" if isinstance(node, yaml.ScalarNode) and not _is_null(node) else ""
            raise self.error(node, field, f"expected a list of {what}, got {_describe(node)}{hint}")
        return tuple(self.string(item, f"{field}[{i}]") for i, item in enumerate(node.value))

    def command(self, node: yaml.Node, field: str) -> tuple[str, ...]:
        """A command to run as it is, an argv: never a shell string, which would need a shell."""
        if not isinstance(node, yaml.SequenceNode):
            got = _describe(node)
            raise self.error(
                node, field, f"expected a command as a list, [program, args...] (no shell runs it), got {got}"
            )
        command = self.strings(node, field)
        if not command:
            raise self.error(node, field, "must not be empty: give [program, args...]")
        return command

    def commands(self, node: yaml.Node, field: str) -> tuple[tuple[str, ...], ...]:
        """A list of commands, each an argv (``setup:``); null or empty: none."""
        if _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(
                node, field, f"expected a list of commands, [[program, args...], ...], got {_describe(node)}"
            )
        return tuple(self.command(item, f"{field}[{i}]") for i, item in enumerate(node.value))

    def choice(self, node: yaml.Node, field: str, choices: Sequence[str]) -> str | None:
        """One of ``choices`` (null: not set)."""
        if _is_null(node):
            return None
        text = self.string(node, field)
        if text not in choices:
            raise self.error(
                node, field, f"expected one of {', '.join(choices)}, got {shown(text)}{suggest(text, choices)}"
            )
        return text

    def isolation(self, entries: _Entries, here: str | None) -> Isolation:
        """``isolation:``, ``merge:`` and ``on_violation:`` of a task, an agent or the batch."""
        chosen = [
            self.choice(entries[key][1], _join(here, key), choices) if key in entries else None
            for key, choices in zip(_ISOLATION_KEYS, (ISOLATIONS, MERGE_MODES, VIOLATIONS), strict=True)
        ]
        return Isolation(*chosen)

    def claims(self, node: yaml.Node, field: str) -> tuple[str, ...]:
        paths = self.strings(node, field, "paths")
        for i, (item, path) in enumerate(zip(node.value, paths, strict=True)):
            check_claim(path, Origin(self.source, _line(item), f"{field}[{i}]"))
        return paths

    def integer(self, node: yaml.Node, field: str, *, minimum: int | None = None) -> int:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _INT_TAG:
            raise self.error(node, field, f"expected an integer, got {_describe(node)}")
        value: int = self.scalar(node, field, _SCALARS.construct_yaml_int)
        if minimum is not None and value < minimum:
            raise self.error(node, field, f"must be at least {minimum}, got {value}")
        return value

    def max_parallel(self, node: yaml.Node) -> int | Literal["auto"]:
        """A top-level ``max_parallel:``: a count of 1 or more, or ``auto`` (as ``--max-parallel``)."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and node.value.strip().lower() == "auto":
            return "auto"
        if not isinstance(node, yaml.ScalarNode) or node.tag != _INT_TAG:
            raise self.error(node, "max_parallel", f"expected an integer or auto, got {_describe(node)}")
        return self.integer(node, "max_parallel", minimum=1)

    def keep_runs(self, top: _Entries) -> int | None:
        """A top-level ``keep_runs:`` (null: the default); 0 is refused: a run keeps its own logs."""
        if "keep_runs" not in top or _is_null(node := top["keep_runs"][1]):
            return None
        return self.integer(node, "keep_runs", minimum=1)

    def cluster(self, top: _Entries) -> str | None:
        """A top-level ``cluster:``: a Dask scheduler's address or local:N (null: none)."""
        if "cluster" not in top or _is_null(node := top["cluster"][1]):
            return None
        from queue_core.cluster import check_address  # only a file with a cluster: pays for its imports
        from queue_core.errors import InvalidArgumentError

        try:
            return check_address(self.string(node, "cluster"))
        except InvalidArgumentError as exc:
            raise self.error(node, "cluster", str(exc)) from None

    def worktree_pool(self, top: _Entries) -> int:
        """A top-level ``worktree_pool:``: how many idle worktrees to keep (null, or none: 0)."""
        if "worktree_pool" not in top or _is_null(node := top["worktree_pool"][1]):
            return 0
        return self.integer(node, "worktree_pool", minimum=0)

    def scalar(self, node: yaml.ScalarNode, field: str, construct: Callable[[yaml.ScalarNode], Any]) -> Any:
        """The value of an explicitly tagged scalar (``!!int 1e3``); a clear error if it is none."""
        try:
            return construct(node)
        except (ValueError, OverflowError, IndexError) as exc:  # !!int abc, !!int "", 4,301 digits
            raise self.error(node, field, f"not a valid {node.tag.rsplit(':', 1)[-1]}: {shown(node.value)}") from exc

    def duration(self, node: yaml.Node, field: str) -> float | None:
        if _is_null(node):
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag == _BOOL_TAG:
            raise self.error(node, field, f"expected a duration like 90s, 30m or 1h30m, got {_describe(node)}")
        raw: str | float = str(node.value)
        if node.tag == _INT_TAG:
            raw = self.scalar(node, field, _SCALARS.construct_yaml_int)
        elif node.tag == _FLOAT_TAG:
            raw = self.scalar(node, field, _SCALARS.construct_yaml_float)
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise self.error(node, field, str(exc)) from exc

    def agents(self, node: yaml.Node) -> dict[str, AgentSpec]:
        if _is_null(node):  # `agents:` with every entry commented out
            return {}
        agents: dict[str, AgentSpec] = {}
        for name, (key_node, value_node) in self.mapping(node, "agents", None).items():
            here = f"agents.{name}"
            if not name.strip() or re.search(r"\s", name):
                raise self.error(key_node, here, f"an agent name is non-empty and has no spaces, got {name!r}")
            agents[name] = self.agent(name, value_node, here)
        return agents

    def agent(self, name: str, node: yaml.Node, here: str) -> AgentSpec:
        entries = self.mapping(node, here, _AGENT_KEYS)
        if ("command" in entries) == ("preset" in entries):
            message = (
                "give either command or preset, not both" if "command" in entries else "needs a command or a preset"
            )
            raise self.error(node, here, f"{message} (command: [program, args...] or preset: {' | '.join(PRESETS)})")
        owns = self.claims(entries["owns"][1], f"{here}.owns") if "owns" in entries else ()
        grace = self.duration(entries["stop_grace"][1], f"{here}.stop_grace") if "stop_grace" in entries else None
        grace = DEFAULT_STOP_GRACE_S if grace is None else grace
        prompt = DEFAULT_PROMPT
        if "prompt" in entries:
            prompt_node = entries["prompt"][1]
            prompt = self.string(prompt_node, f"{here}.prompt")
            self.placeholders(prompt_node, f"{here}.prompt", prompt, _PROMPT_PLACEHOLDERS)
        limits = {
            f"{key}_s": seconds
            for key in ("rate_limit_backoff", "rate_limit_max_wait")
            if key in entries and (seconds := self.duration(entries[key][1], f"{here}.{key}")) is not None
        }
        instances = (
            self.integer(entries["instances"][1], f"{here}.instances", minimum=1) if "instances" in entries else 1
        )
        isolation = self.isolation(entries, here)
        pools = read_takes(self, entries["pools"][1], f"{here}.pools") if "pools" in entries else None
        resources = (
            read_capacities(self, entries["resources"][1], f"{here}.resources", "resource")
            if "resources" in entries
            else {}
        )
        report: str | None = None
        if "report" in entries:
            report_node = entries["report"][1]
            report = self.string(report_node, f"{here}.report")
            if report not in FORMATS:
                raise self.error(report_node, f"{here}.report", f"expected one of {', '.join(FORMATS)}, got {report!r}")
        on_unclaimed_edit: str | None = None
        if "on_unclaimed_edit" in entries:
            mode_node = entries["on_unclaimed_edit"][1]
            on_unclaimed_edit = self.string(mode_node, f"{here}.on_unclaimed_edit")
            if on_unclaimed_edit not in ON_UNCLAIMED_EDIT:
                raise self.error(
                    mode_node,
                    f"{here}.on_unclaimed_edit",
                    f"expected one of {', '.join(ON_UNCLAIMED_EDIT)}, got {on_unclaimed_edit!r}",
                )
            preset_node = entries.get("preset", (None, None))[1]
            if preset_node is None or self.string(preset_node, f"{here}.preset") not in EDIT_HOOKS:
                raise self.error(
                    mode_node,
                    f"{here}.on_unclaimed_edit",
                    f"only an agent with preset: {' | '.join(EDIT_HOOKS)} checks its edits; "
                    "for another, claims are checked after the task",
                )
        args: tuple[str, ...] = ()
        if "args" in entries:
            args_node = entries["args"][1]
            args = self.strings(args_node, f"{here}.args")
            for i, element in enumerate(args):
                self.placeholders(args_node.value[i], f"{here}.args[{i}]", element, _PLACEHOLDERS)
        if "preset" in entries:
            preset_node = entries["preset"][1]
            preset = self.string(preset_node, f"{here}.preset")
            if preset not in PRESETS:
                raise self.error(
                    preset_node,
                    f"{here}.preset",
                    f"unknown preset {preset!r}{suggest(preset, PRESETS)}; presets: {', '.join(PRESETS)}",
                )
            origin = Origin(self.source, _line(preset_node), f"{here}.preset")
            report = report if "report" in entries else PRESET_REPORTS.get(preset)
            command = preset_command(preset, args, on_unclaimed_edit or "claim")
        else:
            command_node = entries["command"][1]
            own = self.strings(command_node, f"{here}.command")
            if not own:
                raise self.error(command_node, f"{here}.command", "must not be empty: give [program, args...]")
            for i, element in enumerate(own):
                self.placeholders(command_node.value[i], f"{here}.command[{i}]", element, _PLACEHOLDERS)
            origin = Origin(self.source, _line(command_node.value[0]), f"{here}.command[0]")
            command = with_args(own, args)
        return AgentSpec(
            name,
            command,
            owns,
            grace,
            origin,
            prompt,
            report,
            **limits,
            instances=instances,
            isolation=isolation,
            needs=self.needs(entries, here),
            pools=pools,
            resources=tuple(sorted(resources.items())),
        )

    def placeholders(self, node: yaml.Node, field: str, text: str, known: Sequence[str]) -> None:
        """Refuse a misspelt placeholder: ``{descripton}`` would reach the agent literally."""
        for placeholder in _BRACED_NAME.findall(text):
            close = difflib.get_close_matches(placeholder, known, n=1)
            if placeholder not in known and close:
                raise self.error(
                    node,
                    field,
                    f"unknown placeholder {{{placeholder}}} (did you mean {{{close[0]}}}?); "
                    f"placeholders: {', '.join('{' + p + '}' for p in known)}",
                )

    def tasks(self, node: yaml.Node) -> tuple[TaskSpec, ...]:
        if _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, "tasks", f"expected a list of tasks, got {_describe(node)}")
        tasks: list[TaskSpec] = []
        id_nodes: dict[str, yaml.Node] = {}
        dependency_nodes: list[tuple[yaml.Node, ...]] = []
        for i, task_node in enumerate(node.value):
            task, entries = self.task(task_node, f"tasks[{i}]")
            id_node = entries["id"][1]
            if task.id in id_nodes:
                raise self.error(
                    id_node,
                    f"tasks[{i}].id",
                    f"duplicate task id {task.id!r} (first at line {_line(id_nodes[task.id])})",
                )
            id_nodes[task.id] = id_node
            dependency_nodes.append(tuple(entries["depends_on"][1].value) if "depends_on" in entries else ())
            tasks.append(task)
        for i, task in enumerate(tasks):
            for j, dependency in enumerate(task.depends_on):
                if dependency not in id_nodes:
                    raise self.error(
                        dependency_nodes[i][j],
                        f"tasks[{i}].depends_on[{j}]",
                        f"unknown task id {dependency!r}{suggest(dependency, id_nodes)}",
                    )
        try:
            topological({task.id: task.depends_on for task in tasks})
        except DependencyCycleError as exc:  # point at the dependency that closes the cycle
            cycle = exc.cycle
            index = next(i for i, task in enumerate(tasks) if task.id == cycle[-2])
            j = tasks[index].depends_on.index(cycle[-1])
            raise self.error(
                dependency_nodes[index][j],
                f"tasks[{index}].depends_on[{j}]",
                f"dependency cycle: {' -> '.join(cycle)}",
            ) from None
        return tuple(tasks)

    def task(self, node: yaml.Node, here: str) -> tuple[TaskSpec, _Entries]:
        entries = self.mapping(node, here, _TASK_KEYS)
        for key in _TASK_REQUIRED:
            if key not in entries:
                raise self.error(node, f"{here}.{key}", f"missing (every task needs {', '.join(_TASK_REQUIRED)})")

        def value(key: str) -> yaml.Node:
            return entries[key][1]

        agent_node = value("agent")
        task = TaskSpec(
            id=self.task_id(value("id"), f"{here}.id"),
            agent=self.string(agent_node, f"{here}.agent"),
            description=self.string(value("description"), f"{here}.description"),
            files=self.claims(value("files"), f"{here}.files") if "files" in entries else (),
            reads=self.claims(value("reads"), f"{here}.reads") if "reads" in entries else (),
            depends_on=self.strings(value("depends_on"), f"{here}.depends_on", "task ids")
            if "depends_on" in entries
            else (),
            priority=self.integer(value("priority"), f"{here}.priority") if "priority" in entries else 0,
            timeout_s=self.duration(value("timeout"), f"{here}.timeout") if "timeout" in entries else None,
            retries=self.integer(value("retries"), f"{here}.retries", minimum=0) if "retries" in entries else 0,
            backoff=self.backoff(entries, here),
            isolation=self.isolation(entries, here),
            agent_origin=Origin(self.source, _line(agent_node), f"{here}.agent"),
            needs=self.needs(entries, here),
            pools=read_takes(self, value("pools"), f"{here}.pools") if "pools" in entries else None,
        )
        return task, entries

    def backoff(self, entries: _Entries, here: str) -> tuple[tuple[str, float], ...]:
        """The retry back-off fields a task sets (null: the default), as AgentTask's keywords."""
        given: list[tuple[str, float]] = []
        for key in _BACKOFF_KEYS:
            if key not in entries or _is_null(node := entries[key][1]):
                continue
            if key in _BACKOFF_NUMBERS:
                given.append((key, self.number(node, f"{here}.{key}", *_BACKOFF_NUMBERS[key])))
            elif (seconds := self.duration(node, f"{here}.{key}")) is not None:
                given.append((key, seconds))
        return tuple(given)

    def number(self, node: yaml.Node, field: str, minimum: float | None, maximum: float | None) -> float:
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_INT_TAG, _FLOAT_TAG):
            raise self.error(node, field, f"expected a number, got {_describe(node)}")
        construct = _SCALARS.construct_yaml_int if node.tag == _INT_TAG else _SCALARS.construct_yaml_float
        value = float(self.scalar(node, field, construct))
        if minimum is not None and not value >= minimum:  # NaN too
            raise self.error(node, field, f"must be at least {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            raise self.error(node, field, f"must be at most {maximum:g}, got {value:g}")
        return value
