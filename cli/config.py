"""Task and agent definitions, and the checks they pass before anything runs: ``AGENT:
DESCRIPTION @file`` arguments, durations, claims, and whether every task's agent exists.

Batch files and the repository's ``project-manager.yaml`` are read into these definitions by
cli/config_files.py; the agents that need no definition are cli/presets.py's. A task whose
agent is defined nowhere but is named like a preset (``claude: fix it``) uses that preset.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shutil
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from queue_core.claims import Claim
from queue_core.errors import InvalidClaimError
from queue_core.machine import Limits
from queue_core.runner import DEFAULT_PROMPT

from .hooks import Hooks
from .presets import PRESET_REPORTS, PRESETS, preset_command

__all__ = [
    "DEFAULT_ISOLATION",
    "ISOLATIONS",
    "MERGE_MODES",
    "NO_LIMITS",
    "VIOLATIONS",
    "AgentSpec",
    "Batch",
    "ConfigError",
    "Isolation",
    "Needs",
    "Origin",
    "PoolTake",
    "RepoConfig",
    "TaskSpec",
    "check_instances",
    "check_worktree_ids",
    "claim_base",
    "find_executable",
    "merge_agents",
    "parse_duration",
    "parse_task_string",
    "task_isolation",
    "validate_batch",
]

#: The longest duration a batch may give (a timeout, a grace period): a week.
MAX_DURATION_S = 7 * 24 * 3600.0
#: Seconds a stopped agent has between SIGTERM and SIGKILL, unless its ``stop_grace`` says otherwise.
DEFAULT_STOP_GRACE_S = 5.0

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"(?:(?P<h>{_NUMBER})h)?(?:(?P<m>{_NUMBER})m)?(?:(?P<s>{_NUMBER})s)?")
#: A word of a task argument; one that starts ``@"`` or ``@'`` runs to its closing quote, spaces
#: and all (unclosed: to the end of the text).
_WORD = re.compile(r"""@"[^"]*"?\S*|@'[^']*'?\S*|\S+""")
#: What makes a path a pattern (see queue_core.claims), escaped in a directory's name.
_GLOB_CHARS = re.compile(r"[\\*?\[]")
#: The characters a claim may not hold: C0 controls and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ConfigError(ValueError):
    """A task argument, batch file or repo config is invalid; ``str()`` says where and why."""

    def __init__(self, source: str, line: int | None, field: str | None, message: str):
        self.source = source
        self.line = line
        self.field = field
        self.message = message
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


@dataclass(frozen=True)
class Origin:
    """Where a value was written, so a later check can point at it."""

    source: str
    line: int | None
    field: str | None

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.source, self.line, self.field, message)


@dataclass(frozen=True)
class PoolTake:
    """Units of a quota pool that an agent's or a task's ``pools:`` takes, and where that was written."""

    name: str
    units: int = 1
    origin: Origin | None = field(default=None, compare=False, repr=False)


#: A task's checkout: the repository's own (shared), or a git worktree of its own.
ISOLATIONS = ("shared", "worktree")
#: How a worktree task's branch comes back into the branch the run started on (see queue_core.mergeback).
MERGE_MODES = ("merge", "squash", "rebase", "none")
#: What a worktree task that changed paths outside its write claims gets: not merged, or a warning.
VIOLATIONS = ("fail", "warn")


@dataclass(frozen=True)
class Isolation:
    """``isolation:``, ``merge:`` and ``on_violation:`` as one level (a task, its agent, the
    batch) sets them; None where that level says nothing, so that the next one decides."""

    mode: str | None = None
    merge: str | None = None
    on_violation: str | None = None

    def over(self, other: Isolation) -> Isolation:
        """This level's settings, ``other``'s where this one says nothing."""
        return Isolation(self.mode or other.mode, self.merge or other.merge, self.on_violation or other.on_violation)


#: What a task gets where no level says anything: today's behaviour, one shared checkout.
DEFAULT_ISOLATION = Isolation("shared", "merge", "fail")


@dataclass(frozen=True)
class Needs:
    """``memory:`` (bytes) and ``cpus:`` as a task or an agent declares them (see AgentTask), each
    None where that level says nothing, with where each was written (for "never fits")."""

    memory: int | None = None
    cpus: float | None = None
    memory_origin: Origin | None = field(default=None, compare=False, repr=False)
    cpus_origin: Origin | None = field(default=None, compare=False, repr=False)

    def over(self, other: Needs) -> Needs:
        """This level's needs, ``other``'s where this one says nothing: a task's own win."""
        memory = (self.memory, self.memory_origin) if self.memory is not None else (other.memory, other.memory_origin)
        cpus = (self.cpus, self.cpus_origin) if self.cpus is not None else (other.cpus, other.cpus_origin)
        return Needs(memory[0], cpus[0], memory[1], cpus[1])


