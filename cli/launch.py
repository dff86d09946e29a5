"""The ``project-manager`` command's entry point: stop signals are noted from the first moment.

Importing Typer and Rich takes a tenth of a second; a Ctrl-C, SIGTERM or SIGHUP in that time
would otherwise end the command with a traceback, or without its summary. Only the standard
library is imported here before the app.
"""

from __future__ import annotations

import os
import sys

from .signals import note_early


def main() -> None:
    note_early()
    # Started with a closed stdout or stderr (`>&-`): write to nowhere rather than fail.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    from .app import main as run_app

    run_app()
