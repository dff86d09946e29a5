"""Quota pools in batch files and project-manager.yaml: declared at the top, taken by agents and
tasks (a list of names, or names to units), and checked before anything runs.

Every error case checks the whole message, ``file:line: field: reason``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.config import ConfigError, PoolTake
from cli.config_files import load_batch, load_repo_config
from cli.config_pools import check_pools, merge_pools, task_takes

from ..conftest import git_repo
from .test_cli import invoke
from .test_config import Write

BATCH = """
pools: {anthropic: 2, gpu: 1}
agents:
  dev:
    preset: claude
    pools: [anthropic]
  trainer:
    command: [sh, -c, "true"]
    pools: {gpu: 1, anthropic: 2}
tasks:
  - {id: a, agent: dev, description: one}
  - {id: b, agent: dev, description: two, pools: {anthropic: 2}}
  - {id: c, agent: trainer, description: three}
  - {id: d, agent: trainer, description: four, pools: []}
  - {id: e, agent: shell, description: five, pools: [gpu]}
"""


def test_pools_are_declared_at_the_top_and_taken_by_agents_and_tasks(write: Write) -> None:
    batch = load_batch(write(BATCH))
    assert batch.pools == {"anthropic": 2, "gpu": 1}
    assert batch.agents["dev"].pools == (PoolTake("anthropic", 1),)
    takes = {t.id: task_takes(t, batch.agents.get(t.agent)) for t in batch.tasks}
    assert takes == {
        "a": (PoolTake("anthropic", 1),),  # its agent's
        "b": (PoolTake("anthropic", 2),),  # its own replaces its agent's
        "c": (PoolTake("gpu", 1), PoolTake("anthropic", 2)),
        "d": (),  # its own: none
        "e": (PoolTake("gpu", 1),),
    }
    check_pools(batch, batch.agents)


def test_a_take_remembers_where_it_was_written(write: Write) -> None:
    batch = load_batch(write(BATCH))
    origin = batch.tasks[1].pools[0].origin  # type: ignore[index]
    assert origin is not None
    assert (origin.source, origin.line, origin.field) == ("batch.yaml", 11, "tasks[1].pools.anthropic")
    origin = batch.agents["dev"].pools[0].origin  # type: ignore[index]
    assert origin is not None
    assert (origin.line, origin.field) == (5, "agents.dev.pools[0]")


def test_the_repository_declares_pools_and_a_batch_changes_their_counts(tmp_path: Path, write: Write) -> None:
    write("pools: {anthropic: 4, gpu: 1}\n", "project-manager.yaml")
    assert load_repo_config(Path()).pools == {"anthropic": 4, "gpu": 1}
    assert merge_pools({"anthropic": 4, "gpu": 1}, {"anthropic": 2, "tpu": 8}) == {"anthropic": 2, "gpu": 1, "tpu": 8}
    write("pools:\n", "project-manager.yaml")
    assert load_repo_config(Path()).pools == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "pools: [anthropic]\n",
            "batch.yaml:1: pools: expected a mapping of pool names to units, {anthropic: 2}, got a list",
        ),
        ("pools: {anthropic: 0}\n", "batch.yaml:1: pools.anthropic: must be at least 1, got 0"),
        ("pools: {anthropic: two}\n", "batch.yaml:1: pools.anthropic: expected an integer, got a string 'two'"),
        (
            "pools: {a b: 1}\n",
            "batch.yaml:1: pools.a b: a pool name is 1 to 100 letters, digits, '.', '_' or '-', "
            "not starting with '.', got 'a b'",
        ),
        (
            "tasks:\n  - {id: a, agent: shell, description: x, pools: anthropic}\n",
            "batch.yaml:2: tasks[0].pools: expected a list of pool names, [anthropic], or a mapping of pool names "
            "to units, {gpu: 2}, got a string 'anthropic' (write [anthropic])",
        ),
        (
            "tasks:\n  - {id: a, agent: shell, description: x, pools: [api, api]}\n",
            "batch.yaml:2: tasks[0].pools[1]: pool 'api' is named twice (give {api: N} for N units)",
        ),
        (
            "tasks:\n  - id: a\n    agent: shell\n    description: x\n    pools: {api: -1}\n",
            "batch.yaml:5: tasks[0].pools.api: must be at least 1, got -1",
        ),
        (
            "agents:\n  dev:\n    preset: claude\n    pools: [null]\n",
            "batch.yaml:4: agents.dev.pools[0]: expected a string, got nothing (null)",
        ),
    ],
)
def test_a_pools_key_that_is_not_what_it_should_be_is_refused_where_it_was_written(
    write: Write, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_batch(write(text))
    assert str(info.value) == message


UNDECLARED = """
pools: {anthropic: 2}
agents:
  trainer:
    command: [sh, -c, "true"]
    pools: [gpu]
