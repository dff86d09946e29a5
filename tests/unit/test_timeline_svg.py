"""The timeline picture, parsed back as XML: lanes, a bar per attempt with its ending's class and
colour, waits with their reasons, dependency arrows, the critical path, the axis, escaping, and
nothing that would reach the network."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from queue_core.timeline import run_from_events
from queue_core.timeline_layout import LEGEND_ORDER, Picture, layout
from queue_core.timeline_svg import LEGEND, html_page

from ._journals import KILLED, RELEASE, STANDARD, WORKTREE, batch_task, ended, final, started, task_line

SVG = "{http://www.w3.org/2000/svg}"


def picture(events: list[dict[str, Any]]) -> Picture:
    return layout(run_from_events(events))


def xml(page: str) -> ET.Element:
    """``page`` parsed as XML: it must be well-formed whatever the journal held."""
    return ET.fromstring(page)  # noqa: S314 - our own output, no entities in it


def parsed(events: list[dict[str, Any]]) -> ET.Element:
    return xml(html_page(picture(events)))


def having(root: ET.Element, *classes: str, tag: str = "rect") -> list[ET.Element]:
    """The SVG elements ``tag`` whose class holds every one of ``classes``."""
    return [e for e in root.iter(SVG + tag) if set(classes) <= set(e.get("class", "").split())]


def title(element: ET.Element) -> str:
    found = element.find(SVG + "title")
    assert found is not None
    assert found.text is not None
    return found.text


def css_fill(root: ET.Element, cls: str) -> str:
    """The fill the page's style gives ``.cls``."""
    style = root.find(".//style")
    assert style is not None
    assert style.text is not None
    found = re.search(rf"^\.{cls} {{ fill: (#[0-9a-f]{{6}}); }}$", style.text, re.MULTILINE)
    assert found, f"no fill for .{cls}"
    return found.group(1)


def test_one_lane_per_agent_in_the_order_their_tasks_come() -> None:
    root = parsed(STANDARD)
    lanes = [(g.get("data-agent"), g.get("data-instance")) for g in root.iter(SVG + "g") if g.get("class") == "lane"]
    assert lanes == [("architect", "1"), ("code_developer", "1"), ("tester", "1"), ("releaser", "1")]
    labels = [t.text for t in root.iter(SVG + "text") if t.get("class") == "lane-label"]
    assert labels == ["architect", "code_developer", "tester", "releaser"]


def test_overlapping_attempts_of_one_agent_get_as_many_lanes_as_ran_at_once() -> None:
    shown = picture(WORKTREE)
    assert [lane.label for lane in shown.lanes] == ["claude #1", "claude #2", "codex"]
    lane_of = {bar.task: bar.y for bar in shown.bars}
    assert lane_of["w1"] == lane_of["w3"] != lane_of["w2"]  # w3 took the lane w1 left


def test_a_bar_per_attempt_classed_and_coloured_by_how_it_ended() -> None:
    root = parsed(STANDARD)
    bars = {(e.get("data-task"), e.get("data-attempt")): e.get("class", "").split() for e in having(root, "bar")}
    bars = {key: classes for key, classes in bars.items() if key[0] is not None}  # not the legend's swatches
    assert {key: classes[1] for key, classes in bars.items()} == {
        ("spec", "1"): "succeeded",
        ("notes", "1"): "succeeded",
        ("api", "1"): "succeeded",
        ("broken", "1"): "failed",
        ("tests", "1"): "succeeded",
        ("flaky", "1"): "retried",
        ("flaky", "2"): "succeeded",
    }
    fills = {cls: css_fill(root, cls) for cls in ("succeeded", "failed", "timed_out", "rate_limited", "retried")}
    assert len(set(fills.values())) == len(fills)  # each ending its own colour
    (flaky,) = [e for e in having(root, "bar", "retried") if e.get("data-task") == "flaky"]
    assert title(flaky).startswith("flaky [releaser] attempt 1: failed, retried, exit code 1\n2.0 s, ")
    assert title(flaky).endswith("\nthe agent exited with code 1")


