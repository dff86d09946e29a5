"""The installed command under faults: killed, hung up, stopped; with another run waiting on its files.

Real processes and real signals. A run's agent (``fake_agents/family.py``) leaves a child that
ignores SIGTERM, and both write a timestamp every 0.1 s while they live; a second run waits
for the same file, and its task records when it started and whether the first run's
processes were still alive then. Processes report through FIFOs and pipes; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from queue_core.processes import STOPPED_HINT, ProcessId, lock_holder

from ..conftest import WAIT
from ._terminal import SETSID, on_terminal

SCRIPT = Path(sys.executable).with_name("project-manager")
needs_setsid = pytest.mark.skipif(SETSID is None, reason="needs util-linux's setsid to give the run a terminal")
FAMILY = Path(__file__).parent.parent / "fake_agents" / "family.py"

# Task B's agent: notes when it started and whether the pids it is given are alive.
CHECK = """
import sys, time
def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
started = time.time_ns()
with open(sys.argv[1], "w") as out:
    out.write(" ".join([str(started), *(str(alive(int(p))) for p in sys.argv[2:])]))
"""


def _run(repo: Path, *args: str) -> subprocess.Popen[str]:
    argv = [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo), "--no-live"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _running(repo: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A run, killed (and resumed, if stopped) on the way out if it still runs."""
    run = _run(repo, *args)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate(timeout=WAIT)


def _status(repo: Path, *, json_out: bool = True) -> Any:
    argv = [str(SCRIPT), "status", "--repo", str(repo), *(["--json"] if json_out else [])]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout) if json_out else done.stdout


