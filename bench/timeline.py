"""The timeline picture of a big run: how long reading, laying out and drawing take, how big the
file is, and, where Chromium is installed, how long a browser takes to draw it.

A synthetic journal of N tasks over 8 agents (2 instances each, as in worktree mode), each
task depending on the one 5 before it (another agent's), one in 10 retried once, a wait reason
sampled for each; a task starts a few milliseconds after what it waited for ended, as the
event-driven queue starts it.
The anchor is the least any reader pays: ``json.loads`` of every line.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from queue_core.timeline import journal_lines, run_from_events
from queue_core.timeline_layout import layout
from queue_core.timeline_svg import html_page

from ._common import Check, Section, median, ms, print_section, table

SIZES = (500, 5000)
REPEAT = 5
TARGET_S = 1.0  # 500 tasks: the file in under a second
SEED = 15


def journal(tasks: int, seed: int = SEED) -> str:
    """A finished run's journal of ``tasks`` tasks, as JSON lines."""
    rng = random.Random(seed)
    t0 = 1_800_000_000.0
    batch = [
        {"id": f"t{i}", "agent": f"agent{i % 8}", "description": f"task {i} " * 8, "files": [f"src/m{i}.py"]}
        | {"reads": [], "depends_on": [f"t{i - 5}"] if i >= 5 else [], "priority": 0}
        for i in range(tasks)
    ]
    lines: list[dict[str, Any]] = [{"event": "run_started", "run": "bench", "time": t0, "batch": {"tasks": batch}}]
    ends: dict[int, float] = {}
    lane_free: dict[tuple[int, int], float] = {}
    for i in range(tasks):
        agent = i % 8
        ready = ends.get(i - 5, t0)
        lane = min((0, 1), key=lambda n: lane_free.get((agent, n), t0))
        start = max(ready, lane_free.get((agent, lane), t0)) + rng.uniform(0.001, 0.01)
        base = {"run": "bench", "task": f"t{i}", "agent": f"agent{agent}"}
        holder = f"agent{agent} busy (t{i - 16})" if i >= 16 else f"needs t{i - 5}"
        lines.append({"event": "waiting", "time": ready, "reason": holder, **base, "attempt": 0})
        attempt = 1
        if rng.random() < 0.1:
            lines.append({"event": "started", "time": start, "attempt": 1, **base})
            start += 5
            lines.append({"event": "retrying", "time": start, "attempt": 1, "exit_code": 1, "error": "x", **base})
            start += 10
            attempt = 2
        end = start + rng.uniform(5, 60)
        lines.append({"event": "started", "time": start, "attempt": attempt, **base})
        final = {"final": True, "exit_code": 0, "duration_s": end - start, "error": None, "cost_usd": None}
        lines.append({"event": "succeeded", "time": end, "attempt": attempt, **final, **base})
        ends[i] = end
        lane_free[(agent, lane)] = end
    lines.append({"event": "run_ended", "run": "bench", "time": max(ends.values()), "exit_code": 0, "counts": {}})
    lines.sort(key=lambda line: line["time"])
    return "".join(json.dumps(line) + "\n" for line in lines)


def measure(path: Path) -> dict[str, float]:
    """The median seconds of each stage over REPEAT runs, and the page's size in bytes."""
    stages: dict[str, list[float]] = {"anchor": [], "read": [], "layout": [], "draw": []}
    size = 0
    for _ in range(REPEAT):
        started = time.perf_counter()
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        stages["anchor"].append(time.perf_counter() - started)
        started = time.perf_counter()
        lines = journal_lines(path)
        run = run_from_events(lines.events)
        read = time.perf_counter()
        picture = layout(run)
        laid = time.perf_counter()
        page = html_page(picture)
        drawn = time.perf_counter()
        stages["read"].append(read - started)
        stages["layout"].append(laid - read)
        stages["draw"].append(drawn - laid)
        size = len(page.encode("utf-8"))
    figures = {stage: median(values) for stage, values in stages.items()}
    figures["size"] = float(size)
    figures["width"], figures["height"] = picture.width, picture.height
    (path.parent / f"{path.stem}.html").write_text(page, encoding="utf-8")
    return figures


def browser_seconds(page: Path, width: float, height: float) -> float | None:
    """How long headless Chromium takes to load and screenshot ``page``; None without Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        return None
    argv = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--force-device-scale-factor=1",
        f"--user-data-dir={page.parent / 'profile'}",
        f"--window-size={math.ceil(width)},{min(math.ceil(height), 16000)}",
        f"--screenshot={page.with_suffix('.png')}",
        page.as_uri(),
    ]
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, timeout=300, check=False)
    return time.perf_counter() - started


def run() -> Section:
    rows = []
    checks = []
    with tempfile.TemporaryDirectory() as folder:
        small = Path(folder) / "small.jsonl"
        small.write_text(journal(8), encoding="utf-8")
        small_figures = measure(small)
        small_browser = browser_seconds(small.with_suffix(".html"), small_figures["width"], small_figures["height"])
        for tasks in SIZES:
            path = Path(folder) / f"run{tasks}.jsonl"
            path.write_text(journal(tasks), encoding="utf-8")
            f = measure(path)
            total = f["read"] + f["layout"] + f["draw"]
            seconds = browser_seconds(path.with_suffix(".html"), f["width"], f["height"])
            in_browser = "no Chromium" if seconds is None or small_browser is None else f"{seconds:.2f} s"
            if seconds is not None and small_browser is not None:
                in_browser += f" (8 tasks: {small_browser:.2f} s)"
            rows.append(
                (
                    tasks,
                    f"{path.stat().st_size / 1e6:.2f} MB",
                    ms(f["anchor"]),
                    ms(f["read"]),
                    ms(f["layout"]),
                    ms(f["draw"]),
                    f"**{ms(total)}** ({total / f['anchor']:.1f}x the anchor)",
                    f"{f['size'] / 1e6:.2f} MB, {f['width']:.0f} x {f['height']:.0f} px",
                    in_browser,
                )
            )
            if tasks == 500:
                checks.append(
                    Check("timeline of 500 tasks: journal -> HTML file", ms(total), "< 1 s", total < TARGET_S)
                )
    body = (
        "Synthetic finished runs, 8 agents of 2 instances, dependencies across agents, 1 task in 10 retried; "
        f"median of {REPEAT}. Anchor: `json.loads` of every line of the journal.\n\n"
        + table(
            ["tasks", "journal", "anchor", "read", "layout", "draw", "total", "page", "Chromium: load + screenshot"],
            rows,
        )
    )
    return Section("The timeline picture (issue 15)", body, checks)


def main() -> None:
    print_section(run())


if __name__ == "__main__":
    main()