tasks:
  - {id: a, agent: shell, description: x, pools: [anthropic]}
  - {id: b, agent: trainer, description: y}
"""


def test_a_pool_a_task_takes_that_nobody_declared_is_refused_where_it_was_written(write: Write) -> None:
    batch = load_batch(write(UNDECLARED))
    with pytest.raises(ConfigError) as info:
        check_pools(batch, batch.agents)
    assert str(info.value) == (
        "batch.yaml:5: agents.trainer.pools[0]: pool 'gpu' is not declared; declared pools: anthropic "
        "(declare it under pools: in the batch file or in project-manager.yaml)"
    )


def test_a_misspelt_pool_is_named_with_the_one_meant(write: Write) -> None:
    batch = load_batch(
        write("pools: {anthropic: 2}\ntasks:\n  - {id: a, agent: shell, description: x, pools: [antropic]}\n")
    )
    with pytest.raises(ConfigError, match=r"pool 'antropic' is not declared \(did you mean 'anthropic'\?\)"):
        check_pools(batch, batch.agents)


def test_more_units_than_a_pool_has_are_refused(write: Write) -> None:
    batch = load_batch(write("pools: {gpu: 1}\ntasks:\n  - {id: a, agent: shell, description: x, pools: {gpu: 2}}\n"))
    with pytest.raises(ConfigError) as info:
        check_pools(batch, batch.agents)
    assert str(info.value) == "batch.yaml:3: tasks[0].pools.gpu: task 'a' takes 2 units of pool 'gpu', which has 1"


def test_an_agent_no_task_uses_is_not_checked(write: Write) -> None:
    batch = load_batch(write(UNDECLARED.replace("  - {id: b, agent: trainer, description: y}\n", "")))
    check_pools(batch, batch.agents)


# --- through the command ----------------------------------------------------------------------------


def test_an_undeclared_pool_exits_2_before_anything_runs(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"README": "x\n"})
    batch = repo / "batch.yaml"
    batch.write_text("tasks:\n  - {id: a, agent: shell, description: touch ran, files: [ran], pools: [api]}\n")
    code, _, err = invoke("delegate-multiple", "--file", str(batch), "--repo", str(repo))
    assert code == 2
    assert "tasks[0].pools[0]: pool 'api' is not declared; declared pools: (none)" in err
    assert not (repo / "ran").exists()


def test_the_repositorys_pools_hold_a_batchs_tasks_and_the_plan_says_why_they_wait(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"README": "x\n"})
    (repo / "project-manager.yaml").write_text(
        "pools: {api: 1}\nagents:\n  caller:\n    preset: shell\n    pools: [api]\n"
    )
    tasks = "".join(f"  - {{id: t{i}, agent: caller, description: 'true', files: [f{i}]}}\n" for i in (1, 2))
    (repo / "batch.yaml").write_text("agents:\n  other:\n    preset: shell\n    pools: [api]\ntasks:\n" + tasks)
    code, out, err = invoke(
        "delegate-multiple", "--file", str(repo / "batch.yaml"), "--repo", str(repo), "--dry-run", "--json"
    )
    assert code == 0, err
    plan = json.loads(out)
    assert plan["starts"] == ["t1"]
    assert plan["waits"] == [{"id": "t2", "reason": "caller busy (t1); pool api full (1/1)"}]


def test_a_batch_gives_a_pool_more_units_than_the_repository_does(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"README": "x\n"})
    (repo / "project-manager.yaml").write_text("pools: {api: 1}\n")
    tasks = "".join(
        f"  - {{id: t{i}, agent: a{i}, description: 'true', files: [f{i}], pools: [api]}}\n" for i in (1, 2)
    )
    agents = "".join(f"  a{i}:\n    preset: shell\n" for i in (1, 2))
    (repo / "batch.yaml").write_text(f"pools: {{api: 2}}\nagents:\n{agents}tasks:\n{tasks}")
    code, out, err = invoke(
        "delegate-multiple", "--file", str(repo / "batch.yaml"), "--repo", str(repo), "--dry-run", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["starts"] == ["t1", "t2"]


def test_the_readmes_example_loads_and_without_gpu_is_refused_as_it_says(write: Write) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Quota pools: one API quota, shared by every run\n", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    batch = load_batch(write(example))
    check_pools(batch, batch.agents)
    assert batch.pools == {"anthropic": 2, "gpu": 1}
    batch = load_batch(write(example.replace("pools: {anthropic: 2, gpu: 1}", "pools: {anthropic: 2}")))
    with pytest.raises(ConfigError) as info:
        check_pools(batch, batch.agents)
    assert f"`{info.value}`" in " ".join(section.split())
