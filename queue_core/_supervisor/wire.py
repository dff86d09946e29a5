"""The messages between the coordinator, the supervisor and its keepers.

Every way: a 4-byte big-endian length, then a ``marshal``-ed tuple (our own processes at both
ends of a private socket or pipe: nothing else writes there).

Coordinator to supervisor, forwarded unchanged to the task's keeper:
  ``("spawn", token, argv, cwd, env, log, header, grace, record)``: bytes; ``env`` is the
  whole environment; ``cwd`` and ``log`` are absolute; ``record`` is None, or the file to
  which the keeper appends the agent's process group before the agent runs, and the task's
  id as a JSON string;
  ``("stop", token)``.
Keeper to supervisor (one atomic pipe write each, so at most ``PIPE_BUF`` bytes):
  ``("started", token, agent pid, agent start ticks)``;
  ``("ended", token, status, leaving)``: no process of the task is left; status -N: killed by
  signal N; ``leaving``: the keeper exits next and takes no more tasks;
  ``("failed", token, errno, reason, filename, leaving)``: the agent never started;
  ``("crashed", traceback)``.
Supervisor to coordinator:
  ``("hello", pid)``; ``("started", token, agent pid, agent start ticks)``;
  ``("ended", token, status)``, status None when the task's keeper was killed (what it left
  was stopped first); ``("failed", token, errno, reason, filename)``; ``("crashed", traceback)``.
"""

from __future__ import annotations

import marshal
import select
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

_LENGTH = struct.Struct(">I")
#: Larger than anything the coordinator sends: it refuses a command over ARG_MAX first.
MAX_FRAME = 64 << 20
#: A keeper's report must be one atomic write to the shared report pipe.
PIPE_BUF = getattr(select, "PIPE_BUF", 512)


def frame(*message: Any) -> bytes:
    """One message on the wire."""
    body = marshal.dumps(message)
    return _LENGTH.pack(len(body)) + body


def short(text: str | bytes | None, limit: int = 400) -> str | bytes | None:
    """``text`` cut to at most ``limit`` bytes once encoded, so that a report stays one atomic write."""
    if text is None:
        return None
    if isinstance(text, bytes):
        return text[:limit]
    return text.encode("utf-8", "surrogateescape")[:limit].decode("utf-8", "replace")


class Frames:
    """Splits a byte stream into messages; :meth:`raw` also gives each frame's bytes, to forward it."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        return [message for message, _ in self.raw(data)]

    def raw(self, data: bytes) -> list[tuple[tuple[Any, ...], bytes]]:
        """Raises ValueError if the stream is corrupt (a frame larger than MAX_FRAME)."""
        self._buffer += data
        out = []
        while len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if size > MAX_FRAME:
                raise ValueError(f"a frame of {size} bytes: the stream is corrupt")
            end = _LENGTH.size + size
            if len(self._buffer) < end:
                break
            data = bytes(self._buffer[:end])
            del self._buffer[:end]
            out.append((marshal.loads(data[_LENGTH.size :]), data))  # noqa: S302 - see the module
        return out
