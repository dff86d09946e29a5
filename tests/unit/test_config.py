"""cli.config and cli.config_files: durations, task arguments, batch files and repo config, agent validation.

Every error case checks the whole message, ``file:line: field: reason``, so a wrong line number
or field path fails the test. Files are written to tmp_path and read by a relative name.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from cli.config import (
    AgentSpec,
    Batch,
    ConfigError,
    RepoConfig,
    TaskSpec,
    merge_agents,
    parse_duration,
    parse_task_string,
    validate_batch,
)
from cli.config_files import load_batch, load_repo_agents, load_repo_config
from cli.presets import PRESETS
from queue_core import AgentTask

#: Writes a file into the test's working directory: ``write(yaml_text, name="batch.yaml")``.
Write = Callable[..., Path]


def found(name: str) -> str | None:
    return f"/usr/bin/{name}"


def missing(name: str) -> str | None:
    return None


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Write:
    """Write dedented YAML to ``name`` in a fresh working directory; return its relative path."""
    monkeypatch.chdir(tmp_path)

    def _write(text: str, name: str = "batch.yaml") -> Path:
        path = Path(name)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


# --- parse_duration -----------------------------------------------------------------------------

DURATIONS = [
    ("90s", 90.0),
    ("30m", 1800.0),
    ("1h30m", 5400.0),
    ("2h", 7200.0),
    ("1.5m", 90.0),
    ("1h0m30s", 3630.0),
    ("1h 30m", 5400.0),
    (" 10S ", 10.0),
    ("45", 45.0),
    ("0.5", 0.5),
    (".5s", 0.5),
    (45, 45.0),
    (2.5, 2.5),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


BAD_DURATIONS = [
    ("soon", "expected a duration like 90s, 30m or 1h30m, got 'soon'"),
    ("", "expected a duration like 90s, 30m or 1h30m, got ''"),
    ("h", "expected a duration like 90s, 30m or 1h30m, got 'h'"),
    ("30m1h", "expected a duration like 90s, 30m or 1h30m, got '30m1h'"),
    ("-5s", "expected a duration like 90s, 30m or 1h30m, got '-5s'"),
    ("1d", "expected a duration like 90s, 30m or 1h30m, got '1d'"),
    ("nan", "expected a duration like 90s, 30m or 1h30m, got 'nan'"),
    (True, "expected a duration like 90s, 30m or 1h30m, got True"),
    ("0", "a duration must be greater than zero, got '0'"),
    ("0s", "a duration must be greater than zero, got '0s'"),
    ("0h0m", "a duration must be greater than zero, got '0h0m'"),
    (0, "a duration must be greater than zero, got 0"),
    (-5, "a duration must be greater than zero, got -5"),
    (float("inf"), "a duration must be at most 168h (a week), got inf"),
]


@pytest.mark.parametrize(("text", "message"), BAD_DURATIONS)
def test_parse_duration_rejects(text: str | int | float, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_duration(text)


# --- parse_task_string --------------------------------------------------------------------------

TASK_STRINGS = [
    # text, agent, description, files
    (
        "code_developer: fix the parser @src/parser.py @tests/test_parser.py",
        "code_developer",
        "fix the parser",
        ("src/parser.py", "tests/test_parser.py"),
    ),
    ("claude: Fix the parser", "claude", "Fix the parser", ()),
    ("  claude  :   spaced out   ", "claude", "spaced out", ()),
    # Shell syntax is plain text here: nothing in this module hands it to a shell.
    ("shell: $(touch pwned); rm -rf x", "shell", "$(touch pwned); rm -rf x", ()),
    ('shell: echo "a  b" `id` | tee x @out.txt', "shell", 'echo "a  b" `id` | tee x', ("out.txt",)),
    # Only the first colon separates the agent.
    ("claude: fix: the 12:30 bug in http://x", "claude", "fix: the 12:30 bug in http://x", ()),
    # Only trailing @path tokens are files; an @ inside the text stays in it.
    ("claude: mail me@example.com about @a.py and @b.py", "claude", "mail me@example.com about @a.py and", ("b.py",)),
    ("claude: tidy @docs/ @src/**/*.py", "claude", "tidy", ("docs/", "src/**/*.py")),
    ("claude: multi\nline @a.py", "claude", "multi\nline", ("a.py",)),
]


@pytest.mark.parametrize(("text", "agent", "description", "files"), TASK_STRINGS)
def test_parse_task_string(text: str, agent: str, description: str, files: tuple[str, ...]) -> None:
    task = parse_task_string(text, 3)
    assert task == TaskSpec("t3", agent, description, files, (), (), 0, None, 0)


BAD_TASK_STRINGS = [
    ("fix the parser", None, "argument 2: expected \"AGENT: DESCRIPTION @file ...\", got 'fix the parser'"),
    (": fix it", "agent", "argument 2: agent: the agent name before \":\" is empty in ': fix it'"),
    (
        "fix the parser: now",
        "agent",
        "argument 2: agent: an agent name has no spaces, got 'fix the parser' (before the first \":\")",
    ),
    ("claude:   ", "description", "argument 2: description: the description is empty in 'claude:   '"),
    (
        "claude: @a.py @b.py",
        "description",
        "argument 2: description: the description is empty in 'claude: @a.py @b.py'",
    ),
    (
        "claude: fix @/etc/passwd",
        "files[0]",
        "argument 2: files[0]: invalid path '/etc/passwd': "
        "absolute paths are not allowed; give a path relative to the repository root",
    ),
    (
        "claude: fix @ok.py @../outside.py",
        "files[1]",
        "argument 2: files[1]: invalid path '../outside.py': the path leaves the repository root",
    ),
]


@pytest.mark.parametrize("index", [1, 10**90])
def test_the_id_of_a_task_argument_is_always_valid(index: int) -> None:
    task_id = parse_task_string("claude: fix it", index).id
    assert AgentTask("claude", "fix it", [], lambda: None, id=task_id).id == task_id


@pytest.mark.parametrize(("text", "field", "message"), BAD_TASK_STRINGS)
def test_parse_task_string_rejects(text: str, field: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_task_string(text, 2)
    assert str(info.value) == message
    assert (info.value.source, info.value.line, info.value.field) == ("argument 2", None, field)


# --- load_batch: happy paths --------------------------------------------------------------------

FULL_EXAMPLE = """
max_parallel: 4
agents:
  code_developer:
    command: ["claude", "-p", "{description}"]
    owns: ["src/**", "tests/**"]
