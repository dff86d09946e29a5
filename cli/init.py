"""``project-manager init``: a commented ``project-manager.yaml`` for the agent CLIs on PATH.

None of the file is needed to start (a task that names a preset runs it): it is where a
newcomer sees every key an agent takes, with the agents installed here already defined under
names of their own, ready to change. It is written whole or not at all, and replaces a file
only when asked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from string import Template

from queue_core.reports import FORMATS

from . import terminal
from .config_files import REPO_CONFIG
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .presets import PRESETS
from .repo import find_repo

#: The presets init looks for on PATH: all but shell, whose sh is everywhere.
AGENT_CLIS = tuple(name for name in PRESETS if name != "shell")

# $presets and $formats are filled in; {prompt} and the like are the loader's placeholders.
_HEADER = Template("""\
# project-manager.yaml: the agents of this repository, written by `project-manager init`.
#
# None of it is needed: a task that names a preset runs it with no definition
# ("claude: fix the parser @src/parser.py"). The presets are
#   $presets
# (shell runs its description with sh). An agent defined here has a name of its own and your
# settings. An agent type runs one task at a time: two names with one preset (code_developer
# and architect, both `preset: claude`) run two of its tasks at once.
#
# The keys of an agent (durations: 90s, 30m, 1h30m, or seconds):
#   preset: NAME                  a preset above; or
#   command: [PROGRAM, ARG, ...]  the argv to run, never through a shell, with {prompt},
#                                 {description}, {task_id}, {files} and {reads} filled in
#   args: [ARG, ...]              added to the preset or command (before its --, if any)
#   owns: [PATH, ...]             what a task of this agent claims when it names no files:
#                                 files, directories (docs/) or globs (src/**/*.py)
#   prompt: TEXT                  what {prompt} is, from {description}, {files} and {reads};
#                                 default: the description, then the files it may change
#   report: FORMAT                the format in which its output reports errors, cost and
#                                 tokens (a preset knows its own), one of
#                                 $formats
#   stop_grace: 5s                from SIGTERM to SIGKILL when its task is stopped
#   rate_limit_backoff: 30s       the pause after a rate limit that names no reset (doubling)
#   rate_limit_max_wait: 2h       how long its tasks wait out rate limits before they fail
#   instances: 1                  how many of its tasks may run at once; more than one needs
#                                 isolation: worktree (two agents in one checkout collide)
#   pools: [anthropic]            the quota pools (pools: below) each of its tasks takes, a
#                                 unit of each; {gpu: 2} for two units. A task's own pools:
#                                 replaces its agent's
#   isolation: shared             shared: the repository's checkout; worktree: a git
#                                 worktree of its own per task, merged back when it succeeds
#   merge: merge                  how a worktree task comes back: merge (a merge commit),
#                                 squash, rebase, or none (its branch is left for you)
#   on_violation: fail            a worktree task that changed files outside its claims:
#                                 fail (not merged, its branch kept) or warn (merged)
#   memory: 2G                    what each of its tasks needs free to start (K, M, G, T:
#                                 powers of 1024), beyond what the running tasks declared
#   cpus: 1.5                     idle cores each of its tasks needs to start (a task's own
#                                 memory: and cpus: win over its agent's)
#   resources: {claude: 1}        with a cluster: its tasks go only to Dask workers started
#                                 with these resources (dask worker --resources claude=1)
#   on_unclaimed_edit: MODE       preset claude only: an edit outside the task's claims is
#                                 claimed (claim, the default: it waits while another task
#                                 holds the file), refused (deny), or let be (allow)

