"""Worktree tasks on a Dask cluster (issue 16): the coordinator's half.

**The coordinator decides; workers execute.** Claims, agent instances and pools are decided by
this process's queue and registry exactly as for a local run; a task that starts is a
:class:`ClusterAgent`, a :class:`~queue_core.isolated.WorktreeAgent` whose attempt runs on a
worker (:mod:`queue_core.cluster_worker`) instead of in a local worktree. The queue's thread
submits it (``pure=False``, ``retries=0``: only our own ``retries`` re-run an agent) and waits on
its future; then, as for a local worktree task, the branch comes back (a bundle, fetched into
the repository as ``pm/<run>/<task>``), what it changed is checked against the task's write
claims *here*, and it is merged under the repository's merge lock. No shared file system, no
Dask lock: one coordinator holds every claim.

The repository travels by git: a bundle of the run's base commit is made once and scattered to
the cluster (each worker fetches it into its cached clone once); an attempt whose base moved
(tasks merged since) adds a small bundle of what they merged.

Routing: an agent's ``resources`` (``{claude: 1}``) are Dask worker resources, so its tasks go only
to workers started with ``--resources claude=1``. Faults: a worker that dies mid-attempt fails
the attempt (:class:`WorkerLostError`); a stop (cancel, timeout, Ctrl-C) sets the attempt's stop
event, which the worker's watcher turns into SIGTERM/SIGKILL of the agent's tree; the
coordinator's death releases its futures, which the watcher sees too.

Nothing here imports Dask until a cluster is asked for: it is the ``[dask]`` extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .changes import GitCalls
from .cluster_worker import RemoteAttempt, RemoteOutcome, run_attempt
from .errors import (
    ClusterError,
    InvalidArgumentError,
    RemoteAttemptError,
    WorkerLostError,
)
from .isolated import WorktreeAgent, WorktreePlan, WorktreeReport
from .mergeback import MergeResult
from .runner import append_to_log
from .statedir import locate
from .worktree_include import pack_included
from .worktree_pool import Lease
from .worktrees import Removal, Worktree, branch_changes, delete_merged_branch, new_branch

__all__ = [
    "EXTRA_HINT",
    "Cluster",
    "ClusterAgent",
    "ClusterError",
    "RemoteAttemptError",
    "WorkerLostError",
    "check_address",
    "make_bundle",
]

#: How to get what a cluster needs.
EXTRA_HINT = "pip install 'project-manager[dask]'"
#: How long a stopped attempt's worker has, past the agent's grace, to say it stopped.
STOP_MARGIN_S = 30.0
#: The Dask events topic every worker streams its attempts' logs on (one topic: the scheduler keeps
#: the last 1,000 events of each topic, for ever; one a run would pile up).
LOG_TOPIC = "project-manager-logs"
#: How long connecting to a scheduler may take (Dask retries a refused connection meanwhile).
CONNECT_TIMEOUT_S = 10.0
#: How long one request to the scheduler may wait for its answer: Dask's own wait for ever on a
#: scheduler that is frozen (SIGSTOP) or cut off, and a stop or a timeout must still end the attempt.
CALL_TIMEOUT_S = 10.0
#: The slowest a bundle may travel to the cluster before the scheduler counts as out of reach.
BUNDLE_BYTES_PER_S = 1 << 20
#: The most worker processes ``local:N`` starts: each is a Python process of its own.
LOCAL_MAX = 64

log = logging.getLogger("queue_core")


#: The schemes of a scheduler's address that Dask's own clients connect to.
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def check_address(text: str) -> str:
    """``text`` if it names a cluster: ``tcp://HOST:PORT`` (or another of SCHEMES) or ``local:N``
    (1 <= N <= LOCAL_MAX worker processes started here); raises InvalidArgumentError otherwise (pure)."""
    scheme, sep, rest = text.partition("://")
    if sep and scheme in SCHEMES and rest and not rest.startswith("-") and not any(c.isspace() for c in rest):
        return text
    count = text.removeprefix("local:")
    if count != text and count.isascii() and count.isdigit() and 1 <= int(count) <= LOCAL_MAX:
        return text
    raise InvalidArgumentError(
        f"expected a Dask scheduler's address, tcp://HOST:PORT ({', '.join(SCHEMES)}), or local:N "
        f"(1 to {LOCAL_MAX} local workers), got {text!r}"
    )


def _within(seconds: float, make: Callable[[], Any]) -> Any:
    """``make()``, or TimeoutError if it takes more than ``seconds`` (plus a second): Dask's
    connection waits for ever for the handshake of an endpoint that accepts and says nothing,
    whatever its timeout. The call left behind ends with the process (a daemon thread)."""
    done: list[tuple[bool, Any]] = []

    def call() -> None:
        try:
            done.append((True, make()))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            done.append((False, exc))

    thread = threading.Thread(target=call, name="pm-dask-connect", daemon=True)
    thread.start()
    thread.join(seconds + 1.0)
    if not done:
        raise TimeoutError(f"no answer in {seconds:g}s")
    ok, value = done[0]
    if not ok:
        raise value
    return value


def _ask(client: Any, operation: str, **kwargs: Any) -> Any:
    """The scheduler's answer to ``operation`` (``event_set``, ``identity``...); raises
    ClusterError if it gives none within CALL_TIMEOUT_S (see there)."""
    try:
        return client.sync(getattr(client.scheduler, operation), callback_timeout=CALL_TIMEOUT_S, **kwargs)
    # TimeoutError: asyncio's before Python 3.11. UnboundLocalError: distributed 2026.8's sync,
    # when its timeout meets the answer (see ClusterAgent._run_remote): no answer, as far as we know.
    except (OSError, TimeoutError, UnboundLocalError, _distributed().TimeoutError) as exc:
        raise ClusterError(f"the Dask scheduler did not answer ({operation}): {exc or type(exc).__name__}") from None


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(f"running on a Dask cluster needs Dask: {EXTRA_HINT} ({exc})") from None
    return distributed


@dataclass
class _Stream:
    """An attempt's log as it streams from its worker into the local log, in order; and the
    worker it runs on, once it says so (``worker``), or that one of the workers it had been given
    to left the cluster (``lost_on``: the scheduler told, see :meth:`Cluster._on_cluster_event`)."""

    log: Path
    key: str = ""
    worker: str | None = None
    received: int = 0
    closed: bool = False
    lost_on: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, message: Mapping[str, Any]) -> None:
        with self.lock:
            if self.closed:
                return
            if "worker" in message:
                self.worker = str(message["worker"])
            data = message.get("data")
            if isinstance(data, bytes) and message.get("offset") == self.received:
                append_to_log(self.log, data)
                self.received += len(data)

    def finish(self, whole: bytes) -> None:
        """Append what the stream has not brought of the attempt's ``whole`` log, and close it."""
        with self.lock:
            self.closed = True
            if len(whole) > self.received:
                append_to_log(self.log, whole[self.received :])


