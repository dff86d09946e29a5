"""Run every benchmark and print one markdown report: ``python -m bench.run_all``.

Sections: release->start latency, in-process overhead, makespan (simulated), quota pools against
a 429-prone provider (simulated), scale, claims
across processes (the on-disk registry), the supervisor, the command line, and worktree tasks
(a new worktree or one from the pool, and the merge-back; on a 20,000-file repository made in
/dev/shm when there is one), worktree tasks on a Dask cluster (with the [dask] extra), and the
claim hook's cost per edit.
The report ends with every figure against its target from
DESIGN.md ("Performance").
"""

from __future__ import annotations

import datetime
import gc
import sys
import time
from collections.abc import Callable

from . import (
    claim_hook,
    cli,
    cluster,
    latency,
    makespan,
    mergeback,
    overhead,
    quota,
    registry,
    scale,
    supervisor,
    timeline,
    worktrees,
)
from ._common import Section, checks_table, machine


def main() -> None:
    started = time.perf_counter()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print("# queue_core benchmark report\n")
    print(f"- command: `{' '.join(['python', '-m', 'bench.run_all', *sys.argv[1:]])}` (from the repo root)")
    print(f"- date: {stamp}")
    print(f"- machine: {machine()}\n")
    sys.stdout.flush()
    runs: list[tuple[str, Callable[[], Section]]] = [
        ("latency", latency.run),
        ("overhead", overhead.run),
        ("makespan", makespan.run),
        ("quota", quota.run),
        ("scale", scale.run),
        ("registry", registry.run),
        ("supervisor", supervisor.run),
        ("cli", cli.run),
        ("worktrees", worktrees.run),
        ("mergeback", mergeback.run),
        ("timeline", timeline.run),
        ("cluster", cluster.run),
        ("claim_hook", claim_hook.run),
    ]
    sections: list[Section] = []
    for name, run in runs:
        gc.collect()
        t0 = time.perf_counter()
        section = run()
        sections.append(section)
        print(section.markdown())
        print(f"_({name}: {time.perf_counter() - t0:,.1f} s)_\n")
        sys.stdout.flush()
    print("## Targets\n")
    print(checks_table([check for section in sections for check in section.checks]))
    print(f"Total wall time of the run: {time.perf_counter() - started:,.1f} s.")


if __name__ == "__main__":
    main()
