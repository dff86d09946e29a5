"""``hooks:`` of project-manager.yaml: commands run as each task of a run ends (``task_end``)
and once the run ended by itself (``run_end``), to tell someone or something of it: a desktop
notification, a chat's webhook, a CI step.

Each is an argv, never a shell string, and runs as ``--notify``'s on_finish does
(cli/notify.run_command): at the repository root, its output dropped but for its last error
line, for at most ``timeout`` (default HOOK_TIMEOUT_S), then killed with its process group. It
reads the task's or the run's ``--json`` object on stdin, from a file (never a pipe: a hook that
never reads it blocks nobody), and finds the ``PM_*`` variables in its environment. A failing
hook is a warning: never the run's failure, never its exit code.

task_end hooks run on one thread of their own, in the order the tasks ended, so a slow hook
delays the next hooks, never a task's start or end nor the engine. run_end hooks run after the
summary, once every task_end hook ran. A stop signal kills the hook that runs, at once, and no
other starts: a run ended by a signal runs no run_end hook, as it runs no on_finish.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from queue_core import SubprocessAgent, TaskEvent, TaskState

from .notify import ON_FINISH_TIMEOUT_S, Waiter, run_command, run_env
from .render import SummaryRow, task_json
from .yaml_nodes import describe, is_null, join

if TYPE_CHECKING:
    from .config import ConfigError

__all__ = ["HOOK_EVENTS", "HOOK_KEYS", "HOOK_TIMEOUT_S", "HookRunner", "Hooks", "read_hooks"]

Command = tuple[str, ...]
#: When hooks run: as each task ends, once the run ends.
HOOK_EVENTS = ("task_end", "run_end")
HOOK_KEYS = (*HOOK_EVENTS, "timeout")
#: How long a hook may take unless ``timeout:`` says: a notification, not a job (as on_finish).
HOOK_TIMEOUT_S = ON_FINISH_TIMEOUT_S
#: The event kinds that end a task: its terminal states.
_ENDS = frozenset(state.value for state in TaskState if state.is_terminal)
_ONE_COMMAND = "[[program, args...]]"
#: Once stopped, how long the run's end may wait for the hook that runs to be killed: at once,
#: but for a process the kernel cannot kill yet (in the middle of a disk's I/O).
STOP_WAIT_S = 2.0


@dataclass(frozen=True)
class Hooks:
    """The commands of ``hooks:``, each an argv, per event; and how long each may run."""

    task_end: tuple[Command, ...] = ()
    run_end: tuple[Command, ...] = ()
    timeout_s: float = HOOK_TIMEOUT_S

    def __bool__(self) -> bool:
        return bool(self.task_end or self.run_end)


class HookReader(Protocol):
    """What read_hooks asks of cli/config_files.py's reader of one file."""

    def error(self, node: yaml.Node, field: str | None, message: str) -> ConfigError: ...

    def mapping(
        self, node: yaml.Node, field: str | None, allowed: Sequence[str] | None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]: ...

    def commands(self, node: yaml.Node, field: str) -> tuple[tuple[str, ...], ...]: ...

    def duration(self, node: yaml.Node, field: str) -> float | None: ...


def read_hooks(reader: HookReader, node: yaml.Node, field: str = "hooks") -> Hooks:
    """A top-level ``hooks:`` (null: none). Raises ConfigError, naming the line and the field, for
    anything but a mapping of HOOK_KEYS, each event a list of argvs."""
    if is_null(node):
        return Hooks()
    if not isinstance(node, yaml.MappingNode):
        expected = ", ".join(f"{event}: {_ONE_COMMAND}" for event in HOOK_EVENTS)
        raise reader.error(
            node, field, f"expected a mapping of events to commands, {{{expected}}}, got {describe(node)}"
        )
    entries = reader.mapping(node, field, HOOK_KEYS)

    def commands(event: str) -> tuple[Command, ...]:
        return _commands(reader, entries[event][1], join(field, event)) if event in entries else ()

    timeout = reader.duration(entries["timeout"][1], join(field, "timeout")) if "timeout" in entries else None
    return Hooks(commands("task_end"), commands("run_end"), HOOK_TIMEOUT_S if timeout is None else timeout)