#: ``limits:`` where nothing sets it: the machine is not looked at.
NO_LIMITS = Limits()


@dataclass(frozen=True)
class AgentSpec:
    """An agent type: its argv template (``{prompt}``, ``{description}``, ``{task_id}``, ``{files}``,
    ``{reads}``), its prompt template, and owned globs."""

    name: str
    command: tuple[str, ...]
    owns: tuple[str, ...] = ()
    #: Seconds between SIGTERM and SIGKILL when the agent is stopped or leaves processes behind.
    stop_grace_s: float = DEFAULT_STOP_GRACE_S
    #: Where ``command[0]`` was written (for the "not found on PATH" error); not part of equality.
    command_origin: Origin | None = field(default=None, compare=False, repr=False)
    #: The template of ``{prompt}``: ``{description}``, ``{files}``, ``{reads}``.
    prompt: str = DEFAULT_PROMPT
    #: The format the agent reports its errors, cost and tokens in (queue_core.reports.FORMATS), if any.
    report: str | None = None
    #: After a rate limit the agent did not name a reset for, its tasks pause this long, doubling
    #: with each limit in a row (see AgentTask.rate_limit_backoff); they give up after the max wait.
    rate_limit_backoff_s: float = 30.0
    rate_limit_max_wait_s: float = 7200.0
    #: How many of its tasks may run at once; more than one needs worktree isolation.
    instances: int = 1
    isolation: Isolation = Isolation()
    #: What each of its tasks needs of the machine, unless the task says.
    needs: Needs = Needs()
    #: The quota pools each of its tasks takes, unless the task says (None: none).
    pools: tuple[PoolTake, ...] | None = None
    #: The Dask worker resources each of its tasks needs on a cluster (``{claude: 1}``): they go only
    #: to workers started with them (``dask worker --resources claude=1``).
    resources: tuple[tuple[str, int], ...] = ()

    @classmethod
    def preset(cls, name: str) -> AgentSpec:
        """The agent a task gets by naming a preset that nothing defines."""
        return cls(name, preset_command(name), report=PRESET_REPORTS.get(name))


@dataclass(frozen=True)
class TaskSpec:
    """One task as written by the user; ``timeout_s`` None means no timeout."""

    id: str
    agent: str
    description: str
    files: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    priority: int = 0
    timeout_s: float | None = None
    retries: int = 0
    #: The retry back-off fields the task sets, as AgentTask's keywords (the others: its defaults).
    backoff: tuple[tuple[str, float], ...] = ()
    isolation: Isolation = Isolation()
    #: Where ``agent`` was written (for the "unknown agent" error); not part of equality.
    agent_origin: Origin | None = field(default=None, compare=False, repr=False)
    needs: Needs = Needs()
    #: The quota pools it takes, instead of its agent's (None: its agent's).
    pools: tuple[PoolTake, ...] | None = None