class Cluster:
    """A client of a Dask scheduler, for one run: where its worktree tasks go.

    :meth:`connect` makes one from ``tcp://HOST:PORT`` (a running scheduler) or ``local:N`` (a
    ``LocalCluster`` of N worker processes started here, each with every resource in
    ``resources``, for trying it out). :meth:`close` lets go of it (and stops a local one).
    """

    def __init__(self, client: Any, address: str, local: Any = None) -> None:
        self.client = client
        self.address = address
        self._local = local
        self._lock = threading.Lock()
        # (repo id, commit) -> its bundle, and the future of its copy on the cluster
        self._bases: dict[tuple[str, str], tuple[bytes, Any]] = {}
        self._subscribed = False
        self._streams: dict[str, _Stream] = {}

    @classmethod
    def connect(cls, address: str, *, resources: Mapping[str, float] | None = None) -> Cluster:
        """Raises ClusterError if Dask is missing, the scheduler cannot be reached, or Dask cannot
        use the address (``tls://`` without certificates in Dask's configuration, ``ucx://``
        without ucx)."""
        distributed = _distributed()
        local = None
        try:
            if address.startswith("local:"):
                workers = int(address.removeprefix("local:"))
                local = distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    # Its HTTP server (health checks) on a free port: on 8787, taken by another
                    # Dask's dashboard, Dask would warn on the terminal, over the run's output.
                    scheduler_kwargs={"dashboard_address": ":0"},
                    resources=dict(resources or {}) or None,
                    silence_logs=logging.ERROR,
                )
                client = distributed.Client(local)
            else:
                client = _within(CONNECT_TIMEOUT_S, lambda: distributed.Client(address, timeout=CONNECT_TIMEOUT_S))
        except Exception as exc:  # noqa: BLE001 - Dask's comms raise OSError, TimeoutError, ValueError, TypeError
            if local is not None:
                local.close()
            raise ClusterError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
        return cls(client, address, local)

    def workers(self) -> dict[str, dict[str, float]]:
        """Each worker's address and resources, now; raises ClusterError if the scheduler does not say."""
        info = _ask(self.client, "identity", n_workers=-1)["workers"]
        return {address: dict(worker.get("resources") or {}) for address, worker in info.items()}

    def check_resources(self, resources: Mapping[str, float]) -> None:
        """Raise RemoteAttemptError if no worker has ``resources``: the task would wait for ever."""
        if not resources:
            return
        workers = self.workers()
        if not any(all(have.get(k, 0) >= v for k, v in resources.items()) for have in workers.values()):
            wanted = ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))
            raise RemoteAttemptError(
                f"no worker of the cluster at {self.address} has the resources {wanted} "
                f"({len(workers)} worker(s)): start one with `dask worker ... --resources {wanted}`"
            )

    def bundles(self, repo: Path, repo_id: str, base: str, git: GitCalls) -> tuple[tuple[str, ...], list[Any]]:
        """What a worker fetches to hold ``base``: the commits and their bundles (the run's first
        base made once and scattered, again if the workers holding it died; bytes of a small one
        of what was merged since)."""
        with self._lock:
            first = next((commit for (rid, commit) in self._bases if rid == repo_id), None)
            if first is None or not _is_ancestor(repo, first, base, git):
                first = base
                self._bases[repo_id, base] = (make_bundle(repo, base, None, git), None)
            data, future = self._bases[repo_id, first]
            if future is None or future.status != "finished":  # lost with the workers that had it
                try:  # bounded: a stop cannot reach an attempt that waits for a frozen scheduler
                    future = self.client.scatter(data, hash=False, timeout=_travel_s(data))
                except (OSError, TimeoutError, _distributed().TimeoutError) as exc:
                    raise ClusterError(f"the run's base could not be sent to the cluster: {exc}") from None
                self._bases[repo_id, first] = (data, future)
            if first == base:
                return (base,), [future]
            return (first, base), [future, make_bundle(repo, base, first, git)]

    def stream(self, token: str, key: str, log_file: Path) -> _Stream:
        """Where the log of attempt ``token`` (the Dask task ``key``) goes as its worker streams it
        (on LOG_TOPIC); and what the scheduler says of the workers it was given to."""
        stream = _Stream(log_file, key)
        with self._lock:
            self._streams[token] = stream
            subscribe, self._subscribed = not self._subscribed, True
        if subscribe:
            self.client.subscribe_topic(LOG_TOPIC, self._on_event)
            self.client.subscribe_topic("all", self._on_cluster_event)
        return stream

    def forget(self, token: str) -> None:
        with self._lock:
            self._streams.pop(token, None)

    def _on_event(self, event: Any) -> None:
        _, message = event
        if not isinstance(message, Mapping):
            return
        with self._lock:
            stream = self._streams.get(str(message.get("token")))
        if stream is not None:
            stream.take(message)

    def _on_cluster_event(self, event: Any) -> None:
        """A worker left the cluster (died, or missed its heartbeats): the attempts it had been
        given learn it. Dask would give them to another worker, or, with none that can run them
        (its resources left with it), keep them waiting for ever."""
        _, message = event
        if not isinstance(message, Mapping) or message.get("action") != "remove-worker":
            return
        worker, keys = str(message.get("worker")), message.get("processing-tasks") or ()
        with self._lock:
            streams = [stream for stream in self._streams.values() if stream.key in keys]
        for stream in streams:
            with stream.lock:
                stream.lost_on = worker

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a lost connection says nothing new
            if self._subscribed:  # else the scheduler tells this client of its own leaving as
                self.client.unsubscribe_topic("all")  # it leaves, and logs that it could not
            self.client.close(timeout=10)
        if self._local is not None:
            with contextlib.suppress(Exception):  # as above
                self._local.close(timeout=10)


