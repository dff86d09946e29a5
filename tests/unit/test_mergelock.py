"""queue_core.mergelock: one merge-back at a time per repository, across processes and threads.

Exclusion is proven by order, never by timing: a second process says it waits (naming the
holder) while the first holds the lock, and a log written under the lock shows the two holds
one after the other.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from queue_core.errors import MergeLockError, StateError
from queue_core.mergelock import merge_lock
from queue_core.statedir import make_state_dir, state_dir

from ..conftest import WAIT, git, git_repo

#: Takes the lock of argv[1] (timeout argv[2]), logs "in NAME" to argv[3], says "held", waits for
#: a line on stdin, logs "out NAME" and lets go. Says "waiting <who holds it>" while it waits.
HOLDER = """
import sys
from queue_core.mergelock import merge_lock
repo, timeout, log, name = sys.argv[1:5]
lock = merge_lock(repo, timeout=float(timeout), on_wait=lambda m: print("waiting", m, flush=True))
with lock:
    with open(log, "a") as f:
        f.write(f"in {name}\\n")
    print("held", flush=True)
    sys.stdin.readline()
    with open(log, "a") as f:
        f.write(f"out {name}\\n")
print("released", flush=True)
"""

#: Waits for a line on stdin, then merges branch argv[3] into main under the lock, logging "in"
#: and "out" around it to argv[5]; prints the status.
MERGER = """
import sys
from pathlib import Path
from queue_core.claims import Claim
from queue_core.mergeback import MergeMode, merge_back
from queue_core.mergelock import merge_lock
repo, base, branch, claim, log = sys.argv[1:6]
print("ready", flush=True)
sys.stdin.readline()
with merge_lock(repo, timeout=30):
    with open(log, "a") as f:
        f.write(f"in {branch}\\n")
    result = merge_back(Path(repo), target_branch="main", base=base, branch=branch, mode=MergeMode.MERGE,
                        message=f"merge {branch}", claims=[Claim.parse(claim)])
    with open(log, "a") as f:
        f.write(f"out {branch}\\n")
print(result.status.value, result.reason, flush=True)
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = git_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n"})
    git(path, "branch", "-M", "main")
    git(path, "config", "user.name", "User")
    git(path, "config", "user.email", "user@example.invalid")
    return path


