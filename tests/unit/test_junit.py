"""``--junit``'s report (cli/junit.py), made from summary rows without running a queue: its shape,
valid against a Jenkins-style JUnit schema, hostile ids and logs, the atomic write,
and a path that cannot be written."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from cli import junit
from cli.config import ConfigError
from cli.logtail import Tail
from cli.render import SummaryRow
from queue_core import TaskOutcome, TaskState
from queue_core.isolated import WorktreeReport
from queue_core.reports import AgentReport

#: The Jenkins-style JUnit format, as a schema (see its header).
XSD = Path(__file__).parents[1] / "schemas" / "junit.xsd"
STARTED = 1_764_000_000.0  # 2025-11-24, wall clock


def validate(data: bytes) -> None:
    """Fail unless ``data`` is valid against the Jenkins JUnit schema; skip without xmlschema."""
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema validates the report: pip install -e '.[dev]'")
    xmlschema.XMLSchema(str(XSD)).validate(data.decode("utf-8"))


def parse(data: bytes) -> ET.Element:
    return ET.fromstring(data)  # noqa: S314 - our own report, which the test checks


def row(task_id: str, status: TaskState, agent: str = "dev", **kw: Any) -> SummaryRow:
    worktree = kw.pop("worktree", None)
    return SummaryRow(TaskOutcome(task_id, agent, f"do {task_id}", status, **kw), worktree=worktree)


ROWS = [
    row("ok", TaskState.SUCCEEDED, attempts=1, total_s=1.25, exit_code=0, log="/logs/ok.log"),
    row("broken", TaskState.FAILED, attempts=2, total_s=3.5, exit_code=3, reason="the agent exited with code 3"),
    row("slow", TaskState.TIMED_OUT, "sleeper", attempts=1, total_s=1.0, reason="timed out after 1s (attempt 1 of 1)"),
    row(
        "limited",
        TaskState.RATE_LIMITED,
        attempts=1,
        total_s=0.5,
        reason="rate limited for longer than 60s",
        report=AgentReport("429 too many", 0.25),
    ),
    row("after", TaskState.SKIPPED, reason="dependency broken failed"),
    row("never", TaskState.CANCELLED, reason="not started"),
]


def report(rows: list[SummaryRow] = ROWS, **kw: Any) -> ET.Element:
    data = junit.report_xml("20261129-010203-1-abcdef", rows, started_at=STARTED, wall_s=4.5, **kw)
    validate(data)
    return parse(data)


def test_one_suite_names_the_run_and_counts_each_way_a_task_ended() -> None:
    suite = report()
    assert suite.tag == "testsuite"
    assert {k: suite.get(k) for k in ("name", "tests", "failures", "errors", "skipped", "time")} == {
        "name": "project-manager run 20261129-010203-1-abcdef",
        "tests": "6",
        "failures": "1",
        "errors": "2",
        "skipped": "2",
        "time": "4.500",
    }
    assert suite.get("timestamp", "").startswith("2025-11-2")  # local time, with its offset


def test_every_task_is_a_test_case_of_its_agent_with_its_time_in_decimal_seconds() -> None:
    cases = report().findall("testcase")
    assert [(c.get("classname"), c.get("name"), c.get("time")) for c in cases] == [
        ("dev", "ok", "1.250"),
        ("dev", "broken", "3.500"),
        ("sleeper", "slow", "1.000"),
        ("dev", "limited", "0.500"),
        ("dev", "after", "0.000"),
        ("dev", "never", "0.000"),  # never started: a test case all the same
    ]


def test_how_each_task_ended_is_a_failure_an_error_or_skipped() -> None:
    cases = {c.get("name"): c for c in report().findall("testcase")}
    assert [child.tag for child in cases["ok"]] == []
    failure = cases["broken"].find("failure")
    assert failure is not None
    assert (failure.get("type"), failure.get("message")) == ("failed", "the agent exited with code 3")
    assert failure.text == "the agent exited with code 3\nexit code: 3\nattempts: 2"
    slow, limited = cases["slow"].find("error"), cases["limited"].find("error")
    assert slow is not None
    assert limited is not None
    assert (slow.get("type"), slow.get("message")) == ("timed_out", "timed out after 1s (attempt 1 of 1)")
    assert (limited.get("type"), limited.get("message")) == ("rate_limited", "429 too many")  # the agent's words
    for name, kind, message in (
        ("after", "skipped", "dependency broken failed"),
        ("never", "cancelled", "not started"),
    ):
        skipped = cases[name].find("skipped")
        assert skipped is not None
        assert (skipped.get("type"), skipped.get("message"), skipped.text) == (kind, message, None)


def test_properties_hold_the_runs_cost_and_each_tasks_attempts_cost_and_merge() -> None:
    rows = [
        *ROWS,
        row(
            "tree",
            TaskState.SUCCEEDED,
            attempts=1,
            report=AgentReport(cost_usd=0.5),
            worktree=WorktreeReport("pm/r/tree", Path("/w"), merge="merged"),
        ),
    ]
    suite = report(rows, interrupted="SIGINT (Ctrl-C)")
    properties = [(p.get("name"), p.get("value")) for p in suite.findall("properties/property")]
    assert properties[:3] == [
        ("run", "20261129-010203-1-abcdef"),
        ("cost_usd", "0.75"),
        ("interrupted", "SIGINT (Ctrl-C)"),
    ]
    named = dict(properties)
    assert [named[f"attempts:{r.outcome.id}"] for r in rows] == ["1", "2", "1", "1", "0", "0", "1"]
    assert (named["cost_usd:limited"], named["cost_usd:tree"], named["merge:tree"]) == ("0.25", "0.5", "merged")
    assert "cost_usd:ok" not in named  # it reported none
    for case in suite.findall("testcase"):
        assert case.find("properties") is None  # the schema allows none in a test case


def test_a_run_with_no_cost_reported_has_no_cost_property() -> None:
    names = [p.get("name") for p in report(ROWS[:2]).findall("properties/property")]
    assert names == ["run", "attempts:ok", "attempts:broken"]


def test_system_out_is_the_logs_tail_and_says_how_much_came_before() -> None:
    tails = {"ok": Tail("hello\nbye"), "broken": Tail("last line", 12345)}
    cases = {c.get("name"): c for c in report(tails=tails).findall("testcase")}
    assert cases["ok"].findtext("system-out") == "hello\nbye"
    shown = cases["broken"].findtext("system-out") or ""
    assert shown.splitlines()[-1] == "last line"
    assert "12345 bytes before them are not shown" in shown.splitlines()[0]
    assert cases["slow"].find("system-out") is None  # no tail, no element


HOSTILE = "a]]>b<c>&d\"e'f\x00g\x01\x1b[2Jh\udcff\ud800i\ufffej\r\nk"


def test_hostile_ids_agents_errors_and_logs_make_a_valid_report_that_keeps_what_xml_can_hold() -> None:
    rows = [
        row(HOSTILE, TaskState.FAILED, HOSTILE, attempts=1, reason=HOSTILE, log=f"/logs/{HOSTILE}.log"),
        row("x", TaskState.SKIPPED, "<script>", reason="]]>"),
    ]
    suite = report(rows, tails={HOSTILE: Tail(f"{HOSTILE}\n<![CDATA[ x ]]>\n&amp;")}, interrupted=HOSTILE)
    kept = "a]]>b<c>&d\"e'fg[2Jhij\r\nk"  # NUL, controls, lone surrogates and U+FFFE left out
    [case, other] = suite.findall("testcase")
    assert (case.get("name"), case.get("classname")) == (kept, kept)
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == kept  # an attribute keeps its line ends: escaped as &#10; &#13;
    assert case.findtext("system-out") == f"{kept}\n<![CDATA[ x ]]>\n&amp;".replace("\r\n", "\n")
    assert (other.get("classname"), other.findall("skipped")[0].get("message")) == ("<script>", "]]>")
    assert {p.get("name"): p.get("value") for p in suite.findall("properties/property")}["interrupted"] == kept


def test_the_report_is_utf8_xml_made_by_the_standard_library() -> None:
    data = junit.report_xml("r", ROWS[:1], started_at=STARTED, wall_s=1.0)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<testsuite ")
    assert data.endswith(b"</testsuite>\n")


def _run_log(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / "logs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return str(path)


def test_write_reads_each_logs_tail_and_replaces_the_file_whole(tmp_path: Path) -> None:
    log = _run_log(tmp_path, "ok.log", b"$ true\n" + b"".join(b"line %d\n" % n for n in range(300)))
    target = tmp_path / "report.xml"
    target.write_text("an older report")
    rows = [
        row("ok", TaskState.SUCCEEDED, attempts=1, log=log),
        row("never", TaskState.CANCELLED, reason="not started"),
    ]
    assert junit.write(target, "r1", rows, started_at=STARTED, wall_s=2.0) is None
    validate(target.read_bytes())
    out = parse(target.read_bytes()).findtext("testcase/system-out") or ""
    assert out.splitlines()[1:] == [f"line {n}" for n in range(100, 300)]
    assert sorted(os.listdir(tmp_path)) == ["logs", "report.xml"]  # no temporary file left


def test_a_missing_or_unreadable_log_leaves_out_system_out_only(tmp_path: Path) -> None:
    fifo = tmp_path / "t.log"
    os.mkfifo(fifo)
    rows = [row("gone", TaskState.FAILED, log=str(tmp_path / "gone.log")), row("t", TaskState.FAILED, log=str(fifo))]
    target = tmp_path / "report.xml"
    assert junit.write(target, "r1", rows, started_at=STARTED, wall_s=1.0) is None
    cases = parse(target.read_bytes()).findall("testcase")
    assert [c.find("system-out") for c in cases] == [None, None]
    assert [c.find("failure") is not None for c in cases] == [True, True]


def test_a_report_that_cannot_be_written_says_why_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "gone" / "report.xml"
    problem = junit.write(target, "r1", ROWS, started_at=STARTED, wall_s=1.0)
    assert problem == f"--junit: cannot write {target}: No such file or directory"
    assert not target.parent.exists()


def test_a_directory_in_the_way_keeps_its_place_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    target = tmp_path / "report.xml"
    target.mkdir()
    (target / "inside").write_text("kept")
    problem = junit.write(target, "r1", ROWS, started_at=STARTED, wall_s=1.0)
    assert problem is not None
    assert problem.startswith(f"--junit: cannot write {target}: ")
    assert sorted(os.listdir(tmp_path)) == ["report.xml"]
    assert (target / "inside").read_text() == "kept"


def test_check_path_accepts_a_new_or_existing_file_in_a_writable_directory_and_leaves_no_trace(tmp_path: Path) -> None:
    junit.check_path(tmp_path / "new.xml")
    (tmp_path / "old.xml").write_text("old")
    junit.check_path(tmp_path / "old.xml")
    assert sorted(os.listdir(tmp_path)) == ["old.xml"]
    assert (tmp_path / "old.xml").read_text() == "old"


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("missing/report.xml", "{tmp}/missing is not an existing directory"),
        ("file/report.xml", "{tmp}/file is not an existing directory"),
        ("dir", "is a directory"),
    ],
)
def test_check_path_refuses_a_path_that_cannot_be_written_saying_what_was_expected(
    tmp_path: Path, where: str, problem: str
) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ConfigError) as caught:
        junit.check_path(tmp_path / where)
    expected = (
        f"--junit: {tmp_path / where}: {problem.format(tmp=tmp_path)}; expected a file path in a writable directory"
    )
    assert str(caught.value) == expected


def test_check_path_refuses_a_directory_where_no_file_can_be_created() -> None:
    with pytest.raises(ConfigError, match=r"^--junit: /proc/report.xml: cannot create a file in /proc: "):
        junit.check_path(Path("/proc/report.xml"))
