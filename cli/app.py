"""The ``project-manager`` Typer app: thin commands over queue_core.

Heavy imports live inside the commands, so ``project-manager --help`` starts fast.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from typer.core import TyperCommand

app = typer.Typer(
    name="project-manager",
    help="Run many AI-agent tasks on one repository in parallel, as many at once as is safe.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion
    # Click's plain help: Typer 0.29's Rich help shows a type in angle brackets beside every
    # parameter, whatever its metavar (`--dry-run <bool>`), and costs ~80 ms of imports. Plain
    # help also wraps each docstring paragraph to the terminal, not where the source broke it.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

RepoOption = Annotated[
    Path | None,
    typer.Option(
        "--repo",
        metavar="DIR",
        help=(
            "Repository root, an existing directory (default: the git top level of the current "
            "directory; outside a git repository it must be given; inside one, it is its top level)."
        ),
    ),
]


class IsolationMode(str, enum.Enum):
    """--isolation's values (see cli.config.ISOLATIONS)."""

    SHARED = "shared"
    WORKTREE = "worktree"


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _at_least_one(value: int | None) -> int | None:
    """A count of 1 or more, refused in words: Typer's ``min=1`` shows ``[x>=1]`` in --help."""
    if value is not None and value < 1:
        raise typer.BadParameter(f"must be at least 1, got {value}")
    return value


def _not_negative(value: float | None) -> float | None:
    if value is not None and value < 0:
        raise typer.BadParameter(f"must be 0 or more, got {value}")
    return value


