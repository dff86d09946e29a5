"""``--events`` and ``--fail-fast`` refused as bad input before anything runs (exit 2), through typer's CliRunner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()


def invoke(repo: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["delegate-multiple", *args, "--repo", str(repo)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


@pytest.mark.parametrize("bad_id", ['a"b', "ü", "a b", ".hidden", "a\\nb"])
def test_an_id_a_journal_could_not_name_is_refused_and_nothing_is_written(
    repo: Path, tmp_path: Path, bad_id: str
) -> None:
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        f"tasks:\n  - {{id: {json.dumps(bad_id)}, agent: shell, description: 'touch ran', files: [ran]}}\n"
    )
    code, _, err = invoke(repo, "--file", str(batch), "--events", str(tmp_path / "events.jsonl"))
    assert code == 2
    assert f"{batch}:2: tasks[0].id" in err
    assert not (tmp_path / "events.jsonl").exists()
    assert not (repo / "ran").exists()


def test_events_to_stdout_with_json_is_refused(repo: Path) -> None:
    code, out, err = invoke(repo, "shell: touch ran @ran", "--events", "-", "--json")
    assert code == 2
    assert "--events - writes on stdout, where --json prints the run's object: give --events a file" in err
    assert out == ""
    assert not (repo / "ran").exists()


def test_events_that_cannot_be_written_are_refused(repo: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "unread.fifo")
    for target, why in (
        (tmp_path / "missing" / "events.jsonl", "No such file or directory"),
        (tmp_path, "Is a directory"),
        (tmp_path / "unread.fifo", "No such device or address"),
    ):
        code, _, err = invoke(repo, "shell: touch ran @ran", "--events", str(target))
        assert code == 2, target
        assert f"--events {target}: cannot write it ({why})" in err
        assert not (repo / "ran").exists()


def test_fail_fast_takes_cancel_as_its_only_value(repo: Path) -> None:
    code, _, err = invoke(repo, "shell: touch ran @ran", "--fail-fast=cancel")
    assert code == 0, err
    assert (repo / "ran").exists()
    for bad in ("--fail-fast=stop", "--fail-fast="):
        code, _, err = invoke(repo, "shell: touch other @other", bad)
        assert code == 2, bad
        assert "--fail-fast takes no value but cancel (--fail-fast=cancel)" in err
    assert not (repo / "other").exists()
