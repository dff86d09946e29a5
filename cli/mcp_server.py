"""``project-manager mcp``: ``claim``, ``check`` and ``who_holds`` as tools of an MCP server (stdio).

For an agent that speaks the Model Context Protocol and has no hook before its edits: it starts
this server inside its task (the server inherits the task's ``PM_*`` environment, as ``claim``
does) and calls the tools. Each is the command of the same name (cli/claim.py), answering in
text; a claim not granted is a tool error, with the reason. Needs the ``[mcp]`` extra (the
official SDK, ``mcp`` 2.x).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

from queue_core.errors import ClaimRefusedError

from . import claim as claim_command

INSTRUCTIONS = (
    "You run inside a task of project-manager, which lets several agents work on one repository at "
    "once without two writing the same file. Before you edit a file your task did not name, call "
    "claim with it; if it is not granted, do not edit it: finish without it, or stop and say so."
)


def server() -> Any:
    """The MCP server; raises ImportError without the ``[mcp]`` extra."""
    import anyio
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError  # the agent reads its text; any other is a crash

    app = MCPServer("project-manager", instructions=INSTRUCTIONS)

    @app.tool()
    async def claim(paths: list[str], read: bool = False, wait_seconds: float = 0.0) -> str:
        """Add files or folders (relative to the task's folder, or absolute) to your task's claims,
        all or none. read: to read only, shared with other readers. wait_seconds: how long to wait
        while another task holds one. Not granted (held, a wait that would deadlock, outside the
        repository or beyond what your agent owns): an error saying why."""
        if not 0 <= wait_seconds <= 3600:
            raise ToolError("wait_seconds: expected 0 to 3600")
        stop = threading.Event()
        ask = functools.partial(claim_command.claim_answer, paths, read=read, wait=wait_seconds, stop=stop)
        try:  # a call the agent cancels stops waiting: its wait is forgotten, nothing granted unseen
            answer = await anyio.to_thread.run_sync(ask, abandon_on_cancel=True)
        finally:
            stop.set()
        if answer.code != 0:
            raise ToolError(answer.text)
        return answer.text

    @app.tool()
    def check(path: str) -> str:
        """Whether your task may write path now; if not, who holds it, or that it is free to claim."""
        return claim_command.check_answer(path).text

    @app.tool()
    def who_holds(path: str) -> str:
        """Every task holding a claim that overlaps path, yours included, and what it holds."""
        return claim_command.who_holds_answer(path).text

    return app


def run() -> int:
    """Serve on stdin and stdout until the client goes; 2 without the extra."""
    from . import terminal
    from .exits import EXIT_OK, EXIT_USAGE

    try:
        claim_command.TaskEnv.of(os.environ)
    except ClaimRefusedError as exc:
        terminal.error(str(exc))
        return EXIT_USAGE
    try:
        app = server()
    except ImportError:
        terminal.error("the MCP server needs the [mcp] extra: pip install 'project-manager[mcp]'")
        return EXIT_USAGE
    app.run("stdio")
    return EXIT_OK
