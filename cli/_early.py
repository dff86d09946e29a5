"""Stop signals noted from the command's first moment: imported first, it imports ``signal`` alone."""

from __future__ import annotations

import signal
from types import FrameType

#: Ctrl-C; ``kill`` (and CI runners cancelling a job); a closed terminal or a dropped ssh session.
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The first stop signal noted before a command waited, if any.
noted: list[int] = []


def note_early() -> None:
    """From now on, a stop signal is noted, never fatal (main thread only)."""
    for sig in STOPS:
        signal.signal(sig, note)


def note(signum: int, frame: FrameType | None) -> None:
    """The handler of the stop signals: the first is kept, for whoever waits next."""
    if not noted:
        noted.append(signum)
