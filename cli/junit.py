"""``delegate-multiple --junit PATH``: the run as a JUnit XML report, each task a test case, so
that a CI system (Jenkins, GitLab, GitHub's test reporters) shows the tasks as tests.

One ``<testsuite name="project-manager run RUN">``, in the Jenkins-style format
(tests/schemas/junit.xsd, which tests/unit/test_junit.py validates against): every task of the batch a
``<testcase classname="AGENT" name="TASK" time="SECONDS">``, also one that never started. A
failed task has a ``<failure>``, one that timed out or stayed rate-limited an ``<error>``, one
skipped or cancelled a ``<skipped>``; ``<system-out>`` holds the last lines of its log. Its
strict readers allow no properties in a test case, so the suite's ``<properties>`` hold each task's
too, named ``attempts:TASK``, ``cost_usd:TASK`` and ``merge:TASK``, beside the run's.

The report is made with xml.etree from the summary's rows and the logs' tails, which escapes
every text (``]]>``, ``<``, ``&``); what XML cannot hold at all (NUL, control characters, lone
surrogates) is left out (cli/logtail.py). It is written whole or not at all (a temporary file
renamed), also for a run that failed or was interrupted, whose tasks then say how each ended.
"""

from __future__ import annotations

import os
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from queue_core import TaskState
from queue_core.statedir import is_inside

from .config import ConfigError
from .logtail import Tail, clean, read_tail
from .outfiles import replace_file
from .render import SummaryRow, total_cost

#: The element that says how a task that did not succeed ended.
_ENDED = {
    TaskState.FAILED: "failure",
    TaskState.TIMED_OUT: "error",
    TaskState.RATE_LIMITED: "error",
    TaskState.SKIPPED: "skipped",
    TaskState.CANCELLED: "skipped",
}


def report_xml(
    run_id: str,
    rows: Sequence[SummaryRow],
    *,
    started_at: float,
    wall_s: float,
    tails: Mapping[str, Tail] | None = None,
    interrupted: str | None = None,
) -> bytes:
    """The report of the run ``run_id``, begun at ``started_at`` (wall clock) and ``wall_s`` long:
    a test case per row, with the log tail ``tails`` has for its task, if any; ``interrupted``
    names the signal that stopped the run, if one did."""
    ended = [_ENDED.get(row.outcome.status) for row in rows]
    suite = ET.Element(
        "testsuite",
        {
            "name": clean(f"project-manager run {run_id}"),
            "tests": str(len(rows)),
            "failures": str(ended.count("failure")),
            "errors": str(ended.count("error")),
            "skipped": str(ended.count("skipped")),
            "time": _seconds(wall_s),
            "timestamp": datetime.fromtimestamp(started_at).astimezone().isoformat(timespec="seconds"),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(run_id, rows, interrupted):
        ET.SubElement(properties, "property", {"name": clean(name), "value": clean(value)})
    for row in rows:
        suite.append(_testcase(row, (tails or {}).get(row.outcome.id)))
    ET.indent(suite)
    data: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _properties(run_id: str, rows: Sequence[SummaryRow], interrupted: str | None) -> list[tuple[str, str]]:
    """The suite's properties: the run's (its id, its cost as far as agents reported one, the
    signal that stopped it), then each task's, named after it."""
    found = [("run", run_id)]
    cost = total_cost(list(rows))
    if cost is not None:
        found.append(("cost_usd", f"{cost:g}"))
    if interrupted is not None:
        found.append(("interrupted", interrupted))
    for row in rows:
        task = row.outcome.id
        found.append((f"attempts:{task}", str(row.outcome.attempts)))
        if row.report.cost_usd is not None:
            found.append((f"cost_usd:{task}", f"{row.report.cost_usd:g}"))
        if row.worktree is not None and row.worktree.merge is not None:
            found.append((f"merge:{task}", row.worktree.merge))
    return found


def _testcase(row: SummaryRow, tail: Tail | None) -> ET.Element:
    """The test case of one task: how it ended if not well, and the end of its log."""
    outcome = row.outcome
    case = ET.Element(
        "testcase",
        {"classname": clean(outcome.agent), "name": clean(outcome.id), "time": _seconds(outcome.total_s or 0.0)},
    )
    kind = _ENDED.get(outcome.status)
    if kind is not None:
        message = row.error or outcome.status.value
        ended = ET.SubElement(case, kind, {"type": outcome.status.value, "message": clean(message)})
        if kind != "skipped":
            ended.text = clean(_details(row, message))
    if tail is not None:
        ET.SubElement(case, "system-out").text = _shown(tail, outcome.log)
    return case


def _details(row: SummaryRow, message: str) -> str:
    """The text of a failure or error: its message, then the exit code, attempts and log."""
    outcome = row.outcome
    lines = [message]
    if outcome.exit_code is not None:
        lines.append(f"exit code: {outcome.exit_code}")
    lines.append(f"attempts: {outcome.attempts}")
    if outcome.log is not None:
        lines.append(f"log: {outcome.log}")
    return "\n".join(lines)


def _shown(tail: Tail, log: str | None) -> str:
    """A log's tail, after a line that says how much of it came before, and where it all is."""
    if not tail.omitted:
        return clean(tail.text)
    return clean(
        f"[project-manager] the last lines of {log}; {tail.omitted} bytes before them are not shown\n{tail.text}"
    )


def _seconds(seconds: float) -> str:
    """Seconds as JUnit has them: decimal, to the millisecond (``12.345``)."""
    return f"{max(0.0, seconds):.3f}"


def check_path(path: Path, state: Path | None = None) -> None:
    """Raise ConfigError unless a report can be written at ``path``: in an existing directory
    where a file can be created, and not itself a directory, nor in the state directory
    ``state`` (whose file it would replace: a log, a run's record, the registry). Checked before
    the run, so that a typo costs nothing; the directory is left as it was."""
    if state is not None and is_inside(path, state):
        raise ConfigError("--junit", None, None, f"{path}: is inside the state directory {state}; write it elsewhere")
    directory = Path(os.path.realpath(path)).parent  # a symlink's file is written: see write
    problem = None
    if path.is_dir():
        problem = "is a directory"
    elif not directory.is_dir():
        problem = f"{directory} is not an existing directory"
    else:
        probe = directory / f".{path.name}.{secrets.token_hex(4)}.probe"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
            os.unlink(probe)
        except OSError as exc:
            problem = f"cannot create a file in {directory}: {exc.strerror or exc}"
    if problem is not None:
        raise ConfigError("--junit", None, None, f"{path}: {problem}; expected a file path in a writable directory")


def write(
    path: Path,
    run_id: str,
    rows: Sequence[SummaryRow],
    *,
    started_at: float,
    wall_s: float,
    interrupted: str | None = None,
) -> str | None:
    """Write the run's report (see :func:`report_xml`) to ``path``, each task's log tail read
    now; None if written, else what went wrong, naming the path (a report not written leaves
    ``path`` as it was). A symlink's file is replaced, the link kept: it may be where CI looks."""
    tails = {row.outcome.id: tail for row in rows if (tail := read_tail(row.outcome.log)) is not None}
    data = report_xml(run_id, rows, started_at=started_at, wall_s=wall_s, tails=tails, interrupted=interrupted)
    try:
        replace_file(Path(os.path.realpath(path)), data)
    except OSError as exc:
        return f"--junit: cannot write {path}: {exc.strerror or exc}"
    return None
