"""A run on GitHub Actions (``GITHUB_ACTIONS=true``, and only then): as each task ends, its log
in a collapsed group and, if it failed, an error annotation; at the end, a table of the run
appended to the job summary (the file ``$GITHUB_STEP_SUMMARY`` names).

GitHub obeys workflow commands (``::error::``, ``::add-mask::``, ``::set-output``...) in
whatever a step prints, the agents' logs included, which are not ours to trust. So each log is
printed between ``::stop-commands::TOKEN`` and ``::TOKEN::``, a token drawn afresh for each
group after the log was written, and nothing between them is obeyed. What we write into a
command ourselves is escaped as GitHub's toolkit does (``%``, CR, LF; in a property also ``:``
and ``,``), and a Markdown cell's text cannot end its cell, start a link or make HTML.

The text is made by pure functions of a task's event, a run's summary rows and a log's tail
(cli/logtail.py); :class:`Actions` reads the logs and appends the summary.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping, Sequence

from queue_core import TaskEvent, TaskState
from queue_core.records import FAILED_STATES

from .logtail import Tail, clean, read_tail
from .render import SummaryRow, total_cost

#: The event kinds that end a task: its terminal states' values.
_ENDS = frozenset(state.value for state in TaskState if state.is_terminal)
#: Those that are failures, which get an annotation.
_FAILURES = frozenset(state.value for state in FAILED_STATES)


def active(environ: Mapping[str, str]) -> bool:
    """Whether this runs as a step of GitHub Actions, which sets ``GITHUB_ACTIONS=true``."""
    return environ.get("GITHUB_ACTIONS") == "true"


def defuse(text: str, *, json_text: bool = False) -> str:
    """``text`` (a line of ours that may quote an agent: an event line, the summary, ``--json``)
    without the older form of a workflow command, ``##[command]data``, which GitHub's runner
    obeys anywhere in a line (a command of the ``::command::`` form must start its line, which
    our lines never leave to an agent). ``##[`` becomes ``## [``; in JSON (``json_text``), where
    it can only be inside a string, ``#\\u0023[``: the same string to a JSON reader."""
    return text.replace("##[", "#\\u0023[" if json_text else "## [")


def escape_data(text: str) -> str:
    """``text`` as the message of a workflow command: one line, as GitHub's toolkit escapes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """``text`` as the value of a workflow command's property (``title=...``), which ``:`` or ``,`` would end."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def group_text(task_id: str, agent: str, status: str, tail: Tail, log: str | None, token: str) -> str:
    """A task's log ``tail`` in a group titled ``TASK (agent): status``, its lines between
    ``::stop-commands::token`` and ``::token::``, so that GitHub obeys none of them."""
    text = clean(tail.text)
    if token in text:  # only a token drawn after the log was written is safe: never one in it
        raise ValueError("the token is in the log")
    lines = [f"::group::{escape_data(clean(f'{task_id} ({agent}): {status}'))}", f"::stop-commands::{token}"]
    if tail.omitted:
        lines.append(
            clean(f"[project-manager] the last lines of {log}; {tail.omitted} bytes before them are not shown")
        )
    if text:
        lines.append(text)
    lines += [f"::{token}::", "::endgroup::"]
    return "\n".join(lines)


def annotation(task_id: str, reason: str) -> str:
    """``::error title=TASK::reason``: the failure of a task, shown on the run's page."""
    return f"::error title={escape_property(clean(task_id))}::{escape_data(clean(reason))}"


def task_ended(event: TaskEvent, tail: Tail | None, token: str) -> str | None:
    """What to print when ``event`` ends its task: the group of its log (if it has one: a task
    that never ran has none), then an annotation if it failed, timed out or stayed
    rate-limited; None for an event that ends no task, or shows nothing."""
    if event.kind not in _ENDS:
        return None
    parts = []
    if tail is not None:
        parts.append(group_text(event.task_id, event.agent_type, event.kind, tail, event.log, token))
    if event.kind in _FAILURES:
        parts.append(annotation(event.task_id, event.error or event.kind))
    return "\n".join(parts) or None


