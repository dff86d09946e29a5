"""The GitHub Actions output of a run (cli/github.py), made from events, summary rows and log tails
without running a queue: groups whose log cannot issue workflow commands, annotations and their
escaping, the job summary's table and its file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from cli import github
from cli.github import Actions, annotation, cell, escape_data, escape_property, group_text, summary_markdown
from cli.logtail import Tail
from cli.render import SummaryRow
from queue_core import TaskEvent, TaskOutcome, TaskState
from queue_core.isolated import WorktreeReport
from queue_core.reports import AgentReport

TOKEN = "0123456789abcdef0123456789abcdef"  # noqa: S105 - a stop-commands token, no secret
EVIL = "::error::evil\n::add-mask::secret\n::set-output name=x::y\n::endgroup::\n::stop-commands::other\n::other::"


def commands_obeyed(text: str) -> list[str]:
    """The lines of ``text`` GitHub's runner would obey as workflow commands: each line at column
    0 that starts with ``::``, except those between ``::stop-commands::T`` and ``::T::``."""
    obeyed, stopped = [], None
    for line in re.split(r"\r\n|\r|\n", text):  # the runner splits lines on CR too
        if stopped is not None:
            if line == f"::{stopped}::":
                stopped = None
            continue
        if line.startswith("::"):
            obeyed.append(line)
            if line.startswith("::stop-commands::"):
                stopped = line.removeprefix("::stop-commands::")
    return obeyed


@pytest.mark.parametrize(
    ("environ", "active"),
    [
        ({"GITHUB_ACTIONS": "true"}, True),
        ({"GITHUB_ACTIONS": "1"}, False),
        ({"GITHUB_ACTIONS": "True"}, False),
        ({}, False),
    ],
)
def test_only_github_actions_own_setting_turns_it_on(environ: dict[str, str], active: bool) -> None:
    assert github.active(environ) is active
    assert (Actions.of(environ) is not None) is active


def test_escaping_follows_githubs_toolkit() -> None:
    assert escape_data("100% done\r\nnext: a, b") == "100%25 done%0D%0Anext: a, b"
    assert escape_property("100% done\r\nnext: a, b") == "100%25 done%0D%0Anext%3A a%2C b"
    assert escape_data("%0A") == "%250A"  # what looks escaped already is escaped again


def test_a_log_in_a_group_issues_no_workflow_command() -> None:
    text = group_text("t1", "dev", "failed", Tail(f"before\n{EVIL}\nafter"), "/l/t1.log", TOKEN)
    lines = text.splitlines()
    assert lines[:2] == ["::group::t1 (dev): failed", f"::stop-commands::{TOKEN}"]
    assert lines[-2:] == [f"::{TOKEN}::", "::endgroup::"]
    assert "::error::evil" in lines  # the log as it is, at column 0: shown, never obeyed
    assert commands_obeyed(text) == ["::group::t1 (dev): failed", f"::stop-commands::{TOKEN}", "::endgroup::"]


def test_a_log_line_ended_with_a_carriage_return_cannot_start_a_command_either() -> None:
    text = group_text("t1", "dev", "failed", Tail("progress\r::error::evil\r\nmore"), None, TOKEN)
    assert commands_obeyed(text) == ["::group::t1 (dev): failed", f"::stop-commands::{TOKEN}", "::endgroup::"]


def test_a_group_says_how_much_of_the_log_came_before_its_tail() -> None:
    text = group_text("t1", "dev", "succeeded", Tail("last", 4096), "/l/t1.log", TOKEN)
    assert text.splitlines()[2] == "[project-manager] the last lines of /l/t1.log; 4096 bytes before them are not shown"


def test_a_group_title_cannot_break_its_line() -> None:
    text = group_text("t1", "ag\nent\r::error::x%", "failed", Tail("log"), None, TOKEN)
    assert text.splitlines()[0] == "::group::t1 (ag%0Aent%0D::error::x%25): failed"
    assert len(commands_obeyed(text)) == 3


def test_a_token_found_in_the_log_is_refused() -> None:
    with pytest.raises(ValueError, match="the token is in the log"):
        group_text("t1", "dev", "failed", Tail(f"::{TOKEN}::\n::error::evil"), None, TOKEN)


def test_an_annotation_escapes_its_title_as_a_property_and_its_message_as_data() -> None:
    assert annotation("t1", "the agent exited with code 3") == "::error title=t1::the agent exited with code 3"
    assert annotation("a,b:c", "50% of\nit\r") == "::error title=a%2Cb%3Ac::50%25 of%0Ait%0D"
    assert annotation("t\x00\udcff1", "x\x01y") == "::error title=t1::xy"  # nothing a log could not hold


def event(kind: str, log: str | None = None, error: str | None = None, task: str = "t1") -> TaskEvent:
    return TaskEvent(kind, task, "dev", 0.0, 1, error=error, log=log)


def test_a_task_that_ends_shows_its_log_and_a_failure_is_annotated(tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    log.write_text(f"$ agent\n{EVIL}\n")
    actions = Actions(None)
    text = actions.task_ended(event("failed", str(log), "the agent exited with code 3"))
    assert text is not None
    assert "::error::evil" in text.splitlines()
    assert commands_obeyed(text)[-2:] == ["::endgroup::", "::error title=t1::the agent exited with code 3"]
    succeeded = actions.task_ended(event("succeeded", str(log)))
    assert succeeded is not None
    assert "::error title" not in succeeded


def test_each_group_draws_a_token_of_its_own(tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    log.write_text("x\n")
    first, second = (Actions(None).task_ended(event("succeeded", str(log))) or "" for _ in range(2))
    tokens = {line for line in (first + "\n" + second).splitlines() if line.startswith("::stop-commands::")}
    assert len(tokens) == 2
    assert all(re.fullmatch(r"::stop-commands::[0-9a-f]{32}", token) for token in tokens)


@pytest.mark.parametrize("kind", ["started", "retrying", "paused"])
def test_an_event_that_ends_no_task_shows_nothing(tmp_path: Path, kind: str) -> None:
    (tmp_path / "t1.log").write_text("x\n")
    assert Actions(None).task_ended(event(kind, str(tmp_path / "t1.log"), "the agent exited with code 1")) is None


def test_a_task_without_a_log_has_no_group_but_its_failure_is_annotated(tmp_path: Path) -> None:
    actions = Actions(None)
    assert actions.task_ended(event("skipped", None, "dependency t0 failed")) is None
    assert actions.task_ended(event("cancelled", None, "cancelled")) is None
    assert actions.task_ended(event("timed_out", str(tmp_path / "gone.log"), "timed out after 1s")) == (
        "::error title=t1::timed out after 1s"
    )
    assert actions.task_ended(event("rate_limited", None, None)) == "::error title=t1::rate_limited"


def row(task_id: str, status: TaskState, agent: str = "dev", **kw: Any) -> SummaryRow:
    worktree = kw.pop("worktree", None)
    return SummaryRow(TaskOutcome(task_id, agent, "", status, **kw), worktree=worktree)


def test_the_job_summary_is_a_table_of_the_run_then_its_totals() -> None:
    rows = [
        row("api", TaskState.SUCCEEDED, attempts=1, total_s=2.04, report=AgentReport(cost_usd=0.0123)),
        row("flaky", TaskState.FAILED, "releaser", attempts=3, total_s=5.0, reason="the agent exited with code 1"),
        row("docs", TaskState.SKIPPED, reason="dependency flaky failed"),
    ]
    assert summary_markdown("r1", rows, 4.0).splitlines() == [
        "",
        "### project-manager run r1",
        "",
        "| task | agent | status | duration | attempts | cost | error |",
        "|---|---|---|---|---|---|---|",
        "| api | dev | succeeded | 2.0s | 1 | $0.0123 |  |",
        "| flaky | releaser | failed | 5.0s | 3 |  | the agent exited with code 1 |",
        "| docs | dev | skipped |  | 0 |  | dependency flaky failed |",
        "",
        "1/3 succeeded; wall 4.0s, task time 7.0s, cost $0.0123",
    ]


def test_the_merge_column_is_there_when_a_task_ran_in_a_worktree_and_an_interruption_is_said() -> None:
    tree = WorktreeReport("pm/r1/api", Path("/w"), merge="merged")
    rows = [row("api", TaskState.SUCCEEDED, attempts=1, total_s=1.0, worktree=tree), row("b", TaskState.SUCCEEDED)]
    lines = summary_markdown("r1", rows, 1.0, interrupted="SIGTERM").splitlines()
    assert lines[3] == "| task | agent | status | duration | attempts | merge |"
    assert lines[5:7] == ["| api | dev | succeeded | 1.0s | 1 | merged |", "| b | dev | succeeded |  | 0 |  |"]
    assert lines[-1] == "2/2 succeeded; wall 1.0s, task time 1.0s; interrupted by SIGTERM"


def test_a_cell_cannot_end_its_cell_or_row_or_become_a_link_html_or_code() -> None:
    assert cell("a|b\nc\r\nd") == "a&#124;b c d"
    assert cell("[click](https://x.invalid) <img src=x> & `code` *em* _em_ ~~del~~ \\|") == (
        "\\[click\\](https://x.invalid) &lt;img src=x&gt; &amp; \\`code\\` \\*em\\* \\_em\\_ \\~\\~del\\~\\~ \\\\&#124;"
    )
    assert cell("t\x00\udcff1") == "t1"


def test_a_hostile_row_stays_one_row_of_as_many_cells() -> None:
    rows = [row("x|y", TaskState.FAILED, "a\n| b |", attempts=1, total_s=1.0, reason="no|\n\nthing | here")]
    table_row = summary_markdown("r1", rows, 1.0).splitlines()[5]
    assert table_row.count("|") == 7  # six cells: task, agent, status, duration, attempts, error
    assert table_row == "| x&#124;y | a &#124; b &#124; | failed | 1.0s | 1 | no&#124; thing &#124; here |"


def test_the_summary_is_appended_to_the_file_github_names_and_keeps_what_it_held(tmp_path: Path) -> None:
    path = tmp_path / "step_summary.md"
    path.write_text("# an earlier step's summary\n")
    actions = Actions.of({"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(path)})
    assert actions is not None
    rows = [row("api", TaskState.SUCCEEDED, attempts=1, total_s=1.0)]
    assert actions.append_summary("r1", rows, 1.0) is None
    assert actions.append_summary("r2", rows, 1.0) is None
    text = path.read_text()
    assert text.startswith("# an earlier step's summary\n\n### project-manager run r1\n")
    assert text.endswith(summary_markdown("r2", rows, 1.0))


def test_a_summary_file_absent_or_unwritable_is_a_warning(tmp_path: Path) -> None:
    rows = [row("api", TaskState.SUCCEEDED)]
    assert Actions(None).append_summary("r1", rows, 1.0) == "GITHUB_STEP_SUMMARY is not set: no job summary written"
    assert Actions("").append_summary("r1", rows, 1.0) == "GITHUB_STEP_SUMMARY is not set: no job summary written"
    missing = tmp_path / "gone" / "summary.md"
    assert Actions(str(missing)).append_summary("r1", rows, 1.0) == (
        f"cannot append the job summary to {missing} (GITHUB_STEP_SUMMARY): No such file or directory"
    )
    assert Actions(str(tmp_path)).append_summary("r1", rows, 1.0) == (
        f"cannot append the job summary to {tmp_path} (GITHUB_STEP_SUMMARY): Is a directory"
    )


def test_a_summary_fifo_that_nobody_reads_is_a_warning_not_a_wait(tmp_path: Path) -> None:
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    problem = Actions(str(fifo)).append_summary("r1", [row("api", TaskState.SUCCEEDED)], 1.0)
    assert problem == f"cannot append the job summary to {fifo} (GITHUB_STEP_SUMMARY): No such device or address"
