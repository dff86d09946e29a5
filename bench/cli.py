"""The command line: 1,000 trivial shell tasks, and ``--help`` cold start.

1. 1,000 tasks, each ``true`` with its own file, four agent types in turn, through
   ``project-manager delegate-multiple --file`` with 4 at a time and no terminal (to a pipe),
   against ``xargs -P4`` running the same 1,000 ``sh -c true`` (and GNU ``parallel -j4`` where
   installed). Target (DESIGN.md): <= 2x xargs, with every agent under the supervisor.
   Ours does per task what xargs does not: claims in the shared registry (one lock, read and
   write per 10 ms lease, and one before each agent starts; see queue_core.queue), a log file, an
   event line, a run record for ``status``. To tell those costs apart, the same 1,000 commands
   also run through the library alone (TaskQueue + SubprocessAgent, no CLI), with and without
   ``repo=``. The same batch runs once more in a git repository, where the command also
   checks what each task wrote against its claims (one ``git status`` as each task starts and
   one as it ends; see queue_core.changes): the difference is that check's cost.
2. ``project-manager --help`` from a cold process, against a process that only imports the
   dependencies (typer, rich, yaml, psutil). Target: <= 200 ms.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._common import Check, Section, print_section, table

N = 1_000
REPEATS = 3
#: Files committed in the git repository variant: git status reads them all each time.
GIT_FILES = 2_000
BIN = Path(sys.executable).parent


def _timed(argv: list[str], *, stdin: str | None = None, cwd: str | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, input=stdin, text=True, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def _git_repo(root: Path, batch: str) -> None:
    """A git repository at ``root`` holding ``batch.yaml`` and GIT_FILES small files, committed."""
    (root / "batch.yaml").write_text(batch)
    for i in range(GIT_FILES):
        directory = root / "src" / f"d{i % 20}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"m{i}.py").write_text(f"x = {i}\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "bench"]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)


def _library(repo: str, *, registry: bool) -> float:
    """The same 1,000 commands through TaskQueue + SubprocessAgent in this process."""
    from queue_core import AgentTask, SubprocessAgent, TaskQueue

    root = Path(repo)
    tasks = []
    for i in range(N):
        agent = f"sh{i % 4}"
        runner = SubprocessAgent.for_task(
            ["sh", "-c", "{description}"],
            task_id=f"t{i}",
            agent=agent,
            description="true",
            files=[f"f{i}.txt"],
            cwd=root,
            log=root / "logs" / f"t{i}.log",
        )
        tasks.append(AgentTask(agent, "true", [f"f{i}.txt"], runner, id=f"t{i}"))
    t0 = time.perf_counter()
    with TaskQueue(4, repo=root if registry else None) as queue:
        queue.submit_tasks(tasks)
        queue.join()
    return time.perf_counter() - t0


def run() -> Section:
    # Four agent types in turn: one type runs one task at a time, so a single type would be serial.
    batch = "agents:\n" + "".join(f"  sh{a}: {{preset: shell}}\n" for a in range(4)) + "tasks:\n"
    batch += "".join(f"  - {{id: t{i}, agent: sh{i % 4}, description: 'true', files: [f{i}.txt]}}\n" for i in range(N))
    ours: list[float] = []
    ours_git: list[float] = []
    xargs: list[float] = []
    parallel: list[float] = []
    library: dict[bool, list[float]] = {True: [], False: []}
    gnu_parallel = shutil.which("parallel")
    for _ in range(REPEATS):
        for registry in (True, False):
            with tempfile.TemporaryDirectory() as repo:
                library[registry].append(_library(repo, registry=registry))
        with tempfile.TemporaryDirectory() as repo:
            (Path(repo) / "batch.yaml").write_text(batch)
            argv = [str(BIN / "project-manager"), "delegate-multiple", "--file", f"{repo}/batch.yaml", "-j", "4"]
            ours.append(_timed([*argv, "--repo", repo]))
        with tempfile.TemporaryDirectory() as repo:
            _git_repo(Path(repo), batch)
            argv = [str(BIN / "project-manager"), "delegate-multiple", "--file", f"{repo}/batch.yaml", "-j", "4"]
            ours_git.append(_timed([*argv, "--repo", repo]))
        xargs.append(_timed(["xargs", "-P4", "-n1", "sh", "-c", "true"], stdin="\n".join("x" for _ in range(N))))
        if gnu_parallel:
            parallel.append(_timed([gnu_parallel, "-j4", "true", ":::", *map(str, range(N))]))
    help_s = [_timed([str(BIN / "project-manager"), "--help"]) for _ in range(5)]
    imports = "import typer, rich, yaml, psutil"
    deps_s = [_timed([sys.executable, "-c", imports]) for _ in range(5)]

    med = statistics.median
    rows = [
        (f"project-manager, {N:,} tasks, -j 4, not a TTY", f"{med(ours):.2f} s", f"{med(ours) / med(xargs):.2f}x"),
        (
            f"project-manager, the same in a git repository ({GIT_FILES:,} files committed)",
            f"{med(ours_git):.2f} s",
            f"{med(ours_git) / med(xargs):.2f}x",
        ),
        (f"xargs -P4, {N:,} x sh -c true", f"{med(xargs):.2f} s", "1.00x"),
        (
            f"library only (TaskQueue + SubprocessAgent), repo=, {N:,} tasks, 4 at a time",
            f"{med(library[True]):.2f} s",
            f"{med(library[True]) / med(xargs):.2f}x",
        ),
        (
            f"library only, no registry, {N:,} tasks, 4 at a time",
            f"{med(library[False]):.2f} s",
            f"{med(library[False]) / med(xargs):.2f}x",
        ),
    ]
    if parallel:
        rows.append((f"GNU parallel -j4, {N:,} x true", f"{med(parallel):.2f} s", f"{med(parallel) / med(xargs):.2f}x"))
    rows += [
        ("project-manager --help, cold", f"{med(help_s) * 1e3:.0f} ms", ""),
        (f"python -c '{imports}'", f"{med(deps_s) * 1e3:.0f} ms", ""),
    ]
    body = (
        f"Median of {REPEATS} runs (5 for start-up). GNU parallel: "
        + ("measured" if parallel else "not installed on this machine")
        + ".\n\n"
        + table(["what", "time", "vs xargs"], rows)
    )
    ratio = med(ours) / med(xargs)
    checks = [
        Check("1,000 shell tasks via the CLI vs xargs -P4", f"{ratio:.2f}x", "<= 2x", ratio <= 2.0),
        Check("project-manager --help cold start", f"{med(help_s) * 1e3:.0f} ms", "<= 200 ms", med(help_s) <= 0.2),
    ]
    return Section("The command line", body, checks)


if __name__ == "__main__":
    print_section(run())
