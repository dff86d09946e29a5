"""The ``project-manager`` command's entry point: stop signals are noted from the first moment.

Importing Typer and Rich takes a tenth of a second; a Ctrl-C, SIGTERM or SIGHUP in that time
would otherwise end the command with a traceback, or without its summary. The handlers are
set before anything else is imported; what comes before this module runs (the interpreter's
own start, about 20 ms) cannot be helped from Python.
"""

from __future__ import annotations

from ._early import note_early

note_early()

import os  # noqa: E402 - after the handlers, on purpose
import sys  # noqa: E402


def main() -> None:
    # Started with a closed stdout or stderr (`>&-`): write to nowhere rather than fail.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    from .app import main as run_app

    run_app()
