"""The Rich panels of the live views: a run's (``delegate-multiple`` on a terminal), built here
whole, and every run's (``status``), which cli/status.py builds from the same parts.

Only built here; cli/terminal.py draws them. Importing Rich takes a tenth of a second, so a
command imports this module only once it knows it draws panels. User text (descriptions,
paths, reasons) goes in as ``Text``, never as Rich markup.

A view is laid out when drawn, for the terminal's width and height, 80 x 24 first:

* Widths. Columns that hold names (task ids, agents, runs) are as wide as the longest name the
  view will show (a run's batch) or has shown (``status``): the text does not jump from one
  frame to the next. The run column goes first when the width is short: its id's tail, then
  nothing. The description, files and reasons share the rest, each keeping its first words.
* Heights. The head lines and the Resources panel are never cut; the tables get the rows left,
  the running agents first, then the queue; the active files, which the running agents' files
  column also shows, go when there is no room for them. A table cut short says how many more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from queue_core import QueueStatus
from queue_core.records import RunningTask, WaitingTask
from queue_core.waits import seconds_text

from .render import agent_text, files_text, limits_text, progress_text, task_left_text
from .usage import machine_text, usage_text

if TYPE_CHECKING:
    from queue_core.machine import Limits

    from .usage import Machine, Usage

QUEUE_ROWS = 20  # waiting tasks listed at most; the rest are counted

#: The tables' columns, by kind.
RUNNING = ("run", "task", "agent", "description", "elapsed", "files")
#: With estimates: the time each running task has left.
RUNNING_ESTIMATED = ("run", "task", "agent", "description", "elapsed", "estimate", "files")
FILES = ("run", "file", "task", "agent")
QUEUE = ("run", "task", "agent", "reason")
_HEADERS = {"reason": "waits because"}
#: The columns that share what the others leave: (least width, share of the rest).
_FLEXIBLE = {"description": (16, 3), "files": (12, 2), "reason": (24, 1), "file": (16, 1)}
_NAME_MAX = {"task": 24, "agent": 18}  # a longer name is cut
_NAME_MIN = 8  # how far a name column gives way on a very narrow terminal
_ELAPSED = 7  # "59m 59s", "23h 59m"
_ESTIMATE = 13  # "over estimate", "~89 min left"
_RUN_TAIL = 12  # a run id cut to its tail: "…27432-23a36f"
_PANEL = 4  # a panel's borders and padding, left and right
_GAP = 2  # between two columns


class Columns:
    """The widths of the columns that hold names, grown by ``see``: the longest names seen."""

    def __init__(self) -> None:
        self._widths = {"task": 0, "agent": 0, "run": 0}  # no run column until a run is seen

    def see(self, names: Iterable[tuple[str, str, str | None]]) -> Columns:
        """Make room for each (task id, agent, run or None) of ``names``; returns itself."""
        for task, agent, run in names:
            self._widths["task"] = max(self._widths["task"], len(task))
            self._widths["agent"] = max(self._widths["agent"], len(agent))
            if run is not None:
                self._widths["run"] = max(self._widths["run"], len("run"), len(run))
        return self

    def layout(self, kinds: Sequence[str], width: int) -> list[tuple[str, int]]:
        """The columns of ``kinds`` that a panel ``width`` wide shows, in order, each with its width."""
        fixed = {kind: self._fixed(kind) for kind in kinds if kind not in _FLEXIBLE and kind != "run"}
        flexible = [kind for kind in kinds if kind in _FLEXIBLE]
        least = sum(_FLEXIBLE[kind][0] for kind in flexible)

        def left(run: int) -> int:
            count = len(fixed) + len(flexible) + (run > 0)
            return width - _PANEL - sum(fixed.values()) - run - _GAP * (count - 1)

        run = 0
        if "run" in kinds and self._widths["run"]:  # whole if the rest keeps its least width; else its tail; else none
            run = next((w for w in (self._widths["run"], _RUN_TAIL) if left(w) >= least), 0)
        for kind in ("agent", "task"):  # still too narrow: the names give way
            if kind in fixed and left(run) < least:
                fixed[kind] -= min(fixed[kind] - _NAME_MIN, least - left(run))
        widths = {**fixed, **_shared(flexible, max(left(run), 0)), "run": run}
        return [(kind, widths[kind]) for kind in kinds if widths.get(kind)]

    def _fixed(self, kind: str) -> int:
        if kind in ("elapsed", "estimate"):
            return _ELAPSED if kind == "elapsed" else _ESTIMATE
        return max(_NAME_MIN, min(self._widths[kind], _NAME_MAX[kind]))


def _shared(kinds: Sequence[str], room: int) -> dict[str, int]:
    """``room`` shared by the flexible ``kinds``: each its least width, the rest by share (the
    last takes what rounding leaves)."""
    if not kinds:
        return {}
    least = sum(_FLEXIBLE[kind][0] for kind in kinds)
    if room <= least:  # a terminal narrower than anything sensible: share what there is
        return {kind: max(1, room * _FLEXIBLE[kind][0] // least) for kind in kinds}
    shares = sum(_FLEXIBLE[kind][1] for kind in kinds)
    widths = {kind: _FLEXIBLE[kind][0] + (room - least) * _FLEXIBLE[kind][1] // shares for kind in kinds}
    widths[kinds[-1]] += room - sum(widths.values())
    return widths


@dataclass(frozen=True)
class Part:
    """A table panel of a view: ``rows`` (a cell for each of ``kinds``) under ``title``, and
    ``more`` rows that go unlisted; ``optional``: left out when the screen is short."""

    title: str
    kinds: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    more: int = 0
    optional: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def wanted(self) -> int:
        """The table rows it takes to show everything: each row, and one to count the unlisted."""
        return len(self.rows) + (self.more > 0)

    def panel(self, columns: Columns, width: int, shown: int) -> Panel:
        """The panel, ``width`` wide, in ``shown`` table rows: the first rows, then how many more."""
        layout = columns.layout(self.kinds, width)
        table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False)
        for kind, w in layout:
            header = self.headers.get(kind) or _HEADERS.get(kind, kind)
            table.add_column(header, width=w, min_width=w, max_width=w, no_wrap=True, overflow="ellipsis")
        listed = self.rows if shown >= self.wanted else self.rows[: max(0, shown - 1)]
        where = {kind: i for i, kind in enumerate(self.kinds)}
        for row in listed:
            table.add_row(*(Text(_cell(kind, row[where[kind]], w)) for kind, w in layout))
        unlisted = len(self.rows) - len(listed) + self.more
        if unlisted and shown:
            flexible = next(i for i, (kind, _) in enumerate(layout) if kind in _FLEXIBLE)
            table.add_row(*(Text(f"and {unlisted} more" if i == flexible else "") for i in range(len(layout))))
        return Panel(table, title=self.title)


def _cell(kind: str, text: str, width: int) -> str:
    """``text`` in a column ``width`` wide: a run id keeps its tail, which tells runs apart; Rich cuts the rest."""
    return text if kind != "run" or len(text) <= width else "…" + text[len(text) - width + 1 :]


class Frame:
    """A view, laid out when drawn for the console's width and, if ``fit``, its height (see the
    module): ``head`` lines, the ``parts`` in order, then the ``resources`` panel."""

    def __init__(
        self, head: Sequence[Text], parts: Sequence[Part], resources: Sequence[str], columns: Columns, *, fit: bool
    ):
        self.head, self.parts, self.resources, self.columns, self.fit = head, parts, resources, columns, fit

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        shown = self._rows(console, width, options.height or console.height) if self.fit else None
        yield from self.head
        for i, part in enumerate(self.parts):
            rows = part.wanted if shown is None else shown[i]
            if rows is not None:
                yield part.panel(self.columns, width, rows)
        lines = (Text(line, no_wrap=True, overflow="ellipsis") for line in self.resources)
        yield Panel(Group(*lines), title="Resources")

    def _rows(self, console: Console, width: int, height: int) -> list[int | None]:
        """The table rows each part gets in ``height`` lines; None: it is left out."""
        head = sum(len(text.wrap(console, width)) for text in self.head)
        room = height - head - (len(self.resources) + 2) - 3 * sum(not p.optional for p in self.parts)
        shown: list[int | None] = [None] * len(self.parts)
        # The parts that must show first, in order, then the optional ones while room is left.
        for i in sorted(range(len(self.parts)), key=lambda i: self.parts[i].optional):
            part = self.parts[i]
            if part.optional:
                if room < 3 + min(part.wanted, 1):  # its borders, header and a row
                    continue
                room -= 3
            shown[i] = min(part.wanted, max(room, 0))
            room -= shown[i] or 0
        return shown


def run_view(
    status: QueueStatus,
    *,
    columns: Columns,
    agents: Usage,
    machine: Machine,
    cost: float | None,
    elapsed_s: float,
    limits: Limits | None = None,
) -> Frame:
    """The live view of a run from its ``status``: its progress, running agents, active files,
    queue and resources. ``agents``: what its agents use; ``cost``: what they reported so far
    (None: nothing); ``elapsed_s``: since the run began; ``limits``: the run's, shown if set."""
    head = [Text(f"waiting for the registry: {status.registry_wait}")] if status.registry_wait else []
    progress = progress_text(status.counts, len(status.running), status.queued_tasks, elapsed_s, eta_s=status.eta_s)
    head.append(Text(progress))
    waiting = status.waiting[:QUEUE_ROWS]
    parts = [
        running_part(f"Running agents ({len(status.running)}/{status.max_parallel})", status.running),
        files_part(f"Active files ({len(status.running_files)})", status.running),
        queue_part(f"Queue ({status.queued_tasks})", waiting, status.queued_tasks - len(waiting)),
    ]
    spent = "" if cost is None else f", cost so far ${cost:.4f}"
    resources = [machine_text(machine), f"agents   {usage_text(agents, machine.cores)}{spent}"]
    if limits:  # what a new task waits for: a share of the whole machine, as the figures above
        resources.append(f"limits   {limits_text(limits)}: no new task while above (one if none runs)")
    return Frame(head, parts, resources, columns, fit=True)