def _max_parallel(value: str | None) -> int | str | None:
    """--max-parallel: a count of 1 or more, or auto (see cli.config_machine)."""
    if value is None:
        return None
    from .config_machine import parse_max_parallel

    try:
        return parse_max_parallel(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _percent(value: str | None) -> float | None:
    """--limit-cpu, --limit-memory: a percentage, 85 or 85%."""
    if value is None:
        return None
    from .config_machine import parse_percent

    try:
        return parse_percent(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _cluster(value: str | None) -> str | None:
    """--cluster: a Dask scheduler's address or local:N (see queue_core.cluster.check_address)."""
    if value is None:
        return None
    from queue_core.cluster import check_address
    from queue_core.errors import InvalidArgumentError

    try:
        return check_address(value)
    except InvalidArgumentError as exc:
        raise typer.BadParameter(str(exc)) from None


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version  # 40 ms of imports: only when asked

        from .terminal import out

        out(f"project-manager {version('project-manager')}")
        raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run many AI-agent tasks on one repository in parallel, as many at once as is safe."""


class _DelegateCommand(TyperCommand):
    """delegate-multiple's command line: ``--fail-fast=cancel`` is read as the hidden flag
    --fail-fast-cancel. An option that is a flag and may take a value is none Typer supports,
    and ``--fail-fast cancel`` (a space) would take a task argument for the value; with ``=``,
    a word is the option's own. So is ``--resume=RUN``: --resume, and RUN as the argument
    that names the run, put after ``--`` so that it never reads as an option."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # a click Context: Typer has no public name for it
        ends = args.index("--") if "--" in args else len(args)  # after --, every word is a task
        runs = []
        for i, arg in enumerate(args[:ends]):
            if arg.startswith("--fail-fast="):
                if arg != "--fail-fast=cancel":
                    raise typer.BadParameter(
                        f"--fail-fast takes no value but cancel (--fail-fast=cancel), got {arg!r}", ctx=ctx
                    )
                args[i] = "--fail-fast-cancel"
            elif arg.startswith("--resume="):
                args[i] = "--resume"
                runs.append(arg.removeprefix("--resume="))
        if runs:
            args = [*args, *([] if "--" in args else ["--"]), *runs]
        return super().parse_args(ctx, args)


@app.command(
    "delegate-multiple", cls=_DelegateCommand, short_help="Run tasks in parallel where agents and files allow."
)
def delegate_multiple(
    # Hidden from the list of arguments, where Typer 0.29 adds `<list[str]>`: the docstring says it.
    tasks: Annotated[list[str] | None, typer.Argument(metavar="TASK", hidden=True)] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", metavar="FILE", help="A YAML batch of tasks and agents.")
    ] = None,
    max_parallel: Annotated[
        str | None,
        typer.Option(
            "--max-parallel",
            "-j",
            metavar="N",
            callback=_max_parallel,
            help=(
                "Most tasks at once (default: the batch's max_parallel, a count or auto, else 4); auto: as many "
                "as the cores and the available memory allow (2 GiB a task), then one fewer or more every 5 s "
                "as the machine is busy or free."
            ),
        ),
    ] = None,
    limit_cpu: Annotated[
        str | None,
        typer.Option(
            "--limit-cpu",
            metavar="PERCENT",
            callback=_percent,
            help="Start no new task while the machine's CPU is above this (85 or 85%), over the batch's limits:.",
            show_default=False,
        ),
    ] = None,
    limit_memory: Annotated[
        str | None,
        typer.Option(
            "--limit-memory",
            metavar="PERCENT",
            callback=_percent,
            help="Start no new task while the machine's memory in use is above this, over the batch's limits:.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the plan; run nothing.")] = False,
    json_out: JsonOption = False,
    no_live: Annotated[bool, typer.Option("--no-live", help="One plain line per event, even on a terminal.")] = False,
    notify: Annotated[
        bool,
        typer.Option(
            "--notify",
            help="When the run ends by itself, ring the terminal's bell and run on_finish of project-manager.yaml.",
        ),
    ] = False,
    events: Annotated[
        str | None,
        typer.Option(
            "--events",
            metavar="PATH",
            help=(
                "Also write the run's journal (one JSON object a line: started, retrying, waiting, each task's end, "
                "the run's end) to PATH as it happens; - for stdout (not with --json), where the event lines for "
                "people and the summary then leave for stderr."
            ),
            show_default=False,
        ),
    ] = None,
    fail_fast: Annotated[
        bool,
        typer.Option(
            "--fail-fast",
            help="After the first task that fails, times out or stays rate-limited, start nothing new; running "
            "tasks finish (with --fail-fast=cancel, they are stopped, as Ctrl-C stops them), every task not "
            "started ends cancelled; exit 1.",
        ),
    ] = False,
    fail_fast_cancel: Annotated[bool, typer.Option("--fail-fast-cancel", hidden=True)] = False,  # =cancel
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help=(
                "Run the batch of an earlier run again, all but its tasks that succeeded (their dependants start "
                "at once); the one argument, or --resume=RUN, names the run (its id or a unique part; default: "
                "the latest run not running). No TASK or --file with it; flags given now win over the run's."
            ),
        ),
    ] = False,
    isolation: Annotated[
        IsolationMode | None,
        typer.Option(
            "--isolation",
            metavar="MODE",
            help=(
                "shared: every task in the repository's checkout; worktree: each in a git worktree of its own, "
                "merged back when it succeeds. Over the batch's isolation:, under an agent's or a task's."
            ),
            show_default=False,
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="ADDRESS",
            callback=_cluster,
            help=(
                "Run the worktree tasks on a Dask cluster: tcp://HOST:8786 (a running scheduler), or local:N (N "
                "worker processes started here, to try it); over cluster: in project-manager.yaml. Needs "
                "pip install 'project-manager[dask]'."
            ),
            show_default=False,
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(
            "--junit",
            metavar="PATH",
            help=(
                "Also write the run as a JUnit XML report to PATH, each task a test case with the end of its log "
                "(also for a run that failed or was interrupted); not written: exit 1."
            ),
        ),
    ] = None,
    repo: RepoOption = None,
) -> None:
    """Run tasks in parallel wherever their agents and files allow.

    Each TASK is "AGENT: DESCRIPTION @path @path"; --file adds those of a YAML batch. Only the
    trailing @path words are claims, relative to the current directory; quote a path with
    spaces: @"a b.md". AGENT is defined in the batch or in project-manager.yaml, or is a preset
    such as claude, codex or shell, which needs no definition. Quota pools (pools: {anthropic:
    2} in the batch or project-manager.yaml, taken by an agent's or a task's pools:
    [anthropic]) cap the tasks that share an API quota, across every run on the repository.

    Every agent runs under a supervisor process that stops its whole process tree when the
    task ends, times out or is cancelled, and when this command dies. An agent that hits a rate
    limit pauses (its rate_limit_backoff, or the reset it names) and its task runs again, no
    retry spent, until its rate_limit_max_wait. Exit codes: 0 all succeeded; 1 a task failed,
    timed out, stayed rate-limited or was skipped, or the --junit report could not be written;
    2 bad input (nothing ran); 128 + N ended by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP):
    agents stopped, claims released.

    On GitHub Actions (GITHUB_ACTIONS=true), each task that ends shows its log in a collapsed
    group, workflow commands in it ignored, with the event lines (on stderr with --json; none
    in the live view); a failure is an error annotation; the run's table is appended to the
    job summary, $GITHUB_STEP_SUMMARY.

    Claims steer the scheduler and the agents' prompts but are no sandbox: in a git repository,
    what changed outside them while a task ran is reported when it ends (a warning line, a "!"
    in the summary, "unclaimed_writes" in --json), naming the tasks that ran beside it.

    Every run writes its journal, one JSON object a line as each event happens (the run's start,
    each attempt's start and end, each task's wait and end, the run's end), to events.jsonl
    beside its task logs; --events copies it elsewhere.

    delegate-multiple --resume [RUN] runs a run's batch again, as the run's journal keeps it (its
    batch file's and project-manager.yaml's texts, its TASK texts, its --max-parallel,
    --isolation and limits), all but the tasks that succeeded in it or that it carried from a
    run it resumed: a new run, even after the first was killed. A run that still runs is
    refused, as is a run without a journal (exit 2).

    Each task that succeeds records its duration in the repository's state directory. Later
    runs estimate each task from it (the median of its last 5 runs, else its agent's), start
    the longest chain of work first among tasks of equal priority, show the time left, and give
    "estimate_s" in --json and the dry run; clean --history forgets the durations.

    No new task starts while the machine is above a limit (--limit-cpu, --limit-memory, or
    limits: in the batch or the repository's config), judged on the mean of the last three
    readings, a second apart; once above, until 5 points below. A task's memory: and cpus: (or
    its agent's) must be free beyond what the running tasks declared. With no task of the run
    running, one may always start.

    With --cluster (or cluster: in project-manager.yaml), tasks in worktree isolation run on the
    workers of a Dask cluster, each in a worktree of the worker's own clone (the repository
    travels as git bundles), and come back as a branch that is checked against the task's
    claims and merged here, as a local worktree task's is; the claims, instances and pools are
    decided here. An agent's resources: ({claude: 1}) send its tasks only to workers started
    with them (dask worker --resources claude=1). Tasks in the shared checkout run here.

    hooks: in project-manager.yaml runs commands as each task ends (task_end) and once the run
    ended by itself (run_end), each an argv at the repository root, with the task's or the
    run's --json object on stdin and PM_STATUS, PM_EXIT_CODE and the PM_* variables in its
    environment, for at most 10 s (timeout: under hooks:); a failing hook is a warning, never
    the run's exit code.
    """
    import sys

    from queue_core.machine import Limits

    from . import delegate

    live = sys.stdout.isatty() and not no_live
    code = delegate.run(
        tasks or [],
        file,
        max_parallel=max_parallel,
        dry_run=dry_run,
        json_out=json_out,
        repo=repo,
        live=live,
        notify=notify,
        isolation=None if isolation is None else isolation.value,
        limits=Limits(cast("float | None", limit_cpu), cast("float | None", limit_memory)),  # by the callbacks
        junit_path=junit,
        events=events,
        fail_fast="cancel" if fail_fast_cancel else fail_fast,
        resume=resume,
        cluster=cluster,
    )
    raise typer.Exit(code)