def _read_until(proc: subprocess.Popen[str], text: str) -> str:
    """Lines of ``proc``'s stdout until one contains ``text``; fails after WAIT."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + WAIT
    while text not in seen:
        left = max(0.0, deadline - time.monotonic())
        assert select.select([proc.stdout], [], [], left)[0], f"never saw {text!r} in:\n{seen}"
        line = proc.stdout.readline()
        assert line, f"the run ended before {text!r}:\n{seen}"
        seen += line
    return seen


def _wait_until_unlocked(repo: Path, pid: int) -> None:
    """Until ``pid`` no longer holds the registry lock: a run keeps it 10 ms after a start."""
    deadline = time.monotonic() + WAIT
    while lock_holder(repo / ".project-manager") == pid:
        assert time.monotonic() < deadline, f"pid {pid} kept the registry lock"
        select.select([], [], [], 0.005)


def _pids_from(fifo: int) -> tuple[int, int]:
    data = b""
    while not data.endswith(b"\n"):
        assert select.select([fifo], [], [], WAIT)[0], "the agent never reported"
        data += os.read(fifo, 100)
    agent, child = (int(p) for p in data.split())
    return agent, child


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def _family_run(repo: Path, tmp_path: Path, *, grace: str) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """Run A: one task on shared.py whose agent leaves a child that ignores SIGTERM.

    Yields the run and the pids of its agent and child, once both run. Whatever is left of
    them is killed on the way out.
    """
    report = tmp_path / "report.fifo"
    os.mkfifo(report)
    fifo = os.open(report, os.O_RDONLY | os.O_NONBLOCK)
    batch = tmp_path / "a.yaml"
    command = [sys.executable, str(FAMILY), str(report), "ignore-term", "wait", str(tmp_path / "stamps")]
    batch.write_text(
        f"agents:\n  fam:\n    command: {json.dumps(command)}\n    stop_grace: {grace}\n"
        "tasks:\n  - {id: A, agent: fam, description: leaves a child, files: [shared.py]}\n"
    )
    run = _run(repo, "--file", str(batch))
    pids: tuple[int, ...] = ()
    try:
        pids = _pids_from(fifo)
        yield run, pids[0], pids[1]
    finally:
        os.close(fifo)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if run.poll() is None:
            run.kill()
        run.communicate(timeout=WAIT)


def _checker_batch(tmp_path: Path, pids: tuple[int, int]) -> Path:
    (tmp_path / "check.py").write_text(CHECK)
    command = [sys.executable, str(tmp_path / "check.py"), str(tmp_path / "b.out"), *map(str, pids)]
    batch = tmp_path / "b.yaml"
    batch.write_text(
        f"agents:\n  checker:\n    command: {json.dumps(command)}\n"
        "tasks:\n  - {id: B, agent: checker, description: check, files: [shared.py]}\n"
    )
    return batch


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGHUP, 129), (signal.SIGTERM, 143), (signal.SIGINT, 130)],
)
def test_a_run_ended_by_a_signal_keeps_its_claims_until_its_agents_are_gone(
    tmp_path: Path, sig: int, code: int
) -> None:
    """Before: SIGKILL (and SIGHUP, unhandled) left the agents running and freed their claims;
    SIGINT and SIGTERM left a child that ignores SIGTERM running, its SIGKILL never sent."""
    repo = tmp_path / "repo"
    repo.mkdir()
    with _family_run(repo, tmp_path, grace="0.5s") as (first, agent, child):
        second = _run(repo, "--file", str(_checker_batch(tmp_path, (agent, child))))
        first.send_signal(sig)
        out, err = first.communicate(timeout=WAIT)
        assert first.returncode == code, err
        second_out, second_err = second.communicate(timeout=WAIT)
        assert second.returncode == 0, second_out + second_err
    started, *alive = (tmp_path / "b.out").read_text().split()
    assert alive == ["False", "False"], "B started while a process of A lived"
    stamps = [int(line.split()[1]) for line in (tmp_path / "stamps").read_text().splitlines()]
    assert max(stamps) < int(started), "a process of A wrote after B started"
    if sig != signal.SIGKILL:
        assert "interrupted by SIG" in out
        assert "cancelled" in out  # the summary
        assert "Traceback" not in err


def test_a_stopped_holder_of_the_registry_lock_is_named_and_a_waiting_run_still_ends_on_sigterm(
    tmp_path: Path,
) -> None:
    """Before: the waiting run said nothing, and after SIGTERM exited 241 s later with a traceback."""
    state = tmp_path / ".project-manager"
    state.mkdir(mode=0o700)
    take_and_stop = (
        "import fcntl, os, signal, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.kill(os.getpid(), signal.SIGSTOP)"
    )
    with subprocess.Popen([sys.executable, "-c", take_and_stop, str(state)]) as holder:
        try:
            assert os.WIFSTOPPED(os.waitpid(holder.pid, os.WUNTRACED)[1])  # it holds the lock, stopped
            with _running(tmp_path, "shell: true @x") as run:
                _read_until(run, f"the registry lock held by pid {holder.pid} (stopped: {STOPPED_HINT})")
                status = _status(tmp_path)
                assert status["stopped_lock_holder"] == holder.pid
                assert f"registry lock is held by pid {holder.pid}, which is stopped" in _status(
                    tmp_path, json_out=False
                )
                run.send_signal(signal.SIGTERM)
                out, err = run.communicate(timeout=WAIT)
            assert run.returncode == 143
            assert "interrupted by SIGTERM" in out
            assert "t1" in out  # the summary, with the task that never started
            assert "cancelled" in out
            assert "Traceback" not in err
            assert "free again" not in out  # it never got the lock
        finally:
            holder.kill()


def test_a_stopped_run_is_named_in_status_and_to_the_runs_waiting_for_it(tmp_path: Path) -> None:
    """Before: a stopped run showed in status as plainly running, and its waiters said nothing."""
    release = tmp_path / "release.fifo"
    os.mkfifo(release)
    with _running(tmp_path, "shell: cat release.fifo @x") as first:
        try:
            _read_until(first, "started   t1")
            _wait_until_unlocked(tmp_path, first.pid)  # else it is stopped holding the lock: the other test
            first.send_signal(signal.SIGSTOP)
            [run] = _status(tmp_path)["runs"]
            assert run["state"] == "stopped"
            assert f"STOPPED, it holds its claims until resumed: {STOPPED_HINT}" in _status(tmp_path, json_out=False)
            with _running(tmp_path, "shell: true @x") as second:
                _read_until(second, f"(pid {first.pid}) is stopped: {STOPPED_HINT}")
                first.send_signal(signal.SIGCONT)
                with open(release, "w") as fifo:
                    fifo.write("go\n")
                assert first.wait(WAIT) == 0
                assert second.wait(WAIT) == 0
        finally:
            first.send_signal(signal.SIGCONT)
            with contextlib.suppress(OSError):  # let the agent finish, whatever happened
                os.close(os.open(release, os.O_WRONLY | os.O_NONBLOCK))


def test_an_orphaned_run_shows_in_status_with_its_live_agents_and_holds_its_claims(tmp_path: Path) -> None:
    """Before: a killed run's holds were dropped at once; status showed nothing of its live agents."""
    repo = tmp_path / "repo"
    repo.mkdir()
    with _family_run(repo, tmp_path, grace="60s") as (first, _, child):
        first.kill()
        first.communicate(timeout=WAIT)
        [run] = _status(repo)["runs"]
        assert run["state"] == "orphaned"
        assert child in [p["pid"] for p in run["processes"]]  # it ignores SIGTERM: 60 s to go
        assert "ORPHANED, its process died" in _status(repo, json_out=False)
        with _running(repo, "shell: true @shared.py") as second:
            _read_until(second, "died; its supervisor")  # it waits, and says why
            os.kill(child, signal.SIGKILL)  # the last process of the orphaned run
            assert second.wait(WAIT) == 0
    assert _status(repo)["runs"] == []


