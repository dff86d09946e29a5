"""The exit codes the commands share, in a module of their own so that no command imports another for them.

What 1 and 2 mean in detail is each command's to say (its --help lists them).
"""

from __future__ import annotations

#: Done; the command did not do what was asked (a task failed, a release was refused); bad input.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def exit_code_for(signum: int) -> int:
    """The shell's convention for a command ended by a signal: 128 + its number (130 for Ctrl-C)."""
    return 128 + signum
