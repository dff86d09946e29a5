"""``delegate-multiple --junit PATH`` through the installed command, with agents that are shell
scripts on a real repository: a report valid against the Jenkins JUnit schema whatever the logs
hold, one written when the run is interrupted, and a path that cannot be written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.unit.test_junit import parse, validate

from ..conftest import WAIT, git_repo, interrupt_when_ready

SCRIPT = Path(sys.executable).with_name("project-manager")

#: An agent whose log holds what XML cannot (NUL, control characters, bytes that are not UTF-8)
#: and what it must escape; a failing one; one that outlives its timeout.
BATCH = r"""
agents:
  "odd<&]]>": {command: [sh, -c, "printf ']]> <b>&amp; \\000\\001\\033[31m\\377\\376 ::error::evil\\n'"]}
  broken: {command: [sh, -c, "echo oops; exit 3"]}
  sleeper: {command: [sleep, "30"]}
tasks:
  - {id: odd, agent: "odd<&]]>", description: hostile output, files: [a.txt]}
  - {id: broken, agent: broken, description: fails, files: [b.txt]}
  - {id: slow, agent: sleeper, description: sleeps, files: [c.txt], timeout: 0.3s}
  - {id: after, agent: broken, description: never runs, files: [d.txt], depends_on: [broken]}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {})


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(SCRIPT), "delegate-multiple", *args, "--repo", str(repo)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=repo, timeout=WAIT * 3)


def _cases(report: Path) -> dict[str, ET.Element]:
    data = report.read_bytes()
    validate(data)
    return {case.get("name") or "": case for case in parse(data).findall("testcase")}


def test_a_run_writes_a_valid_report_whatever_its_agents_wrote(repo: Path, tmp_path: Path) -> None:
    (repo / "batch.yaml").write_text(BATCH)
    report = tmp_path / "out" / "junit.xml"
    report.parent.mkdir()
    done = _run(repo, "--file", "batch.yaml", "--junit", str(report), "--json")
    assert done.returncode == 1, done.stderr
    run = json.loads(done.stdout)  # --json is unchanged by --junit
    suite = parse(report.read_bytes())
    assert (
        suite.get("name"),
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == (
        f"project-manager run {run['run_id']}",
        "4",
        "1",
        "1",
        "1",
    )
    cases = _cases(report)
    assert [(c.get("classname"), name) for name, c in cases.items()] == [
        ("odd<&]]>", "odd"),
        ("broken", "broken"),
        ("sleeper", "slow"),
        ("broken", "after"),
    ]
    out = cases["odd"].findtext("system-out") or ""
    assert out.splitlines()[1] == "]]> <b>&amp; [31m\ufffd\ufffd ::error::evil"  # NUL and controls left out
    assert [c.tag for c in cases["odd"]] == ["system-out"]
    assert [c.tag for c in cases["broken"]] == ["failure", "system-out"]
    assert cases["broken"].findtext("system-out") == "$ sh -c 'echo oops; exit 3'\noops"
    assert [(c.tag, c.get("type")) for c in cases["slow"]] == [("error", "timed_out"), ("system-out", None)]
    assert [(c.tag, c.get("message")) for c in cases["after"]] == [("skipped", "dependency broken failed")]
    assert sorted(os.listdir(report.parent)) == ["junit.xml"]  # no temporary file left


def test_an_interrupted_run_still_writes_its_report_saying_how_each_task_ended(repo: Path, tmp_path: Path) -> None:
    fifo = repo / "ready.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    report = tmp_path / "junit.xml"
    argv = [
        str(SCRIPT),
        "delegate-multiple",
        "shell: echo $$ > ready.fifo; exec sleep 60 @x",
        "shell: true @y",
        "--max-parallel",
        "1",
        "--junit",
        str(report),
        "--repo",
        str(repo),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo)
    out, _ = interrupt_when_ready(proc, reader, "the agent")
    assert proc.returncode == 130
    assert "0/2 succeeded" in out  # the summary, as ever
    cases = _cases(report)
    assert [(c.tag, c.get("type")) for c in cases["t1"]] == [("skipped", "cancelled"), ("system-out", None)]
    assert [(c.tag, c.get("type"), c.get("message")) for c in cases["t2"]] == [("skipped", "cancelled", "cancelled")]
    properties = {p.get("name"): p.get("value") for p in parse(report.read_bytes()).findall("properties/property")}
    assert properties["interrupted"] == "SIGINT (Ctrl-C)"


@pytest.mark.parametrize("where", ["missing/junit.xml", "a-file/junit.xml", "."])
def test_a_path_that_cannot_be_written_is_refused_before_anything_runs(repo: Path, tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("")
    done = _run(repo, "shell: touch ran @ran", "--junit", str(tmp_path / where))
    assert done.returncode == 2
    assert done.stderr.startswith(f"project-manager: error: --junit: {tmp_path / where}: ")
    assert done.stderr.rstrip().endswith("expected a file path in a writable directory")
    assert not (repo / "ran").exists()
    assert done.stdout == ""


def test_a_report_that_cannot_be_written_at_the_end_fails_the_run_after_its_summary(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    report = out / "junit.xml"
    done = _run(repo, f"shell: rm -r '{out}' @x", "--junit", str(report))  # the folder goes while it runs
    assert done.returncode == 1
    assert "1/1 succeeded" in done.stdout
    assert done.stderr.endswith(f"project-manager: error: --junit: cannot write {report}: No such file or directory\n")


def test_without_junit_nothing_is_written_beside_the_run(repo: Path) -> None:
    before = set(os.listdir(repo))
    done = _run(repo, "shell: true @x")
    assert done.returncode == 0, done.stderr
    assert set(os.listdir(repo)) == before