@needs_setsid
def test_a_terminal_that_closes_under_the_live_view_ends_the_run_cleanly(tmp_path: Path) -> None:
    """Before: nothing handled SIGHUP; the run died without stopping its agents."""
    with _agent_report(tmp_path) as fifo, on_terminal(_reporting_run(tmp_path), controlling=True) as terminal:
        agent, _ = _pids_from(fifo)
        screen = b""
        while b"Running agents (1" not in screen:  # the live view is drawn
            assert select.select([terminal.master], [], [], WAIT)[0], screen.decode(errors="replace")
            screen += os.read(terminal.master, 65536)
        terminal.hang_up()  # the window closes: the kernel hangs up the run's terminal
        assert terminal.proc.wait(WAIT) == 129
        assert not _alive(agent)


@contextlib.contextmanager
def _agent_report(tmp_path: Path) -> Iterator[int]:
    """The read end of report.fifo in ``tmp_path``, to which _reporting_run's agent writes its pid."""
    os.mkfifo(tmp_path / "report.fifo")
    fifo = os.open(tmp_path / "report.fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield fifo
    finally:
        os.close(fifo)


def _reporting_run(repo: Path) -> list[str]:
    """A run whose one agent reports its pid to report.fifo, then sleeps a minute."""
    return [str(SCRIPT), "delegate-multiple", "shell: echo $$ 0 > report.fifo; exec sleep 60 @x", "--repo", str(repo)]


# The command with a hook: sys.argv[1:3] are two FIFOs; finish_run says "finishing" on the first,
# then waits for a line on the second before it goes on. The rest is the command's arguments.
FINISH_HOOK = """
import sys
from queue_core import registry
finish_run = registry.Registry.finish_run
finishing, go = sys.argv[1:3]
def hooked(self, history):
    with open(finishing, "w") as fifo:
        fifo.write("finishing\\n")
    with open(go) as fifo:
        fifo.readline()
    finish_run(self, history)
registry.Registry.finish_run = hooked
sys.argv = ["project-manager", *sys.argv[3:]]
from cli.launch import main
main()
"""


@contextlib.contextmanager
def _stopped_lock_holder(state: Path) -> Iterator[int]:
    """A process that holds the registry lock (a flock on ``state``) and is stopped; its pid. Killed on the way out."""
    state.mkdir(mode=0o700, exist_ok=True)
    take_and_stop = (
        "import fcntl, os, signal, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.kill(os.getpid(), signal.SIGSTOP)"
    )
    with subprocess.Popen([sys.executable, "-c", take_and_stop, str(state)]) as holder:
        try:
            assert os.WIFSTOPPED(os.waitpid(holder.pid, os.WUNTRACED)[1])
            yield holder.pid
        finally:
            holder.kill()


def test_a_signal_while_a_finished_run_waits_for_the_registry_still_ends_it(tmp_path: Path) -> None:
    """Before: once every task had finished, ending the run waited for the lock outside the signal
    handling: SIGTERM was ignored for up to a minute, and the run then exited 0."""
    finishing, go = tmp_path / "finishing.fifo", tmp_path / "go.fifo"
    os.mkfifo(finishing)
    os.mkfifo(go)
    reader = os.open(finishing, os.O_RDONLY | os.O_NONBLOCK)
    argv = [sys.executable, "-c", FINISH_HOOK, str(finishing), str(go), "delegate-multiple", "shell: true @x"]
    with subprocess.Popen(
        [*argv, "--repo", str(tmp_path), "--no-live"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as run:
        try:
            assert select.select([reader], [], [], WAIT)[0], "the run never finished its tasks"
            with _stopped_lock_holder(tmp_path / ".project-manager") as holder:
                with open(go, "w") as fifo:
                    fifo.write("go\n")
                _read_until(run, f"the registry lock held by pid {holder} (stopped")
                run.send_signal(signal.SIGTERM)
                out, err = run.communicate(timeout=WAIT)
        finally:
            os.close(reader)
            if run.poll() is None:
                run.kill()
    assert run.returncode == 143
    assert "Traceback" not in err
    assert "free again" not in out  # it never got the lock


# The command whose first two writes of claims.json fail (a full disk), then work.
FULL_DISK_ONCE = """
import sys
from queue_core import registry
from queue_core.errors import StateError
write_holds = registry.Registry._write_holds
failed = []
def flaky(self, holds, line=()):
    if len(failed) < 2:
        failed.append(1)
        raise StateError(self.path, "cannot write: No space left on device")
    write_holds(self, holds, line)
registry.Registry._write_holds = flaky
sys.argv = ["project-manager", *sys.argv[1:]]
from cli.launch import main
main()
"""


def test_a_registry_failure_is_one_notice_line_and_no_traceback(tmp_path: Path) -> None:
    """Before: queue_core's log.error went to Python's last-resort handler: a full traceback."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FULL_DISK_ONCE,
            "delegate-multiple",
            "shell: true @x",
            "--repo",
            str(tmp_path),
            "--no-live",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "notice    no task starts until the claim registry can be used:" in done.stdout
    assert "No space left on device" in done.stdout


def test_a_run_whose_output_nobody_reads_still_ends_on_sigterm(tmp_path: Path) -> None:
    """Before: with its stdout a pipe nobody read, the run waited for the reader, deaf to every signal."""
    long = "x" * 90  # ids of up to 95 characters (at most 100 are allowed): the output overfills the pipe
    lines = ["tasks:"] + [
        f"  - {{id: t{i}-{long}, agent: s{i % 4}, description: 'true', files: [f{i}]}}" for i in range(300)
    ]
    batch = tmp_path / "batch.yaml"
    batch.write_text("agents:\n" + "".join(f"  s{a}: {{preset: shell}}\n" for a in range(4)) + "\n".join(lines) + "\n")
    reader, writer = os.pipe()  # never read: more than a pipe holds is written to it
    try:
        with subprocess.Popen(
            [str(SCRIPT), "delegate-multiple", "--file", str(batch), "--repo", str(tmp_path), "--no-live"],
            stdout=writer,
            stderr=writer,
        ) as run:
            try:
                deadline = time.monotonic() + 60  # every task done: the run's record is gone
                while _status(tmp_path)["runs"] or not (tmp_path / ".project-manager" / "history").glob("*.json"):
                    assert time.monotonic() < deadline, "the run never finished its tasks"
                    select.select([], [], [], 0.05)
                run.send_signal(signal.SIGTERM)
                assert run.wait(WAIT) == 143
            finally:
                if run.poll() is None:
                    run.kill()
    finally:
        os.close(reader)
        os.close(writer)


def test_a_signal_noted_during_start_up_stops_the_run_before_anything_starts(tmp_path: Path) -> None:
    """Before: a SIGTERM before the command waited killed it outright, with no summary."""
    early = (
        "import os, signal, sys; from cli import signals; signals.note_early(); "
        "os.kill(os.getpid(), signal.SIGTERM); sys.argv = ['project-manager', *sys.argv[1:]]; "
        "from cli.launch import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", early, "delegate-multiple", "shell: touch ran @x", "--repo", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 143, done.stderr
    assert "interrupted by SIGTERM before anything ran" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ran").exists()


def test_a_run_started_with_stdout_closed_runs(tmp_path: Path) -> None:
    """Before: `>&-` made it fail with AttributeError: 'NoneType' object has no attribute 'isatty'."""
    script = 'exec "$0" delegate-multiple "shell: touch ran @x" --repo "$1" >&-'
    done = subprocess.run(["sh", "-c", script, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ran").exists()


def test_status_watch_ends_when_its_reader_goes_away(tmp_path: Path) -> None:
    """Before: `status --watch | head -1` never ended."""
    with subprocess.Popen(
        [str(SCRIPT), "status", "--watch", "--repo", str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as watch:
        try:
            assert watch.stdout is not None
            assert "Nothing runs" in watch.stdout.readline()
            watch.stdout.close()
            assert watch.wait(WAIT) == 128 + signal.SIGPIPE
        finally:
            if watch.poll() is None:
                watch.kill()


def test_status_watch_json_prints_one_object_a_line(tmp_path: Path) -> None:
    """Before: pretty-printed objects back to back, which no NDJSON reader takes (issue 12)."""
    with subprocess.Popen(
        [str(SCRIPT), "status", "--watch", "--json", "--repo", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    ) as watch:
        try:
            assert watch.stdout is not None
            lines = [watch.stdout.readline() for _ in range(2)]
            assert [json.loads(line)["runs"] for line in lines] == [[], []]
        finally:
            watch.kill()


def test_status_shows_a_long_wait_for_the_registry_lock_behind_a_running_holder(tmp_path: Path) -> None:
    """Before: only a stopped holder was shown; a run waiting behind a busy one said nothing."""
    state = tmp_path / ".project-manager"
    state.mkdir(mode=0o700)
    take_and_wait = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.readline()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", take_and_wait, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        with _running(tmp_path, "shell: true @x") as run:
            _read_until(run, f"the registry lock held by pid {holder.pid}")
            assert f"waiting for the registry: the registry lock held by pid {holder.pid}" in _status(
                tmp_path, json_out=False
            )
            holder.stdin.close()  # it lets go
            assert run.wait(WAIT) == 0


def test_ctrl_c_ends_a_run_whose_registry_lock_a_stopped_process_took_while_a_task_ran(tmp_path: Path) -> None:
    """Before: the stopped task's release retried the interrupted registry without end, and the
    run hung until the other process was resumed."""
    release = tmp_path / "release.fifo"
    os.mkfifo(release)
    with _running(tmp_path, "shell: cat release.fifo @x") as run:
        _read_until(run, "started   t1")
        _wait_until_unlocked(tmp_path, run.pid)
        with _stopped_lock_holder(tmp_path / ".project-manager"):
            run.send_signal(signal.SIGINT)
            out, err = run.communicate(timeout=WAIT)
    assert run.returncode == 130, err
    assert "cancelled" in out
    assert "Traceback" not in err


@needs_setsid
def test_sigterm_stops_the_agents_of_a_run_whose_terminal_is_held_with_ctrl_s(tmp_path: Path) -> None:
    """Before: printing the 'interrupted' line blocked on the held terminal before the agents were
    stopped: they ran on, holding their claims, until someone pressed Ctrl-Q."""
    with _agent_report(tmp_path) as fifo, on_terminal(_reporting_run(tmp_path), controlling=True) as terminal:
        agent, _ = _pids_from(fifo)
        os.write(terminal.master, b"\x13")  # Ctrl-S: the terminal takes no more output
        terminal.proc.send_signal(signal.SIGTERM)
        assert terminal.proc.wait(WAIT) == 143
        assert not _alive(agent)


@needs_setsid
def test_status_watch_ends_on_sigterm_with_its_terminal_held(tmp_path: Path) -> None:
    """Before: with its terminal held (Ctrl-S), it ignored every signal."""
    with on_terminal([str(SCRIPT), "status", "--watch", "--repo", str(tmp_path)], controlling=True) as terminal:
        assert select.select([terminal.master], [], [], WAIT)[0]  # the panels are being drawn
        os.write(terminal.master, b"\x13")
        terminal.proc.send_signal(signal.SIGTERM)
        assert terminal.proc.wait(WAIT) == 143


@needs_setsid
def test_status_watch_ends_129_without_a_traceback_when_its_terminal_closes(tmp_path: Path) -> None:
    """Before: the live panels died of an OSError traceback (exit 1) in 14 of 20 hang-ups."""
    with on_terminal([str(SCRIPT), "status", "--watch", "--repo", str(tmp_path)], controlling=True) as terminal:
        screen = b""
        while b"Nothing runs" not in screen:
            assert select.select([terminal.master], [], [], WAIT)[0], screen
            screen += os.read(terminal.master, 65536)
        terminal.hang_up()  # the window closes
        assert terminal.proc.wait(WAIT) == 129


def test_a_dry_run_whose_output_fails_has_no_traceback(tmp_path: Path) -> None:
    with open(os.devnull, "w") as null, open("/dev/full", "w") as full:
        done = subprocess.run(
            [str(SCRIPT), "delegate-multiple", "shell: true @x", "--repo", str(tmp_path), "--dry-run"],
            stdout=full,
            stderr=subprocess.PIPE,
            stdin=null,
            text=True,
            timeout=60,
        )
    assert "Traceback" not in done.stderr


def test_clean_keeps_a_running_run_and_removes_its_records_once_it_was_killed_and_its_agents_are_gone(
    tmp_path: Path,
) -> None:
    """Before: a run killed with SIGKILL left runs/<run>.json, .holds and .groups for good."""
    state = tmp_path / ".project-manager"
    with _running(tmp_path, "shell: echo up; exec sleep 60 @x") as run:
        _read_until(run, "started")
        (record,) = (state / "runs").glob("*.json")
        run_id = record.stem
        supervisor = json.loads(record.read_text())["owner"]["supervisor"]
        done = subprocess.run(
            [str(SCRIPT), "clean", "--repo", str(tmp_path), "--keep-runs", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"kept run {run_id}: its process (pid {run.pid}) still runs" in done.stdout
        assert record.exists()
        run.kill()
    gone = ProcessId(supervisor["pid"], supervisor["started"], supervisor["ticks"])
    deadline = time.monotonic() + WAIT
    while gone.group_alive():  # the supervisor stops the agent, then exits: no event tells us when
        assert time.monotonic() < deadline, "the killed run's supervisor did not exit"
        select.select([], [], [], 0.05)
    assert {p.suffix for p in (state / "runs").iterdir()} >= {".json", ".groups"}  # a killed run's records
    done = subprocess.run([str(SCRIPT), "clean", "--repo", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"removed run {run_id}" in done.stdout
    assert list((state / "runs").iterdir()) == []
    assert "\nup\n" in (state / "logs" / run_id / "t1.log").read_text()  # its output: within keep_runs