@app.command(short_help="Show the running agents, held files and queued tasks.")
def status(
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Refresh every second until Ctrl-C (exit 130); with --json, one object a line."
        ),
    ] = False,
    json_out: JsonOption = False,
    no_live: Annotated[
        bool,
        typer.Option(
            "--no-live", help="Plain text even on a terminal; with --watch, a block each second, a blank line between."
        ),
    ] = False,
    repo: RepoOption = None,
) -> None:
    """Show the agents running, the files they hold and the tasks queued, across every run.

    On a terminal, as panels laid out for its width (with --watch, redrawn in place), each run
    with its progress, elapsed time and time left (from estimates, when its tasks have them),
    and the CPU and memory of the machine and of each run's agents, in percent of all the
    machine's cores; elsewhere, or with --no-live, as plain text.
    Then the task worktrees that dead runs left, and how many idle worktrees worktree_pool
    keeps for reuse (clean removes the first, clean --pool the others). Exit codes: 0 shown; 2
    bad input (no such --repo, not a git repository); with --watch, 128 + N ended by signal N
    (130 Ctrl-C), 129 the terminal went away, 141 the reader went away.
    """
    import sys

    from . import status as status_command

    live = sys.stdout.isatty() and not no_live
    raise typer.Exit(status_command.run(repo, json_out=json_out, watch=watch, live=live))


