"""WorktreeAgent: an agent command run in a git worktree of its own, then merged back (issue 13).

Each attempt of a task (see :mod:`queue_core.worktrees`):

1. a worktree on a new branch ``pm/<run>/<task>`` (``<task>.2`` for a second attempt...) at the
   tip of the branch the run started on, so that a task sees what the tasks merged before it
   (those it depends on) did; the ignored files ``.worktreeinclude`` names copied in; ports
   ``PM_PORT_BASE`` .. +9 that no other running task has; the setup commands run in it;
2. the agent, exactly as :class:`~queue_core.runner.SubprocessAgent` runs it, in the worktree;
3. what it left uncommitted committed on its branch; the paths the branch changed, exactly, checked
   against the task's write claims, those it claimed as it ran included (queue_core.taskclaims):
   with ``on_violation="fail"`` a task that changed others is not merged
   (:class:`~queue_core.errors.MergeBackError`, "rejected");
4. under the repository's merge lock, the branch merged into the run's branch without switching
   it or touching the user's changes (:mod:`queue_core.mergeback`): merged, the worktree and the
   branch go; a conflict or a merge the user's work blocks fails the task, and keeps both.

The claims are held from the worktree's creation to the end of the merge, so the merge writes
only files no other running task may touch; they are what keeps merges clean.

With a pool (``pool`` > 0, ``worktree_pool:``), step 1 takes a worktree a merged task gave back,
reset to the base (:mod:`queue_core.worktree_pool`), its ignored files kept and the
``.worktreeinclude`` copies made anew; step 4 gives it back instead of removing it. A task that
fails keeps it, as it would keep a worktree of its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .changes import GitCalls
from .claims import Claim
from .errors import MergeBackError, MergeLockError, QueueError, first_few
from .mergeback import MergeResult, MergeStatus, merge_back
from .mergelock import MergeLock, merge_lock
from .mergeplan import MergeMode
from .ports import PortBlocks
from .records import MergeOutcome
from .runner import SubprocessAgent
from .statedir import state_dir
from .taskclaims import claimed_by
from .taskrefs import keep, refs_of
from .worktree_pool import Lease, take
from .worktree_setup import Setup
from .worktrees import (
    GIT,
    Changes,
    Removal,
    Worktree,
    check_claims,
    commit_message,
    copy_included,
    create,
    finish,
    remove,
)

__all__ = ["WorktreeAgent", "WorktreePlan", "WorktreeReport"]


@dataclass(frozen=True)
class WorktreePlan:
    """What a task in worktree isolation needs beyond its command: where, and how it comes back.

    ``target`` is the branch the run started on (merged into, never checked out); ``writes``
    the task's write claims (what it may change); ``root`` where worktrees go (None: the state
    directory); ``setup`` the commands run in each new worktree, each an argv; ``ports`` the
    run's port blocks (None: no ``PM_PORT_BASE``); ``pool`` how many idle worktrees are kept
    for reuse (0: none, a new worktree per attempt).
    """

    repo: Path
    run: str
    task: str
    description: str
    target: str
    writes: tuple[Claim, ...]
    merge: MergeMode = MergeMode.MERGE
    fail_on_violation: bool = True
    root: Path | None = None
    setup: tuple[tuple[str, ...], ...] = ()
    ports: PortBlocks | None = None
    pool: int = 0


@dataclass
class WorktreeReport:
    """What the last attempt's worktree came to: for ``--json`` and the summary.

    ``merge`` is "merged", "conflict", "blocked", "none" or "rejected" (changed paths outside
    the claims, not merged), None while the attempt has not got that far.
    """

    branch: str
    path: Path
    changed: tuple[str, ...] = ()
    insertions: int = 0  # lines, of the changed files (see worktrees.Changes)
    deletions: int = 0
    unclaimed: tuple[str, ...] = ()
    merge: str | None = None
    reason: str | None = None

    def outcome(self) -> MergeOutcome:
        """As the run's history keeps it: the count of the changed paths, not their list."""
        return MergeOutcome(self.branch, self.merge, len(self.changed), self.insertions, self.deletions, self.reason)


