"""The history of durations in the state directory: appended as tasks end, bounded, shared by processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from queue_core.clocks import Clocks
from queue_core.durations import FILE, DurationHistory
from queue_core.errors import StateError
from queue_core.estimates import RECENT, Sample


def sample(duration: float, *, agent: str = "a", task_id: str = "t1", fp: str = "f1", at: float = 0.0) -> Sample:
    return Sample(agent, task_id, fp, duration, at)


def test_no_file_is_no_history(tmp_path: Path) -> None:
    history = DurationHistory(tmp_path / "missing")
    assert history.samples() == []
    assert history.estimates().of("a", "t1", "f1") is None


def test_what_is_recorded_is_read_back_in_order(tmp_path: Path) -> None:
    history = DurationHistory(tmp_path)
    for i in range(3):
        history.record(sample(10.0 + i, at=float(i)))
    assert [s.duration_s for s in history.samples()] == [10.0, 11.0, 12.0]
    found = history.estimates().of("a", "t1", "f1")
    assert found is not None
    assert found.seconds == 11.0
    assert oct((tmp_path / FILE).stat().st_mode & 0o777) == oct(0o600)


def test_a_damaged_line_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    history = DurationHistory(tmp_path)
    history.record(sample(10.0))
    with (tmp_path / FILE).open("ab") as f:
        f.write(b'{"agent": "a", "task"\n')  # cut short
        f.write(b'{"agent": "a", "task": "t1", "fingerprint": "f1", "duration_s": -4, "at": 1}\n')
        f.write(b"\xff\xfe not even text\n")
        f.write(b"[1, 2]\n")
        f.write(b"1, 2\n")  # two values on one line: read alone, not as two lines
    history.record(sample(20.0, at=2.0))
    assert [s.duration_s for s in history.samples()] == [10.0, 20.0]
    assert history.damaged == 5


def test_a_line_of_two_values_does_not_shift_the_lines_after_it(tmp_path: Path) -> None:
    """The file is decoded in one call when it can be: one line must stay one sample."""
    history = DurationHistory(tmp_path)
    history.record(sample(10.0))
    with (tmp_path / FILE).open("ab") as f:
        f.write(b"1, 2\n")
    history.record(sample(20.0, at=2.0))
    assert [s.duration_s for s in history.samples()] == [10.0, 20.0]
    assert history.damaged == 1


def test_the_file_stays_bounded_and_keeps_each_tasks_recent_runs(tmp_path: Path) -> None:
    max_bytes = 8_000
    history = DurationHistory(tmp_path, max_bytes=max_bytes)
    now = 0.0
    for round_ in range(40):
        for task in range(3):  # three tasks run again and again
            now += 1.0
            history.record(sample(float(round_), task_id=f"t{task}", fp=f"f{task}", at=now))
        assert (tmp_path / FILE).stat().st_size <= max_bytes + 200  # at most one line over, then compacted
    estimates = history.estimates()
    for task in range(3):
        found = estimates.of("a", f"t{task}", f"f{task}")
        assert found is not None
        assert (found.basis, found.runs) == ("task", RECENT)
        assert found.seconds == 37.0  # the median of rounds 35..39


def test_a_flood_of_one_off_tasks_drops_the_oldest_first(tmp_path: Path) -> None:
    max_bytes = 6_000
    history = DurationHistory(tmp_path, max_bytes=max_bytes)
    for i in range(500):
        history.record(sample(1.0, task_id=f"t{i}", fp=f"f{i}", at=float(i)))
    assert (tmp_path / FILE).stat().st_size <= max_bytes + 200
    kept = history.samples()
    assert kept[-1].task_id == "t499"
    assert kept[0].at > 400  # the oldest went


def test_a_symlink_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    state = tmp_path / "state"
    state.mkdir()
    (state / FILE).symlink_to(target)
    history = DurationHistory(state)
    with pytest.raises(StateError, match="durations"):
        history.record(sample(1.0))
    with pytest.raises(StateError, match="symlink"):
        history.samples()
    assert target.read_text() == ""


def test_clear_removes_the_history(tmp_path: Path) -> None:
    history = DurationHistory(tmp_path)
    assert history.clear() is False
    history.record(sample(1.0))
    assert history.clear() is True
    assert history.samples() == []


def test_a_lock_held_too_long_fails_the_write_not_the_caller_forever(tmp_path: Path) -> None:
    """A writer stopped (SIGSTOP) with the lock held must not stall a run's every task end."""
    import fcntl

    ticks = iter(float(i) for i in range(1000))
    history = DurationHistory(tmp_path, clocks=Clocks(monotonic=lambda: next(ticks)), lock_timeout=5.0)
    fd = os.open(tmp_path / "durations.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(StateError, match="lock"):
            history.record(sample(1.0))
    finally:
        os.close(fd)
    history.record(sample(2.0))
    assert [s.duration_s for s in history.samples()] == [2.0]


def test_threads_recording_at_once_lose_nothing(tmp_path: Path) -> None:
    history = DurationHistory(tmp_path)
    barrier = threading.Barrier(4, timeout=10)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(50):
                history.record(sample(float(i), task_id=f"t{n}-{i}", fp=f"f{n}-{i}", at=float(i)))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert len(history.samples()) == 200


_WRITER = """
import sys
from pathlib import Path
from queue_core.durations import DurationHistory
from queue_core.estimates import Sample
history = DurationHistory(Path(sys.argv[1]), max_bytes=int(sys.argv[3]))
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
for i in range(100):
    history.record(Sample("a", f"{sys.argv[2]}-{i}", f"{sys.argv[2]}-{i}", 1.0, float(i)))
"""


@pytest.mark.parametrize("max_bytes", [1_000_000, 4_000], ids=["appends", "with compactions"])
def test_processes_recording_at_once_keep_the_file_whole(tmp_path: Path, max_bytes: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", _WRITER, str(tmp_path), f"p{n}", str(max_bytes)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
            for n in range(3)
        ]
        stack.callback(_kill_all, procs)
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:  # as close to together as pipes allow
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    history = DurationHistory(tmp_path, max_bytes=max_bytes)
    samples = history.samples()
    assert history.damaged == 0
    if max_bytes == 1_000_000:
        assert len(samples) == 300
    else:
        assert (tmp_path / FILE).stat().st_size <= max_bytes + 200
        # Each writer's last run survives every compaction: it is its task's one recent run.
        last = {s.task_id for s in samples}
        assert {"p0-99", "p1-99", "p2-99"} <= last


def _kill_all(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
