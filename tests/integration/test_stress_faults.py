"""The cross-process stress load (see ``_stress.py``) under faults of the state directory.

Each test runs the load of ``test_cross_process``'s stress test (worker processes, random
overlapping claims, each task logging its own start and end) while a thread of the test breaks
the registry; the oracle is the same: every task ran once, and no two conflicting tasks
overlapped in time by their own timestamps. A fault is paced by the load's progress (so it
lands while tasks start and end), never by sleeping for an order. A lost ``claims.json`` stops
every start for RECOVERY_S (3 s), so a test injects few of them, and runs in about 5-15 s.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from queue_core import repo_status
from queue_core.holds import HEARTBEAT_S, Hold
from queue_core.processes import PID_NAMESPACE
from queue_core.registry import Registry

from ..conftest import WAIT
from ._stress import Injector, Load, Spawn, after_progress, inject, stress_spec

PROCESSES = 3
#: Tasks that end between two faults: each lands while the load is busy.
PROGRESS = 20
#: What a load under faults may take: each lost registry stops every start for 3 s.
LOAD_WAIT = 6 * WAIT


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A plain directory, not a git repository: its state is in ``.project-manager``."""
    path = tmp_path / "repo"
    path.mkdir()
    return path


def state_of(repo: Path) -> Path:
    return repo.resolve() / ".project-manager"


def run_load_under(
    spawn: Spawn,
    tmp_path: Path,
    repo: Path,
    fault: Callable[[Load, Path, Injector], None] | None,
    *,
    wrap: Callable[[int], list[str]] = lambda proc: [],
) -> tuple[Injector, str]:
    """Run the stress load with ``fault(load, state directory, injector)`` looping meanwhile; check the oracle.

    Returns the injector (what it did) and a summary line for the test's output.
    """
    specs = [stress_spec(p) for p in range(PROCESSES)]
    load = Load.start(spawn, tmp_path, repo, specs, wrap=wrap)
    with inject(functools.partial(fault, load, state_of(repo)) if fault else lambda injector: None) as injector:
        load.rendezvous()
        elapsed = load.finish(LOAD_WAIT)
    ran, cross_process_overlaps = load.check()
    assert holds_now(repo) == []
    assert repo_status(repo).runs == ()
    notices = [line for child in load.children for line in child.stderr().splitlines() if "damaged or lost" in line]
    summary = (
        f"{len(ran)} tasks, {len(specs)} processes, {elapsed:.2f}s, {cross_process_overlaps} overlaps, "
        f"{injector.count} faults {dict(Counter(injector.done))}, {len(notices)} rebuild notices"
    )
    print(f"\n{summary}", *(f"  {notice.split('; ', 1)[-1]}" for notice in notices), sep="\n")
    return injector, summary


def holds_now(repo: Path) -> list[Hold]:
    """The live holds, read under the registry's lock as every process reads them."""
    reader = Registry(repo, "test-reader")
    try:
        with reader.session() as session:
            return list(session.holds.values())
    finally:
        reader.finish_run(None)


def unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# --- (a) claims.json deleted repeatedly ---------------------------------------------------------


def deleting(load: Load, state: Path, injector: Injector, *, holds_too: bool) -> None:
    """Three bursts of five deletions of claims.json (and every run's .holds, if ``holds_too``)."""
    rng = random.Random(7)
    for _ in range(3):
        if not after_progress(load, PROGRESS, injector.stopped):
            return
        for _ in range(5):
            if unlink(state / "claims.json"):
                injector.count += 1
                injector.done.append("claims.json")
            if holds_too:
                for holds in state.glob("runs/*.holds"):
                    if unlink(holds):
                        injector.done.append(".holds")
            if injector.stopped.wait(rng.uniform(0.005, 0.05)):
                return


@pytest.mark.slow
@pytest.mark.parametrize("holds_too", [False, True], ids=["claims.json", "claims.json and runs' .holds"])
def test_stress_with_the_claims_file_deleted_again_and_again(
    tmp_path: Path, repo: Path, spawn: Spawn, holds_too: bool
) -> None:
    """Rebuilt from the runs' .holds files, or (those gone too) from what live runs write back within RECOVERY_S."""
    injector, summary = run_load_under(spawn, tmp_path, repo, functools.partial(deleting, holds_too=holds_too))
    assert injector.count >= 3, summary