@app.command(short_help="Drop the claims of a run you know is dead.")
def release(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", hidden=True)],  # hidden: see delegate-multiple
    repo: RepoOption = None,
) -> None:
    """Drop the claims of a run you know is dead (its host crashed, its container is gone).

    RUN_ID is the run as `status` names it.

    Refused, with the reason, while the run's process, its supervisor or one of its agents
    lives, or while a run of another host or container has a fresh heartbeat. Exit codes: 0
    released (or it held nothing); 1 refused; 2 no run id, or the registry cannot be used.
    """
    from queue_core.errors import RunAliveError, StateError
    from queue_core.registry import Registry

    from . import terminal
    from .exits import EXIT_FAILED, EXIT_USAGE
    from .repo import find_repo

    try:
        registry = Registry(find_repo(repo))
    except StateError as exc:
        terminal.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    try:
        count = registry.release_run(run_id)
    except ValueError as exc:
        terminal.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except RunAliveError as exc:
        terminal.error(f"not released: {exc.reason}")
        raise typer.Exit(EXIT_FAILED) from None
    except StateError as exc:
        terminal.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    finally:
        registry.finish_run(None)
    terminal.out(f"released {count} claim(s) of run {run_id}")


@app.command(short_help="Inside a task: claim more files as the agent works.")
def claim(
    # Hidden from the list of arguments, where Typer 0.29 adds `<list[str]>`: the docstring says it.
    paths: Annotated[list[str], typer.Argument(metavar="PATH", hidden=True)],
    read: Annotated[
        bool, typer.Option("--read", help="Claim them to read (shared with other readers), not to write.")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            callback=_not_negative,
            help="How long to wait while another task holds one (default: 0).",
            show_default=False,
        ),
    ] = 0.0,
) -> None:
    """Add PATHs (files or folders, relative to the current folder) to the claims of the task this
    runs inside, for an agent that finds it must touch more than its task named (a test, an
    import, a changelog).

    Run by an agent that project-manager started: it finds its run and task in its environment
    (PM_RUN_ID, PM_TASK_ID), and is refused anywhere else. All PATHs or none: free ones are granted
    at once, shown as added in the live view and `status`, and released with the task's other
    claims. While another task holds one, it waits up to --wait seconds. Waiting that would close
    a cycle (this task holds what the holder waits for, across runs too) is refused at once.

    Exit codes: 0 claimed (or held already); 2 not inside a task, a path outside the repository
    or beyond what the task's agent owns; 3 held by another task (named) when the wait is over, or
    the registry unavailable; 4 waiting would deadlock (the tasks on the cycle named).
    """
    from . import claim as claim_command

    raise typer.Exit(claim_command.say(claim_command.claim_answer(paths, read=read, wait=wait)))


@app.command(short_help="Inside a task: may it write PATH?")
def check(
    path: Annotated[str, typer.Argument(metavar="PATH", hidden=True)],  # hidden: see claim
) -> None:
    """Say whether the task this runs inside may write PATH (a file or folder, relative to the
    current folder) now: whether its claims, those it added included, cover it; if not, who
    holds it, or that it is free to claim.

    Exit codes: 0 it may; 1 it may not (the reason printed); 2 not inside a task, or PATH outside
    the repository.
    """
    from . import claim as claim_command

    raise typer.Exit(claim_command.say(claim_command.check_answer(path)))


