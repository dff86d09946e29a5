"""A run's id: what may name a run, a fresh one, and how a run takes one that no live run has.

An id names one process: a run takes it by creating its record, ``runs/<run>.json``,
exclusively. If a live run already has it, the new run is ``<run>-2`` (or ``-3``...); one whose
run is dead, its agents included, is free again.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .clocks import REAL, Clocks
from .errors import InvalidArgumentError, StateError
from .holds import Owner, judge_run
from .processes import ProcessId
from .records import RunRecord
from .statedir import create_private, encode_json
from .statelock import RegistryLock

__all__ = ["RUN_ID_PATTERN", "check_run_id", "new_run_id", "take_run_id", "time_stamp"]

#: Run ids (and task ids, see AgentTask): safe as a file name anywhere.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def new_run_id(clocks: Clocks = REAL) -> str:
    """A run id that sorts by start time (by ``clocks``) and is unique across processes and hosts."""
    return f"{time_stamp(clocks)}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def time_stamp(clocks: Clocks) -> str:
    """The wall time by ``clocks``, local, as a prefix that sorts names by it: ``20261128-142501``."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(clocks.wall()))


def check_run_id(run: str) -> None:
    """Raise InvalidArgumentError unless ``run`` can name a file in runs/: a name, never a path."""
    if not RUN_ID_PATTERN.fullmatch(run):
        raise InvalidArgumentError(f"run id {run!r}: expected letters, digits, '.', '_' or '-', not starting with '.'")


def take_run_id(
    run: str,
    supervisor: ProcessId | None,
    runs_dir: Path,
    *,
    lock: RegistryLock,
    on_lock_wait: Callable[[str | None], None] | None,
    stale_after: float,
    clocks: Clocks,
) -> RunRecord:
    """The record, created in ``runs_dir``, of this process as the owner of ``run``, suffixed while
    a run of that id lives; raises StateError if none is free, or cannot be written.

    One whose record exists is looked at under ``lock``, so that no other run taking it, nor a
    prune, moves a record meanwhile: the id is free if that run is dead, its agents included
    (see judge_run).
    """
    for n in range(1, 1000):
        candidate = run if n == 1 else f"{run}-{n}"
        path = runs_dir / f"{candidate}.json"
        # No status yet: status shows nothing of it.
        record = RunRecord(candidate, Owner.current(candidate, supervisor), clocks.wall())
        if create_private(path, encode_json(record.to_json())):
            return record
        lock.acquire(on_lock_wait)
        try:
            if judge_run(runs_dir, candidate, stale_after=stale_after, clocks=clocks)[0]:
                continue  # taken: try the next suffix
            with contextlib.suppress(FileNotFoundError):  # a dead run's, or damaged: free
                os.unlink(path)
            if create_private(path, encode_json(record.to_json())):
                return record
        finally:
            lock.release()
    raise StateError(runs_dir, f"no free run id like {run!r}")
