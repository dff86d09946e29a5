"""``project-manager delegate-multiple``: validate a batch, run it, summarise it.

Everything is checked before anything runs (exit 2 on bad input). Tasks run through a
``TaskQueue`` bound to the repository, so two runs on one repository respect each other, and
every agent runs under this process's supervisor (``queue_core.supervisor``), which stops
every agent if this process dies. Ctrl-C, SIGTERM or SIGHUP (the terminal closed) stops every
agent's whole process tree, releases every claim, prints the summary and exits 128 + the
signal's number: 130, 143, 129.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Callable, Collection
from operator import attrgetter
from pathlib import Path
from typing import Any

from queue_core import AgentTask, FileOwnership, SubprocessAgent, TaskEvent, TaskOutcome, TaskQueue, TaskState
from queue_core.changes import GitCalls, Stray, StrayWrites
from queue_core.claims import Claim
from queue_core.errors import GitError, InvalidTaskError, QueueShutdownError, StateError, SupervisorError
from queue_core.failfast import FailFastMode
from queue_core.holds import STALE_AFTER_S
from queue_core.isolated import WorktreeAgent, WorktreePlan
from queue_core.machine import Limits
from queue_core.mergeplan import MergeMode
from queue_core.ports import PortBlocks
from queue_core.realpaths import ClaimResolver
from queue_core.registry import new_run_id, state_dir
from queue_core.retention import DEFAULT_KEEP_RUNS
from queue_core.scheduler import Scheduler
from queue_core.statedir import ensure_private_dir

from . import github, junit, render, terminal
from .config import (
    AgentSpec,
    Batch,
    ConfigError,
    Isolation,
    RepoConfig,
    TaskSpec,
    check_instances,
    check_worktree_ids,
    claim_base,
    find_executable,
    merge_agents,
    parse_task_string,
    task_isolation,
    validate_batch,
)
from .config_files import REPO_CONFIG, load_batch, load_repo_config
from .config_machine import RunMachine, merged_limits
from .config_pools import check_pools, merge_pools, task_takes
from .estimates import History
from .events import WAIT_SAMPLE_TASKS, RunEvents, check_copy, open_copy
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, exit_code_for
from .hooks import HookRunner, Hooks
from .notify import Notify
from .presets import PRESETS
from .repo import find_repo
from .signals import Signals, noted
from .worktree_checks import check_worktree_root

_SIGNAL_NAMES: dict[int, str] = {
    signal.SIGINT: "SIGINT (Ctrl-C)",
    signal.SIGTERM: "SIGTERM",
    signal.SIGHUP: "SIGHUP (hang-up)",
}


#: Once interrupted, how long output may wait for a reader: a CI log pipe that nobody reads any
#: more must not keep the command from ending.
INTERRUPTED_WRITE_S = 2.0


DEFAULT_MAX_PARALLEL = 4


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
) -> int:
    """Run the batch; ``max_parallel`` a count, "auto" or None (the batch's, else 4); ``limits``
    the ``--limit-cpu``/``--limit-memory`` flags, over the batch's and the repository's;
    ``junit_path``: --junit's (see cli.junit); ``events`` where ``--events`` copies the journal
    (a path, or "-": stdout); ``fail_fast`` as TaskQueue takes it."""
    if events == "-" and json_out:
        terminal.error("--events - writes on stdout, where --json prints the run's object: give --events a file")
        return EXIT_USAGE
    repo_root = find_repo(repo)
    if (code := stopped_early()) is not None:
        return code
    try:
        if junit_path is not None:
            junit.check_path(junit_path, state_dir(repo_root))
        if events is not None:
            check_copy(events, state_dir(repo_root))
        batch, repo_config, missing = _load(task_texts, batch_file, repo_root, dry_run=dry_run)
        agents = batch.agents
        check_instances(batch, agents, isolation)
        check_worktree_ids(batch, agents, isolation)
        check_pools(batch, agents)
        isolations = {t.id: task_isolation(t, agents.get(t.agent), batch, isolation) for t in batch.tasks}
        target = _target_branch(repo_root) if any(i.mode == "worktree" for i in isolations.values()) else None
        if target is not None:
            check_worktree_root(repo_root, repo_config.worktree_root)
        machine = RunMachine.of(
            batch,
            {name: spec.needs for name, spec in agents.items()},
            merged_limits(limits or Limits(), batch.limits, repo_config.limits),
            auto=(wanted := batch.max_parallel if max_parallel is None else max_parallel) == "auto",
        )
        limit = machine.start() or (wanted if isinstance(wanted, int) else DEFAULT_MAX_PARALLEL)
        ownership = FileOwnership({name: spec.owns for name, spec in agents.items() if spec.owns})
        run_id = new_run_id()
        log_dir = _log_dir(repo_root, run_id)
        specs = {t.id: agents.get(t.agent) or AgentSpec.preset(t.agent) for t in batch.tasks}
        runners = {
            t.id: _runner(t, specs[t.id], repo_root, log_dir, run_id, isolations[t.id].mode == "worktree")
            for t in batch.tasks
        }
        history = History(repo_root)
        tasks = history.estimate(
            [_agent_task(t, runners[t.id], specs[t.id], machine) for t in batch.tasks], terminal.warning
        )
        # Dependencies, duplicates, cycles and claims that resolve (through a symlink) outside
        # the repository are checked here, before anything runs.
        instances = {name: spec.instances for name, spec in agents.items() if spec.instances > 1}
        resolve = ClaimResolver(repo_root).resolve
        plan = Scheduler(
            limit, ownership=ownership, resolve=resolve, instances=instances, machine=machine.rule(), pools=batch.pools
        )
        if machine.reading is not None:
            plan.observe(machine.reading, 0.0)  # the plan judges limits and needs on the machine now
        plan.add_batch(tasks, 0.0)
    except (ConfigError, InvalidTaskError) as exc:
        terminal.error(str(exc))
        return stopped_early() or EXIT_USAGE  # a signal while loading: 128 + N, even for a bad batch
    if (code := stopped_early()) is not None:
        return code
    if dry_run:
        terminal.out(_plan(plan, batch, runners, missing, history, json_out=json_out))
        _warn_of_missing(missing)
        return EXIT_OK
    stale_after = batch.stale_after if batch.stale_after is not None else STALE_AFTER_S
    keep_runs = batch.keep_runs or DEFAULT_KEEP_RUNS
    writes = {t.id: plan.entry(t.id).writes for t in tasks}  # as held: owned paths for none, symlinks resolved
    if target is not None:
        _plan_worktrees(batch, runners, isolations, writes, repo_root, run_id, target, repo_config)
    notifier = Notify(repo_config.on_finish, repo_root) if notify else None
    try:  # before anything runs: a --events that cannot be written is bad input
        copy = None if events is None else open_copy(events)
    except OSError as exc:
        terminal.error(f"--events {events}: cannot write it ({exc.strerror or exc})")
        return EXIT_USAGE
    actions = github.Actions.of(os.environ)
    journal = RunEvents(run_id, log_dir, copy, to_stdout=events == "-", defuse=_defuser(actions, json_text=True))
    return _execute(
        tasks,
        runners,
        machine,
        limit,
        ownership,
        repo_root,
        run_id,
        json_out,
        live and not json_out and events != "-",
        stale_after,
        keep_runs,
        writes,
        history,
        notifier,
        instances,
        batch.pools,
        junit_path,
        actions,
        repo_config.hooks,
        journal=journal,
        fail_fast=fail_fast,
    )


def _load(
    task_texts: list[str], batch_file: Path | None, repo_root: Path, *, dry_run: bool
) -> tuple[Batch, RepoConfig, list[tuple[str, str]]]:
    """The batch, project-manager.yaml (read once: its agents, ``on_finish``, ``hooks``, ``setup``...),
    and (for a dry run, which plans without them) the executables not installed.

    Claims typed on the command line count from the current directory, as git's paths do;
    a batch file's claims and agents' commands count from the repository root, where agents run.
    """
    file_batch = load_batch(batch_file) if batch_file is not None else Batch(None, {}, ())
    base = claim_base(repo_root)
    parsed = [
        parse_task_string(text, i, base=base, warn=terminal.warning) for i, text in enumerate(task_texts, start=1)
    ]
    for i, task in enumerate(parsed, start=1):
        _warn_of_words(f"argument {i}", task.files, repo_root, base)
    string_tasks = _numbered(parsed, {t.id for t in file_batch.tasks})
    tasks = (*file_batch.tasks, *string_tasks)
    if not tasks:
        raise ConfigError("arguments", None, None, 'no tasks: give "AGENT: DESCRIPTION @file" arguments or --file')
    repo_config = load_repo_config(repo_root)
    for name, spec in repo_config.agents.items():
        if name in PRESETS:  # a repository's file must not pass its command off as the preset
            terminal.warning(f"{REPO_CONFIG} redefines the preset {name!r}: it runs {shlex.join(spec.command)}")
    agents = merge_agents(repo_config.agents, file_batch.agents)
    keep_runs = file_batch.keep_runs or repo_config.keep_runs  # the batch's, else the repository's
    pools = merge_pools(repo_config.pools, file_batch.pools)
    batch = dataclasses.replace(file_batch, agents=agents, tasks=tasks, keep_runs=keep_runs, pools=pools)
    which = functools.partial(find_executable, repo_root=repo_root)
    return batch, repo_config, validate_batch(batch, agents, which, missing_ok=dry_run)


def _warn_of_words(source: str, claims: tuple[str, ...], repo_root: Path, base: str | None) -> None:
    """Warn of a claim typed as ``@word`` (in the directory ``base``) that names nothing in the
    repository and looks like no path (no / and no .): "review the PR by @alice" claims alice,
    which is more likely a person."""
    for path in claims:
        typed = path.removeprefix(f"{base}/") if base else path
        if not re.search(r"[/.*?\[]", typed) and not os.path.lexists(repo_root / path):
            terminal.warning(
                f"{source}: @{typed} claims {path!r}, which is not in the repository; "
                f"if it is not a file, put it in quotes ('@{typed}') to keep it in the description"
            )


def _warn_of_missing(missing: list[tuple[str, str]]) -> None:
    """Name the executables a dry run did not find, each (executable, whose), where they were
    looked for (see find_executable): a bare name on PATH, one with a / in the repository."""
    for where, slash in (("on PATH", False), ("in the repository, from its root", True)):
        named = [f"{exe} ({whose})" for exe, whose in missing if ("/" in exe) == slash]
        if named:
            terminal.warning(f"not found {where}: " + ", ".join(named))


def _numbered(tasks: list[TaskSpec], taken: set[str]) -> tuple[TaskSpec, ...]:
    """The string tasks, numbered t1, t2, ... in order, skipping the ids the batch file took."""
    numbers = (f"t{n}" for n in itertools.count(1))
    return tuple(dataclasses.replace(task, id=next(i for i in numbers if i not in taken)) for task in tasks)


def _log_dir(repo_root: Path, run_id: str) -> Path:
    """Where the run's agents write their logs, one ``<task>.log`` each."""
    return state_dir(repo_root) / "logs" / run_id


def _target_branch(repo_root: Path) -> str:
    """The branch checked out now, which worktree tasks merge back into; ConfigError if none."""
    try:
        head = GitCalls()(repo_root, "git", "symbolic-ref", "--quiet", "--short", "HEAD")
    except GitError:
        raise ConfigError(
            "isolation",
            None,
            None,
            "worktree tasks merge back into the branch checked out, and HEAD is on none "
            "(a detached HEAD, or not a git repository): check out a branch, or use isolation: shared",
        ) from None
    return os.fsdecode(head).strip()


def _plan_worktrees(
    batch: Batch,
    runners: dict[str, SubprocessAgent],
    isolations: dict[str, Isolation],
    writes: dict[str, tuple[Claim, ...]],
    repo_root: Path,
    run_id: str,
    target: str,
    repo_config: RepoConfig,
) -> None:
    """Give each worktree task's runner its plan (see queue_core.isolated)."""
    ports = PortBlocks(lock_dir=state_dir(repo_root) / "ports")
    root = None if repo_config.worktree_root is None else Path(repo_config.worktree_root)
    for task in batch.tasks:
        runner, chosen = runners[task.id], isolations[task.id]
        if isinstance(runner, WorktreeAgent):
            runner.plan = WorktreePlan(
                repo_root,
                run_id,
                task.id,
                task.description,
                target,
                writes[task.id],
                MergeMode(chosen.merge),
                chosen.on_violation == "fail",
                root,
                repo_config.setup,
                ports,
                pool=repo_config.worktree_pool,
            )


def _runner(
    task: TaskSpec, spec: AgentSpec, repo_root: Path, log_dir: Path, run_id: str, in_worktree: bool = False
) -> SubprocessAgent:
    kind = WorktreeAgent if in_worktree else SubprocessAgent
    return kind.for_task(
        spec.command,
        task_id=task.id,
        agent=task.agent,
        description=task.description,
        files=task.files,
        cwd=repo_root,
        log=log_dir / f"{task.id}.log",
        run_id=run_id,
        grace_s=spec.stop_grace_s,
        reads=task.reads,
        prompt=spec.prompt,
        report_format=spec.report,
    )


def _agent_task(task: TaskSpec, runner: SubprocessAgent, spec: AgentSpec, machine: RunMachine) -> AgentTask:
    backoff: dict[str, Any] = dict(task.backoff)  # floats, for keywords of several types
    needs = machine.needs[task.id]
    pools = {take.name: take.units for take in task_takes(task, spec)}
    return AgentTask(
        task.agent,
        task.description,
        list(task.files),
        runner,
        task.priority,
        id=task.id,
        reads=list(task.reads),
        depends_on=list(task.depends_on),
        timeout=task.timeout_s,
        retries=task.retries,
        rate_limit_backoff=spec.rate_limit_backoff_s,
        rate_limit_max_wait=spec.rate_limit_max_wait_s,
        memory=needs.memory,
        cpus=needs.cpus,
        pools=pools,
        **backoff,
    )


def _plan(
    sched: Scheduler,
    batch: Batch,
    runners: dict[str, SubprocessAgent],
    missing: list[tuple[str, str]],
    history: History,
    *,
    json_out: bool,
) -> str:
    """What the batch already added to ``sched`` would start now, and why the rest would wait;
    each task with the exact argv it would run, and its estimate if the repository has history."""
    starts = [(e.id, e.agent, e.task.task_description) for e in sched.dispatch(0.0)]
    waits = [(e.id, e.agent, reason.describe()) for e, reason in sched.waiting()]
    argvs = {task_id: runner.argv for task_id, runner in runners.items()}
    if not json_out:
        return render.plan_text(starts, waits, argvs, history.found)
    tasks = [(t.id, t.agent, argvs[t.id], t.files, t.reads, t.depends_on) for t in batch.tasks]
    return render.plan_json(tasks, starts, waits, sorted({exe for exe, _ in missing}), history.seconds())


def _execute(
    tasks: list[AgentTask],
    runners: dict[str, SubprocessAgent],
    machine: RunMachine,
    limit: int,
    ownership: FileOwnership,
    repo_root: Path,
    run_id: str,
    json_out: bool,
    live: bool,
    stale_after: float,
    keep_runs: int,
    writes: dict[str, tuple[Claim, ...]],
    history: History,
    notify: Notify | None = None,
    instances: dict[str, int] | None = None,
    pools: dict[str, int] | None = None,
    junit_path: Path | None = None,
    actions: github.Actions | None = None,
    hooks: Hooks | None = None,
    *,
    journal: RunEvents,
    fail_fast: FailFastMode = False,
) -> int:
    output: terminal.PlainEvents | terminal.LiveView
    strays = StrayWrites(repo_root, writes, run_id, ours=[journal.copy_path] if journal.copy_path else [])
    in_worktrees = {task_id for task_id, runner in runners.items() if isinstance(runner, WorktreeAgent)}
    try:
        # The output needs the queue and the queue its listeners: the lambdas look the output up late.
        queue = TaskQueue(
            "auto" if machine.auto else limit,
            ownership=ownership,
            repo=repo_root,
            run_id=run_id,
            on_event=lambda e: _event(output, strays, history, e, in_worktrees, journal, ends, actions),
            on_notice=lambda text: output.notice(text),
            stale_after=stale_after,
            keep_runs=keep_runs,
            instances=instances,
            machine=machine.sampler,
            limits=machine.limits or None,
            pools=pools,
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
        if live
        else terminal.PlainEvents(sys.stderr if json_out or journal.to_stdout else sys.stdout, _defuser(actions))
    )
    for notice in queue.registry.notices if queue.registry else []:
        terminal.warning(notice)
    rows = functools.partial(_outcomes, queue, tasks, strays)  # for a task's --json object, as it ends
    ends = HookRunner.of_run(hooks or Hooks(), repo_root, run_id, runners, rows, history.seconds(), output.notice)
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
        unwritten = _reports(junit_path, actions, run_id, outcomes, wall, signum)  # before the summary, which may block
        used = render.MachineUse(queue.auto_parallel(), machine.limits)
        summary = _summary(outcomes, wall, run_id, repo_root, history, used, json_out=json_out, interrupted=interrupted)
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
        report = functools.partial(  # the --json report, made only for a run_end hook
            _summary, outcomes, wall, run_id, repo_root, history, used, json_out=True, interrupted=False
        )
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
) -> str:
    """The run's summary (--json: its object, each task with its estimate), the task time
    counting every attempt of each task; with what ``auto`` and the limits ``used`` came to."""
    task_time = sum(row.outcome.total_s or 0.0 for row in outcomes)
    if json_out:
        return render.run_json(
            run_id, outcomes, wall_s, task_time, interrupted=interrupted, estimates=history.seconds(), machine=used
        )
    logs = str(_log_dir(repo_root, run_id))
    return render.summary_text(
        outcomes, wall_s, task_time, width=terminal.width(), logs=logs, interrupted=interrupted, machine=used
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