def test_the_legend_names_what_the_picture_shows_and_nothing_else() -> None:
    root = parsed(STANDARD)
    keys = [g.get("data-key") for g in root.iter(SVG + "g") if g.get("class") == "key"]
    assert keys == ["succeeded", "failed", "retried", "marker-skipped", "wait", "dependency", "critical"]
    assert set(LEGEND) == set(LEGEND_ORDER)


def test_bars_sit_on_the_time_axis() -> None:
    shown = picture(STANDARD)
    api = next(bar for bar in shown.bars if bar.task == "api")
    tests = next(bar for bar in shown.bars if bar.task == "tests")
    assert tests.x == pytest.approx(api.x + api.w)  # tests started when api ended
    assert tests.w == pytest.approx(1.5 * api.w)  # 6 s against 4 s
    assert [tick.label for tick in shown.ticks] == [f"{s}s" for s in range(11)]
    assert shown.ticks[4].x == pytest.approx(tests.x)


def test_waits_come_before_their_start_with_their_reasons_on_hover() -> None:
    root = parsed(STANDARD)
    waits = {e.get("data-task"): e for e in having(root, "wait") if e.get("data-task")}
    assert set(waits) == {"broken", "notes", "flaky"}  # tests started as api ended: no wait
    assert title(waits["notes"]).splitlines()[1:] == ["docs/x.md overlaps docs/ held by architect (spec)"]
    assert title(waits["broken"]).startswith("broken waited 4.0 s, ")
    assert title(waits["flaky"]).splitlines()[1:] == ["retry after: the agent exited with code 1"]
    shown = picture(STANDARD)
    notes_bar = next(bar for bar in shown.bars if bar.task == "notes")
    notes_wait = next(wait for wait in shown.waits if wait.task == "notes")
    assert notes_wait.x + notes_wait.w == pytest.approx(notes_bar.x)
    assert notes_wait.y > notes_bar.y  # under the lane's bars, not over another task's


def test_waits_at_the_same_time_in_one_lane_are_stacked_apart() -> None:
    tasks = [batch_task(f"q{i}", "dev") for i in range(4)]
    events = [started(0, tasks)]
    for i in range(4):
        events += [task_line("started", i, f"q{i}", "dev"), final("succeeded", i + 1, f"q{i}", "dev", duration=1.0)]
    shown = picture(events)
    assert sorted(wait.task for wait in shown.waits) == ["q1", "q2", "q3"]
    assert len({wait.y for wait in shown.waits}) == 3
    assert shown.lanes[0].tracks == 3


def test_dependencies_are_arrows_from_the_end_of_one_bar_to_the_start_of_the_next() -> None:
    root = parsed(STANDARD)
    arrows = {
        (p.get("data-source"), p.get("data-target")): p.get("class", "").split()
        for p in having(root, "arrow", tag="path")
    }
    arrows.pop((None, None), None)  # the legend's
    assert arrows == {
        ("api", "tests"): ["arrow", "dependency", "critical"],
        ("broken", "after"): ["arrow", "dependency"],
    }
    shown = picture(STANDARD)
    api = next(bar for bar in shown.bars if bar.task == "api")
    to_tests = next(arrow for arrow in shown.arrows if arrow.target == "tests")
    assert (to_tests.x1, to_tests.y1) == (api.x + api.w, api.y + 8)


def test_the_critical_path_is_marked_on_its_bars_and_links() -> None:
    root = parsed(RELEASE)
    critical = sorted(e.get("data-task") or "" for e in having(root, "bar", "critical") if e.get("data-task"))
    assert critical == ["a", "b", "c"]
    (release,) = having(root, "arrow", "release", tag="path")
    assert (release.get("data-source"), release.get("data-target"), "critical" in release.get("class", "")) == (
        "a",
        "b",
        True,
    )
    lines = [t.text or "" for t in root.iter(SVG + "text") if t.get("class") == "line"]
    assert "critical path (3 tasks): a → b → c" in lines