# --- (b) claims.json replaced by a dangling symlink, or a directory -----------------------------


def replacing(load: Load, state: Path, injector: Injector, *, by: str) -> None:
    """Once, mid-load: claims.json becomes a dangling symlink, or a directory."""
    if not after_progress(load, PROGRESS, injector.stopped):
        return
    path = state / "claims.json"
    if by == "dangling symlink":
        link = state / "claims.json.link"
        os.symlink(state.parent / "nowhere", link)
        os.replace(link, path)  # atomic: a run's write cannot slip in between
    else:
        while True:  # a run may write it again between the unlink and the mkdir
            unlink(path)
            with contextlib.suppress(FileExistsError):
                os.mkdir(path)
                break
    injector.count += 1
    injector.done.append(by)


@pytest.mark.slow
@pytest.mark.parametrize("by", ["dangling symlink", "directory"])
def test_stress_with_the_claims_file_replaced(tmp_path: Path, repo: Path, spawn: Spawn, by: str) -> None:
    injector, summary = run_load_under(spawn, tmp_path, repo, functools.partial(replacing, by=by))
    assert injector.count == 1, summary
    # Kept aside by the step that read it; or replaced whole by a step that held the lock, whose
    # holds are exact: either way the registry is a file again.
    assert (state_of(repo) / "claims.json").is_file()
    assert not (state_of(repo) / "claims.json").is_symlink()


# --- (c) the whole state directory renamed away, or removed -------------------------------------


def removing(load: Load, state: Path, injector: Injector, *, how: str) -> None:
    """Once, mid-load: the state directory is renamed away, or removed with everything in it."""
    if not after_progress(load, PROGRESS, injector.stopped):
        return
    if how == "renamed away":
        os.rename(state, state.with_name("state-renamed-away"))
    else:
        shutil.rmtree(state, ignore_errors=True)  # runs write files in it meanwhile: some may stay
        shutil.rmtree(state, ignore_errors=True)
    injector.count += 1
    injector.done.append(how)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["renamed away", "removed"])
def test_stress_with_the_state_directory_removed(tmp_path: Path, repo: Path, spawn: Spawn, how: str) -> None:
    """No run fails: a step that finds the directory gone makes it again, finds claims.json lost
    while others live, and nothing starts for RECOVERY_S while the runs write back their holds.

    A run whose step held the lock (on the old directory) when it went writes its exact holds
    into the new one once it exists, and so may end the recovery window early: the load then
    takes about 1 s instead of 4. Safe, since every hold taken before the loss is in that write.
    """
    injector, summary = run_load_under(spawn, tmp_path, repo, functools.partial(removing, how=how))
    assert injector.count == 1, summary
    assert state_of(repo).is_dir()  # made again


# --- (d) what a lock file was: rmdir of the state directory, runs' files deleted ---------------


def lock_like(load: Load, state: Path, injector: Injector) -> None:
    """All through the load, every few ms: try to remove (and make again) the state directory,
    runs/ or history/; make and delete a registry.lock; delete one of runs/' files."""
    rng = random.Random(11)
    while not injector.stopped.wait(rng.uniform(0.002, 0.02)):
        what = rng.choice(["rmdir", "rmdir", "lock file", "runs entry"])
        if what == "rmdir":
            directory = rng.choice([state, state / "runs", state / "history"])
            try:
                os.rmdir(directory)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT):
                    raise
                continue
            injector.done.append(f"removed {directory.name}/")
            with contextlib.suppress(FileExistsError):  # a run may have made it again already
                os.mkdir(directory, 0o700)
        elif what == "lock file":
            with contextlib.suppress(FileNotFoundError):
                (state / "registry.lock").touch()
                os.unlink(state / "registry.lock")
                injector.done.append("registry.lock")
        else:
            entries = [p for p in state.glob("runs/*") if not p.name.startswith(".")]
            if not entries or not unlink(entry := rng.choice(entries)):
                continue
            injector.done.append(f"deleted runs/*{entry.suffix}")
        injector.count += 1


@pytest.mark.slow
def test_stress_with_lock_like_faults_in_a_loop(tmp_path: Path, repo: Path, spawn: Spawn) -> None:
    injector, summary = run_load_under(spawn, tmp_path, repo, lock_like)
    assert injector.count >= 10, summary


