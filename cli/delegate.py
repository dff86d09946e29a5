"""``project-manager delegate-multiple``: validate a batch, run it, summarise it.

Everything is checked before anything runs (exit 2 on bad input: see cli.prepare). Tasks run through a
``TaskQueue`` bound to the repository, so two runs on one repository respect each other, and
every agent runs under this process's supervisor (``queue_core.supervisor``), which stops
every agent if this process dies. Ctrl-C, SIGTERM or SIGHUP (the terminal closed) stops every
agent's whole process tree, releases every claim, prints the summary and exits 128 + the
signal's number: 130, 143, 129.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Collection
from operator import attrgetter
from pathlib import Path

from queue_core import AgentTask, SubprocessAgent, TaskEvent, TaskOutcome, TaskQueue, TaskState
from queue_core.changes import Stray, StrayWrites
from queue_core.cluster import Cluster, ClusterAgent, ClusterError
from queue_core.errors import InvalidTaskError, QueueShutdownError, StateError, SupervisorError
from queue_core.failfast import FailFastMode
from queue_core.isolated import WorktreeAgent
from queue_core.machine import Limits
from queue_core.statedir import ensure_private_dir, state_dir

from . import github, junit, render, terminal
from .config import (
    ConfigError,
)
from .estimates import History
from .events import WAIT_SAMPLE_TASKS, RunEvents, check_copy, open_copy
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, exit_code_for
from .history import CommandError, refused
from .hooks import HookRunner, Hooks
from .notify import Notify
from .prepare import PlannedRun, log_dir, plan_run, warn_of_missing
from .repo import find_repo
from .resume import RESUME_ALONE, BatchSource, Carried, Options, journal_batch, previous
from .signals import Signals, noted

_SIGNAL_NAMES: dict[int, str] = {
    signal.SIGINT: "SIGINT (Ctrl-C)",
    signal.SIGTERM: "SIGTERM",
    signal.SIGHUP: "SIGHUP (hang-up)",
}


#: Once interrupted, how long output may wait for a reader: a CI log pipe that nobody reads any
#: more must not keep the command from ending.
INTERRUPTED_WRITE_S = 2.0


def stopped_early() -> int | None:
    """The exit code for a stop signal that came before anything ran (see cli.signals), if one did."""
    signum = noted()
    if signum is None:
        return None
    terminal.error(f"interrupted by {_SIGNAL_NAMES[signum]} before anything ran")
    return exit_code_for(signum)


def run(
    task_texts: list[str],
    batch_file: Path | None,
    *,
    max_parallel: int | str | None,
    dry_run: bool,
    json_out: bool,
    repo: Path | None,
    live: bool = False,
    notify: bool = False,
    isolation: str | None = None,
    limits: Limits | None = None,
    junit_path: Path | None = None,
    events: str | None = None,
    fail_fast: FailFastMode = False,
    resume: bool = False,
    cluster: str | None = None,
) -> int:
    """Run the batch; ``max_parallel`` a count, "auto" or None (the batch's, else 4); ``limits``
    the ``--limit-cpu``/``--limit-memory`` flags, over the batch's and the repository's;
    ``junit_path``: --junit's (see cli.junit); ``events`` where ``--events`` copies the journal
    (a path, or "-": stdout); ``fail_fast`` as TaskQueue takes it. ``resume``: run the batch of
    the run ``task_texts`` names (none: the latest) again, but its tasks that succeeded (cli.resume).
    ``cluster``: --cluster's address, over project-manager.yaml's (see queue_core.cluster)."""
    if events == "-" and json_out:
        terminal.error("--events - writes on stdout, where --json prints the run's object: give --events a file")
        return EXIT_USAGE
    if resume and (batch_file is not None or len(task_texts) > 1):
        terminal.error(RESUME_ALONE)
        return EXIT_USAGE
    repo_root = find_repo(repo)
    if (code := stopped_early()) is not None:
        return code
    given = Options(max_parallel, isolation, limits or Limits(), cluster)
    try:
        resumed = previous(repo_root, task_texts[0] if task_texts else None) if resume else None
    except CommandError as error:
        return refused(error)
    try:
        if junit_path is not None:
            junit.check_path(junit_path, state_dir(repo_root))
        if events is not None:
            check_copy(events, state_dir(repo_root))
        if resumed is None:
            source = BatchSource.read(task_texts, batch_file, repo_root, given)
        else:  # the flags given now win over the run's
            source = dataclasses.replace(
                resumed.source, repo=str(repo_root), options=given.over(resumed.source.options)
            )
        planned = plan_run(source, repo_root, dry_run=dry_run, resumed=resumed)
    except (ConfigError, InvalidTaskError) as exc:
        terminal.error(str(exc))
        return stopped_early() or EXIT_USAGE  # a signal while loading: 128 + N, even for a bad batch
    if (code := stopped_early()) is not None:
        return code
    if dry_run:
        terminal.out(planned.dry_run_text(json_out=json_out))
        warn_of_missing(planned.missing)
        return EXIT_OK
    planned.plan_worktrees()
    try:
        remote = _connect(planned)
    except ClusterError as exc:
        terminal.error(str(exc))
        return EXIT_USAGE
    with contextlib.nullcontext() if remote is None else contextlib.closing(remote):  # a local cluster stops
        try:  # before anything runs: a --events that cannot be written is bad input
            copy = None if events is None else open_copy(events)
        except OSError as exc:
            terminal.error(f"--events {events}: cannot write it ({exc.strerror or exc})")
            return EXIT_USAGE
        carried = planned.carried
        actions = github.Actions.of(os.environ)
        journal = RunEvents(
            planned.run_id,
            log_dir(repo_root, planned.run_id),
            copy,
            to_stdout=events == "-",
            batch=journal_batch(source, carried),
            resumes=None if carried is None else carried.resumes,
            defuse=_defuser(actions, json_text=True),
        )
        outputs = Outputs(
            json_out,
            live and not json_out and events != "-",
            Notify(planned.repo_config.on_finish, repo_root) if notify else None,
            junit_path,
            actions,
            planned.repo_config.hooks,
            journal,
        )
        return _execute(planned, outputs, fail_fast)


def _connect(planned: PlannedRun) -> Cluster | None:
    """The cluster the run's worktree tasks go to, connected and given to them; None if none does.
    Raises ClusterError if Dask is not installed or the scheduler cannot be reached."""
    remote = [runner for runner in planned.runners.values() if isinstance(runner, ClusterAgent)]
    if planned.cluster is None or not remote:
        return None
    wanted: dict[str, float] = {}  # a local worker has every resource, as much as a task needs
    for runner in remote:
        for name, units in runner.resources.items():
            wanted[name] = max(wanted.get(name, 0.0), units)
    _quiet_dask()
    cluster = Cluster.connect(planned.cluster, resources=wanted)
    for runner in remote:
        runner.cluster = cluster
    return cluster


def _quiet_dask() -> None:
    """Dask's own log lines (its traceback of a scheduler it cannot reach again, its warnings)
    would print on the terminal, over the live view: the run says what they mean in its words
    (the task failed: its worker died, or the cluster lost the attempt)."""
    try:
        import distributed  # noqa: F401 - configures its loggers' handlers as it is imported
    except ImportError:
        return  # Cluster.connect says what is missing
    for handler in logging.getLogger("distributed").handlers:
        handler.setLevel(logging.CRITICAL)


@dataclasses.dataclass(frozen=True)
class Outputs:
    """What a run writes besides its agents' work, and where: the flags that decide nothing."""

    json_out: bool
    live: bool
    notify: Notify | None
    junit_path: Path | None
    actions: github.Actions | None
    hooks: Hooks
    journal: RunEvents


def _execute(planned: PlannedRun, out: Outputs, fail_fast: FailFastMode) -> int:
    """Run the planned batch with its outputs: the queue, the event lines or the live view, the
    summary and reports; what comes after (hooks, ``on_finish``); the exit code."""
    tasks, runners, machine, history = planned.tasks, planned.runners, planned.machine, planned.history
    repo_root, run_id, carried = planned.repo_root, planned.run_id, planned.carried
    json_out, journal, actions, notify = out.json_out, out.journal, out.actions, out.notify
    output: terminal.PlainEvents | terminal.LiveView
    strays = StrayWrites(repo_root, planned.writes, run_id, ours=[journal.copy_path] if journal.copy_path else [])
    in_worktrees = {task_id for task_id, runner in runners.items() if isinstance(runner, WorktreeAgent)}
    try:
        # The output needs the queue and the queue its listeners: the lambdas look the output up late.
        queue = TaskQueue(
            "auto" if machine.auto else planned.limit,
            ownership=planned.ownership,
            repo=repo_root,
            run_id=run_id,
            on_event=lambda e: _event(output, strays, history, e, in_worktrees, journal, ends, actions),
            on_notice=lambda text: output.notice(text),
            stale_after=planned.stale_after,
            keep_runs=planned.keep_runs,
            instances=planned.instances,
            machine=machine.sampler,
            limits=machine.limits or None,
            pools=planned.batch.pools,
            fail_fast=fail_fast,
        )
        for directory in (queue.registry.dir / "logs", queue.registry.dir / "logs" / run_id) if queue.registry else ():
            ensure_private_dir(directory)  # agents' output is as private as the state
    except (StateError, SupervisorError) as exc:
        terminal.error(str(exc))
        return EXIT_USAGE
    journal.start(tasks)
    output = (
        _live_view(queue, runners, tasks, machine.limits)
        if out.live
        else terminal.PlainEvents(sys.stderr if json_out or journal.to_stdout else sys.stdout, _defuser(actions))
    )
    if carried is not None:
        output.note(carried.line())
    for notice in queue.registry.notices if queue.registry else []:
        terminal.warning(notice)
    rows = functools.partial(_outcomes, queue, tasks, strays)  # for a task's --json object, as it ends
    ends = HookRunner.of_run(out.hooks, repo_root, run_id, runners, rows, history.seconds(), output.notice)
    started = time.monotonic()
    # From here on, Ctrl-C, SIGTERM and SIGHUP only write to a pipe. The whole run is waited for
    # in a thread of its own: submitting, and ending it, may wait for the registry lock, and a
    # signal must still get through then.
    with Signals(patience=INTERRUPTED_WRITE_S) as signals, terminal.queue_log_to(output):
        output.__enter__()
        signum = signals.wait_for(functools.partial(_run_batch, queue, tasks, journal))
        if signum is not None:
            ends.stop(signum)  # first: no hook for the tasks the signal cancels
            queue.abort()  # first: the output may be stuck (a terminal held with Ctrl-S)
            strays.interrupt(INTERRUPTED_WRITE_S)  # a hung git status must not hold a task's start or end
            if isinstance(output, terminal.LiveView):
                output.freeze()  # the last frame whole, and what follows on lines of their own below it
            output.note(f"interrupted by {_SIGNAL_NAMES[signum]}: stopping every agent and releasing every claim")
            queue.shutdown(wait=True)
        # Every line, however slow the reader; once a signal came, for INTERRUPTED_WRITE_S in all.
        ends.warn_to(None)  # a hook's warning now would be lost in the closing output: held until it closed
        delivered = signals.finish(output.close)
        if delivered:  # else the output is stuck on a reader gone: stderr may be too
            ends.warn_to(terminal.warning if actions is None else lambda text: terminal.warning(github.defuse(text)))
        wall = time.monotonic() - started
        outcomes = _outcomes(queue, tasks, strays)
        interrupted = signum is not None
        # Before the summary, which may block on its reader.
        unwritten = _reports(out.junit_path, actions, run_id, outcomes, wall, signum)
        used = render.MachineUse(queue.auto_parallel(), machine.limits)
        summary_of = functools.partial(_summary, outcomes, wall, run_id, repo_root, history, used, carried=carried)
        summary = summary_of(json_out=json_out, interrupted=interrupted)
        write = terminal.write_err if journal.to_stdout else terminal.write_out  # --events - has stdout
        summary = summary if actions is None else github.defuse(summary, json_text=json_out)
        delivered = signals.finish(functools.partial(write, summary)) and delivered
        signum = signals.caught
        code = exit_code_for(signum) if signum is not None else EXIT_OK
        if signum is None and not all(row.outcome.status is TaskState.SUCCEEDED for row in outcomes):
            code = EXIT_FAILED
        if unwritten is not None:  # the report asked for is missing: said after the summary
            code = EXIT_FAILED if code == EXIT_OK else code
        ended = functools.partial(journal.end, [row.outcome for row in outcomes], code)
        delivered = signals.finish(ended) and delivered
    if unwritten is not None:  # after the summary, as its last word
        terminal.error(unwritten)
    if signum is not None:
        ends.stop(signum, wait=True)  # the hook that runs is killed before the exit (a signal in the summary too)
    if not delivered:  # a writer is stuck on a reader that went away, maybe holding stdout's lock
        terminal.exit_now(code)
    if (notify is not None or ends.hooks) and signum is None:  # ended by itself; after a signal, nobody waits
        # A stop signal now (the user gave up waiting for a hook or on_finish) stops it, and is the exit code.
        statuses = [row.outcome.status for row in outcomes]
        report = functools.partial(summary_of, json_out=True, interrupted=False)  # made only for a run_end hook
        with Signals(patience=INTERRUPTED_WRITE_S) as signals:
            if signals.caught is None:
                ends.run_end(report, code, statuses, signals.wait_for)
            if notify is not None and signals.caught is None:
                notify(run_id, code, statuses, signals.wait_for)
            if signals.caught is not None:  # maybe one that came after the summary, before this wait
                ends.stop(signals.caught, wait=True)
                code = exit_code_for(signals.caught)
    return code


def _defuser(actions: github.Actions | None, *, json_text: bool = False) -> Callable[[str], str] | None:
    """On GitHub Actions, what keeps an agent's words in a line of ours from being obeyed as a
    workflow command (see github.defuse); None elsewhere."""
    return None if actions is None else functools.partial(github.defuse, json_text=json_text)


def _reports(
    junit_path: Path | None,
    actions: github.Actions | None,
    run_id: str,
    outcomes: list[render.SummaryRow],
    wall_s: float,
    signum: int | None,
) -> str | None:
    """Write the --junit report and append the GitHub job summary, as far as asked for; what kept
    the report from being written, if anything (the job summary's trouble is a warning)."""
    interrupted = None if signum is None else _SIGNAL_NAMES[signum]
    if actions is not None and (trouble := actions.append_summary(run_id, outcomes, wall_s, interrupted)):
        terminal.warning(trouble)
    if junit_path is None:
        return None
    started_at = time.time() - wall_s
    return junit.write(junit_path, run_id, outcomes, started_at=started_at, wall_s=wall_s, interrupted=interrupted)


def _summary(
    outcomes: list[render.SummaryRow],
    wall_s: float,
    run_id: str,
    repo_root: Path,
    history: History,
    used: render.MachineUse,
    *,
    json_out: bool,
    interrupted: bool,
    carried: Carried | None = None,
) -> str:
    """The run's summary (--json: its object, each task with its estimate), the task time
    counting every attempt of each task; with what ``auto`` and the limits ``used`` came to,
    and the tasks ``carried`` from the run it resumes, in the batch's order."""
    task_time = sum(row.outcome.total_s or 0.0 for row in outcomes)
    rows, resumes = (outcomes, None) if carried is None else (carried.summary(outcomes), carried.resumes)
    if json_out:
        estimates = history.seconds()
        return render.run_json(
            run_id, rows, wall_s, task_time, interrupted=interrupted, estimates=estimates, machine=used, resumes=resumes
        )
    logs = str(log_dir(repo_root, run_id))
    return render.summary_text(
        rows, wall_s, task_time, width=terminal.width(), logs=logs, interrupted=interrupted, machine=used
    )


def _live_view(
    queue: TaskQueue, runners: dict[str, SubprocessAgent], tasks: list[AgentTask], limits: Limits
) -> terminal.LiveView:
    """The live view of the run: its status, the CPU and memory of its agents (the processes below
    this one, which is left out), the cost they reported so far (an attempt's, once it ends) and
    the ``limits`` set; its name columns as wide as the batch's longest names, from the first
    frame to the last."""
    from .panels import QUEUE_ROWS, Columns, run_view
    from .usage import UsageSampler

    usage = UsageSampler()
    columns = Columns().see((task.id, task.agent_type, None) for task in tasks)
    agents = runners.values()
    began = time.monotonic()
    return terminal.LiveView(
        lambda: run_view(
            queue.get_status(waiting_limit=QUEUE_ROWS),
            columns=columns,
            agents=usage.trees({"agents": os.getpid()}, with_roots=False)["agents"],
            machine=usage.machine(),
            cost=render.reported_cost(map(attrgetter("report"), agents)),
            elapsed_s=time.monotonic() - began,
            limits=limits,
        )
    )


def _event(
    output: terminal.PlainEvents | terminal.LiveView,
    strays: StrayWrites,
    history: History,
    event: TaskEvent,
    in_worktrees: set[str],
    journal: RunEvents,
    ends: HookRunner,
    actions: github.Actions | None = None,
) -> None:
    """Show ``event``; then, as a task starts (its agent is not spawned yet), note the working
    tree, and as it ends, say what changed outside the claims meanwhile (see queue_core.changes).
    Not of a worktree task: what changed in the checkout while it ran is others' doing (your
    edits, merges); what it changed is known exactly from its branch, and said in the summary.
    A task that succeeded adds its duration to the history at once; the journal has every event.
    On GitHub Actions, a task that ended shows its log in a group (not in the live view: GitHub
    has no terminal). Last, a task that ended has its task_end hooks queued, with what it changed
    known."""
    journal.event(event)
    output.event(event)
    found = strays.event(event)  # a worktree task's window too: its claims cover others' merges
    if found is not None and event.task_id not in in_worktrees:
        output.note(render.unclaimed_line(event, found))
    if actions is not None and isinstance(output, terminal.PlainEvents) and (text := actions.task_ended(event)):
        output.command(text)
    failed = history.event(event)
    if failed is not None:
        output.notice(failed)
    ends.task_ended(event)


def _outcomes(
    queue: TaskQueue, tasks: list[AgentTask], strays: StrayWrites, ids: Collection[str] | None = None
) -> list[render.SummaryRow]:
    """Every task of the batch (or of ``ids``), as it ended; one that never got to the queue was cancelled."""
    finished = {o.id: o for o in queue.outcomes(ids)}
    return [
        render.SummaryRow(
            finished.get(task.id) or _not_started(task),
            _unclaimed(task, strays),
            getattr(task.execute_fn, "worktree", None),
            worker=getattr(task.execute_fn, "worker", None),
        )
        for task in tasks
        if ids is None or task.id in ids
    ]


def _unclaimed(task: AgentTask, strays: StrayWrites) -> Stray | None:
    """What ``task`` changed outside its claims: a worktree task's from its branch, exactly (the
    checkout's changes while it ran are not its own); another's as the checkout showed them."""
    runner = task.execute_fn
    if isinstance(runner, WorktreeAgent):
        return Stray(() if runner.worktree is None else runner.worktree.unclaimed)
    return strays.of(task.id)


def _not_started(task: AgentTask) -> TaskOutcome:
    """The outcome of a task that a signal kept from the queue."""
    return TaskOutcome(task.id, task.agent_type, task.task_description, TaskState.CANCELLED, reason="not started")


def _run_batch(queue: TaskQueue, tasks: list[AgentTask], journal: RunEvents) -> None:
    """Submit the batch, wait for it (the journal watching its waits), and end the run."""
    try:
        queue.submit_tasks(tasks)
    except QueueShutdownError:  # a signal came first: nothing was queued
        return
    journal.watch(functools.partial(queue.get_status, WAIT_SAMPLE_TASKS))
    queue.join()
    queue.shutdown(wait=True)
