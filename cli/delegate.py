"""``project-manager delegate-multiple``: validate a batch, run it, summarise it.

Everything is checked before anything runs (exit 2 on bad input). Tasks run through a
``TaskQueue`` bound to the repository, so two runs on one repository respect each other.
Ctrl-C or SIGTERM stops every agent's process group, releases every claim, prints the summary
and exits 130.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from queue_core import (
    AgentTask,
    FileOwnership,
    InvalidTaskError,
    Scheduler,
    StateError,
    SubprocessAgent,
    TaskQueue,
)
from queue_core.registry import STATE_DIR, new_run_id

from . import render
from .config import (
    PRESETS,
    AgentSpec,
    Batch,
    ConfigError,
    TaskSpec,
    load_batch,
    load_repo_agents,
    merge_agents,
    parse_task_string,
    validate_batch,
)
from .signals import Signals

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_MAX_PARALLEL = 4


def find_repo(explicit: Path | None) -> Path:
    """``--repo``, else the git top level of the current directory, else the current directory."""
    if explicit is not None:
        return explicit.resolve()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],  # noqa: S607 - git from PATH, fixed arguments
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return Path.cwd().resolve()
    return Path(top).resolve()


def run(
    task_texts: list[str],
    batch_file: Path | None,
    *,
    max_parallel: int | None,
    dry_run: bool,
    json_out: bool,
    repo: Path | None,
    live: bool = False,
) -> int:
    repo_root = find_repo(repo)
    try:
        batch = _load(task_texts, batch_file, repo_root)
        agents = batch.agents
        limit = max_parallel or batch.max_parallel or DEFAULT_MAX_PARALLEL
        ownership = FileOwnership({name: spec.owns for name, spec in agents.items() if spec.owns})
        run_id = new_run_id()
        log_dir = repo_root / STATE_DIR / "logs" / run_id
        runners = {t.id: _runner(t, agents, repo_root, log_dir, run_id) for t in batch.tasks}
        tasks = [_agent_task(t, runners[t.id]) for t in batch.tasks]
        # Dependencies, duplicates and cycles are checked here, before anything runs.
        plan = Scheduler(limit, ownership=ownership)
        plan.add_batch(tasks, 0.0)
    except (ConfigError, InvalidTaskError) as exc:
        render.error(str(exc))
        return EXIT_USAGE
    if dry_run:
        print(_plan(plan))
        return EXIT_OK
    return _execute(tasks, runners, limit, ownership, repo_root, run_id, json_out, live and not json_out)


def _load(task_texts: list[str], batch_file: Path | None, repo_root: Path) -> Batch:
    file_batch = load_batch(batch_file) if batch_file is not None else Batch(None, {}, ())
    string_tasks = tuple(parse_task_string(text, i) for i, text in enumerate(task_texts, start=1))
    tasks = (*file_batch.tasks, *string_tasks)
    if not tasks:
        raise ConfigError("arguments", None, None, 'no tasks: give "AGENT: DESCRIPTION @file" arguments or --file')
    agents = merge_agents(load_repo_agents(repo_root), file_batch.agents)
    batch = Batch(file_batch.max_parallel, agents, tasks)
    validate_batch(batch, agents)
    return batch


def _runner(
    task: TaskSpec, agents: dict[str, AgentSpec], repo_root: Path, log_dir: Path, run_id: str
) -> SubprocessAgent:
    command = agents[task.agent].command if task.agent in agents else PRESETS[task.agent]
    return SubprocessAgent.for_task(
        command,
        task_id=task.id,
        agent=task.agent,
        description=task.description,
        files=task.files,
        cwd=repo_root,
        log=log_dir / f"{task.id}.log",
        run_id=run_id,
    )


def _agent_task(task: TaskSpec, runner: SubprocessAgent) -> AgentTask:
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
    )


def _plan(sched: Scheduler) -> str:
    """What the batch already added to ``sched`` would start now, and why the rest would wait."""
    starts = [(e.id, e.agent, e.task.task_description) for e in sched.dispatch(0.0)]
    waits = [(e.id, e.agent, reason.describe()) for e, reason in sched.waiting()]
    return render.plan_text(starts, waits)


def _execute(
    tasks: list[AgentTask],
    runners: dict[str, SubprocessAgent],
    limit: int,
    ownership: FileOwnership,
    repo_root: Path,
    run_id: str,
    json_out: bool,
    live: bool,
) -> int:
    output: render.PlainEvents | render.LiveView
    try:
        # The output needs the queue and the queue its listener: the lambda looks the output up late.
        queue = TaskQueue(limit, ownership=ownership, repo=repo_root, run_id=run_id, on_event=lambda e: output.event(e))
    except StateError as exc:
        render.error(str(exc))
        return EXIT_USAGE
    output = render.LiveView(queue.get_status) if live else render.PlainEvents(sys.stderr if json_out else sys.stdout)
    for notice in queue.registry.notices if queue.registry else []:
        render.warning(notice)
    started = time.monotonic()
    with Signals() as signals, output:  # from here on, Ctrl-C and SIGTERM only write to a pipe
        queue.submit_tasks(tasks)
        interrupted = signals.wait_for(queue.join)
        if interrupted:
            output.note("interrupted: stopping every agent and releasing every claim")
            queue.shutdown(wait=False, cancel_pending=True)
            for task in tasks:
                queue.cancel(task.id)  # running agents: SIGTERM to their process group
        queue.shutdown(wait=True)
    wall = time.monotonic() - started
    descriptions = {t.id: t.task_description for t in tasks}
    outcomes = []
    for o in queue.outcomes():
        runner = runners[o["id"]]
        ran = runner.exit_code is not None
        outcomes.append(
            render.TaskOutcome(
                o["id"],
                o["agent"],
                descriptions[o["id"]],
                o["status"],
                runner.exit_code,
                o["duration_s"],
                str(runner.log) if ran else None,
                o["reason"] if o["status"] != "succeeded" else None,
            )
        )
    task_time = sum(o.duration_s or 0.0 for o in outcomes)
    if json_out:
        print(render.run_json(run_id, outcomes, wall, task_time))
    else:
        print(render.summary_text(outcomes, wall, task_time))
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if all(o.status == "succeeded" for o in outcomes) else EXIT_FAILED