@dataclass(frozen=True)
class Batch:
    """A batch file's content; ``max_parallel``, ``stale_after`` and ``keep_runs`` None mean the defaults."""

    max_parallel: int | Literal["auto"] | None
    agents: dict[str, AgentSpec]
    tasks: tuple[TaskSpec, ...]
    #: Seconds after which a run of another host or container that stopped beating is dead.
    stale_after: float | None = None
    #: How many finished runs keep their history and logs in the state directory (at least 1).
    keep_runs: int | None = None
    isolation: Isolation = Isolation()
    #: The batch's ``limits:`` (each None where it sets none: the repository's, else none).
    limits: Limits = NO_LIMITS
    #: Quota pools and their units (see cli/config_pools.py); with the repository's, the batch's win.
    pools: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RepoConfig:
    """``project-manager.yaml`` at a repository's root; ``keep_runs`` None means the default;
    ``on_finish`` the command ``--notify`` runs when a run ends (empty: none)."""

    agents: dict[str, AgentSpec]
    keep_runs: int | None = None
    on_finish: tuple[str, ...] = ()
    #: Commands run in each new worktree before its agent (each an argv; see queue_core.worktrees).
    setup: tuple[tuple[str, ...], ...] = ()
    #: Where worktrees are made (None: the state directory, outside the working tree).
    worktree_root: str | None = None
    #: How many idle worktrees are kept for the next tasks to reuse (0: none, a new one per task).
    worktree_pool: int = 0
    #: ``limits:`` for every batch of the repository, under a batch's and the flags'.
    limits: Limits = NO_LIMITS
    #: Quota pools and their units, for every batch run on the repository (see cli/config_pools.py).
    pools: dict[str, int] = field(default_factory=dict)
    #: Commands run as each task ends and once the run ends (see cli/hooks.py).
    hooks: Hooks = field(default_factory=Hooks)
    #: The Dask cluster worktree tasks run on (``tcp://HOST:PORT`` or ``local:N``), under ``--cluster``.
    cluster: str | None = None


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``90s``, ``30m``, ``1h30m``, ``2h``, ``1.5m`` or a bare number of seconds.

    Raises ValueError unless the text is one of those forms and the duration is greater than
    zero and at most a week.
    """
    if isinstance(text, bool):  # bool is an int, but `timeout: true` is a mistake, not 1 second
        raise ValueError(f"expected a duration like 90s, 30m or 1h30m, got {text!r}")
    if isinstance(text, (int, float)):
        try:
            seconds = float(text)
        except OverflowError:  # an int of hundreds of digits
            seconds = math.inf
    else:
        compact = re.sub(r"\s+", "", text).lower()
        match = _DURATION.fullmatch(compact)
        if re.fullmatch(_NUMBER, compact):
            seconds = float(compact)  # 1e400 reads as inf, refused below
        elif compact and match:
            hours, minutes, secs = (float(match.group(unit) or 0) for unit in "hms")
            seconds = hours * 3600 + minutes * 60 + secs
        else:
            raise ValueError(f"expected a duration like 90s, 30m or 1h30m, got {text!r}")
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be greater than zero, got {shown(text)}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"a duration must be at most 168h (a week), got {shown(text)}")
    return seconds


def shown(value: object) -> str:
    """``value`` for an error message: its repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:39]}…"


def parse_task_string(
    text: str, index: int, *, base: str | None = "", warn: Callable[[str], None] = lambda _: None
) -> TaskSpec:
    """The task in ``"AGENT: DESCRIPTION @path @path"`` (the ``index``-th argument, id ``t{index}``,
    which the caller renumbers past the ids a batch file took), typed in the directory ``base``
    of the repository ("" its root; see claim_base).

    The agent is everything before the first colon. The trailing run of ``@path`` words are the
    claims (``@"a b.md"`` or ``@'a b.md'`` for a path with spaces); the rest is the
    description, verbatim (it is never given to a shell by this module). An ``@word`` before
    the claims stays in the description, and ``warn`` is told so. Claims are relative to
    ``base``, as git's paths are, and stored repo-relative; ``base`` None (the current directory
    was removed) refuses every claim, which would count from nowhere. Raises ConfigError (source
    ``argument {index}``) for a missing colon, an empty or spaced agent name, an empty
    description, an unterminated quote, or an invalid path or one that leaves the repository.
    """
    source = f"argument {index}"
    agent, colon, rest = text.partition(":")
    if not colon:
        raise ConfigError(source, None, None, f'expected "AGENT: DESCRIPTION @file ...", got {text!r}')
    agent = agent.strip()
    if not agent:
        raise ConfigError(source, None, "agent", f'the agent name before ":" is empty in {text!r}')
    if re.search(r"\s", agent):
        raise ConfigError(source, None, "agent", f'an agent name has no spaces, got {agent!r} (before the first ":")')
    description, words = _split_claims(rest)
    for word in _WORD.findall(description):
        if word.startswith("@"):
            warn(f"{source}: {word!r} is in the middle of the description, so it is not a claim; put claims at the end")
    if not description:
        raise ConfigError(source, None, "description", f"the description is empty in {text!r}")
    files: list[str] = []
    for i, word in enumerate(words):
        origin = Origin(source, None, f"files[{i}]")
        if base is None:
            raise origin.error(f"the current directory was removed, so {word} counts from nowhere; cd to one")
        files.append(_repo_relative(_claim_path(word, origin), base, origin))
    return TaskSpec(
        id=f"t{index}",
        agent=agent,
        description=description,
        files=tuple(files),
        agent_origin=Origin(source, None, "agent"),
    )


def _split_claims(text: str) -> tuple[str, list[str]]:
    """``text`` cut before its trailing run of ``@words``, stripped; and those words."""
    words = list(_WORD.finditer(text))
    first = len(words)
    while first and words[first - 1].group().startswith("@"):
        first -= 1
    cut = words[first].start() if first < len(words) else len(text)
    return text[:cut].strip(), [word.group() for word in words[first:]]