class Process:
    """A Python child running ``script`` with ``args``, read line by line with a bound."""

    def __init__(self, script: str, *args: str):
        argv = [sys.executable, "-c", script, *args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._said = b""  # read from its stdout, not yet returned as lines

    @property
    def pid(self) -> int:
        return self.proc.pid

    def line(self) -> str:
        """Its next line; fails if none comes within WAIT. Read unbuffered: two lines that come
        at once must not leave the second in a buffer that select cannot see."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._said:
            ready, _, _ = select.select([fd], [], [], WAIT)
            assert ready, "the child said nothing"
            chunk = os.read(fd, 4096)
            assert chunk, f"the child ended: {self._said!r}"
            self._said += chunk
        line, self._said = self._said.split(b"\n", 1)
        return line.decode()

    def say(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=WAIT)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.end()


def test_two_processes_never_hold_it_at_once(repo: Path, tmp_path: Path, processes: list[Process]) -> None:
    log = tmp_path / "log"
    first = Process(HOLDER, str(repo), str(WAIT), str(log), "A")
    processes.append(first)
    assert first.line() == "held"
    second = Process(HOLDER, str(repo), str(WAIT), str(log), "B")
    processes.append(second)
    assert second.line() == f"waiting the merge lock held by pid {first.pid}"  # it waits while A holds
    first.say()
    assert first.line() == "released"
    assert second.line() == "waiting None"  # told the wait is over
    assert second.line() == "held"
    second.say()
    assert second.line() == "released"
    assert log.read_text().splitlines() == ["in A", "out A", "in B", "out B"]


def test_a_wait_past_the_timeout_names_the_holder(repo: Path, tmp_path: Path, processes: list[Process]) -> None:
    holder = Process(HOLDER, str(repo), str(WAIT), str(tmp_path / "log"), "A")
    processes.append(holder)
    assert holder.line() == "held"
    with pytest.raises(MergeLockError, match=rf"the merge lock held by pid {holder.pid} for 0\.\d s") as caught:
        merge_lock(repo, timeout=0.2).acquire()
    assert caught.value.holder == holder.pid
    assert isinstance(caught.value, StateError)


def test_the_lock_of_a_killed_process_is_free(repo: Path, tmp_path: Path, processes: list[Process]) -> None:
    holder = Process(HOLDER, str(repo), str(WAIT), str(tmp_path / "log"), "A")
    processes.append(holder)
    assert holder.line() == "held"
    os.kill(holder.pid, signal.SIGKILL)
    holder.proc.wait(WAIT)
    assert (state_dir(repo) / "merge.lock").exists()  # the file stays; it says nothing
    with merge_lock(repo, timeout=WAIT) as lock:
        assert lock.held
    assert not lock.held


def test_two_locks_of_one_process_exclude_each_other(repo: Path) -> None:
    with merge_lock(repo) as first:
        with pytest.raises(MergeLockError):
            merge_lock(repo, timeout=0.05).acquire()
        with pytest.raises(StateError, match="held already"):
            first.acquire()
    with merge_lock(repo, timeout=WAIT) as second:
        assert second.held


def test_an_interrupt_ends_a_wait_at_once(repo: Path) -> None:
    errors: list[BaseException] = []
    waiting = merge_lock(repo, timeout=3600)

    def wait() -> None:
        try:
            waiting.acquire()
        except MergeLockError as exc:
            errors.append(exc)

    with merge_lock(repo):
        thread = threading.Thread(target=wait)
        thread.start()
        waiting.interrupt()
        thread.join(WAIT)
        assert not thread.is_alive()
    assert len(errors) == 1
    assert "interrupted" in str(errors[0])
    assert not waiting.held


def test_a_symlink_in_its_place_is_refused(repo: Path, tmp_path: Path) -> None:
    directory = state_dir(repo)
    directory.mkdir(parents=True, mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("")
    (directory / "merge.lock").symlink_to(target)
    with pytest.raises(StateError, match="cannot open the merge lock"):
        merge_lock(repo, timeout=WAIT).acquire()


def test_two_processes_merging_at_once_both_merge(repo: Path, tmp_path: Path, processes: list[Process]) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    tasks = (("t1", "a.txt"), ("t2", "b.txt"))
    for name, path in tasks:
        worktree = tmp_path / name
        git(repo, "worktree", "add", "-q", "-b", f"pm/r/{name}", str(worktree), base)
        (worktree / path).write_text(f"{name} was here\n")
        git(worktree, "commit", "-q", "-am", f"task {name}")
    log = tmp_path / "log"
    mergers = [Process(MERGER, str(repo), base, f"pm/r/{name}", path, str(log)) for name, path in tasks]
    processes.extend(mergers)
    assert [m.line() for m in mergers] == ["ready", "ready"]
    for merger in mergers:
        merger.say()
    assert [m.line().split()[0] for m in mergers] == ["merged", "merged"]
    assert (repo / "a.txt").read_text() == "t1 was here\n"
    assert (repo / "b.txt").read_text() == "t2 was here\n"
    merges = git(repo, "log", "--merges", "--format=%s", "main").splitlines()
    assert sorted(merges) == ["merge pm/r/t1", "merge pm/r/t2"]
    assert git(repo, "status", "--porcelain").strip() == ""
    lines = log.read_text().splitlines()  # one merge after the other, whichever came first
    assert [line.split()[0] for line in lines] == ["in", "out", "in", "out"]
    assert lines[0].split()[1] == lines[1].split()[1]


def test_two_threads_making_the_state_directory_at_once_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two worktree tasks of one process reach the merge lock together; both probe the state
    directory with the same file, ``.write-probe-<pid>``, and the second unlink found it gone:
    "cannot write the state directory: No such file or directory" failed a merged task
    (tests/unit/test_isolated.py, once in four runs here). Here the other thread's unlink is first."""
    real = Path.unlink

    def other_thread_first(self: Path, missing_ok: bool = False) -> None:
        if self.name.startswith(".write-probe-"):
            real(self)
        real(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", other_thread_first)
    make_state_dir(tmp_path / "state")
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["history", "runs"]
