"""delegate-multiple's first half: from a batch's texts to a planned run, nothing started.

Everything is checked here, before anything runs (a bad batch is exit 2, nothing half-done):
the batch and project-manager.yaml as loaded (cli.config_files), instances, worktree ids and
root, pools, the machine's needs, dependencies, duplicates, cycles, and claims that resolve
(through a symlink) outside the repository, by planning the batch on a scheduler of its own.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import re
import shlex
from pathlib import Path
from typing import Any

from queue_core import AgentTask, FileOwnership, SubprocessAgent
from queue_core.changes import GitCalls
from queue_core.claims import Claim
from queue_core.cluster import ClusterAgent
from queue_core.errors import GitError, first_few
from queue_core.holds import STALE_AFTER_S
from queue_core.isolated import WorktreeAgent, WorktreePlan
from queue_core.mergeplan import MergeMode
from queue_core.ports import PortBlocks
from queue_core.realpaths import ClaimResolver
from queue_core.registry import new_run_id, state_dir
from queue_core.retention import DEFAULT_KEEP_RUNS
from queue_core.scheduler import Scheduler

from . import render, terminal
from .config import (
    AgentSpec,
    Batch,
    ConfigError,
    Isolation,
    RepoConfig,
    TaskSpec,
    check_instances,
    check_worktree_ids,
    find_executable,
    merge_agents,
    parse_task_string,
    task_isolation,
    validate_batch,
)
from .config_files import REPO_CONFIG, batch_of, repo_config_of
from .config_machine import RunMachine, merged_limits
from .config_pools import check_pools, merge_pools, task_takes
from .estimates import History
from .presets import PRESETS
from .resume import BatchSource, Carried, Resumption
from .worktree_checks import check_worktree_root

__all__ = ["DEFAULT_MAX_PARALLEL", "PlannedRun", "log_dir", "plan_run", "warn_of_missing"]

DEFAULT_MAX_PARALLEL = 4


@dataclasses.dataclass
class PlannedRun:
    """A batch loaded, checked and planned on a scheduler of its own (``plan``): what the run
    needs to go, and what a dry run shows; nothing started, no worktree made."""

    repo_root: Path
    run_id: str
    batch: Batch
    repo_config: RepoConfig
    #: Executables not found, each (executable, whose): a dry run plans without them.
    missing: list[tuple[str, str]]
    #: The tasks taken as succeeded from the run resumed (cli.resume); None: not a resume.
    carried: Carried | None
    tasks: list[AgentTask]
    runners: dict[str, SubprocessAgent]
    machine: RunMachine
    limit: int
    ownership: FileOwnership
    instances: dict[str, int]
    history: History
    plan: Scheduler
    isolations: dict[str, Isolation]
    #: The branch worktree tasks merge back into; None when no task runs in a worktree.
    target: str | None
    #: The Dask cluster the worktree tasks run on (--cluster, else cluster:); None: here.
    cluster: str | None = None

    @property
    def stale_after(self) -> float:
        return self.batch.stale_after if self.batch.stale_after is not None else STALE_AFTER_S

    @property
    def keep_runs(self) -> int:
        return self.batch.keep_runs or DEFAULT_KEEP_RUNS

    @functools.cached_property
    def writes(self) -> dict[str, tuple[Claim, ...]]:
        """Each task's write claims as held: owned paths for none, symlinks resolved."""
        return {t.id: self.plan.entry(t.id).writes for t in self.tasks}

    def dry_run_text(self, *, json_out: bool) -> str:
        """What a dry run prints: what would start now, and why the rest would wait."""
        text = _plan(self.plan, self.batch, self.runners, self.missing, self.history, json_out=json_out)
        return text if self.carried is None else self.carried.plan(text, json_out=json_out)

    def plan_worktrees(self) -> None:
        """Give each worktree task's runner its plan (see queue_core.isolated); once it is to run."""
        if self.target is not None:
            _plan_worktrees(
                self.batch, self.runners, self.isolations, self.writes, self.repo_root, self.run_id, self.target,
                self.repo_config,
            )  # fmt: skip