def _claim_path(word: str, origin: Origin) -> str:
    """The path of the claim ``@path``, ``@"path"`` or ``@'path'``."""
    if word == "@":
        raise origin.error("'@' has no path after it (write @path, with no space)")
    quote = word[1]
    if quote not in "\"'":
        return word[1:]
    end = word.find(quote, 2)
    if end < 0:
        raise origin.error(f"unterminated quote in {word!r}: close it with {quote}")
    if end < len(word) - 1:
        raise origin.error(f"{word!r} goes on after its closing quote: put a space between claims")
    if end == 2:  # from a subdirectory, "" would claim the whole directory
        raise origin.error("invalid path '': the path is empty")
    return word[2:end]


def _repo_relative(path: str, base: str, origin: Origin) -> str:
    """The claim ``path``, typed in the repository's directory ``base``, relative to its root.

    At the root it is kept as typed. Elsewhere it is normalised (``src/app/../x.py`` reads
    badly in a prompt), ``base`` escaped so that a directory named ``a[1]`` is not a pattern.
    """
    if not base:
        check_claim(path, origin)
        return path
    if path.startswith(("/", "~")):
        reason = f"absolute paths are not allowed; give a path relative to the current directory ({base})"
        raise origin.error(f"invalid path {path!r}: {reason}")
    _check_characters(path, origin)
    try:
        escaped = _GLOB_CHARS.sub(r"\\\g<0>", base)
        claim = Claim.parse(f"{escaped}/{path}").text
    except InvalidClaimError as exc:
        raise origin.error(f"invalid path {path!r} (from {base}): {exc.reason}") from exc
    return f"./{claim}" if claim.startswith("-") else claim  # {files} must never read as an option


def claim_base(repo_root: Path) -> str | None:
    """Where the current directory is in the repository, as claims typed there count from it: a
    repo-relative POSIX path, "" at the root; "" too when the current directory is outside
    (``--repo`` named another folder), so that claims then count from the root. A removed
    current directory counts where it was (Linux tells); None where that cannot be known."""
    here = current_directory()
    if here is None:
        return None
    try:
        relative = here.resolve().relative_to(repo_root.resolve())
    except ValueError:  # outside the repository
        return ""
    return "" if relative == Path() else relative.as_posix()


def current_directory() -> Path | None:
    """The current directory; once it was removed (``git checkout`` of a branch without it), where
    it was, from Linux's /proc; None if that cannot be told."""
    try:
        return Path.cwd()
    except OSError:
        pass
    try:
        return Path(os.readlink("/proc/self/cwd").removesuffix(" (deleted)"))
    except OSError:
        return None


def find_executable(program: str, repo_root: Path) -> str | None:
    """The file ``program`` names, if it exists and may be run: a bare name is looked up on PATH;
    a path with a ``/`` from ``repo_root``, where agents run, not from the current directory."""
    return shutil.which(str(repo_root / program) if "/" in program else program)


def merge_agents(repo_agents: dict[str, AgentSpec], batch_agents: dict[str, AgentSpec]) -> dict[str, AgentSpec]:
    """The repository's agents, with the batch's replacing any of the same name."""
    return {**repo_agents, **batch_agents}


def task_isolation(task: TaskSpec, agent: AgentSpec | None, batch: Batch, flag: str | None = None) -> Isolation:
    """What ``task`` gets: its own settings, then its agent's, then ``--isolation`` (``flag``),
    then the batch's, then DEFAULT_ISOLATION."""
    own = task.isolation.over(agent.isolation if agent is not None else Isolation())
    return own.over(Isolation(flag)).over(batch.isolation).over(DEFAULT_ISOLATION)


def check_instances(batch: Batch, agents: dict[str, AgentSpec], flag: str | None = None) -> None:
    """Refuse a task that would share the checkout while its agent runs several instances:
    two agents in one checkout is what this tool exists to prevent. Raises ConfigError."""
    for task in batch.tasks:
        agent = agents.get(task.agent)
        if agent is None or agent.instances == 1 or task_isolation(task, agent, batch, flag).mode == "worktree":
            continue
        where = task.agent_origin or Origin("arguments", None, f"task {task.id}")
        raise where.error(
            f"agent {agent.name!r} runs {agent.instances} instances at once, so each of its tasks needs a "
            f"worktree of its own (isolation: worktree); task {task.id!r} would share the checkout"
        )