def test_an_arrow_between_bars_that_touch_in_one_lane_is_not_drawn() -> None:
    events = [
        started(0, [batch_task("a", "dev"), batch_task("b", "dev", ["a"]), batch_task("c", "qa", ["a"])]),
        task_line("started", 0, "a", "dev"),
        final("succeeded", 2, "a", "dev", duration=2.0),
        task_line("started", 2, "b", "dev"),
        task_line("started", 2, "c", "qa"),
        final("succeeded", 3, "b", "dev", duration=1.0),
        final("succeeded", 4, "c", "qa", duration=2.0),
    ]
    root = parsed(events)
    arrows = {p.get("data-target"): p.get("class", "").split() for p in having(root, "arrow", tag="path")}
    assert "touching" in arrows["b"]  # b follows a in dev's lane: the bars say it
    assert "touching" not in arrows["c"]
    assert ".arrow.touching { stroke: none; marker-end: none; }" in (root.findtext(".//style") or "")


def test_a_long_critical_path_is_told_by_its_ends_within_the_pictures_width() -> None:
    tasks = [batch_task(f"task-{i:03d}", "dev", [f"task-{i - 1:03d}"] if i else []) for i in range(60)]
    events = [started(0, tasks)]
    for i in range(60):
        events += [task_line("started", i, f"task-{i:03d}", "dev"), final("succeeded", i + 1, f"task-{i:03d}", "dev")]
    shown = picture(events)
    (line,) = [line for line in shown.lines if line.startswith("critical path")]
    assert line.startswith("critical path (60 tasks): task-000 → task-001 → ")
    assert line.endswith(" → … → task-059")
    assert all(len(line) * 7 <= shown.width - 24 for line in shown.lines)


def test_wall_time_against_task_time() -> None:
    lines = picture(STANDARD).lines
    assert lines[0].endswith("7 tasks: 5 succeeded, 1 failed, 1 skipped")
    assert lines[1] == "wall 10 s, task time 26 s, 2.6x parallel"


def test_a_skipped_task_is_a_marker_at_its_end_in_its_agents_lane() -> None:
    shown = picture(STANDARD)
    (marker,) = shown.markers
    assert (marker.task, marker.kind) == ("after", "skipped")
    assert "dependency broken failed" in marker.title
    tester = next(lane for lane in shown.lanes if lane.agent == "tester")
    assert tester.bar_y < marker.y < tester.bar_y + 16


def test_a_killed_run_is_drawn_up_to_its_last_line_unfinished_marked() -> None:
    root = parsed(KILLED)
    (long,) = [e for e in having(root, "bar", "unfinished") if e.get("data-task")]
    assert long.get("data-task") == "long"
    assert "unfinished" in title(long)
    (queued,) = [e for e in having(root, "wait", "unfinished") if e.get("data-task")]
    assert title(queued).startswith("queued still waiting 7.0 s")
    assert "ops busy (long)" in title(queued)
    markers = having(root, "marker", "unstarted")
    assert [m.get("data-task") for m in markers if m.get("data-task")] == ["queued"]
    lines = [t.text or "" for t in root.iter(SVG + "text") if t.get("class") == "line"]
    assert any(line.startswith("no run_ended line: the run was killed, or still runs") for line in lines)
    assert lines[0].endswith("3 tasks: 1 succeeded, 1 running, 1 queued")
    assert ".unfinished { fill: url(#pm-hatch); }" in (root.findtext(".//style") or "")


def test_a_task_that_never_started_waits_in_its_agents_first_lane() -> None:
    events = [*WORKTREE[:-1], task_line("waiting", 5.5, "y", "codex", reason="codex busy (x)")]
    shown = picture(events)  # claude has two lanes before codex's: y's wait is in codex's
    (wait,) = [w for w in shown.waits if w.task == "y"]
    codex = next(lane for lane in shown.lanes if lane.agent == "codex")
    assert codex.y < wait.y < codex.y + codex.height
    (marker,) = shown.markers
    assert (marker.task, marker.kind, codex.bar_y < marker.y < codex.bar_y + 16) == ("y", "unstarted", True)


def test_damaged_lines_are_said_under_the_title() -> None:
    shown = layout(run_from_events(STANDARD, unreadable=2, cut=True))
    assert shown.lines[-1] == "2 unreadable line(s) skipped; its last line was half-written"