def running_part(title: str, tasks: Sequence[RunningTask]) -> Part:
    """The running agents, a row each: run, task, agent, description, elapsed time, the time
    left of its estimate (a column only while some task has an estimate) and files."""
    if any(task.estimate_s is not None for task in tasks):
        return Part(title, RUNNING_ESTIMATED, [_running_row(task, estimated=True) for task in tasks])
    return Part(title, RUNNING, [_running_row(task) for task in tasks])


def _running_row(task: RunningTask, *, estimated: bool = False) -> tuple[str, ...]:
    description = ("(timed out) " if task.timed_out else "") + task.description
    elapsed = seconds_text(task.elapsed_s)
    left = (task_left_text(task.estimate_s, task.elapsed_s),) if estimated else ()
    return (task.run or "", task.id, agent_text(task), description, elapsed, *left, files_text(task))


def files_part(title: str, tasks: Sequence[RunningTask]) -> Part:
    """Every file the running tasks write, and the task (and agent) holding it."""
    rows = [
        (task.run or "", f"{path} (added)" if path in task.added else path, task.id, task.agent)
        for task in tasks
        for path in task.files
    ]
    return Part(title, FILES, rows, optional=True, headers={"task": "held by"})


def queue_part(title: str, waiting: Sequence[WaitingTask], more: int) -> Part:
    """The waiting tasks with the reason each waits, then how many ``more`` wait unlisted."""
    return Part(title, QUEUE, [(task.run or "", task.id, task.agent, task.reason) for task in waiting], max(more, 0))
