"""The ``project-manager`` Typer app.

The commands themselves (``delegate-multiple``, ``status``) arrive with the CLI issue; until
then the app answers ``--help`` and ``--version`` so the console script is installed and
testable.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

app = typer.Typer(
    name="project-manager",
    help="Run many AI-agent tasks on one repository in parallel, as many at once as is safe.",
    no_args_is_help=True,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"project-manager {version('project-manager')}")
        raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run many AI-agent tasks on one repository in parallel, as many at once as is safe."""


def main() -> None:
    app()
