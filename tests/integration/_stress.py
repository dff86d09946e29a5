"""The machinery of the cross-process stress tests: worker processes, their load, and the oracle.

A load is several ``_worker.py stress`` processes on one repository, each running random tasks
with overlapping claims. Every task body logs its own start and end (``time.monotonic_ns``, one
clock for every process of the machine, whatever its PID namespace); the oracle then checks
that no two tasks that conflict (same agent, or overlapping claims with a write) overlapped in
time. Children report on stdout, one line per event, read with a bounded wait; nothing sleeps
to synchronise.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from queue_core.claims import Claim, overlaps

from ..conftest import WAIT

WORKER = Path(__file__).with_name("_worker.py")


class Child:
    """A ``_worker.py`` process (run under ``wrap``, an argv prefix); its stdout lines are read by a thread."""

    def __init__(self, tmp: Path, name: str, *args: str | Path, wrap: Sequence[str] = ()):
        self.name = name
        self.stderr_path = tmp / f"{name}.stderr"
        self._stderr: IO[str] = open(self.stderr_path, "w")  # noqa: SIM115 - closed in close()
        try:
            self.proc = subprocess.Popen(
                [*wrap, sys.executable, "-W", "error", str(WORKER), *map(str, args)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
            )
        except BaseException:
            self._stderr.close()
            raise
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def _trouble(self, what: str) -> str:
        return f"{self.name} (pid {self.pid}, exit {self.proc.poll()}): {what}; stderr:\n{self.stderr()}"

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def expect(self, prefix: str, timeout: float = WAIT) -> str:
        """The next line, which must start with ``prefix``; returns the rest of it."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(self._trouble(f"no {prefix!r} line within {timeout}s")) from None
        if line is None:
            self.lines.put(None)
            raise AssertionError(self._trouble(f"exited before printing {prefix!r}"))
        assert line.startswith(prefix), self._trouble(f"printed {line!r} while {prefix!r} was expected")
        return line[len(prefix) :].strip()

    def expect_silence(self, seconds: float) -> None:
        """Nothing printed for ``seconds``: what would be printed must not happen yet."""
        with contextlib.suppress(queue.Empty):
            line = self.lines.get(timeout=seconds)
            raise AssertionError(self._trouble(f"printed {line!r} within {seconds}s, when nothing was expected"))

    def send(self, line: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = WAIT) -> None:
        """Expect ``done``, then a clean exit."""
        self.expect("done", timeout)
        assert self.proc.wait(WAIT) == 0, self._trouble("failed")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        self._reader.join(WAIT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # stdin of a dead child: broken pipe
                    stream.close()
        self._stderr.close()


Spawn = Callable[..., Child]

# --- the load ---------------------------------------------------------------------------------

PATHS = [
    "src/a.py",
    "src/b.py",
    "src/c.py",
    "src/",
    "src/*.py",
    "d/",
    "d/e.txt",
    "d/f/g.txt",
    "docs/readme.md",
    "docs/api.md",
    "tests/t.py",
    "tests/u.py",
]
AGENTS = ["code_developer", "tester", "reviewer", "docs_writer", "architect", "security", "release"]


def stress_spec(proc: int, tasks: int = 60, **extra: Any) -> dict[str, Any]:
    """Process ``proc``'s tasks: ``tasks`` random ones, and its rendezvous task; ``extra`` goes to the spec."""
    rng = random.Random(1000 + proc)  # seeded per process: a failure replays
    spec_tasks = []
    for i in range(tasks):
        writes = rng.sample(PATHS, rng.choice([0, 1, 1, 1, 2]))
        reads = rng.sample([p for p in PATHS if p not in writes], rng.choice([0, 0, 1, 2]))
        spec_tasks.append(
            {
                "id": f"p{proc}-t{i}",
                "agent": rng.choice(AGENTS),
                "writes": writes,
                "reads": reads,
                "work_s": rng.uniform(0.001, 0.005),
            }
        )
    # One task per process that conflicts with nothing: its own agent and path. All of them
    # must run at once (the test holds each until it saw all), which proves the processes
    # really ran side by side, deterministically.
    spec_tasks.append(
        {
            "id": f"p{proc}-rendezvous",
            "agent": f"agent-of-p{proc}",
            "writes": [f"private/p{proc}.txt"],
            "reads": ["shared/config.toml"],  # read by every rendezvous task: readers share
            "work_s": 0.001,
            "priority": 10,
            "rendezvous": True,
        }
    )
    return {"proc": proc, "max_parallel": 3, "tasks": spec_tasks, **extra}


@dataclass(frozen=True)
class Ran:
    proc: int
    task: str
    agent: str
    writes: tuple[Claim, ...]
    reads: tuple[Claim, ...]
    start: int
    end: int


def conflict(a: Ran, b: Ran) -> str | None:
    """Why ``a`` and ``b`` may not run at once, or None."""
    if a.agent == b.agent:
        return f"both run agent {a.agent}"
    for x, x_writes in [*((c, True) for c in a.writes), *((c, False) for c in a.reads)]:
        for y, y_writes in [*((c, True) for c in b.writes), *((c, False) for c in b.reads)]:
            if (x_writes or y_writes) and overlaps(x, y):
                return f"{x} ({'write' if x_writes else 'read'}) overlaps {y} ({'write' if y_writes else 'read'})"
    return None


@dataclass
class Load:
    """Stress processes on one repository, started together (see the module's docstring).

    ``Load.start`` spawns them and lets them submit at once; ``rendezvous`` waits until every
    process's rendezvous task runs, then lets them go; ``finish`` waits for every process's
    clean exit; ``check`` is the oracle.
    """

    specs: list[dict[str, Any]]
    children: list[Child]
    log: Path
    began: float = field(default_factory=time.monotonic)

    @classmethod
    def start(
        cls,
        spawn: Spawn,
        tmp_path: Path,
        repo: Path,
        specs: list[dict[str, Any]],
        wrap: Callable[[int], Sequence[str]] = lambda proc: (),
    ) -> Load:
        """Spawn one stress process a spec (process ``p`` under ``wrap(p)``), all ready, then let them go."""
        log = tmp_path / "ran.log"
        children = []
        for spec in specs:
            spec_path = tmp_path / f"spec-{spec['proc']}.json"
            spec_path.write_text(json.dumps(spec))
            children.append(spawn(f"stress-{spec['proc']}", "stress", repo, spec_path, log, wrap=wrap(spec["proc"])))
        for child in children:
            child.expect("ready")
        load = cls(specs, children, log)
        for child in children:  # the barrier: every queue exists before any submits
            child.send("go")
        return load

    def rendezvous(self) -> None:
        for child in self.children:
            assert child.expect("rendezvous") == f"{child.name.replace('stress-', 'p')}-rendezvous"
        for child in self.children:  # every process's rendezvous task was running: let them go
            child.send("go")

    def finish(self, timeout: float = WAIT) -> float:
        """Wait for every process's clean exit; the load's runtime."""
        for child in self.children:
            child.finish(timeout)
        return time.monotonic() - self.began

    def progress(self) -> int:
        """How many tasks have ended so far (lines in the log)."""
        try:
            return self.log.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def ran(self) -> list[Ran]:
        by_id = {t["id"]: (spec["proc"], t) for spec in self.specs for t in spec["tasks"]}
        ran: list[Ran] = []
        for line in self.log.read_text().splitlines():
            entry = json.loads(line)
            proc, task = by_id[entry["task"]]
            assert entry["proc"] == proc
            writes = tuple(Claim.parse(p) for p in task["writes"])
            reads = tuple(Claim.parse(p) for p in task["reads"])
            ran.append(Ran(proc, task["id"], task["agent"], writes, reads, entry["start"], entry["end"]))
        counts = Counter(r.task for r in ran)
        assert sorted(counts) == sorted(by_id), "some task never ran"
        assert [t for t, n in counts.items() if n != 1] == [], "some task ran more than once"
        return ran

    def check(self) -> tuple[list[Ran], int]:
        """The oracle: every task ran once, no two conflicting tasks overlapped in time, by their
        own timestamps, and the rendezvous tasks all ran at once. Returns what ran and how many
        pairs of tasks of different processes overlapped (proof the processes ran side by side)."""
        ran = self.ran()
        violations = []
        cross_process_overlaps = 0
        for a, b in itertools.combinations(sorted(ran, key=lambda r: r.start), 2):
            if b.start >= a.end:
                continue  # sorted by start: b began after a ended
            if a.proc != b.proc:
                cross_process_overlaps += 1
            why = conflict(a, b)
            if why is not None:
                violations.append(f"{a.task} [{a.start}, {a.end}] and {b.task} [{b.start}, {b.end}]: {why}")
        assert violations == []
        rendezvous = [r for r in ran if r.task.endswith("-rendezvous")]
        assert max(r.start for r in rendezvous) < min(r.end for r in rendezvous)
        return ran, cross_process_overlaps


# --- faults -----------------------------------------------------------------------------------


class Injector:
    """A fault injected from a thread while a load runs, until ``stop`` (see ``inject``).

    The loop counts what it did in ``count`` and notes it in ``done``.
    """

    def __init__(self, loop: Callable[[Injector], None]):
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []
        self.count = 0
        self.done: list[str] = []
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)

    def _run(self) -> None:
        try:
            self._loop(self)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread by stop()
            self.errors.append(exc)

    def stop(self) -> None:
        self.stopped.set()
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the fault injector did not stop"
        if self.errors:
            raise self.errors[0]


@contextlib.contextmanager
def inject(loop: Callable[[Injector], None]) -> Iterator[Injector]:
    """Run ``loop(injector)`` in a thread for the duration of the block; it paces itself and
    returns once ``injector.stopped`` is set. An exception in it fails the test at the block's end."""
    injector = Injector(loop)
    injector._thread.start()
    try:
        yield injector
    finally:
        injector.stop()


def after_progress(load: Load, tasks: int, stopped: threading.Event) -> bool:
    """Wait, polling every 5 ms, until ``tasks`` more tasks of ``load`` have ended; False if stopped first.

    Paces a fault by the load's progress, so that each lands while tasks start and end.
    """
    target = load.progress() + tasks
    deadline = time.monotonic() + WAIT * 3
    while load.progress() < target:
        if stopped.wait(0.005):
            return False
        assert time.monotonic() < deadline, f"the load made no progress to {target} tasks"
    return True