def check_worktree_ids(batch: Batch, agents: dict[str, AgentSpec], flag: str | None = None) -> None:
    """Refuse a worktree task whose id cannot name its branches, ``pm/<run>/<id>`` and ``<id>.2``,
    ``<id>.3``... for its later attempts: one git refuses (``..``, a final ``.`` or ``.lock``), or
    one that another task's later attempt would take (``a.2`` beside ``a``), before anything
    runs rather than as the task starts. Raises ConfigError."""
    worktree = {t.id for t in batch.tasks if task_isolation(t, agents.get(t.agent), batch, flag).mode == "worktree"}
    for task in batch.tasks:
        if task.id not in worktree:
            continue
        first, dot, attempt = task.id.rpartition(".")
        if ".." in task.id or task.id.endswith((".", ".lock")):
            why = "git cannot name a branch with it (no '..', no '.' or '.lock' at the end)"
        elif dot and attempt.isdigit() and first in worktree:
            why = f"that is the branch of task {first!r}'s attempt {int(attempt)}"
        else:
            continue
        where = task.agent_origin
        origin = (
            Origin(where.source, where.line, where.field.rpartition(".")[0] + ".id") if where and where.field else None
        )
        raise (origin or Origin(f"task {task.id!r}", None, "id")).error(
            f"task {task.id!r} runs in a worktree, on the branch pm/<run>/{task.id}: {why}"
        )


def validate_batch(
    batch: Batch,
    agents: dict[str, AgentSpec],
    which: Callable[[str], str | None],
    *,
    missing_ok: bool = False,
    remote: Collection[str] = (),
) -> list[tuple[str, str]]:
    """Check that every task's agent is defined and its executable exists; raise ConfigError if not.

    A task agent that ``agents`` does not define but that is a preset name uses the preset.
    Executables (``command[0]``) are looked up with ``which`` (find_executable, for a run),
    once per agent that some task here uses; agents no task uses are not checked, nor those
    only the ``remote`` tasks use (ids of tasks that run on a cluster's workers, where the
    executable is). With ``missing_ok`` (a dry run), an executable not found is returned, as
    (executable, whose), instead.
    """
    missing: list[tuple[str, str]] = []
    checked: set[str] = set()
    for task in batch.tasks:
        origin = task.agent_origin or Origin(f"task {task.id!r}", None, "agent")
        if task.agent in agents:
            spec = agents[task.agent]
            command, where = spec.command, spec.command_origin or origin
            agent = whose = f"agent {task.agent!r}"
        elif task.agent in PRESETS:
            command, where = PRESETS[task.agent], origin
            agent = f"preset agent {task.agent!r}"
            whose = f"{agent} (task {task.id!r})"
        else:
            raise origin.error(
                f"task {task.id!r} uses unknown agent {task.agent!r}{suggest(task.agent, [*agents, *PRESETS])}; "
                f"defined agents: {', '.join(sorted(agents)) or '(none)'}; presets: {', '.join(PRESETS)}"
            )
        if task.agent in checked:
            continue
        if not command or not command[0]:
            raise where.error(f"{whose} has an empty command")
        if task.id in remote:
            continue  # looked up on the worker that runs it
        checked.add(task.agent)
        if which(command[0]) is None:
            if not missing_ok:
                looked_up = (
                    " (a command with a / is looked up from the repository root, where agents run)"
                    if "/" in command[0]
                    else " on PATH"
                )
                raise where.error(f"executable {command[0]!r} of {whose} was not found{looked_up}")
            missing.append((command[0], agent))
    return missing


def check_claim(path: str, origin: Origin) -> None:
    """Raise ConfigError, pointing at ``origin``, unless ``path`` is a claim an agent may be given."""
    if path.startswith("-"):  # {files} puts claims in an agent's argv: one must never read as an option
        raise origin.error(f"invalid path {path!r}: a path may not start with '-' (write ./{path})")
    _check_characters(path, origin)
    try:
        Claim.parse(path)
    except InvalidClaimError as exc:
        raise origin.error(f"invalid path {path!r}: {exc.reason}") from exc


def _check_characters(path: str, origin: Origin) -> None:
    """Refuse a path with a control character: an agent reads PM_FILES one path a line, so
    ``a\nb.md`` would read as a and b.md, which no claim covers."""
    if _CONTROL.search(path):
        raise origin.error(f"invalid path {path!r}: a path may not contain a control character (a newline, a tab)")


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` with the choice closest to a misspelt ``word``, if one is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
