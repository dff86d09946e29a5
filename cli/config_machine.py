"""What a batch says of the machine: ``memory:`` and ``cpus:`` of tasks and agents, ``limits:``,
``--limit-cpu``/``--limit-memory`` and ``--max-parallel auto``, read and checked before
anything runs (see queue_core.machine_rule for what the queue does with them).

Sizes count in powers of 1024, as ``free -h`` and Docker's ``--memory`` do: ``2G`` is 2 GiB,
2 x 2**30 bytes; ``512M``, ``1.5G``, ``2GiB``, ``2gb`` and a bare number of bytes are read too.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from queue_core.machine import MIN_CPU_PERIOD_S, Limits, MachineSampler, PsutilSampler, Reading, size_text
from queue_core.machine_rule import AutoParallel, MachineRule

from .config import NO_LIMITS, Batch, ConfigError, Needs, Origin, TaskSpec, shown

__all__ = [
    "MachineKeys",
    "Primed",
    "RunMachine",
    "check_needs",
    "merged_limits",
    "parse_cpus",
    "parse_max_parallel",
    "parse_percent",
    "parse_size",
    "task_needs",
]

_SIZE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[kmgt]?)(?:i?b)?")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_PERCENT = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*%?")


def parse_size(value: str | int | float) -> int:
    """Bytes in ``2G``, ``512M``, ``1.5GiB`` or a bare number of bytes (see the module).

    Raises ValueError unless it is one of those forms and at least one byte.
    """
    expected = f"expected a size like 512M or 2G (K, M, G, T: powers of 1024), got {shown(value)}"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int | float):
        size = float(value)
    else:
        match = _SIZE.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError(expected)
        size = float(match["number"]) * _UNITS[match["unit"]]
    if not size >= 1 or math.isinf(size):  # NaN and 0 too
        raise ValueError(f"a size must be at least 1 byte, got {shown(value)}")
    return int(size)


def parse_cpus(value: str | int | float) -> float:
    """Cores, ``1.5`` for one and a half; raises ValueError unless a number greater than 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number of cores like 1 or 1.5, got {shown(value)}")
    cpus = float(value)
    if not 0 < cpus < math.inf:
        raise ValueError(f"must be more than 0 cores, got {shown(value)}")
    return cpus


def parse_percent(value: str | int | float) -> float:
    """A limit in percent, ``85%`` or ``85``; raises ValueError unless more than 0 and at most 100."""
    expected = f"expected a percentage like 85%, more than 0% and at most 100%, got {shown(value)}"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int | float):
        percent = float(value)
    else:
        match = _PERCENT.fullmatch(value.strip())
        if match is None:
            raise ValueError(expected)
        percent = float(match["number"])
    if not 0 < percent <= 100:
        raise ValueError(expected)
    return percent


def parse_max_parallel(text: str) -> int | str:
    """``--max-parallel``: a count of 1 or more, or ``auto``. Raises ValueError otherwise."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"expected a number of tasks or auto, got {text!r}") from None
    if count < 1:
        raise ValueError(f"must be at least 1, got {count}")
    return count


def merged_limits(flags: Limits, batch: Limits, repo: Limits) -> Limits:
    """Each limit from the flags, else the batch's ``limits:``, else project-manager.yaml's."""

    def first(name: str) -> float | None:
        return next((v for v in (getattr(level, name) for level in (flags, batch, repo)) if v is not None), None)

    limits = Limits(first("cpu"), first("memory"))
    return limits if limits else NO_LIMITS


def task_needs(task: TaskSpec, agents: dict[str, Needs]) -> Needs:
    """What ``task`` needs: its own ``memory:`` and ``cpus:``, else its agent's."""
    return task.needs.over(agents.get(task.agent, Needs()))


def check_needs(batch: Batch, needs_of: Callable[[TaskSpec], Needs], machine: Reading) -> None:
    """Refuse a task that needs more memory than ``machine`` has in all, or more cores: it could
    never start. Raises ConfigError pointing at the need, the task's own or its agent's."""
    for task in batch.tasks:
        needs = needs_of(task)
        if needs.memory is not None and needs.memory > machine.total:
            why = f"needs {size_text(needs.memory)} of memory; this machine has {size_text(machine.total)} in all"
            raise _where(needs.memory_origin, task, "memory").error(f"task {task.id!r} {why}")
        if needs.cpus is not None and needs.cpus > machine.cores:
            why = f"needs {needs.cpus:.10g} cpus; this machine has {machine.cores}"
            raise _where(needs.cpus_origin, task, "cpus").error(f"task {task.id!r} {why}")


