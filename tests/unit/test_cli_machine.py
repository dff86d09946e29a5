"""What a batch says of the machine, from the command line: ``memory:``, ``cpus:`` and ``limits:``
read and checked (file, line, field), ``--limit-cpu``/``--limit-memory``, ``--max-parallel
auto``, and how a run reports them (summary, --json, the live view's Resources)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cli import config_machine
from cli.config import ConfigError, Needs
from cli.config_files import load_batch, load_repo_config
from cli.config_machine import merged_limits, parse_cpus, parse_max_parallel, parse_percent, parse_size
from cli.panels import Columns, run_view
from cli.render import MachineUse
from cli.usage import Machine, Usage
from queue_core import QueueStatus
from queue_core.machine import GIB, Limits, Reading
from queue_core.machine_rule import AutoParallel

from .test_cli import invoke


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2G", 2 * GIB),
        ("512M", 512 * 2**20),
        ("1.5G", 3 * GIB // 2),
        ("2GiB", 2 * GIB),
        ("2 gb", 2 * GIB),
        ("64k", 64 * 1024),
        ("1T", 2**40),
        ("1048576", 2**20),
        (4096, 4096),
    ],
)
def test_a_size_counts_in_powers_of_1024(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2X", "expected a size like 512M or 2G (K, M, G, T: powers of 1024), got '2X'"),
        ("-1G", "expected a size like 512M or 2G (K, M, G, T: powers of 1024), got '-1G'"),
        ("G", "expected a size like 512M or 2G (K, M, G, T: powers of 1024), got 'G'"),
        ("0", "a size must be at least 1 byte, got '0'"),
        (0, "a size must be at least 1 byte, got 0"),
    ],
)
def test_a_size_that_is_none_is_refused(text: str | int, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        parse_size(text)


def test_cpus_and_percentages_and_max_parallel() -> None:
    assert parse_cpus(1) == 1.0
    assert parse_cpus(1.5) == 1.5
    for bad in (-1, 0, "two", True):
        with pytest.raises(ValueError, match="cores"):
            parse_cpus(bad)
    assert parse_percent("85%") == parse_percent("85") == parse_percent(85) == 85.0
    assert parse_percent("0.5%") == 0.5
    for bad in ("150%", "0%", "-5%", "lots", 101):
        with pytest.raises(ValueError, match="expected a percentage like 85%, more than 0% and at most 100%"):
            parse_percent(bad)
    assert parse_max_parallel("auto") == parse_max_parallel("AUTO") == "auto"
    assert parse_max_parallel("3") == 3
    with pytest.raises(ValueError, match="must be at least 1, got 0"):
        parse_max_parallel("0")
    with pytest.raises(ValueError, match="expected a number of tasks or auto, got 'many'"):
        parse_max_parallel("many")


def test_each_limit_comes_from_the_flags_else_the_batch_else_the_repository() -> None:
    assert merged_limits(Limits(), Limits(), Limits()) == Limits()
    assert merged_limits(Limits(cpu=50), Limits(cpu=70, memory=80), Limits(memory=95)) == Limits(50, 80)
    assert merged_limits(Limits(), Limits(), Limits(memory=95)) == Limits(memory=95)


# --- the files ------------------------------------------------------------------------------

BATCH = """\
limits: {cpu: 85%, memory: 90}
agents:
  builder:
    command: [make]
    memory: 2G
    cpus: 1.5
tasks:
  - id: a
    agent: builder
    description: build a
  - id: b
    agent: builder
    description: build b
    memory: 512M
  - id: c
    agent: shell
    description: plain