def _travel_s(data: bytes) -> float:
    """How long ``data`` may take to reach the cluster (see BUNDLE_BYTES_PER_S)."""
    return CALL_TIMEOUT_S + len(data) / BUNDLE_BYTES_PER_S


def repo_id(repo: Path) -> str:
    """A name for the repository, the same for every run of it from this machine: its worker clone's."""
    where = f"{socket.gethostname()}:{locate(repo.resolve())}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def _is_ancestor(repo: Path, old: str, new: str, git: GitCalls) -> bool:
    return git.run(repo, "git", "merge-base", "--is-ancestor", old, new, ok=(0, 1))[0] == 0


def make_bundle(repo: Path, commit: str, since: str | None, git: GitCalls) -> bytes:
    """A git bundle of ``commit`` (its whole history, or what is not in ``since``).

    A bundle names refs, never bare commits: the ref is made in a repository of its own for the
    while, one that borrows ``repo``'s objects (git's alternates), so that a run killed meanwhile
    leaves no ref of ours in the user's repository (``git log --all``, a ``git push --mirror``)."""
    objects = (repo / os.fsdecode(git(repo, "git", "rev-parse", "--git-path", "objects").strip())).resolve()
    with tempfile.TemporaryDirectory(prefix="pm-bundle-") as folder:
        lender = Path(folder) / "refs.git"
        git(Path(folder), "git", "init", "--quiet", "--bare", str(lender))
        (lender / "objects" / "info" / "alternates").write_text(f"{objects}\n")
        git(lender, "git", "update-ref", "refs/pm-transfer/base", commit)
        out = Path(folder) / "base.bundle"
        excluded = () if since is None else (f"^{since}",)
        git(lender, "git", "bundle", "create", "--quiet", str(out), "refs/pm-transfer/base", *excluded)
        return out.read_bytes()