@app.command(short_help="Inside a task: claim, check, who_holds as MCP tools.")
def mcp() -> None:
    """Serve claim, check and who_holds as the tools of an MCP server on stdin and stdout, for an
    agent that speaks the Model Context Protocol: it starts this inside its task, and the tools
    answer for that task as the commands of the same name do (a claim not granted is a tool error
    saying why).

    Needs the [mcp] extra: pip install 'project-manager[mcp]'. Exit codes: 0 the client went; 2
    not inside a task, or the extra missing.
    """
    from . import mcp_server

    raise typer.Exit(mcp_server.run())


@app.command(short_help="Prune old runs' history and logs.")
def clean(
    keep_runs: Annotated[
        int | None,
        typer.Option(
            "--keep-runs",
            metavar="N",
            callback=_at_least_one,
            help="Finished runs whose history and logs stay (default: keep_runs in project-manager.yaml, else 100).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also remove dead runs' task worktrees and branches that hold commits or changes."
        ),
    ] = False,
    pool: Annotated[
        bool,
        typer.Option("--pool", help="Also remove the idle worktrees kept for reuse (worktree_pool), never one in use."),
    ] = False,
    history: Annotated[
        bool,
        typer.Option(
            "--history", help="Also forget the task durations that estimates are made from (durations.jsonl)."
        ),
    ] = False,
    repo: RepoOption = None,
) -> None:
    """Prune the state directory: old runs' history and logs, dead runs' records, stray files.

    Keeps the newest finished runs and never touches a live one (its process, supervisor or
    an agent still runs, or another host's run beats); says what it removed, and what it kept
    and why. Each run does this when it ends. Then the task worktrees and pm/ branches that dead
    runs left (a run killed with SIGKILL): removed if they hold no work; kept, and named, if
    they hold commits on no other branch or uncommitted changes, unless --force. The idle
    worktrees that worktree_pool keeps for the next tasks stay, unless --pool. The durations
    of past tasks, which estimates are made from, stay unless --history. Exit codes: 0 done; 1
    the registry cannot be used, or something could not be removed; 2 bad input.
    """
    from . import clean as clean_command

    code = clean_command.run(repo, keep_runs=keep_runs, dry_run=dry_run, force=force, pool=pool, history=history)
    raise typer.Exit(code)


@app.command(short_help="Show what a worktree task changed, merged or not.")
def diff(
    task: Annotated[str, typer.Argument(metavar="TASK", hidden=True)],
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run",
            metavar="RUN",
            help="The run whose task to show (default: the newest that left it).",
            show_default=False,
        ),
    ] = None,
    stat: Annotated[bool, typer.Option("--stat", help="Only which files changed, and how much.")] = False,
    repo: RepoOption = None,
) -> None:
    """Show what TASK, a task in worktree isolation, changed: merged or not.

    A worktree task works on the branch pm/RUN/TASK (TASK.2 for a second attempt). Once merged,
    its branch is deleted and the hidden refs refs/pm/RUN/TASK/base and tip keep it: shown as
    git diff BASE TIP, exactly the task's changes. One that was rejected, in conflict, blocked
    or run with merge: none keeps its branch: shown from where it and HEAD part (git diff
    HEAD...BRANCH). The newest attempt in the newest run that left something, unless --run
    names a run; the first line says which. A run's refs go with its history and logs
    (keep_runs, clean). Exit codes: 0 shown; 1 nothing of the task is left (a task in the
    shared checkout has no branch), or git failed; 2 bad input.
    """
    from . import diff as diff_command

    raise typer.Exit(diff_command.run(repo, task, run_id=run_id, stat=stat))


@app.command(short_help="List recent runs: start, wall time, outcomes, cost.")
def history(
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", callback=_at_least_one, help="Show the newest N runs.")
    ] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list, one object per run.")] = False,
    repo: RepoOption = None,
) -> None:
    """List the repository's recent runs, newest first: id, start (local time), wall time, cost
    (the sum of what its agents reported), its tasks by outcome, and its state where it is
    not finished.

    A run is finished (it left its history record), running, killed (it died, SIGKILL or a
    crash, without one: told from its journal or record) or unfinished (only its logs are
    left). A file of the state directory that cannot be read is named in a warning and passed
    over. Exit codes: 0 shown; 2 bad input.
    """
    from . import history as history_command

    raise typer.Exit(history_command.history(repo, limit=limit, json_out=json_out))