"""


def test_a_batch_reads_limits_and_needs_and_a_tasks_own_need_wins(tmp_path: Path) -> None:
    batch = load_batch(write(tmp_path / "batch.yaml", BATCH))
    assert batch.limits == Limits(85, 90)
    builder = batch.agents["builder"].needs
    assert (builder.memory, builder.cpus) == (2 * GIB, 1.5)
    needs = {t.id: config_machine.task_needs(t, {n: a.needs for n, a in batch.agents.items()}) for t in batch.tasks}
    assert (needs["a"].memory, needs["a"].cpus) == (2 * GIB, 1.5)
    assert (needs["b"].memory, needs["b"].cpus) == (512 * 2**20, 1.5)  # its own memory, its agent's cpus
    assert needs["c"] == Needs()
    assert needs["b"].memory_origin is not None
    assert needs["b"].memory_origin.line == 14


def test_the_repository_config_reads_limits(tmp_path: Path) -> None:
    write(tmp_path / "project-manager.yaml", "limits:\n  memory: 80%\n")
    assert load_repo_config(tmp_path).limits == Limits(memory=80)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "tasks:\n  - id: a\n    agent: shell\n    description: d\n    memory: 2X\n",
            "batch.yaml:5: tasks[0].memory: expected a size like 512M or 2G (K, M, G, T: powers of 1024), got '2X'",
        ),
        (
            "tasks:\n  - id: a\n    agent: shell\n    description: d\n    cpus: -1\n",
            "batch.yaml:5: tasks[0].cpus: must be more than 0 cores, got -1",
        ),
        (
            "limits: {cpu: 150%}\n",
            "batch.yaml:1: limits.cpu: expected a percentage like 85%, more than 0% and at most 100%, got '150%'",
        ),
        (
            "limits:\n  memory: 90%\n  disk: 50%\n",
            "batch.yaml:3: limits.disk: unknown key 'disk'; expected one of: cpu, memory",
        ),
        ("limits: 90%\n", "batch.yaml:1: limits: expected a mapping, got a string '90%'"),
        (
            "agents:\n  dev:\n    preset: claude\n    cpus: [1]\n",
            "batch.yaml:4: agents.dev.cpus: expected a value, got a list",
        ),
        (
            "agents:\n  dev:\n    preset: claude\n    memory: true\n",
            "batch.yaml:4: agents.dev.memory: expected a value, got a boolean",
        ),
    ],
)
def test_a_bad_need_or_limit_names_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_batch(write(tmp_path / "batch.yaml", text))
    assert str(error.value) == f"{tmp_path}/{message}"


# --- runs -----------------------------------------------------------------------------------


def test_a_need_the_machine_can_never_meet_exits_2_naming_where_it_was_written(repo: Path) -> None:
    batch = write(
        repo / "batch.yaml",
        "agents:\n  big:\n    preset: shell\n    memory: 1000T\n"
        "tasks:\n  - id: a\n    agent: big\n    description: touch ran.txt\n",
    )
    code, _, err = invoke("delegate-multiple", "--file", str(batch), "--repo", str(repo))
    assert code == 2
    assert f"{batch}:4: agents.big.memory: task 'a' needs 1024000.0 GiB of memory; this machine has" in err
    assert not (repo / "ran.txt").exists()
    code, _, err = invoke("delegate-multiple", "shell: touch ran.txt @x", "--limit-cpu", "150", "--repo", str(repo))
    assert code == 2
    assert "expected a percentage like 85%, more than 0% and at most 100%, got '150'" in err


def test_max_parallel_auto_resolves_to_a_number_shown_in_the_summary_and_json(repo: Path) -> None:
    args = ("delegate-multiple", "shell: true @a", "shell: true @b", "--max-parallel", "auto", "--repo", str(repo))
    code, out, err = invoke(*args, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert isinstance(report["max_parallel"], int)
    assert report["max_parallel"] >= 1
    auto = report["max_parallel_auto"]
    assert 1 <= auto["least"] <= report["max_parallel"] <= auto["most"] <= auto["most_allowed"]
    assert "limits" not in report
    code, out, err = invoke(*args, "--limit-memory", "99%")
    assert code == 0, err
    assert f"max_parallel auto: {report['max_parallel']}" in out
    assert "limits: memory 99%" in out


def test_a_batch_may_say_max_parallel_auto_and_the_flag_wins_over_it(repo: Path, tmp_path: Path) -> None:
    batch = write(tmp_path / "batch.yaml", "max_parallel: auto\n")
    assert load_batch(batch).max_parallel == "auto"
    args = ("delegate-multiple", "shell: true @a", "--file", str(batch), "--repo", str(repo), "--json")
    code, out, err = invoke(*args)
    assert code == 0, err
    assert "max_parallel_auto" in json.loads(out)
    code, out, err = invoke(*args, "--max-parallel", "3")
    assert code == 0, err
    assert "max_parallel_auto" not in json.loads(out)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_parallel: many\n", "batch.yaml:1: max_parallel: expected an integer or auto, got a string 'many'"),
        ("max_parallel: 0\n", "batch.yaml:1: max_parallel: must be at least 1, got 0"),
    ],
)
def test_a_batch_max_parallel_is_a_count_or_auto(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_batch(write(tmp_path / "batch.yaml", text))
    assert str(caught.value).endswith(message)


class Busy:
    """A machine whose memory is 93% in use: what the sampler reads in these runs."""

    def __init__(self, *_: Any) -> None:
        pass

    def read(self) -> Reading:
        return Reading.of(20.0, 16 * GIB * 7 // 100, 16 * GIB, 4)


def test_a_dry_run_plans_with_the_limits_on_the_machine_now(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_machine, "PsutilSampler", Busy)
    batch = write(repo / "batch.yaml", "agents:\n  one: {preset: shell}\n  two: {preset: shell}\n")
    tasks = ("--file", str(batch), "one: true @a", "two: true @b")
    code, out, err = invoke("delegate-multiple", *tasks, "--limit-memory", "90", "--dry-run", "--repo", str(repo))
    assert code == 0, err
    assert "  t2 [two]: memory 93% > 90%\n" in out  # one starts: nothing runs yet
    code, out, err = invoke("delegate-multiple", *tasks, "--dry-run", "--json", "--repo", str(repo))
    assert code == 0, err
    assert json.loads(out)["starts"] == ["t1", "t2"]  # no limit: the machine is not looked at


def test_a_run_with_a_cpu_limit_measures_cpu_before_it_plans(repo: Path) -> None:
    batch = write(repo / "batch.yaml", "agents:\n  one: {preset: shell}\n  two: {preset: shell}\n")
    args = ("--file", str(batch), "one: true @a", "two: true @b", "--limit-cpu", "50", "--dry-run")
    code, out, err = invoke("delegate-multiple", *args, "--repo", str(repo))
    assert code == 0, err
    assert "not measured" not in out  # t2 starts, or waits for a CPU measured: "cpu 97% > 50%"


def test_the_summary_says_what_auto_came_to_and_the_limits() -> None:
    def text(least: int, most: int, allowed: int, limits: Limits | None = None) -> str | None:
        auto = AutoParallel(2, allowed)
        auto.least, auto.most = least, most
        return MachineUse(auto, limits or Limits()).text()

    assert text(2, 2, 2) == "max_parallel auto: 2"
    assert text(2, 2, 4) == "max_parallel auto: 2 (up to 4 if the machine is free)"
    assert text(1, 3, 4, Limits(85, 90)) == (
        "max_parallel auto: 2 at the start, 1-3 during the run (up to 4 if the machine is free); "
        "limits: CPU 85%, memory 90%"
    )
    assert MachineUse(None, Limits(memory=1)).text() == "limits: memory 1%"
    assert MachineUse().text() is None
    assert MachineUse().to_json() == {}


def test_the_live_views_resources_show_the_limits_when_set() -> None:
    def resources(limits: Limits | None) -> list[str]:
        view = run_view(
            QueueStatus(queued_tasks=0, max_parallel=2),
            columns=Columns(),
            agents=Usage(0.0, 0),
            machine=Machine(54.0, 2, 3 * GIB, 16 * GIB),
            cost=None,
            elapsed_s=1.0,
            limits=limits,
        )
        console = Console(width=80, height=24, record=True, file=io.StringIO(), force_terminal=True, color_system=None)
        console.print(view)
        lines = console.export_text().splitlines()
        return lines[next(i for i, line in enumerate(lines) if "Resources" in line) + 1 : -1]

    assert len(resources(None)) == 2
    assert resources(Limits(85, 90))[2] == (
        f"│ {'limits   CPU 85%, memory 90%: no new task while above (one if none runs)':<76} │"
    )
