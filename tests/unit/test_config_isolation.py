"""Batch files and project-manager.yaml: ``isolation``, ``merge``, ``on_violation`` (on a task, an
agent or the batch), an agent's ``instances``, and the repository's ``setup`` and ``worktree_root``.

Which level decides: the task, then its agent, then ``--isolation``, then the batch, then the
defaults (shared, merge, fail). Several instances of an agent need every one of its tasks in a
worktree: two agents in one checkout is what the tool exists to prevent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.config import DEFAULT_ISOLATION, ConfigError, Isolation, check_instances, task_isolation
from cli.config_files import load_batch, load_repo_config

from .test_config import Write

BATCH = """
isolation: worktree
merge: squash
agents:
  dev:
    preset: claude
    instances: 3
    on_violation: warn
  docs:
    preset: codex
    isolation: shared
tasks:
  - {id: a, agent: dev, description: one}
  - {id: b, agent: dev, description: two, merge: rebase, on_violation: fail}
  - {id: c, agent: docs, description: three}
  - {id: d, agent: docs, description: four, isolation: worktree, merge: none}
"""


def test_each_level_decides_what_the_ones_before_it_leave_open(write: Write) -> None:
    batch = load_batch(write(BATCH))
    assert batch.isolation == Isolation("worktree", "squash", None)
    assert batch.agents["dev"].instances == 3
    assert batch.agents["docs"].instances == 1
    got = {t.id: task_isolation(t, batch.agents.get(t.agent), batch) for t in batch.tasks}
    assert got == {
        "a": Isolation("worktree", "squash", "warn"),  # the agent's on_violation, the batch's others
        "b": Isolation("worktree", "rebase", "fail"),  # the task's own
        "c": Isolation("shared", "squash", "fail"),  # the agent says shared; the default on_violation
        "d": Isolation("worktree", "none", "fail"),  # the task overrides its agent
    }


def test_the_flag_comes_after_agents_and_tasks_but_before_the_batch(write: Write) -> None:
    batch = load_batch(write(BATCH))
    by_id = {t.id: t for t in batch.tasks}
    assert task_isolation(by_id["a"], batch.agents["dev"], batch, "shared").mode == "shared"
    assert task_isolation(by_id["c"], batch.agents["docs"], batch, "worktree").mode == "shared"
    assert task_isolation(by_id["d"], batch.agents["docs"], batch, "shared").mode == "worktree"


def test_nothing_set_is_todays_behaviour(write: Write) -> None:
    batch = load_batch(write("tasks:\n  - {id: a, agent: claude, description: x}\n"))
    assert task_isolation(batch.tasks[0], None, batch) == DEFAULT_ISOLATION == Isolation("shared", "merge", "fail")


def test_several_instances_with_a_task_that_would_share_the_checkout_are_refused(write: Write) -> None:
    text = """
    agents:
      dev: {preset: claude, instances: 2}
    tasks:
      - {id: a, agent: dev, description: one, isolation: worktree}
      - {id: b, agent: dev, description: two}
    """
    batch = load_batch(write(text))
    with pytest.raises(ConfigError) as caught:
        check_instances(batch, batch.agents)
    assert str(caught.value) == (
        "batch.yaml:5: tasks[1].agent: agent 'dev' runs 2 instances at once, so each of its tasks needs a "
        "worktree of its own (isolation: worktree); task 'b' would share the checkout"
    )
    check_instances(batch, batch.agents, "worktree")  # --isolation worktree: every task has its own


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "isolation: container\n",
            "batch.yaml:1: isolation: expected one of shared, worktree, got 'container'",
        ),
        (
            "merge: squahs\n",
            "batch.yaml:1: merge: expected one of merge, squash, rebase, none, got 'squahs' (did you mean 'squash'?)",
        ),
        (
            "agents:\n  dev: {preset: claude, instances: 0}\n",
            "batch.yaml:2: agents.dev.instances: must be at least 1, got 0",
        ),
        (
            "agents:\n  dev: {preset: claude, on_violation: ignore}\n",
            "batch.yaml:2: agents.dev.on_violation: expected one of fail, warn, got 'ignore'",
        ),
        (
            "tasks:\n  - {id: a, agent: x, description: y, isolation: [worktree]}\n",
            "batch.yaml:2: tasks[0].isolation: expected a string, got a list",
        ),
    ],
)
def test_bad_values_name_the_file_line_and_field(write: Write, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_batch(write(text))
    assert str(caught.value) == message


def test_the_repository_gives_setup_commands_and_a_worktree_root(write: Write) -> None:
    write("setup:\n  - [npm, ci]\n  - [make, -j2]\nworktree_root: ../trees\n", "project-manager.yaml")
    config = load_repo_config(Path())
    assert config.setup == (("npm", "ci"), ("make", "-j2"))
    assert config.worktree_root == "../trees"


def test_worktree_pool_is_how_many_idle_worktrees_are_kept_none_by_default(write: Write) -> None:
    assert load_repo_config(Path()).worktree_pool == 0  # no file
    write("worktree_pool: 3\n", "project-manager.yaml")
    assert load_repo_config(Path()).worktree_pool == 3
    write("worktree_pool: 0\n", "project-manager.yaml")
    assert load_repo_config(Path()).worktree_pool == 0
    write("worktree_pool:\n", "project-manager.yaml")
    assert load_repo_config(Path()).worktree_pool == 0  # null: the default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("worktree_pool: -1\n", "project-manager.yaml:1: worktree_pool: must be at least 0, got -1"),
        ("worktree_pool: x\n", "project-manager.yaml:1: worktree_pool: expected an integer, got a string 'x'"),
        (
            'keep_runs: 5\nworktree_pool: "2"\n',
            "project-manager.yaml:2: worktree_pool: expected an integer, got a string '2'",
        ),
        ("worktree_pool: true\n", "project-manager.yaml:1: worktree_pool: expected an integer, got a boolean 'true'"),
        ("worktree_pool: [1]\n", "project-manager.yaml:1: worktree_pool: expected an integer, got a list"),
    ],
)
def test_a_bad_worktree_pool_names_the_file_line_and_field(write: Write, text: str, message: str) -> None:
    write(text, "project-manager.yaml")
    with pytest.raises(ConfigError) as caught:
        load_repo_config(Path())
    assert str(caught.value) == message


def test_a_setup_command_is_an_argv_never_a_shell_string(write: Write) -> None:
    write("setup:\n  - npm ci && make\n", "project-manager.yaml")
    with pytest.raises(ConfigError) as caught:
        load_repo_config(Path())
    assert str(caught.value) == (
        "project-manager.yaml:2: setup[0]: expected a command as a list, [program, args...] (no shell runs it), "
        "got a string 'npm ci && make'"
    )