HOSTILE = "<script>alert(\"x\")</script> & 'q' \x00\x07\ud800 ]]> \u202e"


def test_user_text_is_escaped_and_characters_xml_cannot_hold_are_replaced() -> None:
    events = [
        started(0, [batch_task(HOSTILE, HOSTILE)]),
        task_line("started", 0, HOSTILE, HOSTILE, description=HOSTILE),
        task_line("waiting", 0, "w<&>", HOSTILE, reason=HOSTILE),
        final("failed", 2, HOSTILE, HOSTILE, duration=2.0, exit_code=1, error=HOSTILE),
        task_line("started", 3, "w<&>", HOSTILE),
        final("succeeded", 4, "w<&>", HOSTILE, duration=1.0, exit_code=0),
        ended(4),
    ]
    page = html_page(picture(events))
    root = xml(page)
    assert [e.tag for e in root.iter() if e.tag.endswith("script")] == []
    expected = HOSTILE.replace("\x00", "\ufffd").replace("\x07", "\ufffd").replace("\ud800", "\ufffd")
    tasks = {e.get("data-task") for e in having(root, "bar")}
    assert expected in tasks
    assert "w<&>" in tasks
    (failed,) = having(root, "bar", "failed")[1:]  # after the legend's swatch
    assert title(failed).endswith(expected)
    (wait,) = [e for e in having(root, "wait") if e.get("data-task")]
    assert title(wait).splitlines()[1] == expected
    assert "<script" not in page


def test_the_page_fetches_nothing_and_runs_nothing() -> None:
    page = html_page(picture(STANDARD))
    assert "<script" not in page.lower()
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"]  # a namespace, never fetched
    assert set(re.findall(r"url\((.)", page)) == {"#"}
    assert not re.search(r"\b(href|src)=", page)
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page
    assert "@import" not in page
    assert "@font-face" not in page


def test_a_run_where_nothing_started_still_has_its_lanes() -> None:
    shown = picture([started(0, [batch_task("a", "dev"), batch_task("b", "qa")])])
    assert [lane.label for lane in shown.lanes] == ["dev", "qa"]
    assert shown.bars == ()
    assert [m.kind for m in shown.markers] == ["unstarted", "unstarted"]
    xml(html_page(shown))


def test_ticks_stay_few_and_round_on_a_long_run() -> None:
    events = [
        started(0, [batch_task("a", "dev")]),
        task_line("started", 0, "a", "dev"),
        final("succeeded", 7300, "a", "dev", duration=7300.0),
    ]
    labels = [tick.label for tick in picture(events).ticks]
    assert labels == ["0s", "15m", "30m", "45m", "1h", "1h15m", "1h30m", "1h45m", "2h"]


def test_the_plot_widens_with_its_busiest_lane() -> None:
    events = [started(0, [batch_task(f"t{i}", "dev") for i in range(100)])]
    for i in range(100):
        events += [task_line("started", i, f"t{i}", "dev"), final("succeeded", i + 1, f"t{i}", "dev", duration=1.0)]
    shown = picture(events)
    assert shown.width == 180 + 100 * 14 + 24  # labels, 14 px an attempt, margin
    assert min(bar.w for bar in shown.bars) == pytest.approx(14)


def test_five_hundred_tasks_make_one_picture_with_every_bar() -> None:
    tasks = [batch_task(f"t{i}", f"agent{i % 8}", [f"t{i - 8}"] if i >= 8 else []) for i in range(500)]
    events = [started(0, tasks)]
    for i in range(500):
        at = (i // 8) * 2.0
        events += [
            task_line("started", at, f"t{i}", f"agent{i % 8}"),
            final("succeeded", at + 2, f"t{i}", f"agent{i % 8}", duration=2.0, exit_code=0),
        ]
    shown = picture(events)
    assert len(shown.bars) == 500
    assert len(shown.lanes) == 8
    assert len(shown.arrows) == 492
    assert len(shown.critical) == 63  # t0 -> t8 -> ... -> t496, dependencies back to the start
    assert len(xml(html_page(shown))) == 2