# keep_runs: 100   # how many finished runs keep their history and logs (at least 1)
# on_finish: [notify-send, "project-manager: run ended"]   # with --notify, run when a run
#   ends by itself: an argv, never through a shell; PM_RUN_ID, PM_EXIT_CODE, PM_TOTAL,
#   PM_SUCCEEDED and PM_FAILED in its environment
# hooks: {run_end: [[notify-send, "project-manager: run ended"]]}   # commands run as each
#   task ends (task_end:) and once a run ended by itself (run_end:), with or without
#   --notify: each an argv, never through a shell, at the repository root, reading the
#   task's or the run's --json object on stdin, with PM_STATUS, PM_EXIT_CODE and the PM_*
#   variables in its environment; each may take 10s (timeout: 30s under hooks: changes it);
#   a failing hook is a warning, never the run's failure
# setup: [[npm, ci]]   # run in each new worktree before its agent, each an argv
# worktree_root: ../worktrees   # where worktrees go (default: the state directory in .git)
# pools: {anthropic: 2}   # quota pools: at most 2 units of anthropic in use at once by the
#   tasks that take it, across every run on this repository (a batch's pools: may change the
#   count for its run); an agent or a task takes one with pools: [anthropic]
# worktree_pool: 2   # keep up to 2 worktrees of merged tasks for the next tasks to reuse
#   (much faster on a large repository); each is a whole checkout on disk, and ignored files
#   (build caches, node_modules) carry from one task to the next. Default 0: a new one per task
# limits: {cpu: 85%, memory: 90%}   # start no new task while the machine is above these
#   (the mean of the last 3 readings, a second apart; once above, until 5 points below),
#   but always one when none runs; a batch's limits: and --limit-cpu/--limit-memory win
# cluster: tcp://scheduler:8786   # run worktree tasks on this Dask cluster (local:2: two
#   worker processes here, to try it); --cluster wins; needs project-manager[dask]

agents:
""")
_OWN_AGENT = """\
  # An agent of your own, any command:
  # reviewer:
  #   command: [my-review-tool, "--message={prompt}"]
  #   owns: [docs/reviews/]
"""


def agent_name(preset: str) -> str:
    """The name init gives an agent: not the preset's own, which a run would warn is redefined."""
    return f"{preset}_dev"


def config_text(found: list[str]) -> str:
    """The file for the agent CLIs ``found`` on PATH: those defined, the others commented out."""
    entries = []
    for preset in AGENT_CLIS:
        name = agent_name(preset)
        if preset in found:
            entries.append(f"  # {preset}: found on PATH\n  {name}:\n    preset: {preset}\n")
        else:
            entries.append(
                f"  # {preset}: not found on PATH; install it, then uncomment\n  # {name}:\n  #   preset: {preset}\n"
            )
    header = _HEADER.substitute(presets=", ".join(PRESETS), formats=", ".join(FORMATS))
    return header + "\n".join([*entries, _OWN_AGENT])


def run(repo: Path | None, *, force: bool) -> int:
    path = find_repo(repo) / REPO_CONFIG
    if not force and os.path.lexists(path):
        return _exists(path)
    found = [preset for preset in AGENT_CLIS if shutil.which(PRESETS[preset][0])]
    try:
        _write(path, config_text(found), replace=force)
    except FileExistsError:  # it appeared meanwhile
        return _exists(path)
    except OSError as exc:
        terminal.error(f"cannot write {path}: {exc.strerror or exc}")
        return EXIT_FAILED
    defined = ", ".join(f"{agent_name(preset)} ({PRESETS[preset][0]})" for preset in found)
    terminal.out(f"wrote {path}: {defined or 'no agent CLI found on PATH'}")
    if missing := [preset for preset in AGENT_CLIS if preset not in found]:
        terminal.out(f"commented out, not on PATH: {', '.join(missing)}")
    task = f"{agent_name(found[0])}: describe the change @path/to/file" if found else "shell: echo hello @hello.txt"
    terminal.out(f'next: project-manager delegate-multiple --dry-run "{task}"')
    return EXIT_OK


def _exists(path: Path) -> int:
    terminal.error(f"{path} already exists; --force replaces it")
    return EXIT_USAGE


def _write(path: Path, text: str, *, replace: bool) -> None:
    """``text`` in ``path``, whole or not at all. Without ``replace``, FileExistsError if ``path``
    exists, even one that appeared since it was looked at. Raises OSError."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # left by a process that had this pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if it exists
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
