"""The two clocks the library reads time from; every reader is given them, so tests set the time.

``monotonic`` measures intervals within this process: deadlines, retries, leases, lock waits.
``wall`` is the time other processes read: when a hold was taken, when a record was written,
a file's age. Nothing in :mod:`queue_core` calls :mod:`time` itself for either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clocks:
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time


#: The real clocks, the default everywhere.
REAL = Clocks()