tasks:
  - id: parser
    agent: code_developer
    description: Fix the parser
    files: [src/parser.py]
    reads: [docs/grammar.md]
    depends_on: []
    priority: 0
    timeout: 30m
    retries: 1
"""


def test_load_batch_full_example(write: Write) -> None:
    batch = load_batch(write(FULL_EXAMPLE))
    assert batch == Batch(
        max_parallel=4,
        agents={
            "code_developer": AgentSpec("code_developer", ("claude", "-p", "{description}"), ("src/**", "tests/**"))
        },
        tasks=(
            TaskSpec(
                id="parser",
                agent="code_developer",
                description="Fix the parser",
                files=("src/parser.py",),
                reads=("docs/grammar.md",),
                depends_on=(),
                priority=0,
                timeout_s=1800.0,
                retries=1,
            ),
        ),
    )


def test_load_batch_defaults_presets_and_scalar_text(write: Write) -> None:
    batch = load_batch(
        write("""
        agents:
          tester: {preset: shell}
          writer:
            preset: aider
            owns: [docs/]
        tasks:
          - id: 1
            agent: tester
            description: yes
          - id: two
            agent: claude
            description: >-
              echo $(whoami); rm -rf x
            depends_on: ["1"]
            priority: -3
            timeout: 90
            retries: 0x2
          - {id: three, agent: writer, description: '12:30', timeout: null}
        """)
    )
    assert batch.max_parallel is None
    assert batch.agents == {
        "tester": AgentSpec("tester", PRESETS["shell"], ()),
        "writer": AgentSpec("writer", PRESETS["aider"], ("docs/",), report="aider"),
    }
    assert batch.tasks == (
        # String fields keep the text as written: `1` is "1", `yes` is "yes", not True.
        TaskSpec("1", "tester", "yes"),
        TaskSpec(
            "two", "claude", "echo $(whoami); rm -rf x", depends_on=("1",), priority=-3, timeout_s=90.0, retries=2
        ),
        TaskSpec("three", "writer", "12:30"),
    )


def test_load_batch_keep_runs(write: Write) -> None:
    """How many finished runs the state directory keeps (see queue_core.retention); null: the default."""
    assert load_batch(write("keep_runs: 5\n")).keep_runs == 5
    assert load_batch(write("keep_runs: 0x10\ntasks: []\n")).keep_runs == 16
    assert load_batch(write("keep_runs:\n")).keep_runs is None
    assert load_batch(write("tasks: []\n")).keep_runs is None


@pytest.mark.parametrize("text", ["", "# only a comment\n", "~\n", "agents:\ntasks:\nmax_parallel:\n"])
def test_load_batch_empty(write: Write, text: str) -> None:
    assert load_batch(write(text)) == Batch(None, {}, ())


def test_load_batch_dependencies_in_any_order(write: Write) -> None:
    batch = load_batch(
        write("""
        tasks:
          - {id: c, agent: x, description: c, depends_on: [a, b]}
          - {id: b, agent: x, description: b, depends_on: [a]}
          - {id: a, agent: x, description: a}
        """)
    )
    assert [t.id for t in batch.tasks] == ["c", "b", "a"]


def test_load_batch_long_dependency_chain(write: Write) -> None:
    # Deeper than the recursion limit: the cycle check must be iterative.
    count = 3000
    lines = ["tasks:"] + [
        f"  - {{id: t{i}, agent: x, description: d, depends_on: [{f't{i - 1}' if i else ''}]}}" for i in range(count)
    ]
    batch = load_batch(write("\n".join(lines) + "\n"))
    assert len(batch.tasks) == count
    assert batch.tasks[-1].depends_on == (f"t{count - 2}",)


# --- load_batch: errors -------------------------------------------------------------------------

TASK = "  - {id: a, agent: x, description: d}\n"

BATCH_ERRORS = [
    # name, yaml, expected message (always "batch.yaml:LINE: FIELD: reason")
    (
        "unknown top-level key, suggestion",
        "max_paralel: 4\n",
        "batch.yaml:1: max_paralel: unknown key 'max_paralel' (did you mean 'max_parallel'?); "
        "expected one of: max_parallel, stale_after, keep_runs, isolation, merge, on_violation, limits, pools, "
        "agents, tasks",
    ),
    (
        "unknown top-level key, no suggestion",
        "tasks: []\ncolour: red\n",
        "batch.yaml:2: colour: unknown key 'colour'; "
        "expected one of: max_parallel, stale_after, keep_runs, isolation, merge, on_violation, limits, pools, "
        "agents, tasks",
    ),
    (
        "unknown task key: a typo must not drop a claim",
        "tasks:\n  - id: a\n    agent: x\n    description: d\n    fils: [src/a.py]\n",
        "batch.yaml:5: tasks[0].fils: unknown key 'fils' (did you mean 'files'?); expected one of: "
        "id, agent, description, files, reads, depends_on, priority, timeout, retries, retry_delay, "
        "retry_backoff, retry_max_delay, retry_jitter, pools, isolation, merge, on_violation, memory, cpus",
    ),
    (
        "tagged int that is none",
        "tasks:\n  - {id: a, agent: shell, description: x, timeout: !!int 1e3}\n",
        "batch.yaml:2: tasks[0].timeout: not a valid int: '1e3'",
    ),
    (
        "tagged float that is none",
        "tasks:\n  - {id: a, agent: shell, description: x, timeout: !!float abc}\n",
        "batch.yaml:2: tasks[0].timeout: not a valid float: 'abc'",
    ),
    (
        "empty tagged int",
        'tasks:\n  - {id: a, agent: shell, description: x, retries: !!int ""}\n',
        "batch.yaml:2: tasks[0].retries: not a valid int: ''",
    ),
    (
        "a timeout of 401 digits",
        f"tasks:\n  - {{id: a, agent: shell, description: x, timeout: {'9' * 401}}}\n",
        f"batch.yaml:2: tasks[0].timeout: a duration must be at most 168h (a week), got {'9' * 39}…",
    ),
    (
        "retries of 4,400 digits",
        f"tasks:\n  - {{id: a, agent: shell, description: x, retries: {'9' * 4400}}}\n",
        f"batch.yaml:2: tasks[0].retries: not a valid int: '{'9' * 38}…",
    ),
    (
        "unknown agent key",
        "agents:\n  dev:\n    preset: claude\n    own: [src/**]\n",
        "batch.yaml:4: agents.dev.own: unknown key 'own' (did you mean 'owns'?); "
        "expected one of: command, preset, args, prompt, report, owns, stop_grace, rate_limit_backoff, "
        "rate_limit_max_wait, instances, pools, resources, on_unclaimed_edit, isolation, merge, on_violation, "
        "memory, cpus",
    ),
    (
        "duplicate top-level key",
        "max_parallel: 2\ntasks: []\nmax_parallel: 3\n",
        "batch.yaml:3: max_parallel: duplicate key 'max_parallel' (first at line 1)",
    ),
    (
        "duplicate task key",
        "tasks:\n  - id: a\n    agent: x\n    description: d\n    files: [a.py]\n    files: [b.py]\n",
        "batch.yaml:6: tasks[0].files: duplicate key 'files' (first at line 5)",
    ),
    (
        "duplicate agent name",
        "agents:\n  dev: {preset: claude}\n  dev: {preset: codex}\n",
        "batch.yaml:3: agents.dev: duplicate key 'dev' (first at line 2)",
    ),
    (
        "top level is a list",
        "- id: a\n",
        "batch.yaml:1: expected a mapping, got a list",
    ),
    (
        "tasks is a mapping",
        "tasks:\n  id: a\n",
        "batch.yaml:2: tasks: expected a list of tasks, got a mapping",
    ),
    (
        "task is a string",
        "tasks:\n  - fix the parser\n",
        "batch.yaml:2: tasks[0]: expected a mapping, got a string 'fix the parser'",
    ),
    (
        "files is a string",
        "tasks:\n  - id: a\n    agent: x\n    description: d\n    files: src/a.py\n",
        "batch.yaml:5: tasks[0].files: expected a list of paths, got a string 'src/a.py' (write [src/a.py])",
    ),
    (
        "reads entry is a list",
        "tasks:\n  - id: a\n    agent: x\n    description: d\n    reads:\n      - [a.py]\n",
        "batch.yaml:6: tasks[0].reads[0]: expected a string, got a list",
    ),
    (
        "depends_on is a string",
        "tasks:\n  - {id: a, agent: x, description: d, depends_on: b}\n",
        "batch.yaml:2: tasks[0].depends_on: expected a list of task ids, got a string 'b' (write [b])",
    ),
    (
        "priority is a boolean",
        "tasks:\n  - id: a\n    agent: x\n    description: d\n    priority: true\n",
        "batch.yaml:5: tasks[0].priority: expected an integer, got a boolean 'true'",
    ),
    (
        "priority is a float",
        "tasks:\n  - {id: a, agent: x, description: d, priority: 1.5}\n",
        "batch.yaml:2: tasks[0].priority: expected an integer, got a number '1.5'",
    ),
    (
        "retries is a word",
        "tasks:\n  - {id: a, agent: x, description: d, retries: two}\n",
        "batch.yaml:2: tasks[0].retries: expected an integer, got a string 'two'",
    ),
    (
        "retries is negative",
        "tasks:\n  - {id: a, agent: x, description: d, retries: -1}\n",
        "batch.yaml:2: tasks[0].retries: must be at least 0, got -1",
    ),
    (
        "retry_jitter past 1",
        "tasks:\n  - {id: a, agent: x, description: d, retry_jitter: 1.5}\n",
        "batch.yaml:2: tasks[0].retry_jitter: must be at most 1, got 1.5",
    ),
    (
        "retry_backoff below 1",
        "tasks:\n  - {id: a, agent: x, description: d, retry_backoff: 0.5}\n",
        "batch.yaml:2: tasks[0].retry_backoff: must be at least 1, got 0.5",
    ),
    (
        "retry_delay is a word",
        "tasks:\n  - {id: a, agent: x, description: d, retry_delay: soon}\n",
        "batch.yaml:2: tasks[0].retry_delay: expected a duration like 90s, 30m or 1h30m, got 'soon'",
    ),
    (
        "timeout is not a duration",
        "tasks:\n"
        + "".join(f"  - {{id: t{i}, agent: x, description: d}}\n" for i in range(10))
        + "  - id: b\n    agent: x\n    description: d\n    timeout: soon\n",
        "batch.yaml:15: tasks[10].timeout: expected a duration like 90s, 30m or 1h30m, got 'soon'",
    ),
    (
        "timeout is zero",
        "tasks:\n  - {id: a, agent: x, description: d, timeout: 0}\n",
        "batch.yaml:2: tasks[0].timeout: a duration must be greater than zero, got 0",
    ),
    (
        "timeout is a boolean",
        "tasks:\n  - {id: a, agent: x, description: d, timeout: yes}\n",
        "batch.yaml:2: tasks[0].timeout: expected a duration like 90s, 30m or 1h30m, got a boolean 'yes'",
    ),
    (
        "max_parallel is zero",
        "max_parallel: 0\n",
        "batch.yaml:1: max_parallel: must be at least 1, got 0",
    ),
    (
        "max_parallel is a word",
        "max_parallel: four\n",
        "batch.yaml:1: max_parallel: expected an integer or auto, got a string 'four'",
    ),
    (
        "keep_runs is zero: the run that ends always keeps its own history and logs",
        "keep_runs: 0\n",
        "batch.yaml:1: keep_runs: must be at least 1, got 0",
    ),
    (
        "keep_runs is negative",
        "tasks: []\nkeep_runs: -5\n",
        "batch.yaml:2: keep_runs: must be at least 1, got -5",
    ),
    (
        "keep_runs is a word",
        "keep_runs: all\n",
        "batch.yaml:1: keep_runs: expected an integer, got a string 'all'",
    ),
    (
        "missing description",
        "tasks:\n" + TASK + "  - id: b\n    agent: x\n",
        "batch.yaml:3: tasks[1].description: missing (every task needs id, agent, description)",
    ),
    (
        "null id",
        "tasks:\n  - id:\n    agent: x\n    description: d\n",
        "batch.yaml:2: tasks[0].id: expected a string, got nothing (null)",
    ),
    (
        "id that is a path out of the repository",
        "tasks:\n  - id: ../../../../escaped\n    agent: x\n    description: d\n",
        "batch.yaml:2: tasks[0].id: expected 1 to 100 letters, digits, '.', '_' or '-', not starting with '.', "
        "got '../../../../escaped'",
    ),
    (
        "absolute id",
        "tasks:\n" + TASK + "  - {id: /abs/escaped, agent: x, description: d}\n",
        "batch.yaml:3: tasks[1].id: expected 1 to 100 letters, digits, '.', '_' or '-', not starting with '.', "
        "got '/abs/escaped'",
    ),
    (
        "hidden id",
        "tasks:\n  - {id: .x, agent: x, description: d}\n",
        "batch.yaml:2: tasks[0].id: expected 1 to 100 letters, digits, '.', '_' or '-', not starting with '.', "
        "got '.x'",
    ),
    (
        "empty description",
        "tasks:\n  - {id: a, agent: x, description: '  '}\n",
        "batch.yaml:2: tasks[0].description: must not be empty",
    ),
    (
        "duplicate task id",
        "tasks:\n" + TASK + "  - {id: b, agent: x, description: d}\n  - id: a\n    agent: x\n    description: e\n",
        "batch.yaml:4: tasks[2].id: duplicate task id 'a' (first at line 2)",
    ),
    (
        "unknown dependency, suggestion",
        "tasks:\n  - id: parser\n    agent: x\n    description: d\n  - id: tests\n    agent: x\n"
        "    description: d\n    depends_on:\n      - parser\n      - parsr\n",
        "batch.yaml:10: tasks[1].depends_on[1]: unknown task id 'parsr' (did you mean 'parser'?)",
    ),
    (
        # The error points at the dependency that closes the cycle in a walk in file order.
        "dependency cycle",
        "tasks:\n  - {id: a, agent: x, description: d, depends_on: [c]}\n"
        "  - {id: b, agent: x, description: d, depends_on: [a]}\n"
        "  - id: c\n    agent: x\n    description: d\n    depends_on: [b]\n",
        "batch.yaml:3: tasks[1].depends_on[0]: dependency cycle: a -> c -> b -> a",
    ),
    (
        "task depends on itself",
        "tasks:\n" + TASK + "  - {id: b, agent: x, description: d, depends_on: [a, b]}\n",
        "batch.yaml:3: tasks[1].depends_on[1]: dependency cycle: b -> b",
    ),
    (
        "absolute path in files",
        "tasks:\n  - id: a\n    agent: x\n    description: d\n    files: [ok.py, /etc/passwd]\n",
        "batch.yaml:5: tasks[0].files[1]: invalid path '/etc/passwd': "
        "absolute paths are not allowed; give a path relative to the repository root",
    ),
    (
        "path leaving the repo in reads",
        "tasks:\n  - id: a\n    agent: x\n    description: d\n    reads:\n      - docs/x.md\n      - src/../../x\n",
        "batch.yaml:7: tasks[0].reads[1]: invalid path 'src/../../x': the path leaves the repository root",
    ),
    (
        "bad glob in owns",
        "agents:\n  dev:\n    preset: claude\n    owns: ['src/[ab']\n",
        "batch.yaml:4: agents.dev.owns[0]: invalid path 'src/[ab': "
        "unterminated character class '[ab' (write \\[ for a literal [)",
    ),
    (
        "agent with command and preset",
        "agents:\n  dev:\n    preset: claude\n    command: [claude]\n",
        "batch.yaml:3: agents.dev: give either command or preset, not both "
        "(command: [program, args...] or preset: claude | codex | aider | gemini | cursor | opencode | goose | shell)",
    ),
    (
        "agent with neither command nor preset",
        "agents:\n  dev:\n    owns: [src/**]\n",
        "batch.yaml:3: agents.dev: needs a command or a preset "
        "(command: [program, args...] or preset: claude | codex | aider | gemini | cursor | opencode | goose | shell)",
    ),
    (
        "agent is null",
        "agents:\n  dev:\n",
        "batch.yaml:2: agents.dev: expected a mapping, got nothing (null)",
    ),
    (
        "agent name with a space",
        "agents:\n  code dev: {preset: claude}\n",
        "batch.yaml:2: agents.code dev: an agent name is non-empty and has no spaces, got 'code dev'",
    ),
    (
        "empty command",
        "agents:\n  dev:\n    command: []\n",
        "batch.yaml:3: agents.dev.command: must not be empty: give [program, args...]",
    ),
    (
        "command is a string",
        "agents:\n  dev:\n    command: claude -p\n",
        "batch.yaml:3: agents.dev.command: expected a list of strings, got a string 'claude -p' (write [claude -p])",
    ),
    (
        "unknown preset, suggestion",
        "agents:\n  dev:\n    preset: claud\n",
        "batch.yaml:3: agents.dev.preset: unknown preset 'claud' (did you mean 'claude'?); "
        "presets: claude, codex, aider, gemini, cursor, opencode, goose, shell",
    ),
    (
        "placeholder typo in command",
        "agents:\n  dev:\n    command:\n      - claude\n      - -p\n      - 'do: {descripton}'\n",
        "batch.yaml:6: agents.dev.command[2]: unknown placeholder {descripton} (did you mean {description}?); "
        "placeholders: {description}, {task_id}, {files}, {reads}, {prompt}",
    ),
    (
        "placeholder typo in prompt",
        "agents:\n  dev:\n    preset: claude\n    prompt: 'do {descripton} on {files}'\n",
        "batch.yaml:4: agents.dev.prompt: unknown placeholder {descripton} (did you mean {description}?); "
        "placeholders: {description}, {files}, {reads}",
    ),
    (
        "malformed YAML: unclosed flow mapping",
        "tasks:\n  - {id: a, agent: x\n  - {id: b}\n",
        "batch.yaml:3: invalid YAML: expected ',' or '}', but got '{' (while parsing a flow mapping)",
    ),
    (
        "malformed YAML: bad indentation",
        "tasks:\n  - id: a\n   agent: x\n",
        "batch.yaml:3: invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block collection)",
    ),
    (
        "two YAML documents",
        "tasks: []\n---\ntasks: []\n",
        "batch.yaml:2: invalid YAML: but found another document (expected a single document in the stream)",
    ),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in BATCH_ERRORS], ids=[c[0] for c in BATCH_ERRORS])
def test_load_batch_rejects(write: Write, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_batch(write(text))
    assert str(info.value) == message
    error = info.value
    assert error.source == "batch.yaml"
    assert error.line is not None
    assert message.startswith(f"batch.yaml:{error.line}: {error.field + ': ' if error.field else ''}{error.message}")


def test_config_error_is_a_value_error_with_data() -> None:
    error = ConfigError("batch.yaml", 12, "tasks[1].timeout", "bad")
    assert isinstance(error, ValueError)
    assert (error.source, error.line, error.field, error.message) == ("batch.yaml", 12, "tasks[1].timeout", "bad")
    assert str(error) == "batch.yaml:12: tasks[1].timeout: bad"
    assert str(ConfigError("arguments", None, None, "no tasks")) == "arguments: no tasks"


def test_load_batch_missing_file(write: Write) -> None:
    with pytest.raises(ConfigError) as info:
        load_batch(Path("nope.yaml"))
    assert str(info.value).startswith("nope.yaml: cannot read the file: ")


# --- repo agents --------------------------------------------------------------------------------


def test_repo_agents_absent(tmp_path: Path) -> None:
    assert load_repo_agents(tmp_path) == {}


def test_repo_agents_and_merge(tmp_path: Path, write: Write) -> None:
    write(
        """
        agents:
          code_developer:
            command: [claude, -p, "{description}"]
            owns: [src/**]
          reviewer: {preset: codex}
        """,
        "project-manager.yaml",
    )
    repo = load_repo_agents(tmp_path)
    assert repo == {
        "code_developer": AgentSpec("code_developer", ("claude", "-p", "{description}"), ("src/**",)),
        "reviewer": AgentSpec("reviewer", PRESETS["codex"], (), report="codex"),
    }
    batch = load_batch(write("agents:\n  code_developer: {preset: aider, owns: [lib/**]}\n"))
    merged = merge_agents(repo, batch.agents)
    assert merged == {
        "code_developer": AgentSpec("code_developer", PRESETS["aider"], ("lib/**",), report="aider"),
        "reviewer": AgentSpec("reviewer", PRESETS["codex"], (), report="codex"),
    }
    assert merge_agents(repo, {}) == repo
    assert merge_agents({}, batch.agents) == batch.agents


def test_repo_config_keep_runs(tmp_path: Path, write: Write) -> None:
    assert load_repo_config(tmp_path) == RepoConfig({}, None)
    write("keep_runs: 20\n", "project-manager.yaml")
    assert load_repo_config(tmp_path) == RepoConfig({}, 20)
    assert load_repo_agents(tmp_path) == {}
    write("agents: {}\nkeep_runs: no\n", "project-manager.yaml")
    with pytest.raises(ConfigError) as info:
        load_repo_config(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'project-manager.yaml'}:2: keep_runs: expected an integer, got a boolean 'no'"
    )


def test_repo_agents_rejects_other_keys(tmp_path: Path, write: Write) -> None:
    write("agents: {}\ntasks: []\n", "project-manager.yaml")
    with pytest.raises(ConfigError) as info:
        load_repo_agents(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'project-manager.yaml'}:2: tasks: unknown key 'tasks'; "
        "expected one of: agents, keep_runs, on_finish, setup, worktree_root, worktree_pool, limits, pools, hooks, "
        "cluster"
    )


def test_repo_agents_same_rules(tmp_path: Path, write: Write) -> None:
    write("agents:\n  dev:\n    command: [claude]\n    owns: [/abs]\n", "project-manager.yaml")
    with pytest.raises(ConfigError) as info:
        load_repo_agents(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'project-manager.yaml'}:4: agents.dev.owns[0]: invalid path '/abs': "
        "absolute paths are not allowed; give a path relative to the repository root"
    )


# --- validate_batch -----------------------------------------------------------------------------


def test_validate_full_example(write: Write) -> None:
    batch = load_batch(write(FULL_EXAMPLE))
    validate_batch(batch, batch.agents, found)


def test_validate_preset_used_implicitly() -> None:
    tasks = (parse_task_string("claude: fix it", 1), parse_task_string("shell: echo hi", 2))
    seen: list[str] = []

    def which(name: str) -> str | None:
        seen.append(name)
        return f"/usr/bin/{name}"

    validate_batch(Batch(None, {}, tasks), {}, which)
    assert seen == ["claude", "sh"]


def test_validate_definition_overrides_preset_name() -> None:
    agents = {"claude": AgentSpec("claude", ("my-claude", "{description}"))}
    seen: list[str] = []

    def which(name: str) -> str | None:
        seen.append(name)
        return name

    validate_batch(Batch(None, agents, (parse_task_string("claude: go", 1),)), agents, which)
    assert seen == ["my-claude"]


def test_validate_checks_each_used_agent_once() -> None:
    agents = {
        "dev": AgentSpec("dev", ("dev-agent",)),
        "unused": AgentSpec("unused", ("not-installed",)),
    }
    tasks = tuple(parse_task_string(f"dev: task {i}", i) for i in range(1, 4))
    seen: list[str] = []

    def which(name: str) -> str | None:
        seen.append(name)
        return None if name == "not-installed" else name

    validate_batch(Batch(None, agents, tasks), agents, which)
    assert seen == ["dev-agent"]


def test_validate_unknown_agent_in_file(write: Write) -> None:
    batch = load_batch(
        write("""
        agents:
          code_developer: {preset: claude}
          reviewer: {preset: codex}
        tasks:
          - id: parser
            agent: code_develper
            description: d
        """)
    )
    with pytest.raises(ConfigError) as info:
        validate_batch(batch, batch.agents, found)
    assert str(info.value) == (
        "batch.yaml:6: tasks[0].agent: task 'parser' uses unknown agent 'code_develper' "
        "(did you mean 'code_developer'?); defined agents: code_developer, reviewer; "
        "presets: claude, codex, aider, gemini, cursor, opencode, goose, shell"
    )


def test_validate_unknown_agent_in_argument() -> None:
    batch = Batch(None, {}, (parse_task_string("architect: design it", 2),))
    with pytest.raises(ConfigError) as info:
        validate_batch(batch, {}, found)
    assert str(info.value) == (
        "argument 2: agent: task 't2' uses unknown agent 'architect'; defined agents: (none); "
        "presets: claude, codex, aider, gemini, cursor, opencode, goose, shell"
    )


def test_validate_missing_executable_of_defined_agent(write: Write) -> None:
    batch = load_batch(write(FULL_EXAMPLE))
    with pytest.raises(ConfigError) as info:
        validate_batch(batch, batch.agents, missing)
    assert str(info.value) == (
        "batch.yaml:4: agents.code_developer.command[0]: "
        "executable 'claude' of agent 'code_developer' was not found on PATH"
    )


def test_validate_missing_executable_of_preset_agent(write: Write) -> None:
    batch = load_batch(write("agents:\n  dev:\n    preset: gemini\ntasks:\n  - {id: a, agent: dev, description: d}\n"))
    with pytest.raises(ConfigError) as info:
        validate_batch(batch, batch.agents, missing)
    assert (
        str(info.value) == "batch.yaml:3: agents.dev.preset: executable 'gemini' of agent 'dev' was not found on PATH"
    )


def test_validate_missing_executable_of_implicit_preset() -> None:
    batch = Batch(None, {}, (parse_task_string("codex: go", 1),))
    with pytest.raises(ConfigError) as info:
        validate_batch(batch, {}, missing)
    assert (
        str(info.value)
        == "argument 1: agent: executable 'codex' of preset agent 'codex' (task 't1') was not found on PATH"
    )


def test_validate_hand_built_specs_without_origin() -> None:
    batch = Batch(None, {}, (TaskSpec("x", "nobody", "d"),))
    with pytest.raises(ConfigError) as info:
        validate_batch(batch, {}, found)
    assert str(info.value).startswith("task 'x': agent: task 'x' uses unknown agent 'nobody'; ")
    agents = {"dev": AgentSpec("dev", ())}
    with pytest.raises(ConfigError) as info:
        validate_batch(Batch(None, agents, (TaskSpec("x", "dev", "d"),)), agents, found)
    assert str(info.value) == "task 'x': agent: agent 'dev' has an empty command"


def test_file_and_argument_tasks_together(tmp_path: Path, write: Write) -> None:
    """The flow of `delegate-multiple "..." --file batch.yaml`: repo agents, file, arguments."""
    write("agents:\n  code_developer:\n    command: [claude, -p, '{description}']\n", "project-manager.yaml")
    file_batch = load_batch(
        write("agents:\n  tester: {preset: shell}\ntasks:\n  - {id: a, agent: tester, description: ls}\n")
    )
    agents = merge_agents(load_repo_agents(tmp_path), file_batch.agents)
    tasks = (*file_batch.tasks, parse_task_string("code_developer: fix @src/p.py", 1))
    validate_batch(Batch(file_batch.max_parallel, agents, tasks), agents, found)
    assert [t.id for t in tasks] == ["a", "t1"]
    assert set(agents) == {"code_developer", "tester"}


def test_a_duration_longer_than_a_week_is_refused() -> None:
    """Before: 10000000000 was accepted, and then crashed the timer (OverflowError) or a keeper."""
    assert parse_duration("168h") == 7 * 24 * 3600
    for text in ("169h", "10000000000", 1e10):
        with pytest.raises(ValueError, match="at most 168h"):
            parse_duration(text)


def test_a_tasks_retry_back_off_is_read_from_yaml_and_reaches_its_agent_task(write: Write) -> None:
    """Before: retry_delay and the back-off fields could be set only through the library (issue 12)."""
    batch = load_batch(
        write(
            """
            tasks:
              - {id: a, agent: shell, description: d, retries: 2, retry_delay: 2m, retry_backoff: 3,
                 retry_max_delay: 1h, retry_jitter: 0}
              - {id: b, agent: shell, description: d}
            """
        )
    )
    a, b = batch.tasks
    assert dict(a.backoff) == {
        "retry_delay": 120.0,
        "retry_backoff": 3.0,
        "retry_max_delay": 3600.0,
        "retry_jitter": 0.0,
    }
    assert b.backoff == ()
    task = AgentTask("shell", "d", [], lambda: None, **dict(a.backoff))
    assert (task.retry_delay, task.retry_backoff, task.retry_max_delay, task.retry_jitter) == (120.0, 3.0, 3600.0, 0.0)