@dataclass
class WorktreeAgent(SubprocessAgent):
    """A SubprocessAgent whose every attempt runs in a worktree of its own (see the module)."""

    isolation: ClassVar[str] = "worktree"
    plan: WorktreePlan | None = None
    #: The last attempt's worktree and what came of it; None before the first.
    worktree: WorktreeReport | None = field(default=None, init=False)
    _attempts: int = field(default=0, init=False, repr=False)
    _setup: Setup | None = field(default=None, init=False, repr=False)
    _lock_wait: MergeLock | None = field(default=None, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)  # this attempt was stopped
    # _stop_lock guards _setup, _lock_wait and _stopped: what a stop from another thread must reach.
    _stop_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _git: GitCalls = field(default=GIT, init=False, repr=False)

    def __call__(self) -> int:
        plan = self.plan
        if plan is None:
            raise TypeError("WorktreeAgent needs a plan")
        done = self.worktree
        if done is not None and done.merge in ("merged", "none"):
            # A stop (a timeout) that came as the last attempt merged asked for a retry: its
            # work is in the branch already, and doing it again would merge it twice.
            self.note(f"attempt {self._attempts}'s work was merged ({done.reason}): not done again")
            return 0
        self._attempts += 1
        try:
            return self._attempt(plan)
        finally:
            with self._stop_lock:
                self._stopped = False  # a stop was for this attempt: the next one starts afresh
            with self._lock:  # SubprocessAgent's: spent too if the stop came outside the agent's run
                self._stopping = False

    def merge_outcome(self) -> MergeOutcome | None:
        """What came of its last attempt's branch; None before it had one."""
        report = self.worktree
        return None if report is None else report.outcome()

    def _attempt(self, plan: WorktreePlan) -> int:
        self._check_stop()  # a stop that came first: no worktree, no setup
        name = plan.task if self._attempts == 1 else f"{plan.task}.{self._attempts}"
        out = self._git(plan.repo, "git", "rev-parse", "--verify", "--end-of-options", f"refs/heads/{plan.target}")
        base = out.decode().strip()
        if plan.pool < 1:
            return self._in_worktree(create(plan.repo, plan.run, name, base, root=plan.root, git=self._git), plan, None)
        lease = take(plan.repo, plan.run, name, base, root=plan.root, git=self._git)
        try:
            return self._in_worktree(lease.worktree, plan, lease)
        finally:
            lease.release()  # given back already, or kept as it is: a failed or stopped task's

    def _in_worktree(self, tree: Worktree, plan: WorktreePlan, lease: Lease | None) -> int:
        """Steps 1 to 4 in the worktree ``tree`` (``lease``: the pool's, else a worktree of its own)."""
        name = tree.task
        self.worktree = report = WorktreeReport(tree.branch, tree.path)
        # .env and the like, before setup needs them; over the last task's copies in a reused one.
        copy_included(plan.repo, tree.path, git=self._git, replace=lease is not None and lease.reused)
        block = None if plan.ports is None else plan.ports.acquire(name)
        try:
            self.cwd = tree.path
            self.env = {**self.env, **tree.env(block)}
            self._run_setup(tree, plan)
            code = super().__call__()  # its failure keeps the worktree: the work stays to be seen
        finally:
            if block is not None and plan.ports is not None:
                plan.ports.release(block)
        self._check_and_merge(tree, plan, report, finish(tree, plan.description, git=self._git), lease)
        return code

    def _check_and_merge(
        self, tree: Worktree, plan: WorktreePlan, report: WorktreeReport, changes: Changes, lease: Lease | None
    ) -> None:
        """Step 3's check of the branch's ``changes`` against the task's write claims, then step 4."""
        report.changed = tuple(changes.paths)
        report.insertions, report.deletions = changes.insertions, changes.deletions
        added = claimed_by(state_dir(plan.repo), plan.run, plan.task)[0]  # what it claimed as it ran
        report.unclaimed = tuple(check_claims(changes.paths, (*plan.writes, *map(Claim.parse, added))))
        if report.unclaimed and plan.fail_on_violation:
            report.merge = "rejected"
            report.reason = (
                f"it changed {first_few(report.unclaimed)}, outside its claims; its branch {tree.branch} is kept"
            )
            raise MergeBackError("rejected", report.reason, report.unclaimed)
        self._merge(tree, plan, report, changes.tip, lease)

    def _run_setup(self, tree: Worktree, plan: WorktreePlan) -> None:
        """The setup commands, in the worktree; a stop meanwhile stops them."""
        if not plan.setup:
            return
        setup = Setup(tree.path, plan.setup, self.log, self.env, grace_s=self.grace_s, record=self.record_group_in)
        with self._stop_lock:
            stopped = self._stopped
            self._setup = None if stopped else setup
        if stopped:  # while the worktree was made: kept like any stopped attempt's, with nothing in it
            raise self._stopped_before_start()
        try:
            setup.run()
        finally:
            with self._stop_lock:
                self._setup = None

    def _merge(self, tree: Worktree, plan: WorktreePlan, report: WorktreeReport, tip: str, lease: Lease | None) -> None:
        """Merge the branch back, one task of the repository at a time; tidy up or fail."""
        lock = merge_lock(plan.repo, on_wait=self._merge_waits)
        with self._stop_lock:  # a stop (the task's timeout, a cancel) ends the wait for another's merge
            self._lock_wait = lock
            if self._stopped:
                lock.interrupt()
        try:
            lock.acquire()
        except MergeLockError as exc:
            with self._stop_lock:
                stopped = self._stopped
            if stopped:  # the task's timeout or a cancel: the queue says which
                raise
            report.merge, report.reason = "blocked", self._failure(MergeResult(MergeStatus.BLOCKED, str(exc)), tree)
            self.note(f"not merged: {report.reason}")
            raise MergeBackError("blocked", report.reason) from exc
        finally:
            with self._stop_lock:
                self._lock_wait = None
        try:
            result = merge_back(
                plan.repo,
                target_branch=plan.target,
                base=tree.base,
                branch=tree.branch,
                mode=plan.merge,
                message=_merge_message(plan, tree.branch),
                claims=plan.writes,
                git=self._git,
            )
        finally:
            lock.release()
        report.merge = result.status.value
        report.reason = result.reason
        if result.status in (MergeStatus.MERGED, MergeStatus.NONE):
            # The work is in: a worktree git will not remove is kept and said, never a failure
            # (a retry would do the task's work a second time on top of the first).
            merged = result.status is MergeStatus.MERGED
            kept_at = self._keep_for_review(tree, tip, report) if merged else None
            try:
                removal = self._tidy(tree, merged, kept_at, lease, plan)
            except QueueError as exc:
                report.reason = f"{report.reason}; its worktree {tree.path} is kept: {exc}"
            else:
                if removal.kept_because is not None:
                    report.reason = f"{report.reason}; its branch {tree.branch} is kept: {removal.kept_because}"
        else:
            raise MergeBackError(result.status.value, self._failure(result, tree), result.conflicts or result.blocking)

    def _tidy(
        self, tree: Worktree, merged: bool, kept_at: str | None, lease: Lease | None, plan: WorktreePlan
    ) -> Removal:
        """Once its work is in: remove the worktree (or give it back to the pool), and the branch
        if ``merged``."""
        if lease is None:
            return remove(tree, delete_branch=merged, kept_at=kept_at, git=self._git)
        return lease.give_back(delete_branch=merged, keep=plan.pool, kept_at=kept_at)

    def _failure(self, result: MergeResult, tree: Worktree) -> str:
        """Why the merge failed, and what is kept to see."""
        return f"{result.reason}; its branch {tree.branch} and worktree {tree.path} are kept"

    def _keep_for_review(self, tree: Worktree, tip: str, report: WorktreeReport) -> str | None:
        """The merged branch's hidden refs (:mod:`queue_core.taskrefs`), for ``diff`` once the branch
        is gone: its tip ref, or None if they could not be written (then git's own check decides
        whether the branch goes, as before; the merge stands either way)."""
        try:
            keep(tree.repo, tree.run, tree.task, base=tree.base, tip=tip, git=self._git)
        except QueueError as exc:
            report.reason = f"{report.reason}; project-manager diff cannot show it once its branch goes: {exc}"
            return None
        return refs_of(tree.run, tree.task)[1]

    def _merge_waits(self, holder: str | None) -> None:
        """Say in the log who holds the merge lock the task waits for (None: it is taken)."""
        if holder is not None:
            self.note(f"the merge waits: {holder}")

    def _check_stop(self) -> None:
        with self._stop_lock:
            stopped = self._stopped
        if stopped:
            raise self._stopped_before_start()

    def stop(self) -> None:
        """Stop the attempt wherever it is: its setup, its wait for the merge lock, its agent.

        Every flag is set before anything is stopped: the attempt, once stopped, clears them as
        it ends; a flag set after that would stop the retry that follows it instead.
        """
        with self._stop_lock:
            self._stopped = True
            setup, lock = self._setup, self._lock_wait
        process = self._stop_requested()
        if setup is not None:
            setup.stop()
        if lock is not None:
            lock.interrupt()
        if process is not None:
            process.stop()


def _merge_message(plan: WorktreePlan, branch: str) -> str:
    """The merge or squash commit's message: a squash is the task's one commit (``<task>:
    <description>``); a merge commit says what it merged, as git's own do, the task below."""
    message = commit_message(plan.task, plan.description)
    return f"Merge branch '{branch}'\n\n{message}" if plan.merge is MergeMode.MERGE else message