def _commands(reader: HookReader, node: yaml.Node, field: str) -> tuple[Command, ...]:
    """An event's commands; one command written without the outer list gets a hint, not a
    complaint about its first word."""
    if isinstance(node, yaml.SequenceNode) and node.value and all(_is_word(item) for item in node.value):
        one = ", ".join(str(item.value) for item in node.value)
        raise reader.error(
            node,
            field,
            "expected a list of commands, [[program, args...], ...], got a list of strings "
            f"(for one command, write [[{one}]])",
        )
    return reader.commands(node, field)


def _is_word(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and not is_null(node)


#: The ``--json`` objects (cli/render.task_json) of the given finished tasks, by id.
Describe = Callable[[Collection[str]], Mapping[str, Mapping[str, Any]]]
Warn = Callable[[str], None]


class HookRunner:
    """The hooks of one run: ``task_ended`` hands each task's end to a thread of its own,
    ``run_end`` waits for it and runs the run's; ``stop`` ends both at once (a stop signal).

    ``task_env`` is each task's environment as its agent had it (``PM_TASK_ID``...); ``describe``
    gives the objects the hooks read, looked up once for the tasks that ended meanwhile.
    """

    def __init__(
        self,
        hooks: Hooks,
        repo: Path,
        run_id: str,
        task_env: Mapping[str, Mapping[str, str]],
        describe: Describe,
        warn: Warn,
    ) -> None:
        self.hooks = hooks
        self._repo = repo
        self._run_id = run_id
        self._task_env = task_env
        self._describe = describe
        self._lock = threading.Lock()  # guards everything below
        self._changed = threading.Condition(self._lock)  # an end queued, the queue closed, a stop, a wait over
        self._ended: list[TaskEvent] = []
        self._closed = False  # no more ends come: the worker ends once it ran theirs
        self._stopped: int | None = None  # the stop signal that came
        self._worker: threading.Thread | None = None
        self._warn: Warn | None = warn  # None: held in _held until the output can take them
        self._held: list[str] = []

    @classmethod
    def of_run(
        cls,
        hooks: Hooks,
        repo: Path,
        run_id: str,
        runners: Mapping[str, SubprocessAgent],
        rows: Callable[[Collection[str]], list[SummaryRow]],
        estimates: Mapping[str, float],
        warn: Warn,
    ) -> HookRunner:
        """The runner of the run ``run_id``'s ``hooks``: each task's with the environment of its
        agent (its runner), and its --json object made from ``rows`` (of the tasks named, as they
        ended: those alone, not the whole batch at each end) and ``estimates`` (seconds by task id)."""

        def describe(ids: Collection[str]) -> dict[str, dict[str, Any]]:
            return {row.outcome.id: task_json(row, estimates.get(row.outcome.id)) for row in rows(ids)}

        return cls(hooks, repo, run_id, {t: r.env for t, r in runners.items()}, describe, warn)

    def task_ended(self, event: TaskEvent) -> None:
        """Queue the task_end hooks of a task that ended (any other event: nothing). Never waits:
        the queue's threads call it, on their way to the next task."""
        if not self.hooks.task_end or event.kind not in _ENDS:
            return
        with self._lock:
            if self._stopped is not None or self._closed:
                return
            self._ended.append(event)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="project-manager-hooks", daemon=True)
                self._worker.start()
            self._changed.notify_all()

    def run_end(self, report: Callable[[], str], code: int, outcomes: Sequence[TaskState], wait: Waiter) -> None:
        """The run ended by itself with ``code``, its tasks with ``outcomes``: once every task_end
        hook ran, run the run_end hooks, each reading ``report()`` (the ``--json`` report).

        ``wait`` waits for each (see cli.notify.Waiter): a stop signal meanwhile stops the hook
        that runs, and runs no other.
        """
        if (signum := wait(self._drain)) is not None:
            self.stop(signum, wait=True)
        with self._lock:
            if self._stopped is not None or not self.hooks.run_end:
                return
        data = f"{report()}\n".encode()
        env = {**run_env(self._run_id, code, outcomes), "PM_STATUS": "succeeded" if code == 0 else "failed"}
        for i, command in enumerate(self.hooks.run_end):
            signums: list[int] = []
            problem = run_command(command, self._repo, env, self.hooks.timeout_s, wait, signums, stdin=data)
            if problem is not None:
                self._say(f"hook run_end[{i}] ({shlex.join(command)}): {problem}")
            if signums:
                self.stop(signums[0])
                return

    def stop(self, signum: int, *, wait: bool = False) -> None:
        """A stop signal ``signum`` came: kill the task_end hook that runs, and run no other.

        With ``wait``, until it is killed and its warning given (STOP_WAIT_S at most): the
        process is about to exit, and a hook, in a session of its own, would outlive it.
        """
        with self._lock:
            if self._stopped is None:
                self._stopped = signum
                self._ended.clear()
            self._changed.notify_all()
            worker = self._worker
        if wait and worker is not None:
            worker.join(STOP_WAIT_S)

    def warn_to(self, warn: Warn | None) -> None:
        """Give warnings to ``warn`` from now on, with those held until now; None: hold them
        (the run's output is closing, and would drop them)."""
        with self._lock:
            self._warn = warn
            if warn is None:
                return
            held, self._held = self._held, []
        for text in held:
            warn(text)

    def _say(self, text: str) -> None:
        with self._lock:
            warn = self._warn
            if warn is None:
                self._held.append(text)
                return
        warn(text)

    def _drain(self) -> None:
        """No more tasks end: wait until the hooks of those that did ran (or a stop came)."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join()

    def _work(self) -> None:
        """Run the task_end hooks of each task that ended, in order, until the queue closes."""
        while (ended := self._next()) is not None:
            self._hooks_of(ended)

    def _hooks_of(self, ended: list[TaskEvent]) -> None:
        """Run the task_end hooks of the tasks ``ended``, each described as at its end, looked up
        once for them all (it takes the queue's lock); what goes wrong is a warning."""
        try:
            objects = self._describe({event.task_id for event in ended})
            for event in ended:
                self._task_hooks(event, objects.get(event.task_id) or {"id": event.task_id, "status": event.kind})
        except Exception as exc:  # noqa: BLE001 - a hook's trouble is a warning, never the run's
            ids = ", ".join(event.task_id for event in ended)
            self._say(f"task_end hooks for task{'s' if len(ended) > 1 else ''} {ids} not run: {exc!r}")

    def _next(self) -> list[TaskEvent] | None:
        """The ends queued since the last call, waiting for one; None once closed with none left, or stopped."""
        with self._lock:
            self._changed.wait_for(lambda: bool(self._ended) or self._closed or self._stopped is not None)
            if self._stopped is not None or not self._ended:
                return None
            ended, self._ended = self._ended, []
            return ended

    def _task_hooks(self, event: TaskEvent, task: Mapping[str, Any]) -> None:
        """Run the task_end hooks of ``event``'s task, described by ``task``, unless stopped."""
        exit_code, log = task.get("exit_code"), task.get("log")
        env = {
            **self._task_env.get(event.task_id, {}),
            "PM_STATUS": str(task.get("status", event.kind)),
            "PM_EXIT_CODE": "" if exit_code is None else str(exit_code),
            "PM_LOG": "" if log is None else str(log),
        }
        data = f"{json.dumps(task)}\n".encode()
        for i, command in enumerate(self.hooks.task_end):
            with self._lock:
                if self._stopped is not None:
                    return
            problem = run_command(command, self._repo, env, self.hooks.timeout_s, self._wait, stdin=data)
            if problem is not None:
                self._say(f"hook task_end[{i}] ({shlex.join(command)}) for task {event.task_id}: {problem}")

    def _wait(self, exited: Callable[[], object]) -> int | None:
        """A Waiter for the worker: ``exited`` (a hook's own end, within its timeout) in a thread,
        unless a stop comes first: then the stop's signal, and run_command kills the hook."""
        done = threading.Event()

        def run() -> None:
            try:
                exited()
            finally:
                with self._lock:
                    done.set()
                    self._changed.notify_all()

        threading.Thread(target=run, name="project-manager-hook-wait", daemon=True).start()
        with self._lock:
            self._changed.wait_for(lambda: done.is_set() or self._stopped is not None)
            return None if done.is_set() else self._stopped
