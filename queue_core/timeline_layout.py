"""The timeline picture's layout: a run (see :mod:`queue_core.timeline`) made lanes, bars, waits,
arrows and an axis, in pixels. Pure: the SVG is drawn from it by :mod:`queue_core.timeline_svg`.

One lane per agent, or per instance of it when its attempts overlapped in time (worktree
mode): attempts are dealt to lanes by interval partitioning, each to a free lane (its task's
previous one first), a new lane only when none is free, so an agent gets as many lanes as it
ever ran attempts at once. The wait before each start is a thin line under its lane's bars,
stacked likewise so that waits at the same time stay apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from .timeline import AttemptSpan, CriticalStep, JournalRun, TaskRun, critical_path
from .timeline_text import attempt_title, header_lines, marker_title, wait_title

__all__ = ["LEGEND_ORDER", "Arrow", "Bar", "Lane", "Marker", "Picture", "Tick", "WaitLine", "layout"]

LEFT, RIGHT, TOP_PAD = 180.0, 24.0, 12.0
BAR_H, TRACK_H, LANE_PAD = 16.0, 4.0, 5.0
LINE_H, CHAR_W = 18.0, 7.0  # a line of text; a character's width, about, at the picture's 12 px
MIN_PLOT, MAX_PLOT, PER_ATTEMPT = 960.0, 6000.0, 14.0  # the plot's width: room for the busiest lane
TOUCHING = 6.0  # px: closer than this, in one lane, a bar follows the other
SAME_LANE_SLACK = 0.05  # s: a start stamped a little before the end it followed still follows it


@dataclass(frozen=True)
class Lane:
    agent: str
    instance: int  # 1, 2, ... of ``count`` lanes of the agent
    count: int
    y: float
    height: float
    tracks: int  # rows of wait lines under its bars

    @property
    def label(self) -> str:
        return self.agent if self.count == 1 else f"{self.agent} #{self.instance}"

    @property
    def bar_y(self) -> float:
        return self.y + LANE_PAD


@dataclass(frozen=True)
class Bar:
    """An attempt. ``ending``: how it ended (see timeline.ENDINGS)."""

    task: str
    agent: str
    attempt: int
    ending: str
    critical: bool
    x: float
    y: float
    w: float
    title: str
    label: str | None  # the task id, where it fits in the bar


@dataclass(frozen=True)
class WaitLine:
    """The wait before an attempt (or before a task's end, for one that never started)."""

    task: str
    x: float
    y: float
    w: float
    unfinished: bool  # still waiting at the journal's end
    title: str


@dataclass(frozen=True)
class Marker:
    """A task that never started: ``kind`` is "skipped" or "cancelled", "not-run" (another end
    without an attempt), or "unstarted" (no end: still queued when the journal ends)."""

    task: str
    kind: str
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Arrow:
    """From the end of ``source``'s bar to the start of ``target``'s: "dependency", or "release" (on
    the critical path only: ``source``'s end let ``target`` start)."""

    source: str
    target: str
    kind: str
    critical: bool
    x1: float
    y1: float
    x2: float
    y2: float
    title: str

    @property
    def touching(self) -> bool:
        """One bar follows the other in a lane: an arrow there would only hide them (not drawn)."""
        return abs(self.x2 - self.x1) < TOUCHING and abs(self.y2 - self.y1) < 1


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Picture:
    title: str
    lines: tuple[str, ...]  # under the title: the counts and times, then notes
    width: float
    height: float
    plot_top: float  # where the lanes start; the axis labels sit above
    lanes: tuple[Lane, ...]
    bars: tuple[Bar, ...]
    waits: tuple[WaitLine, ...]
    markers: tuple[Marker, ...]
    arrows: tuple[Arrow, ...]
    ticks: tuple[Tick, ...]
    legend: tuple[str, ...]  # the keys drawn, in order (see timeline_svg.LEGEND)
    critical: tuple[str, ...]  # the critical path's task ids, first to last


@dataclass
class _Wait:
    task: TaskRun
    start: float
    end: float
    before: int | None  # the index of the attempt it comes before; None: the task never started
    reasons: list[str]
    unfinished: bool
    lane: int = 0
    track: int = 0


def layout(run: JournalRun) -> Picture:
    """The picture of ``run``: lanes, bars, waits, arrows, axis and text, in pixels."""
    critical = critical_path(run)
    t0 = run.started_at
    until = max(run.last_time, run.ended_at or run.last_time)
    span = max(until - t0, 1e-3)
    agents = _agents(run)
    lanes_of, attempt_lane = _deal_lanes(run, agents)
    waits = _waits(run, lanes_of, attempt_lane, span)
    tracks: dict[int, int] = {}
    for wait in waits:
        tracks[wait.lane] = max(tracks.get(wait.lane, 0), wait.track + 1)
    per_lane: dict[int, int] = {}
    for lane in attempt_lane.values():
        per_lane[lane] = per_lane.get(lane, 0) + 1
    busiest = max(per_lane.values(), default=1)
    plot_w = min(MAX_PLOT, max(MIN_PLOT, busiest * PER_ATTEMPT))
    scale = plot_w / span
    lines = header_lines(run, critical, int((LEFT + plot_w + RIGHT - 2 * TOP_PAD) / CHAR_W))
    plot_top = TOP_PAD + LINE_H * (1 + len(lines)) + 2 * LINE_H + 8  # title, lines, legend, axis labels
    lanes = _lanes(agents, lanes_of, tracks, plot_top)
    geometry = _Geometry(t0, scale, lanes)
    on_path = {step.task: step.until for step in critical}
    bar_of = {attempt: geometry.bar(attempt, lane, on_path) for attempt, lane in attempt_lane.items()}
    bars = tuple(bar_of.values())
    wait_lines = tuple(geometry.wait(wait) for wait in waits)
    markers = tuple(geometry.marker(run, task, until) for task in run.tasks if not task.attempts)
    arrows = _arrows(run, critical, bar_of, markers)
    width = LEFT + plot_w + RIGHT
    height = (lanes[-1].y + lanes[-1].height if lanes else plot_top) + TOP_PAD
    return Picture(
        title=f"project-manager run {run.run or '(unnamed)'}",
        lines=lines,
        width=width,
        height=height,
        plot_top=plot_top,
        lanes=lanes,
        bars=bars,
        waits=wait_lines,
        markers=markers,
        arrows=arrows,
        ticks=_ticks(span, scale),
        legend=_legend(bars, wait_lines, markers, arrows),
        critical=tuple(step.task for step in critical),
    )


def _agents(run: JournalRun) -> list[str]:
    """The agents in the order their tasks come."""
    return list(dict.fromkeys(task.agent for task in run.tasks))


def _deal_lanes(run: JournalRun, agents: list[str]) -> tuple[dict[str, list[float]], dict[AttemptSpan, int]]:
    """Each agent's lanes (the end of the last attempt in each) and each attempt's lane index,
    counted over all lanes in order of ``agents``."""
    by_agent: dict[str, list[tuple[AttemptSpan, int]]] = {agent: [] for agent in agents}
    for order, task in enumerate(run.tasks):
        by_agent[task.agent].extend((attempt, order) for attempt in task.attempts)
    lanes_of: dict[str, list[float]] = {}
    attempt_lane: dict[AttemptSpan, int] = {}
    first = 0
    for agent in agents:
        ends: list[float] = []
        last_lane: dict[str, int] = {}
        for attempt, _ in sorted(by_agent[agent], key=lambda item: (item[0].start, item[0].end, item[1])):
            free = [i for i, end in enumerate(ends) if end <= attempt.start + SAME_LANE_SLACK]
            preferred = last_lane.get(attempt.task)
            lane = preferred if preferred in free else (free[0] if free else len(ends))
            if lane == len(ends):
                ends.append(attempt.end)
            ends[lane] = max(ends[lane], attempt.end)
            last_lane[attempt.task] = lane
            attempt_lane[attempt] = first + lane
        lanes_of[agent] = ends or [0.0]  # an agent none of whose tasks ran still has its lane
        first += len(lanes_of[agent])
    return lanes_of, attempt_lane


def _waits(
    run: JournalRun, lanes_of: dict[str, list[float]], attempt_lane: dict[AttemptSpan, int], span: float
) -> list[_Wait]:
    """The waits worth a line (at least 0.05 s and a thousandth of the run), each in its lane and
    track: its attempt's, or for a task that never started its agent's first."""
    shortest = max(0.05, span / 1000)
    lane_of_agent: dict[str, int] = {}
    dealt = 0
    for agent, lanes in lanes_of.items():  # in the order lanes are dealt
        lane_of_agent[agent] = dealt
        dealt += len(lanes)
    found: list[_Wait] = []
    for task in run.tasks:
        for wait in _task_waits(run, task):
            if wait.end - wait.start >= shortest:
                before = wait.before
                wait.lane = lane_of_agent[task.agent] if before is None else attempt_lane[task.attempts[before]]
                found.append(wait)
    _stack(found)
    return found


def _task_waits(run: JournalRun, task: TaskRun) -> Iterable[_Wait]:
    """``task``'s waits: from its queueing to its first start, between its attempts, or to its end."""
    queued = run.queued_at(task)
    reasons = task.reasons
    previous_end = queued
    for index, attempt in enumerate(task.attempts):
        if previous_end is not None and attempt.start > previous_end:
            why = [] if index == 0 else [task.resumes.get(task.attempts[index - 1].number, "")]
            why += _reasons_between(reasons, previous_end, attempt.start)
            yield _Wait(task, previous_end, attempt.start, index, [w for w in why if w], False)
        previous_end = attempt.end
    if not task.attempts and queued is not None:
        end = task.ended_at if task.outcome is not None and task.ended_at is not None else run.last_time
        why = _reasons_between(reasons, queued, end)
        if task.outcome is not None and task.error:
            why.append(f"{task.outcome}: {task.error}")
        yield _Wait(task, queued, max(end, queued), None, why, task.outcome is None)


def _reasons_between(reasons: list[tuple[float, str]], start: float, end: float) -> list[str]:
    """The distinct reasons sampled from ``start`` to ``end``, in order; the one in force at
    ``start`` too (sampled before it, once a second)."""
    found: list[str] = []
    in_force: str | None = None
    for at, reason in reasons:
        if at < start - 0.001:
            in_force = reason
        elif at <= end + 0.001 and reason not in found:
            found.append(reason)
    if in_force is not None and not found and not in_force.startswith("needs "):
        found.append(in_force)
    return found


def _stack(waits: list[_Wait]) -> None:
    """Deal each lane's waits to tracks, so that waits at the same time stay apart."""
    ends: dict[int, list[float]] = {}
    for wait in sorted(waits, key=lambda w: (w.start, w.end)):
        tracks = ends.setdefault(wait.lane, [])
        free = next((i for i, end in enumerate(tracks) if end <= wait.start), len(tracks))
        if free == len(tracks):
            tracks.append(wait.end)
        tracks[free] = wait.end
        wait.track = free


def _lanes(agents: list[str], lanes_of: dict[str, list[float]], tracks: dict[int, int], top: float) -> tuple[Lane, ...]:
    lanes: list[Lane] = []
    y = top
    for agent in agents:
        count = len(lanes_of[agent])
        for instance in range(1, count + 1):
            rows = tracks.get(len(lanes), 0)
            height = LANE_PAD + BAR_H + (2 + rows * TRACK_H if rows else 0) + LANE_PAD
            lanes.append(Lane(agent, instance, count, y, height, rows))
            y += height
    return tuple(lanes)


class _Geometry:
    """Times and lanes to pixels."""

    def __init__(self, t0: float, scale: float, lanes: tuple[Lane, ...]) -> None:
        self.t0, self.scale, self.lanes = t0, scale, lanes

    def x(self, at: float) -> float:
        return LEFT + max(0.0, at - self.t0) * self.scale

    def bar(self, attempt: AttemptSpan, lane: int, on_path: dict[str, float]) -> Bar:
        x = self.x(attempt.start)
        w = max(1.0, self.x(attempt.end) - x)
        until = on_path.get(attempt.task)
        critical = until is not None and attempt.start < until
        label = attempt.task if attempt.number == 1 else f"{attempt.task} ({attempt.number})"
        fits = len(label) * CHAR_W + 6 <= w
        return Bar(
            attempt.task,
            attempt.agent,
            attempt.number,
            attempt.ending,
            critical,
            x,
            self.lanes[lane].bar_y,
            w,
            attempt_title(attempt),
            label if fits else None,
        )

    def wait(self, wait: _Wait) -> WaitLine:
        lane = self.lanes[wait.lane]
        x = self.x(wait.start)
        y = lane.bar_y + BAR_H + 2 + wait.track * TRACK_H
        return WaitLine(
            wait.task.id,
            x,
            y,
            max(1.0, self.x(wait.end) - x),
            wait.unfinished,
            wait_title(wait.task.id, wait.start, wait.end, wait.reasons, unfinished=wait.unfinished),
        )

    def marker(self, run: JournalRun, task: TaskRun, until: float) -> Marker:
        lane = next(lane for lane in self.lanes if lane.agent == task.agent)
        at = task.ended_at if task.outcome is not None and task.ended_at is not None else until
        kind = task.outcome if task.outcome in ("skipped", "cancelled") else "not-run" if task.outcome else "unstarted"
        return Marker(task.id, kind, self.x(at), lane.bar_y + BAR_H / 2, marker_title(task))


def _arrows(
    run: JournalRun, critical: tuple[CriticalStep, ...], bar_of: dict[AttemptSpan, Bar], markers: tuple[Marker, ...]
) -> tuple[Arrow, ...]:
    """A dependency arrow for every dependency of a task on another in the picture; a release
    arrow for each step of the critical path that is not a dependency, from the end of the
    attempt that released the next task."""
    first: dict[str, tuple[float, float]] = {m.task: (m.x, m.y) for m in markers}
    last = dict(first)
    ends: dict[tuple[str, float], tuple[float, float]] = {}
    for task in run.tasks:
        if task.attempts:
            head, tail = bar_of[task.attempts[0]], bar_of[task.attempts[-1]]
            first[task.id] = (head.x, head.y + BAR_H / 2)
            last[task.id] = (tail.x + tail.w, tail.y + BAR_H / 2)
            for attempt in task.attempts:
                bar = bar_of[attempt]
                ends[(task.id, attempt.end)] = (bar.x + bar.w, bar.y + BAR_H / 2)
    links = {(step.task, following.task): step.then for step, following in itertools.pairwise(critical)}
    arrows: list[Arrow] = []
    for task in run.tasks:
        for dep in dict.fromkeys(task.depends_on):
            if dep in last and task.id in first and dep != task.id:
                on_path = links.get((dep, task.id)) == "dependency"
                title = f"{task.id} depends on {dep}"
                arrows.append(Arrow(dep, task.id, "dependency", on_path, *last[dep], *first[task.id], title))
    for step, following in itertools.pairwise(critical):
        start = ends.get((step.task, step.until))
        if step.then == "release" and start is not None:
            title = f"the end of {step.task} let {following.task} start"
            arrows.append(Arrow(step.task, following.task, "release", True, *start, *first[following.task], title))
    return tuple(arrows)


def _ticks(span: float, scale: float) -> tuple[Tick, ...]:
    """Axis ticks at a round step, about ten across the run."""
    step = next((s for s in _STEPS if span / s <= 10), None)
    if step is None:
        step = 86400.0 * -(-span // (10 * 86400))
    count = int(span // step) + 1
    return tuple(Tick(LEFT + i * step * scale, _offset_text(i * step, step)) for i in range(count))


_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _offset_text(seconds: float, step: float) -> str:
    """An axis label: ``0.5s``, ``40s``, ``2m``, ``2m30s``, ``1h``, ``1h30m``."""
    if step < 1:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest:02d}s"
    hours, rest = divmod(whole, 3600)
    return f"{hours}h" if rest < 60 else f"{hours}h{rest // 60:02d}m"


#: The legend's keys, in the order drawn: attempts by how they ended, markers, lines.
LEGEND_ORDER = (
    "succeeded",
    "failed",
    "timed_out",
    "rate_limited",
    "cancelled",
    "retried",
    "paused",
    "unfinished",
    "marker-skipped",
    "marker-cancelled",
    "marker-not-run",
    "marker-unstarted",
    "wait",
    "dependency",
    "critical",
)


def _legend(
    bars: tuple[Bar, ...], waits: tuple[WaitLine, ...], markers: tuple[Marker, ...], arrows: tuple[Arrow, ...]
) -> tuple[str, ...]:
    """The legend's keys for what the picture shows."""
    shown: set[str] = {bar.ending for bar in bars} | {f"marker-{marker.kind}" for marker in markers}
    shown |= {"wait"} if waits else set()
    shown |= {"dependency"} if any(arrow.kind == "dependency" for arrow in arrows) else set()
    shown |= {"critical"} if any(bar.critical for bar in bars) else set()
    return tuple(key for key in LEGEND_ORDER if key in shown)