def plan_run(source: BatchSource, repo_root: Path, *, dry_run: bool, resumed: Resumption | None) -> PlannedRun:
    """The run of the batch ``source`` holds, planned; ``resumed``: the run it resumes, if any.
    Raises ConfigError or InvalidTaskError for a batch that cannot run."""
    options = source.options
    batch, repo_config, missing, carried = _load(source, repo_root, dry_run=dry_run, resumed=resumed)
    agents = batch.agents
    check_instances(batch, agents, options.isolation)
    check_worktree_ids(batch, agents, options.isolation)
    check_pools(batch, agents)
    isolations = {t.id: _isolation(t, batch, source) for t in batch.tasks}
    target = _target_branch(repo_root) if any(i.mode == "worktree" for i in isolations.values()) else None
    if target is not None:
        check_worktree_root(repo_root, repo_config.worktree_root)
    wanted = batch.max_parallel if options.max_parallel is None else options.max_parallel
    machine = RunMachine.of(
        batch,
        {name: spec.needs for name, spec in agents.items()},
        merged_limits(options.limits, batch.limits, repo_config.limits),
        auto=wanted == "auto",
    )
    limit = machine.start() or (wanted if isinstance(wanted, int) else DEFAULT_MAX_PARALLEL)
    ownership = FileOwnership({name: spec.owns for name, spec in agents.items() if spec.owns})
    run_id = new_run_id()
    logs = log_dir(repo_root, run_id)
    specs = {t.id: agents.get(t.agent) or AgentSpec.preset(t.agent) for t in batch.tasks}
    cluster = options.cluster or repo_config.cluster
    kinds = {t.id: _kind(isolations[t.id].mode, cluster) for t in batch.tasks}
    runners = {t.id: _runner(t, specs[t.id], repo_root, logs, run_id, kinds[t.id]) for t in batch.tasks}
    if cluster is not None:
        here = [t.id for t in batch.tasks if kinds[t.id] is not ClusterAgent]
        if here:
            terminal.warning(
                f"{len(here)} task(s) in the shared checkout run here, not on the cluster ({first_few(here)}): "
                "only worktree tasks run remotely"
            )
    history = History(repo_root)
    agent_tasks = [_agent_task(t, runners[t.id], specs[t.id], machine) for t in batch.tasks]
    tasks = history.estimate(agent_tasks, terminal.warning)
    instances = {name: spec.instances for name, spec in agents.items() if spec.instances > 1}
    resolve = ClaimResolver(repo_root).resolve
    plan = Scheduler(
        limit, ownership=ownership, resolve=resolve, instances=instances, machine=machine.rule(), pools=batch.pools
    )
    if machine.reading is not None:
        plan.observe(machine.reading, 0.0)  # the plan judges limits and needs on the machine now
    plan.add_batch(tasks, 0.0)  # dependencies, duplicates, cycles, claims outside the repository
    return PlannedRun(
        repo_root, run_id, batch, repo_config, missing, carried, tasks, runners, machine, limit, ownership, instances,
        history, plan, isolations, target, cluster,
    )  # fmt: skip


def _load(
    source: BatchSource, repo_root: Path, *, dry_run: bool, resumed: Resumption | None = None
) -> tuple[Batch, RepoConfig, list[tuple[str, str]], Carried | None]:
    """The batch, project-manager.yaml (read once: its agents, ``on_finish``, ``hooks``, ``setup``...),
    (for a dry run, which plans without them) the executables not installed, and, when ``resumed``,
    the tasks taken as succeeded from the run resumed, which the batch then leaves out.

    Claims typed on the command line count from the current directory (``source.base``), as
    git's paths do; a batch file's claims and agents' commands count from the repository root,
    where agents run.
    """
    file_batch = (
        batch_of(source.file_text, source.file_source()) if source.file_text is not None else Batch(None, {}, ())
    )
    base = source.base
    parsed = [
        parse_task_string(text, i, base=base, warn=terminal.warning) for i, text in enumerate(source.arguments, start=1)
    ]
    for i, task in enumerate(parsed, start=1):
        _warn_of_words(f"argument {i}", task.files, repo_root, base)
    string_tasks = _numbered(parsed, {t.id for t in file_batch.tasks})
    tasks = (*file_batch.tasks, *string_tasks)
    if not tasks:
        raise ConfigError("arguments", None, None, 'no tasks: give "AGENT: DESCRIPTION @file" arguments or --file')
    repo_config = repo_config_of(source.repo_config, source.repo_config_source(repo_root))
    for name, spec in repo_config.agents.items():
        if name in PRESETS:  # a repository's file must not pass its command off as the preset
            terminal.warning(f"{REPO_CONFIG} redefines the preset {name!r}: it runs {shlex.join(spec.command)}")
    agents = merge_agents(repo_config.agents, file_batch.agents)
    keep_runs = file_batch.keep_runs or repo_config.keep_runs  # the batch's, else the repository's
    pools = merge_pools(repo_config.pools, file_batch.pools)
    batch = dataclasses.replace(file_batch, agents=agents, tasks=tasks, keep_runs=keep_runs, pools=pools)
    batch, carried = (batch, None) if resumed is None else resumed.split(batch)  # a carried task's agent is not needed
    which = functools.partial(find_executable, repo_root=repo_root)
    cluster = source.options.cluster or repo_config.cluster
    remote = [t.id for t in batch.tasks if _kind(_isolation(t, batch, source).mode, cluster) is ClusterAgent]
    return batch, repo_config, validate_batch(batch, agents, which, missing_ok=dry_run, remote=remote), carried


def _isolation(task: TaskSpec, batch: Batch, source: BatchSource) -> Isolation:
    """Where the task runs: its own isolation:, its agent's, --isolation, the batch's."""
    return task_isolation(task, batch.agents.get(task.agent), batch, source.options.isolation)


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


def warn_of_missing(missing: list[tuple[str, str]]) -> None:
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


def log_dir(repo_root: Path, run_id: str) -> Path:
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


def _kind(isolation: str | None, cluster: str | None) -> type[SubprocessAgent]:
    """What runs a task: in the checkout, in a worktree here, or in one on a cluster's worker."""
    if isolation != "worktree":
        return SubprocessAgent
    return WorktreeAgent if cluster is None else ClusterAgent


def _runner(
    task: TaskSpec, spec: AgentSpec, repo_root: Path, log_dir: Path, run_id: str, kind: type[SubprocessAgent]
) -> SubprocessAgent:
    runner = kind.for_task(
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
    # Where `project-manager claim` and the claim hook, inside the task, find its registry; where
    # the hook notes what it blocked.
    runner.env = {**runner.env, "PM_STATE_DIR": str(state_dir(repo_root)), "PM_LOG": str(runner.log)}
    if isinstance(runner, ClusterAgent):
        runner.resources = dict(spec.resources)
    return runner


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