@dataclass(frozen=True)
class RunMachine:
    """What a run asks of the machine: each task's ``needs``, the ``limits``, whether
    max_parallel is ``auto``; the ``sampler`` that reads it and its first ``reading`` (both
    None when none of those is asked: the machine is then never read)."""

    needs: dict[str, Needs]
    limits: Limits
    auto: bool
    sampler: MachineSampler | None = None
    reading: Reading | None = None

    @classmethod
    def of(cls, batch: Batch, agents: dict[str, Needs], limits: Limits, *, auto: bool) -> RunMachine:
        """For ``batch``, its agents' needs ``agents``: each task's needs, checked against the
        machine (see check_needs; raises ConfigError)."""
        needs = {task.id: task_needs(task, agents) for task in batch.tasks}
        if not (auto or limits or any(n.memory is not None or n.cpus is not None for n in needs.values())):
            return cls(needs, limits, auto)
        sampler = PsutilSampler()
        reading = _first_reading(sampler)
        if reading.cpu is None and (limits.cpu is not None or any(n.cpus is not None for n in needs.values())):
            # CPU is a rate, known from a second reading: measured now, before the plan, rather
            # than unknown (and holding all but one task) for the run's first second.
            time.sleep(1.5 * MIN_CPU_PERIOD_S)
            reading = _first_reading(sampler)
        check_needs(batch, lambda task: needs[task.id], reading)
        return cls(needs, limits, auto, Primed(sampler, reading), reading)

    def start(self) -> int | None:
        """What ``auto`` starts at on this machine (None: not auto)."""
        return None if self.reading is None or not self.auto else AutoParallel.for_machine(self.reading).start

    def rule(self) -> MachineRule | None:
        """A rule for a plan (--dry-run), to be given ``reading``; None if nothing is asked."""
        return None if self.reading is None else MachineRule(self.limits)


def _first_reading(sampler: MachineSampler) -> Reading:
    """``sampler``'s reading before the run; raises ConfigError (exit 2, nothing ran) if it fails:
    a run's limits, needs and auto count would all be judged on nothing."""
    try:
        return sampler.read()
    except Exception as exc:  # psutil's errors are many: OSError, its own, RuntimeError
        needed = "limits, memory:, cpus: and --max-parallel auto need"
        raise ConfigError("the machine", None, None, f"cannot read its CPU and memory, which {needed}: {exc}") from exc


class Primed:
    """A sampler whose first read is ``reading``, the plan's; then ``sampler``'s. The queue
    reads the machine as it is made (for ``auto``) and as tasks come: a second read a moment
    after the plan's would tell nothing new, and were it to fail, it would fail the run, where
    a failing read during the run only leaves the last readings standing."""

    def __init__(self, sampler: MachineSampler, reading: Reading) -> None:
        self._sampler = sampler
        self._first: Reading | None = reading

    def read(self) -> Reading:
        first, self._first = self._first, None
        return self._sampler.read() if first is None else first


def _where(origin: Origin | None, task: TaskSpec, field: str) -> Origin:
    return origin or Origin(f"task {task.id!r}", None, field)


_LIMITS_KEYS = ("cpu", "memory")
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_SCALARS = yaml.constructor.SafeConstructor()  # stateless for scalars, as in cli/config_files.py
_NOT_VALUES = {"tag:yaml.org,2002:null": "nothing (null)", "tag:yaml.org,2002:bool": "a boolean"}
_Entries = dict[str, tuple[yaml.Node, yaml.Node]]


class MachineKeys:
    """The part of cli/config_files.py's reader that reads ``limits:`` (a batch's, the
    repository's) and ``memory:`` and ``cpus:`` (a task's, an agent's); kept here, with the
    values' parsers, so that module stays one concept. The reader gives the three methods
    below."""

    source: str

    def error(self, node: yaml.Node, field: str | None, message: str) -> ConfigError:
        raise NotImplementedError

    def mapping(self, node: yaml.Node, field: str | None, allowed: Sequence[str] | None) -> _Entries:
        raise NotImplementedError

    def scalar(self, node: yaml.ScalarNode, field: str, construct: Callable[[yaml.ScalarNode], Any]) -> Any:
        raise NotImplementedError

    def limits(self, top: _Entries) -> Limits:
        """A top-level ``limits: {cpu: 85%, memory: 90%}`` (null, or none: no limits)."""
        if "limits" not in top or _is_null(node := top["limits"][1]):
            return NO_LIMITS
        entries = self.mapping(node, "limits", _LIMITS_KEYS)
        cpu, memory = (
            self.parsed(entries[key][1], f"limits.{key}", parse_percent) if key in entries else None
            for key in _LIMITS_KEYS
        )
        return Limits(cpu, memory)

    def needs(self, entries: _Entries, here: str) -> Needs:
        """``memory:`` and ``cpus:`` of a task or an agent (null: not set), and where each was written."""
        found: dict[str, tuple[Any, Origin | None]] = {"memory": (None, None), "cpus": (None, None)}
        for key, parse in (("memory", parse_size), ("cpus", parse_cpus)):
            if key in entries and not _is_null(node := entries[key][1]):
                field = f"{here}.{key}"
                found[key] = (self.parsed(node, field, parse), Origin(self.source, _line(node), field))
        (memory, memory_origin), (cpus, cpus_origin) = found["memory"], found["cpus"]
        return Needs(memory, cpus, memory_origin, cpus_origin)

    def parsed(self, node: yaml.Node, field: str, parse: Callable[[Any], Any]) -> Any:
        """``parse`` of a scalar's value: an int or float for a number, else its text as written."""
        if not isinstance(node, yaml.ScalarNode) or node.tag in _NOT_VALUES:
            got = _NOT_VALUES.get(node.tag) or ("a mapping" if isinstance(node, yaml.MappingNode) else "a list")
            raise self.error(node, field, f"expected a value, got {got}")
        value: Any = str(node.value)
        if node.tag in _NUMBER_TAGS:
            construct = _SCALARS.construct_yaml_int if node.tag == _NUMBER_TAGS[0] else _SCALARS.construct_yaml_float
            value = self.scalar(node, field, construct)
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(node, field, str(exc)) from exc


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _line(node: yaml.Node) -> int | None:
    return node.start_mark.line + 1 if node.start_mark is not None else None
