"""A cluster task's worker half (issue 16): one attempt of a worktree task, run on a Dask worker.

The coordinator decides (claims, instances, pools: :mod:`queue_core.cluster`); a worker only
executes :func:`run_attempt`, which Dask calls in a worker process, on whatever machine:

1. the repository comes by git, never by a shared file system: a bare clone per repository is
   kept under the worker's scratch folder (``PM_WORKER_ROOT``, default
   ``<tmp>/project-manager-worker-<uid>``), and the bundles the coordinator sends (the run's base
   once, what was merged since in a small one) are fetched into it only when it lacks their commit;
2. a worktree at the attempt's base on the branch ``pm/<run>/<task>``, the ``.worktreeinclude``
   files shipped with the task unpacked in it (never over a file it has);
3. the setup commands and the agent, under this machine's supervisor exactly as locally (the
   process tree in a session of its own, SIGTERM then SIGKILL after the grace);
4. what the agent left committed on the branch, and the branch sent back as a bundle with the
   log and the exit code; the worktree goes (a worktree git cannot finish is kept and named).

While it runs, the log streams to the coordinator as Dask events (``RemoteAttempt.topic``), and
a watcher stops the agent's tree when the coordinator sets the attempt's stop event (a cancel,
a timeout, Ctrl-C) or lets go of the attempt (it died: the scheduler cancels its tasks).

Dask re-runs a task whose worker died on another worker; an agent must never run twice
unseen, so the attempt's ``started`` event makes a second execution return at once, saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .changes import GitCalls
from .errors import GitError, QueueError, SetupError, WorktreeError
from .reports import AgentReport
from .runner import SubprocessAgent
from .statedir import ensure_private_dir
from .worktree_include import drop_unignored
from .worktree_setup import Setup
from .worktrees import Worktree, finish

__all__ = ["WORKER_ROOT_ENV", "RemoteAttempt", "RemoteOutcome", "run_attempt", "worker_root"]

#: Where a worker keeps its clones, worktrees and logs (default: a folder of the temp dir).
WORKER_ROOT_ENV = "PM_WORKER_ROOT"
#: The most of a log one streamed event carries, and the most events a tick: the scheduler keeps
#: the topic's last 1,000 events, which stay under 16 MB so. The whole log comes with the outcome.
CHUNK = 16 * 1024
CHUNKS_A_TICK = 4
#: How often the worker looks for new log output and for a stop.
TICK_S = 0.2

_GIT = GitCalls()


@dataclass(frozen=True)
class RemoteAttempt:
    """What a worker needs to run one attempt: plain data, sent by the coordinator.

    ``token`` is unique to the attempt: it names its events and its folder. ``bundles`` (given
    beside it) bring ``commits``, in order: a worker fetches one only if it lacks its commit.
    """

    token: str
    repo_id: str
    run: str
    name: str  # the attempt's name: the task's id, ``<task>.2`` for a second attempt
    description: str
    branch: str
    base: str
    commits: tuple[str, ...]
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    setup: tuple[tuple[str, ...], ...]
    includes: bytes  # a tar of the .worktreeinclude files; b"" for none
    grace_s: float
    report_format: str | None
    topic: str

    @property
    def stop_event(self) -> str:
        return f"pm-stop-{self.token}"

    @property
    def started_event(self) -> str:
        return f"pm-started-{self.token}"


@dataclass(frozen=True)
class RemoteOutcome:
    """What came of an attempt on a worker.

    ``code``: the agent's exit code (negative: the signal that ended it), None if it never ran;
    ``error``: why the attempt failed before or after the agent (setup, git), None if it did
    not; ``lost``: it had started on a worker that died (this execution did nothing).
    ``report``: what the agent reported, read from its log as locally (this attempt's only).
    ``log`` is the attempt's whole log, zlib-compressed; ``bundle`` the branch's commits since
    the base (b"" if none), ``tip`` its commit.
    """

    worker: str
    host: str
    path: str
    code: int | None = None
    error: str | None = None
    lost: bool = False
    report: AgentReport | None = None
    log: bytes = b""
    bundle: bytes = b""
    tip: str | None = None


def worker_root() -> Path:
    """The worker's scratch folder (``PM_WORKER_ROOT``), owner-only, made if missing."""
    named = os.environ.get(WORKER_ROOT_ENV)
    root = Path(named) if named else Path(tempfile.gettempdir()) / f"project-manager-worker-{os.getuid()}"
    ensure_private_dir(root)
    return root


def run_attempt(attempt: RemoteAttempt, bundles: Sequence[bytes]) -> RemoteOutcome:
    """Run ``attempt`` here, in a Dask worker (see the module); never raises for the attempt's
    own failures: the outcome says them, with the log."""
    from distributed import Event, get_client, get_worker

    worker, client = get_worker(), get_client()
    host = socket.gethostname()
    started = Event(attempt.started_event, client=client)
    if started.is_set():
        return RemoteOutcome(worker.address, host, "", lost=True)
    started.set()
    try:
        root = worker_root()
        for folder in ("repos", "worktrees", "logs"):
            ensure_private_dir(root / folder)
        log = root / "logs" / f"{attempt.token}.log"
        log.touch(mode=0o600)
    except (QueueError, OSError) as exc:  # raised, it would read as the worker's death (an OSError)
        return RemoteOutcome(worker.address, host, "", error=f"its {WORKER_ROOT_ENV} cannot be used: {exc}")
    path = root / "worktrees" / attempt.token
    stop = _Stop()
    watcher = _Watcher(attempt, worker, client, log, stop)
    watcher.start()
    outcome = RemoteOutcome(worker.address, host, str(path))
    try:
        outcome = _run(attempt, bundles, root, path, log, stop, outcome)
    except (QueueError, OSError) as exc:
        outcome = replace(outcome, error=str(exc))
    finally:
        watcher.end()
    try:
        data = log.read_bytes()
        log.unlink()
    except OSError as exc:  # removed by the agent (it can find it): the outcome still comes back
        data = f"[project-manager] its log on {host} was lost: {exc}\n".encode()
    return replace(outcome, log=zlib.compress(data))


def _run(
    attempt: RemoteAttempt,
    bundles: Sequence[bytes],
    root: Path,
    path: Path,
    log: Path,
    stop: _Stop,
    outcome: RemoteOutcome,
) -> RemoteOutcome:
    clone = _clone(root, attempt, bundles)
    tree = Worktree(path, attempt.branch, attempt.base, attempt.name, attempt.run, clone)
    with _locked(clone):
        _GIT(
            clone,
            "git",
            "worktree",
            "add",
            "--quiet",
            "--no-checkout",
            "-B",
            attempt.branch,
            "--",
            str(path),
            attempt.base,
        )
    _GIT(path, "git", "reset", "--quiet", "--hard")
    _unpack(attempt.includes, path)
    env = {**dict(attempt.env), "PM_WORKTREE": str(path)}
    code: int | None = None
    try:
        if attempt.setup:
            setup = Setup(path, attempt.setup, log, env, grace_s=attempt.grace_s)
            stop.run(setup.stop, setup.run)
        agent = SubprocessAgent(list(attempt.argv), path, log, env, attempt.grace_s, attempt.report_format)
        code = stop.run(agent.stop, lambda: _exit_code(agent))
        outcome = replace(outcome, report=agent.report)
    except SetupError as exc:
        outcome = replace(outcome, error=str(exc).replace(str(log), "the task's log"))
    try:
        changes = finish(tree, attempt.description, git=_GIT)  # a failed agent's work comes back too
    except (WorktreeError, GitError) as exc:
        # Kept here, as a local run keeps a worktree git cannot finish (or a full disk stops),
        # and said where; the commits the branch has beyond the base (a rebase's) go back too.
        kept = f"{exc}; its worktree is kept on {socket.gethostname()} at {path}"
        error = kept if outcome.error is None else f"{outcome.error}; {kept}"  # a setup's failure first
        return replace(outcome, code=code, error=error, bundle=_bundle_of_commits(clone, attempt.branch, attempt.base))
    bundle = b""
    if changes.tip != attempt.base:
        bundle = _bundle(clone, attempt.branch, attempt.base)
    with _locked(clone):
        _GIT(clone, "git", "worktree", "remove", "--force", "--", str(path))
        _GIT(clone, "git", "branch", "--quiet", "--delete", "--force", "--", attempt.branch)
    return replace(outcome, code=code, bundle=bundle, tip=changes.tip)


def _exit_code(agent: SubprocessAgent) -> int:
    """Run the agent; its exit code, whatever it is (the coordinator judges it)."""
    try:
        return agent()
    except QueueError:
        if agent.exit_code is None:
            raise
        return agent.exit_code


def _clone(root: Path, attempt: RemoteAttempt, bundles: Sequence[bytes]) -> Path:
    """The worker's bare clone of the repository, holding the attempt's base: the bundles whose
    commit it lacks fetched into it (under its lock: several worker processes may share a root).

    The clone holds nothing of its own (every commit in it came in a bundle): one that git can no
    longer use (a crash mid-write, a disk error) and that no worktree uses is made anew, rather
    than fail every task of the repository on this worker."""
    clone = root / "repos" / f"{attempt.repo_id}.git"
    with _locked(clone):
        try:
            _fill(clone, attempt, bundles)
        except GitError:
            if _in_use(clone):
                raise
            broken = clone.with_name(f".{clone.name}-broken-{os.getpid()}-{threading.get_ident()}")
            clone.rename(broken)
            shutil.rmtree(broken, ignore_errors=True)
            _fill(clone, attempt, bundles)
    return clone


def _fill(clone: Path, attempt: RemoteAttempt, bundles: Sequence[bytes]) -> None:
    """Make the clone if missing, and fetch into it the bundles whose commit it lacks."""
    if not clone.is_dir():
        made = Path(tempfile.mkdtemp(prefix=f".{attempt.repo_id}-", dir=clone.parent))
        _GIT(made, "git", "init", "--quiet", "--bare")
        _GIT(made, "git", "config", "gc.auto", "0")  # the cache is pruned with its folder, never behind a fetch
        made.rename(clone)
    if _GIT(clone, "git", "rev-parse", "--git-dir").strip() != b".":  # git took a repository above it
        raise GitError(f"{clone} is not a git repository any more")
    for commit, data in zip(attempt.commits, bundles, strict=True):
        if _GIT.run(clone, "git", "cat-file", "-e", f"{commit}^{{commit}}", ok=(0, 1, 128))[0] == 0:
            continue
        with tempfile.NamedTemporaryFile(dir=clone, suffix=".bundle") as file:
            file.write(data)
            file.flush()
            _GIT(clone, "git", "fetch", "--quiet", "--no-tags", file.name, f"+refs/*:refs/pm-cache/{commit}/*")


def _in_use(clone: Path) -> bool:
    """Whether a worktree of ``clone`` is still there: another attempt's, or one kept."""
    for gitdir in (clone / "worktrees").glob("*/gitdir"):
        with contextlib.suppress(OSError):
            if Path(gitdir.read_text().strip()).exists():
                return True
    return False


@contextlib.contextmanager
def _locked(clone: Path) -> Iterator[None]:
    """The clone's lock: one git command at a time changes its refs or its list of worktrees."""
    fd = os.open(f"{clone}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _bundle(clone: Path, branch: str, base: str) -> bytes:
    """The commits of ``branch`` since ``base``, as a bundle of that branch."""
    with tempfile.TemporaryDirectory(dir=clone) as folder:
        out = Path(folder) / "task.bundle"
        _GIT(clone, "git", "bundle", "create", "--quiet", str(out), f"refs/heads/{branch}", f"^{base}")
        return out.read_bytes()


def _bundle_of_commits(clone: Path, branch: str, base: str) -> bytes:
    """:func:`_bundle`, if ``branch`` has commits that ``base`` lacks; else (or with the branch
    gone) b"": git refuses an empty bundle."""
    try:
        if not _GIT(clone, "git", "rev-list", "--max-count=1", f"refs/heads/{branch}", "--not", base).strip():
            return b""
        return _bundle(clone, branch, base)
    except (GitError, OSError):  # a full disk: what is kept here is said
        return b""


def _unpack(includes: bytes, worktree: Path) -> None:
    """Unpack the shipped ``.worktreeinclude`` files: regular files and relative symlinks that stay
    inside, never over what the worktree has; then drop those git would not ignore here."""
    if not includes:
        return
    copied: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(includes), mode="r:") as tar:
        for member in tar.getmembers():
            if not (member.isfile() or member.issym()) or os.path.lexists(worktree / member.name):
                continue
            tar.extract(member, worktree, filter="data")  # "data": nothing absolute, nothing escaping
            copied.append(member.name)
    if copied:
        drop_unignored(worktree, copied, [], _GIT)


class _Stop:
    """The step running now (setup or agent) and whether the attempt is to stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._stop_now: Callable[[], None] | None = None

    def run(self, stop: Callable[[], None], step: Callable[[], Any]) -> Any:
        with self._lock:
            self._stop_now = stop
            stopped = self._stopped
        if stopped:
            stop()  # the step sees it stopped before it starts
        try:
            return step()
        finally:
            with self._lock:
                self._stop_now = None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            stop = self._stop_now
        if stop is not None:
            stop()


class _Watcher(threading.Thread):
    """Streams the log to the coordinator, and stops the attempt when it is asked to (its stop
    event) or its coordinator let go of it (the task is no longer executing here)."""

    def __init__(self, attempt: RemoteAttempt, worker: Any, client: Any, log: Path, stop: _Stop) -> None:
        super().__init__(name=f"pm-watch-{attempt.token}", daemon=True)
        from distributed import Event
        from distributed.worker import thread_state

        self._attempt, self._worker, self._log, self._halt = attempt, worker, log, stop
        self._event = Event(attempt.stop_event, client=client)
        self._key = getattr(thread_state, "key", None)
        self._done = threading.Event()
        self._sent = 0
        self._send({"token": attempt.token, "worker": worker.address, "host": socket.gethostname()})

    def run(self) -> None:
        while not self._done.is_set():
            if self._asked_to_stop() or self._let_go():
                self._halt.stop()
                break
            self._stream()
        while not self._done.wait(TICK_S):  # stopped: what the agent says as it ends still streams
            self._stream()

    def end(self) -> None:
        """The attempt ended: the thread ends within TICK_S. Not waited for: the whole log goes
        with the outcome, and a chunk it sends meanwhile the coordinator drops."""
        self._done.set()

    def _asked_to_stop(self) -> bool:
        """Whether the stop event is set; waits up to TICK_S for it. A scheduler out of reach
        answers nothing: whether the worker goes on then decides (:meth:`_let_go`)."""
        try:
            return bool(self._event.wait(timeout=TICK_S))
        except Exception:  # noqa: BLE001 - the scheduler's connection lost: this thread must live on
            self._done.wait(TICK_S)  # not a busy loop while it is out of reach
            return False

    def _let_go(self) -> bool:
        """Whether the scheduler no longer wants this attempt (its coordinator is gone), or the
        worker closes (it lost the scheduler, whom the attempt's outcome would have gone to)."""
        try:
            closing = self._worker.status.name in ("stopping", "stopped", "closing", "closed", "failed")
            state = self._worker.state.tasks.get(self._key)
        except AttributeError:  # another distributed's inside: the stop event still works
            return False
        return closing or state is None or state.state not in ("executing", "long-running")

    def _stream(self) -> None:
        try:
            with open(self._log, "rb") as f:
                f.seek(self._sent)
                chunks = [f.read(CHUNK) for _ in range(CHUNKS_A_TICK)]
        except OSError:
            return
        for data in chunks:
            if data:
                self._send({"token": self._attempt.token, "offset": self._sent, "data": data})
                self._sent += len(data)

    def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # a lost event costs the live view, not the log
            self._worker.log_event(self._attempt.topic, message)