@app.command(short_help="Show a run's tasks: outcome, time, error, cost, merge.")
def show(
    run_id: Annotated[str | None, typer.Argument(metavar="RUN", hidden=True)] = None,  # hidden: see delegate-multiple
    json_out: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Show RUN (default: the latest run): its start, end, wall time, exit code and cost, then
    each task's agent, status, time, attempts, cost, merge (a worktree task's) and error.

    RUN is a run's id as history lists it, or a part its id starts or ends with that no other
    run's does. Exit codes: 0 shown; 1 no such run; 2 bad input, or RUN names several runs
    (they are listed).
    """
    from . import history as history_command

    raise typer.Exit(history_command.show(repo, run_id, json_out=json_out))


@app.command(short_help="Print a task's log, or follow it while the task runs.")
def logs(
    task: Annotated[str | None, typer.Argument(metavar="TASK", hidden=True)] = None,  # hidden: see delegate-multiple
    run_id: Annotated[
        str | None,
        typer.Option("--run", metavar="RUN", help="The run (default: the latest that has TASK).", show_default=False),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print what the task writes, until it ends.")
    ] = False,
    tail: Annotated[
        int | None,
        typer.Option("--tail", metavar="N", callback=_not_negative, help="Only the last N lines.", show_default=False),
    ] = None,
    repo: RepoOption = None,
) -> None:
    """Print the log of TASK, its agent's output, from the latest run that has it or from --run.

    With --follow, from any terminal: then what the task writes, as it writes it, until it ends
    (its run's journal says so, or the run ends or dies); Ctrl-C exits 130. Without TASK,
    --run RUN lists the run's logs: task, size, status. Exit codes: 0 printed; 1 no such run,
    task or log, or the log was removed or replaced while followed; 2 bad input (a task id that
    is a path, RUN naming several runs).
    """
    from . import history as history_command

    raise typer.Exit(history_command.logs(repo, task, run_text=run_id, follow=follow, tail=tail))


@app.command(short_help="Draw a run as a timeline in one HTML file.")
def timeline(
    run_id: Annotated[str | None, typer.Argument(metavar="RUN", hidden=True)] = None,  # hidden: see delegate-multiple
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to write it (default: timeline-RUN.html in the current directory; - for stdout).",
            show_default=False,
        ),
    ] = None,
    repo: RepoOption = None,
) -> None:
    """Draw RUN (default: the latest) as one self-contained HTML file, to open in a browser.

    One lane per agent (per instance where its tasks ran at once), a bar per attempt coloured
    by how it ended, the wait before each start with its reasons on hover, dependencies as
    arrows, the critical path marked, and the run's wall time against its task time. Drawn
    from the run's journal (logs/RUN/events.jsonl in the state directory); a run that was
    killed, or still runs, up to its last line. The file fetches nothing and runs no script.
    Exit codes: 0 written; 1 no journal of the run, or it cannot be read or written; 2 bad
    input (a bad run id, FILE a directory).
    """
    from . import timeline as timeline_command

    raise typer.Exit(timeline_command.run(repo, run_id, output=output))


@app.command(short_help="Write a commented project-manager.yaml.")
def init(
    force: Annotated[bool, typer.Option("--force", help="Replace a project-manager.yaml that exists.")] = False,
    repo: RepoOption = None,
) -> None:
    """Write a commented project-manager.yaml at the repository root, for the agents on PATH.

    Each agent CLI found on PATH (claude, codex, aider, ...) is defined under a name of its own
    (claude_dev), ready to change; the others are there commented out, and every key is
    explained. None of it is needed to start: a task that names a preset runs it. Prints what
    it wrote and a command to try next. Exit codes: 0 written; 1 it could not be written; 2
    the file exists (without --force), or bad input.
    """
    from . import init as init_command

    raise typer.Exit(init_command.run(repo, force=force))


def main() -> None:
    import sys

    stdout = sys.stdout
    try:
        app()
    except SystemExit as exc:
        # Help or a completion script that found stdout's reader gone (`-h | true`): Typer ends
        # with 1, having wrapped stdout, as for a failure. A reader that goes away changes no
        # exit code, and the help did all it could.
        if exc.code == 1 and sys.stdout is not stdout:
            raise SystemExit(0) from None
        raise
