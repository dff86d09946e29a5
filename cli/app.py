"""The ``project-manager`` Typer app: thin commands over queue_core.

Heavy imports live inside the commands, so ``project-manager --help`` starts fast.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="project-manager",
    help="Run many AI-agent tasks on one repository in parallel, as many at once as is safe.",
    no_args_is_help=True,
    add_completion=False,
)

RepoOption = Annotated[
    Path | None,
    typer.Option(
        "--repo",
        help=(
            "Repository root, an existing directory (default: the git top level of the current "
            "directory; outside a git repository it must be given)."
        ),
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


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


@app.command("delegate-multiple")
def delegate_multiple(
    tasks: Annotated[
        list[str] | None,
        typer.Argument(help='Tasks as "AGENT: DESCRIPTION @file @file".', show_default=False),
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A YAML batch of tasks and agents.")] = None,
    max_parallel: Annotated[int | None, typer.Option("--max-parallel", "-j", min=1, help="Most tasks at once.")] = None,
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
    repo: RepoOption = None,
) -> None:
    """Run tasks in parallel wherever their agents and files allow.

    Every agent runs under a supervisor process that stops its whole process tree when the
    task ends, times out or is cancelled, and when this command dies. An agent that hits a rate
    limit pauses (its rate_limit_backoff, or the reset it names) and its task runs again, no
    retry spent, until its rate_limit_max_wait. Exit codes: 0 all succeeded; 1 a task failed,
    timed out, stayed rate-limited or was skipped; 2 bad input (nothing ran); 128 + N ended by
    signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP): agents stopped, claims released.

    Claims steer the scheduler and the agents' prompts but are no sandbox: in a git repository,
    what changed outside them while a task ran is reported when it ends (a warning line, a "!"
    in the summary, "unclaimed_writes" in --json), naming the tasks that ran beside it.
    """
    import sys

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
    )
    raise typer.Exit(code)


@app.command()
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
    with its progress and elapsed time, and the CPU and memory of the machine and of each run's
    agents, in percent of all the machine's cores; elsewhere, or with --no-live, as plain text.
    """
    import sys

    from . import status as status_command

    live = sys.stdout.isatty() and not no_live
    raise typer.Exit(status_command.run(repo, json_out=json_out, watch=watch, live=live))


@app.command()
def release(
    run_id: Annotated[
        str, typer.Argument(help="The run whose claims to drop, as `status` names it.", show_default=False)
    ],
    repo: RepoOption = None,
) -> None:
    """Drop the claims of a run you know is dead (its host crashed, its container is gone).

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


@app.command()
def clean(
    keep_runs: Annotated[
        int | None,
        typer.Option(
            "--keep-runs",
            min=1,
            help="Finished runs whose history and logs stay (default: keep_runs in project-manager.yaml, else 100).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    repo: RepoOption = None,
) -> None:
    """Prune the state directory: old runs' history and logs, dead runs' records, stray files.

    Keeps the newest finished runs and never touches a live one (its process, supervisor or
    an agent still runs, or another host's run beats); says what it removed, and what it kept
    and why. Each run does this when it ends. Exit codes: 0 done; 1 the registry cannot be
    used, or something could not be removed; 2 bad input.
    """
    from . import clean as clean_command

    raise typer.Exit(clean_command.run(repo, keep_runs=keep_runs, dry_run=dry_run))


def _paragraphs(doc: str) -> str:
    """A docstring as paragraphs of one line each: --help wraps them to the terminal, not where
    the source broke its lines (Typer's rich mode keeps those; its markdown mode costs 66 ms)."""
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(doc).split("\n\n"))


for _command in app.registered_commands:
    if _command.callback is not None and _command.callback.__doc__:
        _command.callback.__doc__ = _paragraphs(_command.callback.__doc__)


def main() -> None:
    app()