@dataclass
class ClusterAgent(WorktreeAgent):
    """A WorktreeAgent whose attempts run on a worker of ``cluster`` (see the module); the merge
    back, and the check of its claims, stay here."""

    cluster: Cluster | None = None
    #: The Dask worker resources each attempt needs (an agent's ``resources:``).
    resources: Mapping[str, float] = field(default_factory=dict)
    _stream: _Stream | None = field(default=None, init=False, repr=False)

    @property
    def worker(self) -> str | None:
        """The address of the worker running (or that last ran) its attempt; None before."""
        stream = self._stream
        return None if stream is None else stream.worker

    def _attempt(self, plan: WorktreePlan) -> int:
        cluster = self.cluster
        if cluster is None:
            raise TypeError("ClusterAgent needs a cluster")
        self._check_stop()
        cluster.check_resources(self.resources)
        name = plan.task if self._attempts == 1 else f"{plan.task}.{self._attempts}"
        target = self._git(plan.repo, "git", "rev-parse", "--verify", "--end-of-options", f"refs/heads/{plan.target}")
        branch, base = new_branch(plan.repo, plan.run, name, target.decode().strip(), git=self._git)
        self.worktree = report = WorktreeReport(branch, Path())  # its path: on the worker, once known
        includes, _ = pack_included(plan.repo, git=self._git)
        rid = repo_id(plan.repo)
        commits, bundles = cluster.bundles(plan.repo, rid, base, self._git)
        token = uuid.uuid4().hex
        attempt = RemoteAttempt(
            token, rid, plan.run, name, plan.description, branch, base, commits, tuple(self.argv),
            tuple(self.env.items()), plan.setup, includes, self.grace_s, self.report_format, LOG_TOPIC,
        )  # fmt: skip
        key = f"pm-{attempt.run}-{attempt.name}-{attempt.token[:8]}"
        self._stream = stream = cluster.stream(token, key, self.log)
        try:
            outcome = self._run_remote(cluster, attempt, stream, bundles)
        except WorkerLostError as exc:
            self.note(str(exc))  # the worker cannot say what became of the attempt: its log here does
            raise
        finally:
            cluster.forget(token)
        self._stream.worker = outcome.worker
        self._stream.finish(zlib.decompress(outcome.log) if outcome.log else b"")
        report.path = Path(outcome.path)
        where = f"on worker {outcome.worker} ({outcome.host})"
        if outcome.lost:
            raise WorkerLostError(f"the worker it had started on died; {where} it was not run again")
        tree = Worktree(report.path, branch, base, name, plan.run, plan.repo)
        if outcome.bundle:
            _fetch(plan.repo, outcome.bundle, branch, self._git)
        if outcome.code is not None:  # the agent ran: its log is the task's (--json, the summary)
            self._exit_code = outcome.code
        if outcome.error is not None:
            kept = f"; its branch {branch} is kept" if outcome.bundle else ""
            raise RemoteAttemptError(f"{where}: {outcome.error}{kept}")
        code = self._judge(outcome.code if outcome.code is not None else -1, outcome.report)
        if not outcome.bundle:
            report.merge, report.reason = "none", "it changed nothing"
            return code
        self._check_and_merge(tree, plan, report, branch_changes(tree, git=self._git), None)
        return code

    def _run_remote(
        self, cluster: Cluster, attempt: RemoteAttempt, stream: _Stream, bundles: list[Any]
    ) -> RemoteOutcome:
        """Submit the attempt (the Dask task ``stream.key``) and wait for its outcome. A stop sets
        its stop event from here, not from :meth:`stop`, which must return at once even with the
        scheduler out of reach; the wait ends at the latest STOP_MARGIN_S past the agent's grace
        (the worker may be gone), or as soon as the worker it started on leaves the cluster."""
        distributed = _distributed()
        self._check_stop()  # what a bundle's making and sending took: a stop meanwhile sends nothing
        future = cluster.client.submit(
            run_attempt,
            attempt,
            bundles,
            key=stream.key,
            pure=False,
            retries=0,
            resources=dict(self.resources) or None,
        )
        # Not future.result(timeout=...): in distributed 2026.8, when its timeout meets the answer,
        # it raises UnboundLocalError (its sync returns a local it never set). The result is asked
        # for once the future is done, with no timeout, so it is there at once.
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        deadline: float | None = None
        try:
            while True:
                with self._stop_lock:
                    stopped = self._stopped
                if stopped and deadline is None:
                    deadline = time.monotonic() + self.grace_s + STOP_MARGIN_S
                    with contextlib.suppress(ClusterError):  # out of reach: the deadline ends the wait
                        _ask(cluster.client, "event_set", name=attempt.stop_event)
                try:
                    if done.wait(0.5):
                        outcome: RemoteOutcome = future.result()
                        return outcome
                except distributed.KilledWorker as exc:
                    raise WorkerLostError(f"its worker died while it ran: {exc}") from None
                except (distributed.CancelledError, OSError) as exc:  # its worker died with what it needed
                    raise WorkerLostError(f"its worker died, or the cluster lost the attempt ({exc!r})") from None
                except Exception as exc:  # raised on the worker: a bug, a version mismatch
                    raise RemoteAttemptError(f"its worker failed to run it: {type(exc).__name__}: {exc}") from exc
                if (gone := self._lost(cluster, attempt, stream)) is not None:
                    raise WorkerLostError(f"its worker died: {gone} left the cluster while it ran")
                if deadline is not None and time.monotonic() > deadline:
                    raise WorkerLostError(
                        f"its worker did not say it stopped in {self.grace_s + STOP_MARGIN_S:g}s: given up"
                    )
        finally:
            future.release()  # the scheduler forgets the attempt: it runs nowhere again
            _forget(cluster, attempt)

    def _lost(self, cluster: Cluster, attempt: RemoteAttempt, stream: _Stream) -> str | None:
        """The worker the attempt had started on, if it left the cluster: then the attempt is
        lost, wherever Dask would run it next (where it returns at once, see cluster_worker). One
        that had not started there (it waited for a thread) is left to Dask to run elsewhere, if
        a worker can (else RemoteAttemptError, as for a task that starts with no such worker)."""
        with stream.lock:
            gone, stream.lost_on = stream.lost_on, None
            said = stream.worker
        if gone is None:
            return None
        if said is None:  # it may have started and died before its first word: the scheduler knows
            try:
                started = bool(_ask(cluster.client, "event_is_set", name=attempt.started_event))
            except ClusterError:
                started = True  # when in doubt, lost: the task's retries decide, no agent runs unseen
        else:
            started = said == gone
        if not started:
            cluster.check_resources(self.resources)
            return None
        return gone

    def _tidy(
        self, tree: Worktree, merged: bool, kept_at: str | None, lease: Lease | None, plan: WorktreePlan
    ) -> Removal:
        """Its worktree went on the worker: only the branch here, if merged."""
        return delete_merged_branch(tree, kept_at=kept_at, checked_out=[], git=self._git) if merged else Removal(False)

    def _failure(self, result: MergeResult, tree: Worktree) -> str:
        return f"{result.reason}; its branch {tree.branch} is kept"


def _forget(cluster: Cluster, attempt: RemoteAttempt) -> None:
    """Clear the attempt's events, which the scheduler keeps while they are set, on a thread of
    their own: a scheduler out of reach must not hold up the attempt's end."""

    def clear() -> None:
        for name in (attempt.stop_event, attempt.started_event):
            with contextlib.suppress(Exception):  # a lost scheduler (a closed client) forgot them already
                _ask(cluster.client, "event_clear", name=name)

    threading.Thread(target=clear, name="pm-cluster-forget", daemon=True).start()


def _fetch(repo: Path, bundle: bytes, branch: str, git: GitCalls) -> None:
    """Fetch the task's branch from its worker's bundle into ``repo``, as the branch ``branch``."""
    with tempfile.TemporaryDirectory(prefix="pm-task-") as folder:
        path = Path(folder) / "task.bundle"
        path.write_bytes(bundle)
        git(repo, "git", "fetch", "--quiet", "--no-tags", "--", str(path), f"refs/heads/{branch}:refs/heads/{branch}")