# --- (e) a run in another PID namespace ---------------------------------------------------------

UNSHARE = {
    "pid namespace": ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
    "user and pid namespace": [
        "unshare",
        "--user",
        "--map-root-user",
        *["--pid", "--fork", "--mount-proc", "--kill-child"],
    ],
}
#: How old the heartbeat of a run in another namespace may be before it is dead, in these tests.
STALE_S = 2.5


@functools.cache
def unshare_refusal(kind: str) -> str | None:
    """Why a run cannot be put in a new PID namespace this way here, or None: probed once."""
    if shutil.which("unshare") is None:
        return "no unshare(1) on this system"
    if not PID_NAMESPACE:
        return "this system does not tell its PID namespace"
    probe = [*UNSHARE[kind], sys.executable, "-c", "import os; print(os.getpid(), os.stat('/proc/self/ns/pid').st_ino)"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=WAIT, check=False)
    except OSError as exc:
        return f"{' '.join(UNSHARE[kind])}: {exc}"
    if done.returncode != 0:
        return f"{' '.join(UNSHARE[kind])} is not permitted here: {done.stderr.strip() or done.returncode}"
    pid, namespace = map(int, done.stdout.split())
    if namespace == PID_NAMESPACE or pid != 1:
        return f"{' '.join(UNSHARE[kind])} did not make a new PID namespace"
    return None


@pytest.fixture(params=list(UNSHARE))
def namespaced(request: pytest.FixtureRequest) -> list[str]:
    """The argv prefix that runs a command in a PID namespace of its own; skipped where not permitted."""
    kind: str = request.param
    refusal = unshare_refusal(kind)
    if refusal is not None:
        pytest.skip(refusal)
    return UNSHARE[kind]


@pytest.mark.slow
def test_stress_with_a_run_in_another_pid_namespace(
    tmp_path: Path, repo: Path, spawn: Spawn, namespaced: list[str]
) -> None:
    """Process 0 runs in a PID namespace of its own: the others judge its holds by its heartbeat.

    Its pids mean other processes here, or none; were they looked up, its holds would be dropped
    at once (or kept forever), and conflicting tasks would overlap.
    """
    run_load_under(spawn, tmp_path, repo, None, wrap=lambda proc: namespaced if proc == 0 else [])


def test_a_run_killed_with_its_pid_namespace_frees_its_claim_by_heartbeat(
    repo: Path, spawn: Spawn, namespaced: list[str]
) -> None:
    """The namespaced run holds src/shared.py; a run here waits. While the namespaced run beats,
    its hold lives past stale_after; killed with its whole namespace, its hold ends once its
    heartbeat is stale_after old, not at once, and not never."""
    holder = spawn("namespaced", "hold", repo, "code_developer", "src/shared.py", "held", wrap=namespaced)
    holder.expect("running held")
    [hold] = holds_now(repo)
    assert hold.owner.pid_ns not in (0, PID_NAMESPACE)
    assert not hold.owner.is_local

    waiter = spawn("waiter", "wait", repo, "tester", "src/shared.py", "needs-it", str(STALE_S))
    assert f"held in run {hold.owner.run}" in waiter.expect("queued")
    waiter.expect_silence(STALE_S * 1.5)  # it beats: its hold outlives stale_after

    [init] = psutil.Process(holder.pid).children()  # unshare's child: pid 1 of the namespace
    namespace = [init, *init.children(recursive=True)]  # the worker and its supervisor
    assert len(namespace) >= 2
    killed_at = time.monotonic_ns()
    init.send_signal(signal.SIGKILL)  # the kernel kills every other process of the namespace
    assert holder.proc.wait(WAIT) != 0
    _, alive = psutil.wait_procs(namespace, timeout=WAIT)
    assert alive == []

    started_at = int(waiter.expect("started", timeout=STALE_S + WAIT))
    latency = (started_at - killed_at) / 1e9
    print(f"\nkill of the namespace -> start: {latency:.2f} s (stale_after {STALE_S} s)")
    assert STALE_S - HEARTBEAT_S - 0.25 < latency < STALE_S + 3.0
    waiter.finish()
    assert holds_now(repo) == []