#: A cell's characters that Markdown would read as formatting (a link, emphasis, code), escaped
#: with a backslash; ``|``, which would end the cell, and HTML's ``<&>`` become entities.
_MARKDOWN = re.compile(r"([\\`*_\[\]~])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;"}


def cell(text: str) -> str:
    """``text`` as one cell of a Markdown table: on one line, shown as it is."""
    text = " ".join(clean(text).split())
    text = _MARKDOWN.sub(r"\\\1", text)
    return "".join(_ENTITIES.get(ch, ch) for ch in text)


def summary_markdown(run_id: str, rows: Sequence[SummaryRow], wall_s: float, interrupted: str | None = None) -> str:
    """The job summary of a run: a heading, a table of its tasks (task, agent, status, duration,
    attempts; cost, merge and error where some task has one), and its totals."""
    columns: dict[str, list[str]] = {
        "task": [row.outcome.id for row in rows],
        "agent": [row.outcome.agent for row in rows],
        "status": [row.outcome.status.value for row in rows],
        "duration": ["" if row.outcome.total_s is None else f"{row.outcome.total_s:.1f}s" for row in rows],
        "attempts": [str(row.outcome.attempts) for row in rows],
        "cost": ["" if row.report.cost_usd is None else f"${row.report.cost_usd:.4f}" for row in rows],
        "merge": ["" if row.worktree is None else row.worktree.merge or "" for row in rows],
        "error": [row.error or "" for row in rows],
    }
    shown = {name: cells for name, cells in columns.items() if name in ("task", "agent", "status") or any(cells)}
    lines = ["", f"### project-manager run {cell(run_id)}", ""]  # a blank line first: the file may not end one
    lines.append("| " + " | ".join(shown) + " |")
    lines.append("|" + "---|" * len(shown))
    lines += ["| " + " | ".join(cell(text) for text in line) + " |" for line in zip(*shown.values(), strict=True)]
    succeeded = sum(row.outcome.status is TaskState.SUCCEEDED for row in rows)
    task_s = sum(row.outcome.total_s or 0.0 for row in rows)
    totals = f"{succeeded}/{len(rows)} succeeded; wall {wall_s:.1f}s, task time {task_s:.1f}s"
    cost = total_cost(list(rows))
    totals += "" if cost is None else f", cost ${cost:.4f}"
    totals += "" if interrupted is None else f"; interrupted by {cell(interrupted)}"
    return "\n".join([*lines, "", totals]) + "\n"


class Actions:
    """The GitHub Actions output of one run; made by :meth:`of`, which is None off GitHub."""

    def __init__(self, summary_path: str | None):
        #: The job summary's file ($GITHUB_STEP_SUMMARY); None or "" if the runner gave none.
        self.summary_path = summary_path

    @classmethod
    def of(cls, environ: Mapping[str, str]) -> Actions | None:
        """The output for a run in ``environ``; None unless it is GitHub Actions'."""
        return cls(environ.get("GITHUB_STEP_SUMMARY")) if active(environ) else None

    def task_ended(self, event: TaskEvent) -> str | None:
        """What to print as ``event`` ends a task (see :func:`task_ended`), its log's tail read now."""
        if event.kind not in _ENDS:
            return None
        tail = read_tail(event.log)
        token = secrets.token_hex(16)
        while tail is not None and token in tail.text:  # 2**-128 a try: never, but never assumed
            token = secrets.token_hex(16)
        return task_ended(event, tail, token)

    def append_summary(
        self, run_id: str, rows: Sequence[SummaryRow], wall_s: float, interrupted: str | None = None
    ) -> str | None:
        """Append the run's job summary (see :func:`summary_markdown`) to the summary file; None
        if done, else a warning's text. What the file held stays: other steps' summaries."""
        path = self.summary_path
        if not path:
            return "GITHUB_STEP_SUMMARY is not set: no job summary written"
        data = summary_markdown(run_id, rows, wall_s, interrupted).encode("utf-8")
        try:
            # O_NONBLOCK: a FIFO that nobody reads refuses at once instead of waiting for good.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
            try:
                while data:
                    data = data[os.write(fd, data) :]
            finally:
                os.close(fd)
        except OSError as exc:
            return f"cannot append the job summary to {path} (GITHUB_STEP_SUMMARY): {exc.strerror or exc}"
        return None
