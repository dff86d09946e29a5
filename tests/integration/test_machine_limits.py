"""The installed script on the real machine: a run whose memory limit the machine is always above
still ends, one task at a time (issue 14's progress guarantee)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("project-manager")
TASKS = ("a", "b", "c")


def test_a_run_limited_to_1_percent_of_memory_completes_one_task_at_a_time(tmp_path: Path) -> None:
    repo, records = tmp_path / "repo", tmp_path / "records"
    repo.mkdir()
    records.mkdir()
    # Each agent takes a lock no other may hold (mkdir fails if it exists), says when it starts
    # and ends, and works a moment: two at once would find the lock taken, and fail.
    body = (
        f"mkdir {records}/running || exit 9; echo start $PM_TASK_ID >> {records}/order; "
        f"sleep 0.2; echo end $PM_TASK_ID >> {records}/order; rmdir {records}/running"
    )
    agents = "".join(f"  {t}: {{preset: shell}}\n" for t in TASKS)  # agents of their own: they could run together
    tasks = "".join(f"  - {{id: {t}, agent: {t}, description: '{body}', files: [{t}.txt]}}\n" for t in TASKS)
    batch = tmp_path / "batch.yaml"
    batch.write_text(f"limits: {{memory: 1%}}\nagents:\n{agents}tasks:\n{tasks}")
    done = subprocess.run(
        [str(SCRIPT), "delegate-multiple", "--file", str(batch), "--max-parallel", "3", "--json", "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [t["status"] for t in report["tasks"]] == ["succeeded"] * 3
    assert report["limits"] == {"cpu": None, "memory": 1.0}
    order = (records / "order").read_text().split("\n")[:-1]
    assert sorted(order[::2]) == [f"start {t}" for t in TASKS]
    assert order[1::2] == [line.replace("start", "end") for line in order[::2]]  # each ended before the next began
